//! Just enough ISO BMFF to turn a finished H.264 MP4 into fragmented MP4:
//! read its sample table, write an init segment and media fragments.
//!
//! The input comes from a sandbox, so it is hostile. Every read is
//! bounds-checked, every sum or product of numbers taken from the file is
//! checked, and every table is sized by the bytes that hold it rather than
//! by the count it claims: a malformed file is an error, never a panic, an
//! overflow, or an allocation larger than the file justifies.
//!
//! `read` walks the boxes down to the sample table and leaves each box to a
//! small parser of its own (`stsz_sizes`, `stts_durations`, ...); the
//! writers below it build the init segment and the fragments.

use std::ops::Range;
use std::slice::ChunksExact;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mp4Error {
    #[error("malformed MP4: {0}")]
    Malformed(&'static str),
    #[error("unsupported MP4: {0}")]
    Unsupported(&'static str),
}

use Mp4Error::{Malformed, Unsupported};

/// Samples per file accepted; a minute of 120 fps is 7,200.
const MAX_SAMPLES: usize = 1_000_000;

/// Largest `stsd` box accepted. x264's is a few hundred bytes; the cap keeps
/// every box of the init segment, which copies it, far below 4 GiB.
const MAX_STSD: usize = 1 << 20;

/// `N` bytes at `at`, or an error where the data ends first.
fn bytes_at<const N: usize>(d: &[u8], at: usize) -> Result<[u8; N], Mp4Error> {
    at.checked_add(N)
        .and_then(|end| d.get(at..end))
        .and_then(|b| b.try_into().ok())
        .ok_or(Malformed("truncated field"))
}

fn u32_at(d: &[u8], at: usize) -> Result<u32, Mp4Error> {
    bytes_at(d, at).map(u32::from_be_bytes)
}

fn u64_at(d: &[u8], at: usize) -> Result<u64, Mp4Error> {
    bytes_at(d, at).map(u64::from_be_bytes)
}

/// A count or index read from the file, as a `usize`.
fn to_usize(n: u32) -> Result<usize, Mp4Error> {
    usize::try_from(n).map_err(|_| Unsupported("a count too large for this machine"))
}

/// A box: its type, the whole box and its payload.
struct Mp4Box<'a> {
    kind: [u8; 4],
    whole: &'a [u8],
    payload: &'a [u8],
}

/// The boxes directly inside `d`, which they must fill exactly up to a tail
/// shorter than a box header.
fn boxes(d: &[u8]) -> Result<Vec<Mp4Box<'_>>, Mp4Error> {
    let mut out = Vec::new();
    let mut at = 0usize;
    // `at` never passes `d.len()`, so this cannot underflow.
    while d.len() - at >= 8 {
        let size = u32_at(d, at)?;
        let kind = bytes_at(d, at + 4)?;
        let (size, header) = match size {
            // To the end of the enclosing data.
            0 => (d.len() - at, 8),
            // A 64-bit size after the type.
            1 => (
                usize::try_from(u64_at(d, at + 8)?).map_err(|_| Malformed("box size"))?,
                16,
            ),
            n => (to_usize(n)?, 8),
        };
        if size < header {
            return Err(Malformed("box size"));
        }
        let end = at.checked_add(size).ok_or(Malformed("box size"))?;
        let whole = d.get(at..end).ok_or(Malformed("box size"))?;
        out.push(Mp4Box {
            kind,
            whole,
            payload: whole.get(header..).ok_or(Malformed("box size"))?,
        });
        at = end;
    }
    Ok(out)
}

/// The payload of the first `kind` box directly inside `d`.
fn child<'a>(d: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], Mp4Error> {
    boxes(d)?
        .into_iter()
        .find(|b| &b.kind == kind)
        .map(|b| b.payload)
        .ok_or(Malformed("a required box is missing"))
}

/// The first whole `kind` box (header included) directly inside `d`.
fn child_box<'a>(d: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(d)
        .ok()?
        .into_iter()
        .find(|b| &b.kind == kind)
        .map(|b| b.whole)
}

