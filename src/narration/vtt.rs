//! WebVTT subtitles: one cue per narration line.

use super::Cue;

/// The subtitles file for `cues`, in order.
pub fn write(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for (i, cue) in cues.iter().enumerate() {
        out.push_str(&format!(
            "\n{}\n{} --> {}\n{}\n",
            i + 1,
            timestamp(cue.start),
            timestamp(cue.end),
            escape(&cue.text)
        ));
    }
    out
}

/// `hh:mm:ss.mmm`, rounded to the millisecond; negative times are 0.
pub fn timestamp(secs: f64) -> String {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Cue text as WebVTT wants it: `&`, `<` and `>` as entities (so a line
/// can neither open a tag nor contain `-->`), and on one line, because a
/// blank line would end the cue and the rest would be read as a new block.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim().chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' | '\n' | '\t' | '\u{2028}' | '\u{2029}' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(start: f64, end: f64, text: &str) -> Cue {
        Cue {
            start,
            end,
            text: text.into(),
        }
    }

    #[test]
    fn timestamps_are_hours_minutes_seconds_millis() {
        assert_eq!(timestamp(0.0), "00:00:00.000");
        assert_eq!(timestamp(1.2345), "00:00:01.235");
        assert_eq!(timestamp(61.5), "00:01:01.500");
        assert_eq!(timestamp(3725.007), "01:02:05.007");
        assert_eq!(timestamp(-3.0), "00:00:00.000");
        assert_eq!(timestamp(59.9996), "00:01:00.000");
    }

    #[test]
    fn writes_one_numbered_cue_per_line() {
        let vtt = write(&[
            cue(0.0, 1.5, "Here is a circle."),
            cue(2.0, 3.25, "And now a square."),
        ]);
        assert_eq!(
            vtt,
            "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.500\nHere is a circle.\n\n\
             2\n00:00:02.000 --> 00:00:03.250\nAnd now a square.\n"
        );
        assert_eq!(write(&[]), "WEBVTT\n");
    }

    #[test]
    fn cue_text_cannot_break_out_of_its_cue() {
        assert_eq!(escape("a --> b"), "a --&gt; b");
        assert_eq!(
            escape("x\n\n00:00:00.000 --> 00:00:09.000\ny"),
            "x  00:00:00.000 --&gt; 00:00:09.000 y"
        );
        assert_eq!(
            escape("<b>bold</b> & co"),
            "&lt;b&gt;bold&lt;/b&gt; &amp; co"
        );
        assert_eq!(escape("tab\there\u{7}"), "tab here");
        let vtt = write(&[cue(0.0, 1.0, "one\r\n\r\ntwo --> three")]);
        assert_eq!(vtt.matches("-->").count(), 1, "{vtt}");
        assert_eq!(vtt.lines().count(), 5, "{vtt}");
    }
}
