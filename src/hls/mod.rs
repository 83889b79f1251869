//! Live playback (HLS): each animation's finished video piece is repackaged,
//! without re-encoding, into fMP4 segments behind one init segment, and an
//! EVENT playlist grows as they arrive.
//!
//! This runs outside the sandbox on pieces collected with `Area::collect`,
//! and parses them with the bounds-checked reader in [`mp4`].

pub mod mp4;

/// Longest wanted segment, in seconds. The worker puts a keyframe at least
/// every second, so segments stay within it.
pub const TARGET_SECS: f64 = 2.0;

/// Whether `name` is a file a live stream has: `live.m3u8`, `init.mp4` or
/// `seg-N.m4s`. Names from URLs are checked against this before any path is made.
pub fn is_stream_file(name: &str) -> bool {
    name == "live.m3u8"
        || name == "init.mp4"
        || name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".m4s"))
            .is_some_and(|n| !n.is_empty() && n.len() <= 7 && n.bytes().all(|b| b.is_ascii_digit()))
}

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    #[error(transparent)]
    Mp4(#[from] mp4::Mp4Error),
    #[error("a piece's codec parameters differ from the first piece's")]
    Mismatch,
    #[error("cannot write the live stream: {0}")]
    Io(#[from] std::io::Error),
}

/// A growing HLS EVENT stream in one directory: `init.mp4`, `seg-N.m4s`,
/// `live.m3u8`. Every file is written to a temporary name and renamed, so a
/// reader never sees half of one.
pub struct Live {
    dir: PathBuf,
    /// Longest wanted segment, in seconds.
    target: f64,
    /// What the playlist puts before file names: the playlist is served
    /// beside a directory of segments (`live.m3u8` and `live/seg-0.m4s`).
    uri_prefix: String,
    /// The first piece's track, which every later piece must match.
    first: Option<mp4::Track>,
    /// Decode time where the next piece starts.
    base: u64,
    segments: Vec<(String, f64)>,
    ended: bool,
}

impl Live {
    pub fn new(
        dir: impl Into<PathBuf>,
        target_secs: f64,
        uri_prefix: &str,
    ) -> Result<Live, HlsError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Live {
            dir,
            target: target_secs,
            uri_prefix: uri_prefix.to_owned(),
            first: None,
            base: 0,
            segments: Vec::new(),
            ended: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{name}.part"));
        std::fs::write(&tmp, data)?;
        std::fs::rename(tmp, self.dir.join(name))
    }

    /// Adds a finished piece (an H.264 MP4); returns the segments it added.
    pub fn add_piece(&mut self, file: &[u8]) -> Result<usize, HlsError> {
        let track = mp4::read(file)?;
        let timescale = match &self.first {
            None => {
                self.write("init.mp4", &mp4::init_segment(&track))?;
                self.first = Some(track.clone());
                track.timescale
            }
            Some(first)
                if first.codec_config == track.codec_config
                    && first.timescale == track.timescale
                    && (first.width, first.height) == (track.width, track.height) =>
            {
                first.timescale
            }
            Some(_) => return Err(HlsError::Mismatch),
        };
        let target = (self.target * f64::from(timescale)) as u64;
        let ranges = mp4::segment_ranges(&track.samples, target);
        for range in &ranges {
            let samples = &track.samples[range.clone()];
            let sequence = self.segments.len() as u32 + 1;
            let name = format!("seg-{}.m4s", self.segments.len());
            self.write(&name, &mp4::fragment(file, samples, sequence, self.base)?)?;
            let duration: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
            // Sums of durations from the sandbox: saturate rather than wrap.
            self.base = self.base.saturating_add(duration);
            self.segments
                .push((name, duration as f64 / f64::from(timescale)));
        }
        self.write("live.m3u8", self.playlist().as_bytes())?;
        Ok(ranges.len())
    }

    /// Marks the stream complete (`EXT-X-ENDLIST`).
    pub fn end(&mut self) -> Result<(), HlsError> {
        self.ended = true;
        self.write("live.m3u8", self.playlist().as_bytes())?;
        Ok(())
    }

    pub fn playlist(&self) -> String {
        let longest = self
            .segments
            .iter()
            .map(|(_, d)| *d)
            .fold(self.target, f64::max);
        let mut p = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MEDIA-SEQUENCE:0\n",
            longest.ceil() as u64
        );
        if self.first.is_some() {
            p.push_str(&format!("#EXT-X-MAP:URI=\"{}init.mp4\"\n", self.uri_prefix));
        }
        for (name, secs) in &self.segments {
            p.push_str(&format!("#EXTINF:{secs:.6},\n{}{name}\n", self.uri_prefix));
        }
        if self.ended {
            p.push_str("#EXT-X-ENDLIST\n");
        }
        p
    }

    /// The files that changed since the stream had `before` segments, in
    /// an order safe to publish: media before the playlist that names it.
    pub fn changed_since(&self, before: usize) -> Vec<String> {
        let mut names = Vec::new();
        if before == 0 && self.first.is_some() {
            names.push("init.mp4".to_owned());
        }
        names.extend(
            self.segments[before.min(self.segments.len())..]
                .iter()
                .map(|(n, _)| n.clone()),
        );
        names.push("live.m3u8".to_owned());
        names
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Seconds of video in the playlist.
    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|(_, d)| d).sum()
    }
}
