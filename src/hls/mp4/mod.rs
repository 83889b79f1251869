//! Just enough ISO BMFF to turn a finished H.264 MP4 into fragmented MP4:
//! read its sample table, write an init segment and media fragments.
//!
//! The input comes from a sandbox, so it is hostile. Every read is
//! bounds-checked, every sum or product of numbers taken from the file is
//! checked, and every table is sized by the bytes that hold it rather than
//! by the count it claims: a malformed file is an error, never a panic, an
//! overflow, or an allocation larger than the file justifies.
//!
//! The reader (`read.rs`) walks the boxes down to the sample table and
//! leaves each box to a small parser of its own (`stsz_sizes`,
//! `stts_durations`, ...); the writers (`write.rs`) build the init segment
//! and the fragments. This module holds what both share: the track and
//! sample types, the error, and the segment plan between them.

mod read;
mod write;

use std::ops::Range;

pub use read::read;
pub use write::{fragment, init_segment};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mp4Error {
    #[error("malformed MP4: {0}")]
    Malformed(&'static str),
    #[error("unsupported MP4: {0}")]
    Unsupported(&'static str),
}

use Mp4Error::Unsupported;

// The tests read fields with the reader's own primitives and match its errors.
#[cfg(test)]
use {
    read::{bytes_at, u32_at},
    Mp4Error::Malformed,
};

/// A count or index read from the file, as a `usize`.
fn to_usize(n: u32) -> Result<usize, Mp4Error> {
    usize::try_from(n).map_err(|_| Unsupported("a count too large for this machine"))
}

/// One video sample (frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub offset: u64,
    pub size: u32,
    pub duration: u32,
    /// Composition time offset (pts - dts).
    pub cto: i32,
    pub sync: bool,
}

/// A finished MP4's video track.
#[derive(Clone, Debug)]
pub struct Track {
    pub timescale: u32,
    pub width: u32,
    pub height: u32,
    /// The `stsd` box, copied into the init segment.
    pub stsd: Vec<u8>,
    /// The decoder configuration (`avcC`: SPS and PPS). Pieces with equal
    /// configurations can share one init segment; their `stsd` boxes may
    /// still differ in incidental boxes such as `btrt`.
    pub codec_config: Vec<u8>,
    /// Where presentation starts in media time (the encoder's B-frame
    /// delay, from the edit list), so that playback starts at 0.
    pub start: Option<u64>,
    pub samples: Vec<Sample>,
}

impl Track {
    pub fn duration(&self) -> u64 {
        // At most MAX_SAMPLES (2^20) samples of at most 2^32: no overflow.
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }
}

/// Splits samples into segments that start on a sync sample and last at
/// most `target` (in the track's timescale) where the keyframes allow:
/// whole GOPs are gathered while they fit.
pub fn segment_ranges(samples: &[Sample], target: u64) -> Vec<Range<usize>> {
    // GOPs: from one sync sample to the next. Lengths saturate rather than
    // wrap: they are sums of durations from the file.
    let mut gops: Vec<(Range<usize>, u64)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        match gops.last_mut() {
            Some((range, length)) if !s.sync => {
                range.end = i + 1;
                *length = length.saturating_add(u64::from(s.duration));
            }
            _ => gops.push((i..i + 1, u64::from(s.duration))),
        }
    }
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut length = 0u64;
    for (range, gop) in gops {
        match out.last_mut() {
            Some(last) if length.saturating_add(gop) <= target => {
                last.end = range.end;
                length = length.saturating_add(gop);
            }
            _ => {
                out.push(range);
                length = gop;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
