//! Just enough ISO BMFF to turn a finished H.264 MP4 into fragmented MP4:
//! read its sample table, write an init segment and media fragments.
//!
//! The input comes from a sandbox, so every read is bounds-checked and every
//! count is capped: a malformed file is an error, never a panic or a huge
//! allocation.

use std::ops::Range;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mp4Error {
    #[error("malformed MP4: {0}")]
    Malformed(&'static str),
    #[error("unsupported MP4: {0}")]
    Unsupported(&'static str),
}

use Mp4Error::Malformed;

/// Samples per file accepted; a minute of 120 fps is 7,200.
const MAX_SAMPLES: usize = 1_000_000;

fn u32_at(d: &[u8], at: usize) -> Result<u32, Mp4Error> {
    d.get(at..at + 4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
        .ok_or(Malformed("truncated field"))
}

fn u64_at(d: &[u8], at: usize) -> Result<u64, Mp4Error> {
    d.get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or(Malformed("truncated field"))
}

/// A box: its type, the range of the whole box and of its payload.
type BoxEntry = ([u8; 4], Range<usize>, Range<usize>);

/// The boxes directly inside `d`.
fn boxes(d: &[u8]) -> Result<Vec<BoxEntry>, Mp4Error> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= d.len() {
        let size = u32_at(d, at)? as u64;
        let kind: [u8; 4] = d[at + 4..at + 8].try_into().expect("4 bytes");
        let (size, header) = match size {
            0 => ((d.len() - at) as u64, 8),
            1 => (u64_at(d, at + 8)?, 16),
            n => (n, 8),
        };
        let end = at
            .checked_add(usize::try_from(size).map_err(|_| Malformed("box size"))?)
            .ok_or(Malformed("box size"))?;
        if size < header as u64 || end > d.len() {
            return Err(Malformed("box size"));
        }
        out.push((kind, at..end, at + header..end));
        at = end;
    }
    Ok(out)
}

fn child<'a>(d: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], Mp4Error> {
    boxes(d)?
        .into_iter()
        .find(|(k, ..)| k == kind)
        .map(|(_, _, payload)| &d[payload])
        .ok_or(Malformed("a required box is missing"))
}

fn child_box<'a>(d: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(d)
        .ok()?
        .into_iter()
        .find(|(k, ..)| k == kind)
        .map(|(_, whole, _)| &d[whole])
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
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }
}

