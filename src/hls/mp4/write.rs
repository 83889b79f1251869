//! The MP4 writers: the init segment (`ftyp` + `moov`) and the media
//! fragments (`moof` + `mdat`) of fragmented MP4, for HLS.

use super::Mp4Error::{self, Malformed, Unsupported};
use super::{to_usize, Sample, Track};

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
