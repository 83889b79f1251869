//! The MP4 reader: from a finished file's bytes to its video [`Track`].
//! Every read is bounds-checked and every table sized by the bytes that
//! hold it (see the parent module), since the file comes from a sandbox.

use std::slice::ChunksExact;

use super::Mp4Error::{self, Malformed, Unsupported};
use super::{to_usize, Sample, Track};

/// Samples per file accepted; a minute of 120 fps is 7,200.
const MAX_SAMPLES: usize = 1_000_000;

/// Largest `stsd` box accepted. x264's is a few hundred bytes; the cap keeps
/// every box of the init segment, which copies it, far below 4 GiB.
const MAX_STSD: usize = 1 << 20;

/// `N` bytes at `at`, or an error where the data ends first.
pub(super) fn bytes_at<const N: usize>(d: &[u8], at: usize) -> Result<[u8; N], Mp4Error> {
    at.checked_add(N)
        .and_then(|end| d.get(at..end))
        .and_then(|b| b.try_into().ok())
        .ok_or(Malformed("truncated field"))
}

pub(super) fn u32_at(d: &[u8], at: usize) -> Result<u32, Mp4Error> {
    bytes_at(d, at).map(u32::from_be_bytes)
}

fn u64_at(d: &[u8], at: usize) -> Result<u64, Mp4Error> {
    bytes_at(d, at).map(u64::from_be_bytes)
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