/// Reads the (first) video track of an MP4 file held in memory.
pub fn read(file: &[u8]) -> Result<Track, Mp4Error> {
    let moov = child(file, b"moov")?;
    let trak = boxes(moov)?
        .into_iter()
        .map(|(_, _, p)| &moov[p])
        .find(|t| {
            child(t, b"mdia")
                .and_then(|m| child(m, b"hdlr"))
                .map(|h| h.get(8..12) == Some(b"vide"))
                .unwrap_or(false)
        })
        .ok_or(Malformed("no video track"))?;
    let tkhd = child(trak, b"tkhd")?;
    let (width, height) = (
        u32_at(tkhd, tkhd.len().saturating_sub(8))? >> 16,
        u32_at(tkhd, tkhd.len().saturating_sub(4))? >> 16,
    );
    let mdia = child(trak, b"mdia")?;
    let mdhd = child(mdia, b"mdhd")?;
    let timescale = if mdhd.first() == Some(&1) {
        u32_at(mdhd, 20)?
    } else {
        u32_at(mdhd, 12)?
    };
    if timescale == 0 {
        return Err(Malformed("zero timescale"));
    }
    let stbl = child(child(mdia, b"minf")?, b"stbl")?;
    let stsd = child_box(stbl, b"stsd")
        .ok_or(Malformed("no stsd"))?
        .to_vec();
    // stsd: header (8), version and flags (4), count (4), then the first
    // entry: its size (4) and type (4).
    if stsd.get(20..24) != Some(b"avc1") && stsd.get(20..24) != Some(b"avc3") {
        return Err(Mp4Error::Unsupported("only H.264 video is packaged"));
    }
    // The sample entry's fixed fields take 78 bytes after its header; its
    // child boxes follow.
    let entry_size = u32_at(&stsd, 16)? as usize;
    let entry = stsd
        .get(16..16 + entry_size)
        .ok_or(Malformed("sample entry"))?;
    let codec_config = child_box(entry.get(86..).ok_or(Malformed("sample entry"))?, b"avcC")
        .ok_or(Malformed("no avcC"))?
        .to_vec();

    // Sizes.
    let stsz = child(stbl, b"stsz")?;
    let fixed = u32_at(stsz, 4)?;
    let count = u32_at(stsz, 8)? as usize;
    if count > MAX_SAMPLES {
        return Err(Mp4Error::Unsupported("too many samples"));
    }
    let sizes: Vec<u32> = if fixed != 0 {
        vec![fixed; count]
    } else {
        (0..count)
            .map(|i| u32_at(stsz, 12 + 4 * i))
            .collect::<Result<_, _>>()?
    };

    // Durations.
    let stts = child(stbl, b"stts")?;
    let mut durations = Vec::with_capacity(count);
    for i in 0..u32_at(stts, 4)? as usize {
        let (n, delta) = (u32_at(stts, 8 + 8 * i)? as usize, u32_at(stts, 12 + 8 * i)?);
        if durations.len() + n > count {
            return Err(Malformed("stts covers more samples than stsz"));
        }
        durations.extend(std::iter::repeat_n(delta, n));
    }
    if durations.len() != count {
        return Err(Malformed("stts and stsz disagree"));
    }

    // Composition offsets (absent: none).
    let mut ctos = vec![0i32; count];
    if let Ok(ctts) = child(stbl, b"ctts") {
        let mut at = 0usize;
        for i in 0..u32_at(ctts, 4)? as usize {
            let n = u32_at(ctts, 8 + 8 * i)? as usize;
            let off = u32_at(ctts, 12 + 8 * i)? as i32;
            let end = at
                .checked_add(n)
                .filter(|e| *e <= count)
                .ok_or(Malformed("ctts covers more samples than stsz"))?;
            ctos[at..end].fill(off);
            at = end;
        }
    }

    // Sync samples (absent: all).
    let mut sync = vec![true; count];
    if let Ok(stss) = child(stbl, b"stss") {
        sync.fill(false);
        for i in 0..u32_at(stss, 4)? as usize {
            let n = u32_at(stss, 8 + 4 * i)? as usize;
            if n == 0 || n > count {
                return Err(Malformed("stss names a sample that does not exist"));
            }
            sync[n - 1] = true;
        }
    }

    // Offsets, from chunks.
    let chunk_offsets: Vec<u64> = if let Ok(stco) = child(stbl, b"stco") {
        (0..u32_at(stco, 4)?.min(MAX_SAMPLES as u32) as usize)
            .map(|i| u32_at(stco, 8 + 4 * i).map(u64::from))
            .collect::<Result<_, _>>()?
    } else {
        let co64 = child(stbl, b"co64")?;
        (0..u32_at(co64, 4)?.min(MAX_SAMPLES as u32) as usize)
            .map(|i| u64_at(co64, 8 + 8 * i))
            .collect::<Result<_, _>>()?
    };
    let stsc = child(stbl, b"stsc")?;
    let runs: Vec<(u32, u32)> = (0..u32_at(stsc, 4)?.min(MAX_SAMPLES as u32) as usize)
        .map(|i| Ok((u32_at(stsc, 8 + 12 * i)?, u32_at(stsc, 12 + 12 * i)?)))
        .collect::<Result<_, Mp4Error>>()?;
    let mut offsets = Vec::with_capacity(count);
    for (c, chunk_offset) in chunk_offsets.iter().enumerate() {
        let chunk = c as u32 + 1;
        let per_chunk = runs
            .iter()
            .rev()
            .find(|(first, _)| *first <= chunk)
            .map(|r| r.1)
            .unwrap_or(0);
        let mut at = *chunk_offset;
        for _ in 0..per_chunk {
            let i = offsets.len();
            if i >= count {
                break;
            }
            offsets.push(at);
            at += u64::from(sizes[i]);
        }
    }
    if offsets.len() != count {
        return Err(Malformed("chunks and samples disagree"));
    }
    let samples = (0..count)
        .map(|i| {
            let end = offsets[i]
                .checked_add(u64::from(sizes[i]))
                .ok_or(Malformed("sample offset"))?;
            if end > file.len() as u64 {
                return Err(Malformed("a sample lies outside the file"));
            }
            Ok(Sample {
                offset: offsets[i],
                size: sizes[i],
                duration: durations[i],
                cto: ctos[i],
                sync: sync[i],
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

/// The media time of the first non-empty edit, if the track has an edit list.
fn edit_start(trak: &[u8]) -> Option<u64> {
    let elst = child(child(trak, b"edts").ok()?, b"elst").ok()?;
    let v1 = elst.first() == Some(&1);
    let (entry, time_at) = if v1 { (20, 8) } else { (12, 4) };
    for i in 0..u32_at(elst, 4).ok()?.min(16) as usize {
        let at = 8 + entry * i + time_at;
        let time = if v1 {
            u64_at(elst, at).ok()? as i64
        } else {
            i64::from(u32_at(elst, at).ok()? as i32)
        };
        if time >= 0 {
            return Some(time as u64);
        }
    }
    None
}

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
pub fn fragment(file: &[u8], samples: &[Sample], sequence: u32, base: u64) -> Vec<u8> {
    let mut o = Vec::new();
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
                o.extend_from_slice(&(samples.len() as u32).to_be_bytes());
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
    let data_offset = (o.len() + 8) as u32;
    o[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    put_box(&mut o, b"mdat", |o| {
        for s in samples {
            let start = s.offset as usize;
            o.extend_from_slice(&file[start..start + s.size as usize]);
        }
    });
    o
}

/// Splits samples into segments that start on a sync sample and last at
/// most `target` (in the track's timescale) where the keyframes allow:
/// whole GOPs are gathered while they fit.
pub fn segment_ranges(samples: &[Sample], target: u64) -> Vec<Range<usize>> {
    // GOPs: from one sync sample to the next.
    let mut gops: Vec<(Range<usize>, u64)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        match gops.last_mut() {
            Some((range, length)) if !s.sync => {
                range.end = i + 1;
                *length += u64::from(s.duration);
            }
            _ => gops.push((i..i + 1, u64::from(s.duration))),
        }
    }
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut length = 0u64;
    for (range, gop) in gops {
        match out.last_mut() {
            Some(last) if length + gop <= target => {
                last.end = range.end;
                length += gop;
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
mod tests {
    use super::*;

    fn s(duration: u32, sync: bool) -> Sample {
        Sample {
            offset: 0,
            size: 0,
            duration,
            cto: 0,
            sync,
        }
    }

    #[test]
    fn segments_start_on_keyframes_within_the_target() {
        let samples: Vec<Sample> = (0..10).map(|i| s(1, i % 3 == 0)).collect();
        assert_eq!(segment_ranges(&samples, 4), vec![0..3, 3..6, 6..10]);
        assert_eq!(segment_ranges(&samples, 6), vec![0..6, 6..10]);
        // No keyframe to cut at: one long segment.
        let samples: Vec<Sample> = (0..5).map(|i| s(1, i == 0)).collect();
        assert_eq!(segment_ranges(&samples, 2), vec![0..5]);
        assert!(segment_ranges(&[], 2).is_empty());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for junk in [
            &b""[..],
            b"\0\0\0\x08moov",
            b"\0\0\0\x10moov\0\0\0\x09trak",
            b"\xff\xff\xff\xffmoov",
            &[0u8; 64],
        ] {
            assert!(read(junk).is_err());
        }
    }
}
