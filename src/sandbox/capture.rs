//! Bounded reading of a sandboxed child's output: protocol lines of capped
//! length from stdout, and a capped head and tail of stderr. Both keep
//! draining whatever arrives, so the child never blocks on a full pipe and
//! the supervisor never buffers without bound.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Splits a byte stream into lines of at most `max` bytes; longer lines are
/// dropped whole (they cannot be protocol lines).
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    discarding: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max,
            discarding: false,
        }
    }

    /// Feeds a chunk, calling `line` for each complete line within bounds.
    pub fn feed(&mut self, mut chunk: &[u8], line: &mut impl FnMut(&[u8])) {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            if !self.discarding && self.buf.len() + pos <= self.max {
                self.buf.extend_from_slice(&chunk[..pos]);
                line(&self.buf);
            }
            self.buf.clear();
            self.discarding = false;
            chunk = &chunk[pos + 1..];
        }
        if !self.discarding {
            if self.buf.len() + chunk.len() > self.max {
                self.buf.clear();
                self.discarding = true;
            } else {
                self.buf.extend_from_slice(chunk);
            }
        }
    }
}

/// Bounded lines from a stream, one at a time.
pub struct LineReader<R> {
    reader: R,
    splitter: LineSplitter,
    ready: std::collections::VecDeque<Vec<u8>>,
    chunk: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R, max: usize) -> Self {
        LineReader {
            reader,
            splitter: LineSplitter::new(max),
            ready: Default::default(),
            chunk: vec![0u8; 16 * 1024],
        }
    }

    /// The next line within bounds; `None` at the end of the stream.
    pub async fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(line);
            }
            match self.reader.read(&mut self.chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    let ready = &mut self.ready;
                    self.splitter
                        .feed(&self.chunk[..n], &mut |l| ready.push_back(l.to_vec()));
                }
            }
        }
    }
}

/// The first and last bytes of a stream, and how much was left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
    pub total: u64,
}

impl Captured {
    pub fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    /// The text as one string, with a marker where bytes were dropped.
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.head).into_owned();
        if self.truncated() {
            let dropped = self.total - (self.head.len() + self.tail.len()) as u64;
            s.push_str(&format!("\n[... {dropped} bytes omitted ...]\n"));
        }
        s.push_str(&String::from_utf8_lossy(&self.tail));
        s
    }

    /// The last `n` characters' worth of lines, for error messages.
    pub fn last_lines(&self, n: usize) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Reads `r` to its end, keeping `cap / 4` bytes of head and the rest as tail.
pub async fn capture(mut r: impl AsyncRead + Unpin, cap: usize) -> Captured {
    let head_cap = cap / 4;
    let tail_cap = cap - head_cap;
    let mut out = Captured::default();
    let mut tail = std::collections::VecDeque::with_capacity(tail_cap.min(1 << 16));
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.total += n as u64;
        let mut data = &chunk[..n];
        if out.head.len() < head_cap {
            let take = (head_cap - out.head.len()).min(data.len());
            out.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        tail.extend(data);
        let excess = tail.len().saturating_sub(tail_cap);
        tail.drain(..excess);
    }
    out.tail = tail.into();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |l| {
                out.push(String::from_utf8_lossy(l).into_owned())
            });
        }
        out
    }

    #[test]
    fn lines_across_chunks() {
        assert_eq!(split(&[b"ab", b"c\nde", b"\n\nf"], 10), ["abc", "de", ""]);
    }

    #[test]
    fn overlong_lines_are_dropped_whole() {
        assert_eq!(split(&[b"0123456789ABC", b"DEF\nok\n"], 10), ["ok"]);
        assert_eq!(split(&[b"0123456789AB\nok\n"], 10), ["ok"]);
        assert_eq!(split(&[b"0123456789\n"], 10), ["0123456789"]);
    }

    #[tokio::test]
    async fn line_reader_yields_bounded_lines_then_ends() {
        let data = b"one\ntoo long line\ntwo\npartial".to_vec();
        let mut r = LineReader::new(&data[..], 8);
        assert_eq!(r.next_line().await.as_deref(), Some(&b"one"[..]));
        assert_eq!(r.next_line().await.as_deref(), Some(&b"two"[..]));
        assert_eq!(r.next_line().await, None);
    }

    #[tokio::test]
    async fn capture_keeps_head_and_tail_of_a_flood() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let got = capture(&data[..], 1000).await;
        assert_eq!(got.total, 1_000_000);
        assert_eq!(got.head, data[..250]);
        assert_eq!(got.tail, data[data.len() - 750..]);
        assert!(got.truncated());
        assert!(got.text().contains("bytes omitted"));
        let small = capture(&b"hello"[..], 1000).await;
        assert_eq!(small.text(), "hello");
        assert!(!small.truncated());
    }

    proptest::proptest! {
        /// However the stream is chunked, the splitter yields exactly the
        /// complete lines that fit, and nothing longer.
        #[test]
        fn splitter_matches_a_plain_split(
            data in proptest::collection::vec(proptest::sample::select(vec![b'a', b'b', b'\n']), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            max in 0usize..20,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                chunks.push(&data[at..c.max(at)]);
                at = c.max(at);
            }
            let got = split(&chunks, max);
            let text = String::from_utf8(data.clone()).unwrap();
            let mut expected: Vec<String> = text.split('\n').map(str::to_owned).collect();
            expected.pop(); // the part after the last newline is incomplete
            expected.retain(|l| l.len() <= max);
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
