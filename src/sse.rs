//! The one decoder of `text/event-stream` (server-sent events) that every
//! reader shares: the CLI following a job, the model client reading a
//! streamed answer, and the tests.
//!
//! Two levels, because the readers need different things. [`Lines`] splits
//! the bytes into fields (`name: value`) and blank lines, bounded per line;
//! the model client reads its `data:` lines one by one, as the
//! OpenAI-compatible protocol sends each chunk on a line of its own.
//! [`Decoder`] assembles fields into events, dispatched at a blank line, as
//! the standard says; manimd's own streams are read that way.

/// One line of the stream that says something (comments are skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// `name: value` (one space after the colon is not part of the value);
    /// a line without a colon is a field with an empty value.
    Field { name: String, value: String },
    /// An empty line: the end of an event.
    Blank,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("a line of the event stream is longer than {0} bytes")]
    TooLong(usize),
    #[error("the event stream is not UTF-8")]
    NotUtf8,
}

/// Splits a byte stream into lines (`\n` or `\r\n`), at most `max` bytes
/// each, however the bytes are chunked.
pub struct Lines {
    buf: Vec<u8>,
    max: usize,
}

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            max,
        }
    }

    /// Feeds bytes; returns the lines they complete, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Line>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=end).collect();
            if let Some(line) = parse(&raw[..end])? {
                lines.push(line);
            }
        }
        // A line that never ends is bounded too.
        if self.buf.len() > self.max {
            return Err(SseError::TooLong(self.max));
        }
        Ok(lines)
    }

    /// The last line, when the stream ended without its newline.
    pub fn finish(&mut self) -> Result<Option<Line>, SseError> {
        let raw = std::mem::take(&mut self.buf);
        if raw.is_empty() {
            return Ok(None);
        }
        parse(&raw)
    }
}

fn parse(raw: &[u8]) -> Result<Option<Line>, SseError> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = std::str::from_utf8(raw).map_err(|_| SseError::NotUtf8)?;
    if text.is_empty() {
        return Ok(Some(Line::Blank));
    }
    if text.starts_with(':') {
        return Ok(None);
    }
    let (name, value) = text.split_once(':').unwrap_or((text, ""));
    Ok(Some(Line::Field {
        name: name.to_owned(),
        value: value.strip_prefix(' ').unwrap_or(value).to_owned(),
    }))
}

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` name; `message` when the event named none.
    pub event: String,
    /// The `data:` lines, joined with newlines.
    pub data: String,
    pub id: Option<String>,
}

/// Assembles lines into events.
pub struct Decoder {
    lines: Lines,
    pending: Event,
    has_data: bool,
}

impl Decoder {
    pub fn new(max_line: usize) -> Decoder {
        Decoder {
            lines: Lines::new(max_line),
            pending: Event::default(),
            has_data: false,
        }
    }

    /// Feeds bytes; returns the events they complete, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut events = Vec::new();
        for line in self.lines.feed(chunk)? {
            if let Some(event) = self.apply(line) {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// The stream ended: an event whose blank line never came is dropped,
    /// as the standard says.
    pub fn finish(&mut self) -> Result<(), SseError> {
        self.lines.finish().map(drop)
    }

    fn apply(&mut self, line: Line) -> Option<Event> {
        match line {
            Line::Blank => {
                let mut event = std::mem::take(&mut self.pending);
                if !std::mem::take(&mut self.has_data) {
                    return None;
                }
                if event.event.is_empty() {
                    event.event = "message".into();
                }
                Some(event)
            }
            Line::Field { name, value } => {
                match name.as_str() {
                    "event" => self.pending.event = value,
                    "id" => self.pending.id = Some(value),
                    "data" => {
                        if self.has_data {
                            self.pending.data.push('\n');
                        }
                        self.pending.data.push_str(&value);
                        self.has_data = true;
                    }
                    // `retry` and unknown fields say nothing to a reader here.
                    _ => {}
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<Event> {
        let mut d = Decoder::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(d.feed(c).unwrap());
        }
        d.finish().unwrap();
        out
    }

    fn event(name: &str, data: &str, id: Option<&str>) -> Event {
        Event {
            event: name.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn events_across_chunks_with_both_line_ends() {
        let got = decode(&[
            b"id: 1\r\nevent: status\r\ndata: {\"a\":",
            b"1}\r\n\r\n: keep-alive\n\ndata: x\ndata:y\n",
            b"\nevent: end\ndata: \n\n",
        ]);
        assert_eq!(
            got,
            [
                event("status", "{\"a\":1}", Some("1")),
                event("message", "x\ny", None),
                event("end", "", None),
            ]
        );
    }

    #[test]
    fn an_event_without_its_blank_line_is_dropped_at_the_end() {
        assert_eq!(decode(&[b"event: a\ndata: 1\n"]), []);
    }

    #[test]
    fn lines_are_bounded_and_the_last_one_counts() {
        let mut lines = Lines::new(8);
        assert_eq!(lines.feed(b"data: 1\n").unwrap().len(), 1);
        assert_eq!(lines.feed(b"012345678"), Err(SseError::TooLong(8)));
        let mut lines = Lines::new(64);
        assert_eq!(lines.feed(b"data: [DONE]").unwrap(), []);
        assert_eq!(
            lines.finish().unwrap(),
            Some(Line::Field {
                name: "data".into(),
                value: "[DONE]".into()
            })
        );
        assert_eq!(Lines::new(64).feed(b"data: \xff\n"), Err(SseError::NotUtf8));
    }

    proptest::proptest! {
        /// However the bytes are cut, the events are the same.
        #[test]
        fn chunking_does_not_change_the_events(cuts in proptest::collection::vec(0usize..120, 0..6)) {
            let stream: &[u8] = b"event: status\r\ndata: {\"s\":1}\r\n\r\n:c\ndata: a\ndata: b\n\nid: 7\ndata: z\n\n";
            let whole = decode(&[stream]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&stream[at..c.max(at)]);
                at = c.max(at);
            }
            chunks.push(&stream[at..]);
            proptest::prop_assert_eq!(decode(&chunks), whole);
        }
    }
}