/// The entries of a table box, each `width` bytes, after the 32-bit entry
/// count at `count_at` of the payload. The count is checked against the
/// bytes the box holds, so nothing is allocated or looped over for entries
/// that are not there; bytes after the table are ignored, as before.
fn table(payload: &[u8], count_at: usize, width: usize) -> Result<ChunksExact<'_, u8>, Mp4Error> {
    let count = to_usize(u32_at(payload, count_at)?)?;
    let start = count_at.checked_add(4).ok_or(Malformed("table"))?;
    count
        .checked_mul(width)
        .and_then(|len| start.checked_add(len))
        .and_then(|end| payload.get(start..end))
        .map(|entries| entries.chunks_exact(width))
        .ok_or(Malformed("a table is longer than its box"))
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

/// Reads the (first) video track of an MP4 file held in memory.
pub fn read(file: &[u8]) -> Result<Track, Mp4Error> {
    let trak = video_trak(child(file, b"moov")?)?;
    let (width, height) = tkhd_size(child(trak, b"tkhd")?)?;
    let mdia = child(trak, b"mdia")?;
    let timescale = mdhd_timescale(child(mdia, b"mdhd")?)?;
    let stbl = child(child(mdia, b"minf")?, b"stbl")?;
    let (stsd, codec_config) = stsd_entry(stbl)?;

    let sizes = stsz_sizes(child(stbl, b"stsz")?, file.len())?;
    let count = sizes.len();
    let durations = stts_durations(child(stbl, b"stts")?, count)?;
    // No ctts: no composition offsets. No stss: every sample is a sync sample.
    let ctos = match child(stbl, b"ctts") {
        Ok(ctts) => ctts_offsets(ctts, count)?,
        Err(_) => vec![0; count],
    };
    let sync = match child(stbl, b"stss") {
        Ok(stss) => stss_sync(stss, count)?,
        Err(_) => vec![true; count],
    };
    let chunks = chunk_offsets(stbl)?;
    let runs = stsc_runs(child(stbl, b"stsc")?)?;
    let offsets = sample_offsets(&chunks, &runs, &sizes)?;

    let file_len = u64::try_from(file.len()).map_err(|_| Unsupported("file size"))?;
    let samples = offsets
        .into_iter()
        .zip(sizes)
        .zip(durations)
        .zip(ctos)
        .zip(sync)
        .map(|((((offset, size), duration), cto), sync)| {
            offset
                .checked_add(u64::from(size))
                .filter(|end| *end <= file_len)
                .ok_or(Malformed("a sample lies outside the file"))?;
            Ok(Sample {
                offset,
                size,
                duration,
                cto,
                sync,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Track {
        timescale,
        width,
        height,
        stsd,
        codec_config,
        start: edit_start(trak),
        samples,
    })
}

/// The payload of the first `trak` whose handler (`mdia/hdlr`) is video.
fn video_trak(moov: &[u8]) -> Result<&[u8], Mp4Error> {
    boxes(moov)?
        .into_iter()
        .map(|b| b.payload)
        .find(|t| {
            child(t, b"mdia")
                .and_then(|m| child(m, b"hdlr"))
                .map(|h| h.get(8..12) == Some(b"vide"))
                .unwrap_or(false)
        })
        .ok_or(Malformed("no video track"))
}

/// Display width and height (`tkhd`): its last two fields, 16.16 fixed point.
fn tkhd_size(tkhd: &[u8]) -> Result<(u32, u32), Mp4Error> {
    Ok((
        u32_at(tkhd, tkhd.len().saturating_sub(8))? >> 16,
        u32_at(tkhd, tkhd.len().saturating_sub(4))? >> 16,
    ))
}

/// Ticks per second of the track's media time (`mdhd`).
fn mdhd_timescale(mdhd: &[u8]) -> Result<u32, Mp4Error> {
    // Version 1 has 64-bit creation and modification times before it.
    let timescale = u32_at(mdhd, if mdhd.first() == Some(&1) { 20 } else { 12 })?;
    if timescale == 0 {
        return Err(Malformed("zero timescale"));
    }
    Ok(timescale)
}

/// The whole `stsd` box and the `avcC` box of its first (H.264) entry.
fn stsd_entry(stbl: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Mp4Error> {
    let stsd = child_box(stbl, b"stsd").ok_or(Malformed("no stsd"))?;
    // stsd: header (8), version and flags (4), count (4), then the first
    // entry: its size (4) and type (4).
    if stsd.get(20..24) != Some(b"avc1") && stsd.get(20..24) != Some(b"avc3") {
        return Err(Unsupported("only H.264 video is packaged"));
    }
    if stsd.len() > MAX_STSD {
        return Err(Unsupported("sample description too large"));
    }
    let entry_size = to_usize(u32_at(stsd, 16)?)?;
    let entry = 16usize
        .checked_add(entry_size)
        .and_then(|end| stsd.get(16..end))
        .ok_or(Malformed("sample entry"))?;
    // The sample entry's fixed fields take 78 bytes after its header; its
    // child boxes follow.
    let codec_config = child_box(entry.get(86..).ok_or(Malformed("sample entry"))?, b"avcC")
        .ok_or(Malformed("no avcC"))?;
    Ok((stsd.to_vec(), codec_config.to_vec()))
}

/// Sample sizes (`stsz`): one size for all, or one per sample.
///
/// The samples of a valid file do not share bytes, so sizes that add up to
/// more than the file are malformed. That bounds a fixed-size count, which
/// no table bounds, before anything is allocated for it, and it bounds what
/// the fragments copy.
fn stsz_sizes(stsz: &[u8], file_len: usize) -> Result<Vec<u32>, Mp4Error> {
    const TOO_BIG: Mp4Error = Malformed("the samples hold more bytes than the file");
    let fixed = u32_at(stsz, 4)?;
    let count = to_usize(u32_at(stsz, 8)?)?;
    if count > MAX_SAMPLES {
        return Err(Unsupported("too many samples"));
    }
    let file_len = u64::try_from(file_len).map_err(|_| Unsupported("file size"))?;
    if fixed != 0 {
        let total = u64::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(u64::from(fixed)))
            .ok_or(TOO_BIG)?;
        if total > file_len {
            return Err(TOO_BIG);
        }
        return Ok(vec![fixed; count]);
    }
    let sizes = table(stsz, 8, 4)?
        .map(|entry| u32_at(entry, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let total = sizes
        .iter()
        .try_fold(0u64, |sum, size| sum.checked_add(u64::from(*size)))
        .ok_or(TOO_BIG)?;
    if total > file_len {
        return Err(TOO_BIG);
    }
    Ok(sizes)
}

/// Sample durations (`stts`): runs of equal durations, which must cover
/// exactly the `count` samples.
fn stts_durations(stts: &[u8], count: usize) -> Result<Vec<u32>, Mp4Error> {
    let mut durations = Vec::with_capacity(count);
    for entry in table(stts, 4, 8)? {
        let (n, delta) = (to_usize(u32_at(entry, 0)?)?, u32_at(entry, 4)?);
        // durations.len() <= count holds throughout, so no underflow.
        if n > count - durations.len() {
            return Err(Malformed("stts covers more samples than stsz"));
        }
        durations.extend(std::iter::repeat_n(delta, n));
    }
    if durations.len() != count {
        return Err(Malformed("stts and stsz disagree"));
    }
    Ok(durations)
}

/// Composition offsets (`ctts`): runs of equal offsets; samples after the
/// last run keep 0.
fn ctts_offsets(ctts: &[u8], count: usize) -> Result<Vec<i32>, Mp4Error> {
    let mut ctos = vec![0i32; count];
    let mut at = 0usize;
    for entry in table(ctts, 4, 8)? {
        let n = to_usize(u32_at(entry, 0)?)?;
        // Version 1 offsets are signed; version 0's are read the same way,
        // as players do, since muxers write negative ones there too.
        let off = u32_at(entry, 4)? as i32;
        let end = at
            .checked_add(n)
            .filter(|end| *end <= count)
            .ok_or(Malformed("ctts covers more samples than stsz"))?;
        ctos.get_mut(at..end)
            .ok_or(Malformed("ctts covers more samples than stsz"))?
            .fill(off);
        at = end;
    }
    Ok(ctos)
}

/// Sync samples (`stss`): the 1-based numbers of the keyframes.
fn stss_sync(stss: &[u8], count: usize) -> Result<Vec<bool>, Mp4Error> {
    let mut sync = vec![false; count];
    for entry in table(stss, 4, 4)? {
        let slot = to_usize(u32_at(entry, 0)?)?
            .checked_sub(1)
            .and_then(|i| sync.get_mut(i))
            .ok_or(Malformed("stss names a sample that does not exist"))?;
        *slot = true;
    }
    Ok(sync)
}

/// Where each chunk starts in the file (`stco`, or `co64` past 4 GiB).
fn chunk_offsets(stbl: &[u8]) -> Result<Vec<u64>, Mp4Error> {
    match child(stbl, b"stco") {
        Ok(stco) => table(stco, 4, 4)?
            .map(|entry| u32_at(entry, 0).map(u64::from))
            .collect(),
        Err(_) => table(child(stbl, b"co64")?, 4, 8)?
            .map(|entry| u64_at(entry, 0))
            .collect(),
    }
}

/// Sample-to-chunk runs (`stsc`): from chunk `first` (1-based) on, each
/// chunk holds `per_chunk` samples. The runs must start at increasing
/// chunks, as the format requires, so that `sample_offsets` can step through
/// them once instead of searching them for every chunk.
fn stsc_runs(stsc: &[u8]) -> Result<Vec<(u32, u32)>, Mp4Error> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for entry in table(stsc, 4, 12)? {
        let (first, per_chunk) = (u32_at(entry, 0)?, u32_at(entry, 4)?);
        if runs.last().is_some_and(|(previous, _)| *previous >= first) {
            return Err(Malformed("stsc runs out of order"));
        }
        runs.push((first, per_chunk));
    }
    Ok(runs)
}

/// Each sample's offset: samples fill the chunks in order, back to back,
/// as many per chunk as its run says (none before the first run).
fn sample_offsets(
    chunks: &[u64],
    runs: &[(u32, u32)],
    sizes: &[u32],
) -> Result<Vec<u64>, Mp4Error> {
    let mut offsets = Vec::with_capacity(sizes.len());
    let mut runs = runs.iter().peekable();
    let mut per_chunk = 0;
    for (chunk, chunk_offset) in (1u64..).zip(chunks) {
        while let Some((_, n)) = runs.next_if(|(first, _)| u64::from(*first) <= chunk) {
            per_chunk = *n;
        }
        let mut at = *chunk_offset;
        for _ in 0..per_chunk {
            let Some(size) = sizes.get(offsets.len()) else {
                break;
            };
            offsets.push(at);
            // The offset comes from the sandbox: near 2^64 it would wrap
            // (the bug this checked sum replaced).
            at = at
                .checked_add(u64::from(*size))
                .ok_or(Malformed("a sample lies outside the file"))?;
        }
    }
    if offsets.len() != sizes.len() {
        return Err(Malformed("chunks and samples disagree"));
    }
    Ok(offsets)
}

/// The media time of the first non-empty edit, if the track has an edit
/// list (`edts/elst`). Only the first 16 entries are looked at; a truncated
/// entry ends the search.
fn edit_start(trak: &[u8]) -> Option<u64> {
    let elst = child(child(trak, b"edts").ok()?, b"elst").ok()?;
    let v1 = elst.first() == Some(&1);
    // An entry: segment duration, media time (both 64-bit in version 1,
    // 32-bit in version 0) and rate (32-bit).
    let (width, time_at) = if v1 { (20, 8) } else { (12, 4) };
    let count = to_usize(u32_at(elst, 4).ok()?).ok()?.min(16);
    for entry in elst.get(8..)?.chunks_exact(width).take(count) {
        let time = if v1 {
            u64_at(entry, time_at).ok()? as i64
        } else {
            i64::from(u32_at(entry, time_at).ok()? as i32)
        };
        if time >= 0 {
            return Some(time as u64);
        }
    }
    None
}

/// Appends a box: `body` writes its payload, then its size is filled in.
/// Callers keep every box under 4 GiB (`read` caps the copied `stsd`,
/// `fragment` checks its sizes first), so the size fits its 32 bits.
fn put_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn full(out: &mut Vec<u8>, version: u8, flags: u32) {
    out.push(version);
    out.extend_from_slice(&flags.to_be_bytes()[1..]);
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The init segment (`ftyp` + `moov` with `mvex`) for fragments of `track`.
pub fn init_segment(track: &Track) -> Vec<u8> {
    let mut o = Vec::new();
    put_box(&mut o, b"ftyp", |o| {
        o.extend_from_slice(b"iso6");
        o.extend_from_slice(&0u32.to_be_bytes());
        o.extend_from_slice(b"iso6mp41");
    });
    put_box(&mut o, b"moov", |o| {
        put_box(o, b"mvhd", |o| {
            full(o, 0, 0);
            o.extend_from_slice(&[0; 8]); // creation, modification
            o.extend_from_slice(&track.timescale.to_be_bytes());
            o.extend_from_slice(&0u32.to_be_bytes()); // duration: fragments say
            o.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
            o.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
            o.extend_from_slice(&[0; 10]);
            MATRIX
                .iter()
                .for_each(|m| o.extend_from_slice(&m.to_be_bytes()));
            o.extend_from_slice(&[0; 24]);
            o.extend_from_slice(&2u32.to_be_bytes()); // next track id
        });
        put_box(o, b"trak", |o| {
            put_box(o, b"tkhd", |o| {
                full(o, 0, 3); // enabled, in movie
                o.extend_from_slice(&[0; 8]);
                o.extend_from_slice(&1u32.to_be_bytes()); // track id
                o.extend_from_slice(&[0; 4]);
                o.extend_from_slice(&0u32.to_be_bytes()); // duration
                o.extend_from_slice(&[0; 8]);
                o.extend_from_slice(&[0; 4]); // layer, alternate group
                o.extend_from_slice(&[0; 4]); // volume, reserved
                MATRIX
                    .iter()
                    .for_each(|m| o.extend_from_slice(&m.to_be_bytes()));
                o.extend_from_slice(&(track.width << 16).to_be_bytes());
                o.extend_from_slice(&(track.height << 16).to_be_bytes());
            });
            if let Some(start) = track.start {
                // One edit over the whole (open-ended) stream, skipping the delay.
                put_box(o, b"edts", |o| {
                    put_box(o, b"elst", |o| {
                        full(o, 1, 0);
                        o.extend_from_slice(&1u32.to_be_bytes());
                        o.extend_from_slice(&0u64.to_be_bytes());
                        o.extend_from_slice(&start.to_be_bytes());
                        o.extend_from_slice(&0x0001_0000u32.to_be_bytes());
                    });
                });
            }
            put_box(o, b"mdia", |o| {
                put_box(o, b"mdhd", |o| {
                    full(o, 0, 0);
                    o.extend_from_slice(&[0; 8]);
                    o.extend_from_slice(&track.timescale.to_be_bytes());
                    o.extend_from_slice(&0u32.to_be_bytes());
                    o.extend_from_slice(&0x55c4u16.to_be_bytes()); // "und"
                    o.extend_from_slice(&[0; 2]);
                });
                put_box(o, b"hdlr", |o| {
                    full(o, 0, 0);
                    o.extend_from_slice(&[0; 4]);
                    o.extend_from_slice(b"vide");
                    o.extend_from_slice(&[0; 12]);
                    o.extend_from_slice(b"VideoHandler\0");
                });
                put_box(o, b"minf", |o| {
                    put_box(o, b"vmhd", |o| {
                        full(o, 0, 1);
                        o.extend_from_slice(&[0; 8]);
                    });
                    put_box(o, b"dinf", |o| {
                        put_box(o, b"dref", |o| {
                            full(o, 0, 0);
                            o.extend_from_slice(&1u32.to_be_bytes());
                            put_box(o, b"url ", |o| full(o, 0, 1));
                        });
                    });
                    put_box(o, b"stbl", |o| {
                        o.extend_from_slice(&track.stsd);
                        for kind in [b"stts", b"stsc", b"stco"] {
                            put_box(o, kind, |o| {
                                full(o, 0, 0);
                                o.extend_from_slice(&0u32.to_be_bytes());
                            });
                        }
                        put_box(o, b"stsz", |o| {
                            full(o, 0, 0);
                            o.extend_from_slice(&[0; 8]);
                        });
                    });
                });
            });
        });
        put_box(o, b"mvex", |o| {
            put_box(o, b"trex", |o| {
                full(o, 0, 0);
                o.extend_from_slice(&1u32.to_be_bytes()); // track id
                o.extend_from_slice(&1u32.to_be_bytes()); // sample description
                o.extend_from_slice(&[0; 12]);
            });
        });
    });
    o
}

/// One media fragment (`moof` + `mdat`) holding `samples` of `file`,
/// starting at decode time `base` (in the track's timescale).
///
/// The samples are checked against `file` again: they usually come from
/// `read` on the same file, but nothing here relies on that.
pub fn fragment(
    file: &[u8],
    samples: &[Sample],
    sequence: u32,
    base: u64,
) -> Result<Vec<u8>, Mp4Error> {
    let data = samples
        .iter()
        .map(|s| {
            let start = usize::try_from(s.offset).ok()?;
            file.get(start..start.checked_add(to_usize(s.size).ok()?)?)
        })
        .collect::<Option<Vec<&[u8]>>>()
        .ok_or(Malformed("a sample lies outside the file"))?;
    // Box sizes are 32-bit: the trun (16 bytes a sample, plus a little for
    // the boxes around it) and the mdat must each fit.
    const TOO_BIG: Mp4Error = Unsupported("a fragment over 4 GiB");
    let count = u32::try_from(samples.len()).map_err(|_| TOO_BIG)?;
    let moof_len = samples
        .len()
        .checked_mul(16)
        .and_then(|n| n.checked_add(256))
        .ok_or(TOO_BIG)?;
    let mdat_len = data
        .iter()
        .try_fold(8usize, |n, d| n.checked_add(d.len()))
        .ok_or(TOO_BIG)?;
    if u32::try_from(moof_len).is_err() || u32::try_from(mdat_len).is_err() {
        return Err(TOO_BIG);
    }

    let mut o = Vec::with_capacity(moof_len.saturating_add(mdat_len));
    let mut data_offset_at = 0;
    put_box(&mut o, b"moof", |o| {
        put_box(o, b"mfhd", |o| {
            full(o, 0, 0);
            o.extend_from_slice(&sequence.to_be_bytes());
        });
        put_box(o, b"traf", |o| {
            put_box(o, b"tfhd", |o| {
                full(o, 0, 0x02_0000); // default-base-is-moof
                o.extend_from_slice(&1u32.to_be_bytes());
            });
            put_box(o, b"tfdt", |o| {
                full(o, 1, 0);
                o.extend_from_slice(&base.to_be_bytes());
            });
            put_box(o, b"trun", |o| {
                // data offset, duration, size, flags and signed composition offsets
                full(o, 1, 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800);
                o.extend_from_slice(&count.to_be_bytes());
                data_offset_at = o.len();
                o.extend_from_slice(&0u32.to_be_bytes());
                for s in samples {
                    o.extend_from_slice(&s.duration.to_be_bytes());
                    o.extend_from_slice(&s.size.to_be_bytes());
                    let flags: u32 = if s.sync { 0x0200_0000 } else { 0x0101_0000 };
                    o.extend_from_slice(&flags.to_be_bytes());
                    o.extend_from_slice(&s.cto.to_be_bytes());
                }
            });
        });
    });
    // The media data begins right after the mdat header.
    let data_offset = o
        .len()
        .checked_add(8)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(TOO_BIG)?;
    if let Some(field) = o.get_mut(data_offset_at..data_offset_at + 4) {
        field.copy_from_slice(&data_offset.to_be_bytes());
    }
    put_box(&mut o, b"mdat", |o| {
        for d in data {
            o.extend_from_slice(d);
        }
    });
    Ok(o)
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
