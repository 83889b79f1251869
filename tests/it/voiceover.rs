//! manim-voiceover scenes, rendered unchanged and offline: whatever service
//! the scene sets, the host speaks (espeak-ng here) and the sandbox never
//! reaches a network. The corpus follows the plugin's own examples
//! (`tests/fixtures/voiceover_*.py`).

use std::collections::BTreeMap;

use manimd::narration::{Tts, TtsConfig};
use manimd::render::Rendered;
use manimd::spec::Engine;

use crate::common::{self, Harness};

/// The line of the fixture's play marked `# after X`.
fn line_of(code: &str, marker: &str) -> u32 {
    let at = code
        .lines()
        .position(|l| l.trim_end().ends_with(marker))
        .unwrap_or_else(|| panic!("no line ends with {marker:?}"));
    at as u32 + 1
}

/// The first animation played from `line`.
fn play_at(r: &Rendered, line: u32) -> (f64, f64) {
    let a = r
        .animations
        .iter()
        .find(|a| a.line == Some(line))
        .unwrap_or_else(|| panic!("no animation at line {line}: {:?}", r.animations));
    (a.start, a.end)
}

async fn seconds_of(text: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let tts = Tts::new(TtsConfig::default());
    tts.speak(text, &dir.path().join("a.wav")).await.unwrap()
}

#[tokio::test]
async fn bookmarks_land_on_their_words_and_the_speech_is_heard() {
    let h = Harness::new();
    let code = common::fixture("voiceover_bookmarks.py");
    let spec = common::spec(Engine::Manim, &code);
    let frame = 1.0 / f64::from(spec.fps());
    let (r, _) = h.ok(&spec).await;

    // Four voiceovers, the third computed at run time (one more pass).
    let texts: Vec<&str> = r.voiceovers.iter().map(|v| v.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Each animation can begin on a chosen word in the middle of what is said, by placing bookmarks in the text.",
            "A circle, drawn while I speak.",
            "That made 3 items and one circle.",
            "Thank you for watching.",
        ]
    );

    // Each mark is the speech of the pieces before it, spoken alone: the
    // same voice on the host gives the same seconds.
    let first = &r.voiceovers[0];
    let a = seconds_of("Each animation can").await;
    let b = a + seconds_of("begin on a chosen word").await;
    let c = b + seconds_of("in the middle of what is said, by placing").await;
    let want: BTreeMap<String, f64> = [("A", a), ("B", b), ("C", c)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (mark, secs) in &want {
        let got = first.marks[mark];
        assert!((got - secs).abs() < 1e-3, "{mark}: {got} != {secs}");
    }
    let whole = c + seconds_of("bookmarks in the text.").await;
    assert!(
        (first.end - first.start - whole).abs() < 1e-3,
        "{first:?} lasts {whole}"
    );

    // The play after each `wait_until_bookmark` starts on its word, within
    // a frame.
    for (marker, voiced, mark) in [
        ("# after A", 0, "A"),
        ("# after B", 0, "B"),
        ("# after C", 0, "C"),
        ("# after D", 2, "D"),
    ] {
        let v = &r.voiceovers[voiced];
        let word = v.start + v.marks[mark];
        let (start, _) = play_at(&r, line_of(&code, marker));
        assert!(
            (start - word).abs() <= frame + 1e-6,
            "{marker}: the play starts at {start}, the word at {word}"
        );
    }
    // `run_time=tracker.get_remaining_duration()` ends with the speech.
    let (_, end) = play_at(&r, line_of(&code, "# after D"));
    assert!((end - r.voiceovers[2].end).abs() <= frame + 1e-6);

    // The sound track holds the speech: it lasts until the last voiceover
    // ends (Manim's mix ends with its last sound; the video may go on).
    let (codec, audio) = common::probe_audio(&r.output).await.expect("a sound track");
    assert_eq!(codec, "aac");
    let last = r.voiceovers.last().unwrap();
    assert!(last.end <= r.media.duration + frame, "{last:?}");
    assert!(
        (audio - last.end).abs() < 0.1,
        "audio {audio} s, the last voiceover ends at {} s",
        last.end
    );

    // Subtitles: one cue per voiceover, without its marks.
    let narrated = r.narration.as_ref().expect("subtitles");
    let vtt = common::read_vtt(&std::fs::read_to_string(&narrated.subtitles).unwrap());
    assert_eq!(vtt.len(), 4, "{vtt:?}");
    for ((start, end, text), v) in vtt.iter().zip(&r.voiceovers) {
        assert_eq!(text, &v.text);
        assert!((start - v.start).abs() < 2e-3 && (end - v.end).abs() < 2e-3);
    }
    h.assert_clean();
}

#[tokio::test]
async fn a_google_voiceover_renders_offline_with_plays_as_long_as_the_speech() {
    let h = Harness::new();
    let code = common::fixture("voiceover_gtts.py");
    let spec = common::spec(Engine::Manim, &code);
    let frame = 1.0 / f64::from(spec.fps());
    let (r, _) = h.ok(&spec).await;
    assert_eq!(r.voiceovers.len(), 4);
    let first = &r.voiceovers[0];
    let spoken = seconds_of("Here a circle appears.").await;
    assert!((first.end - first.start - spoken).abs() < 1e-3);
    // `run_time=tracker.duration`: the play is the speech.
    let create = r
        .animations
        .iter()
        .find(|a| a.name.starts_with("Create"))
        .unwrap();
    assert!((create.start - first.start).abs() <= frame + 1e-6);
    assert!((create.end - first.end).abs() <= frame + 1e-6);
    let (_, audio) = common::probe_audio(&r.output).await.expect("a sound track");
    let last = r.voiceovers.last().unwrap();
    assert!((audio - last.end).abs() < 0.1, "audio {audio} s, {last:?}");
    assert!(r.narration.is_some());
    h.assert_clean();
}

#[tokio::test]
async fn a_warm_sandbox_with_its_plugins_imported_speaks_a_voiceover() {
    use crate::common::server::TestServer;
    use manimd::server::ServeOptions;
    use serde_json::json;
    use std::time::Duration;

    let mut s = TestServer::start(ServeOptions {
        workers: 1,
        warm_pool: 1,
        warm_idle: Duration::from_secs(60),
        ..ServeOptions::default()
    })
    .await;
    let mut warm = false;
    for _ in 0..600 {
        if s.get("/health").await.1["workers"]["warm"] == 1 {
            warm = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(warm, "no warm sandbox");
    let id = s
        .submit(json!({"code": common::fixture("voiceover_gtts.py")}))
        .await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["warm_start"], true, "{job}");
    let cues = job["result"]["narration"]["cues"]
        .as_array()
        .unwrap_or_else(|| panic!("no cues: {job}"));
    assert_eq!(cues.len(), 4, "{job}");
    assert_eq!(cues[0]["text"], "Here a circle appears.");
    // Subtitles without `narration`: the scene spoke.
    let link = job["links"]["subtitles"]
        .as_str()
        .expect("a subtitles link");
    let vtt = s.text(link).await;
    assert_eq!(common::read_vtt(&vtt).len(), 4, "{vtt}");
    s.stop().await;
    s.assert_clean();
}
