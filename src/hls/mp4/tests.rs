//! The reader and writers on real x264 files (tests/fixtures/mp4, made by
//! its make.sh) and on hostile ones: mutations of those files, the ways a
//! broken or malicious muxer in the sandbox could write them. Whatever
//! `read` makes of a file, neither it nor packaging what it returns may
//! panic.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../../tests/fixtures/mp4/", $name)) as &[u8],
        )
    };
}

const FIXTURES: [(&str, &[u8]); 4] = [
    fixture!("x264-64x48-g5-faststart.mp4"),
    fixture!("x264-64x48-g5-moov-last.mp4"),
    fixture!("x264-64x48-g5-co64.mp4"),
    fixture!("x264-64x48-g5-aac-interleaved.mp4"),
];

fn fixture(name: &str) -> Vec<u8> {
    let (_, data) = FIXTURES
        .iter()
        .find(|(n, _)| n.contains(name))
        .expect("a fixture of that name");
    data.to_vec()
}

/// Where the payload of the first `kind` box starts: a byte search is
/// enough in the fixtures.
fn payload_of(file: &[u8], kind: &[u8; 4]) -> usize {
    file.windows(4)
        .position(|w| w == kind)
        .expect("box in fixture")
        + 4
}

/// Everything the live packager does with a file, results ignored: only
/// panics matter here.
fn package(file: &[u8]) {
    let Ok(track) = read(file) else { return };
    let _ = init_segment(&track);
    let _ = track.duration();
    for target in [0, u64::from(track.timescale), u64::MAX] {
        for range in segment_ranges(&track.samples, target) {
            let samples = track
                .samples
                .get(range)
                .expect("segment ranges lie within the samples");
            let _ = fragment(file, samples, 1, 0);
        }
    }
}

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
    // Durations near 2^32 each do not wrap the sums.
    let samples: Vec<Sample> = (0..4).map(|i| s(u32::MAX, i % 2 == 0)).collect();
    assert_eq!(segment_ranges(&samples, u64::MAX), vec![0..4]);
}

#[test]
fn the_fixtures_read_as_x264_wrote_them() {
    for (name, file) in FIXTURES {
        let track = read(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((track.width, track.height), (64, 48), "{name}");
        assert_eq!(track.samples.len(), 10, "{name}");
        let keyframes: Vec<usize> = (0..10).filter(|i| track.samples[*i].sync).collect();
        assert_eq!(keyframes, [0, 5], "{name}");
        assert!(track.start.is_some(), "{name}: B-frames delay the start");
        assert!(track.samples.iter().any(|s| s.cto != 0), "{name}");
        assert_eq!(track.duration(), u64::from(track.timescale), "{name}: 1 s");
        let fragment = fragment(file, &track.samples, 1, 0).unwrap();
        let data: u64 = track.samples.iter().map(|s| u64::from(s.size)).sum();
        assert!(fragment.len() as u64 > data, "{name}");
    }
    // The co64 file is the moov-last one with 64-bit chunk offsets.
    assert_eq!(
        read(&fixture("co64")).unwrap().samples,
        read(&fixture("moov-last")).unwrap().samples
    );
}

#[test]
fn a_chunk_offset_near_the_end_of_u64_is_an_error() {
    let mut file = fixture("co64");
    // One chunk holds every sample; moving it to just below 2^64 made the
    // second sample's offset overflow.
    let entry = payload_of(&file, b"co64") + 8;
    file[entry..entry + 8].copy_from_slice(&(u64::MAX - 1).to_be_bytes());
    assert!(read(&file).is_err());
}

#[test]
fn a_fixed_sample_size_cannot_claim_more_bytes_than_the_file() {
    let mut file = fixture("faststart");
    let stsz = payload_of(&file, b"stsz");
    // A million samples of one byte each, in a file of a few kilobytes.
    file[stsz + 4..stsz + 8].copy_from_slice(&1u32.to_be_bytes());
    file[stsz + 8..stsz + 12].copy_from_slice(&1_000_000u32.to_be_bytes());
    assert_eq!(
        read(&file).unwrap_err(),
        Malformed("the samples hold more bytes than the file")
    );
}

#[test]
fn a_table_count_beyond_its_box_is_an_error() {
    for kind in [b"stsz", b"stts", b"stss", b"ctts", b"stco", b"stsc"] {
        let mut file = fixture("faststart");
        // The count follows version and flags, and in stsz the fixed size.
        let count = payload_of(&file, kind) + if kind == b"stsz" { 8 } else { 4 };
        file[count..count + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(read(&file).is_err(), "{}", String::from_utf8_lossy(kind));
    }
}

#[test]
fn sample_to_chunk_runs_out_of_order_are_an_error() {
    let mut file = fixture("interleaved");
    let stsc = file
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"stsc")
        .map(|(i, _)| i + 4)
        .nth(1)
        .expect("the video track's stsc");
    // Swap the first chunk numbers of the first two runs.
    let (a, b) = (stsc + 8, stsc + 20);
    let first = file[a..a + 4].to_vec();
    file.copy_within(b..b + 4, a);
    file[b..b + 4].copy_from_slice(&first);
    assert_eq!(
        read(&file).unwrap_err(),
        Malformed("stsc runs out of order")
    );
}

#[test]
fn a_fragment_of_samples_outside_the_file_is_an_error() {
    let file = fixture("faststart");
    let track = read(&file).unwrap();
    assert!(fragment(&file[..100], &track.samples, 1, 0).is_err());
    let mut far = track.samples[0].clone();
    far.offset = u64::MAX;
    assert!(fragment(&file, &[far], 1, 0).is_err());
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    for junk in [
        &b""[..],
        b"\0\0\0\x08moov",
        b"\0\0\0\x10moov\0\0\0\x09trak",
        b"\xff\xff\xff\xffmoov",
        b"\0\0\0\x01moov\xff\xff\xff\xff\xff\xff\xff\xff",
        &[0u8; 64],
    ] {
        assert!(read(junk).is_err());
    }
}

/// Boxes whose payload is only boxes.
const CONTAINERS: [&[u8; 4]; 7] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf",
];

/// Offsets of the fields worth overwriting: every box's size field and
/// every word of the boxes the reader parses (counts, sizes, offsets, runs,
/// the sample entry). The fixtures are well formed and use 32-bit sizes.
fn fields(file: &[u8], start: usize, end: usize, out: &mut Vec<usize>) {
    let mut at = start;
    while at + 8 <= end {
        let size = u32_at(file, at).unwrap() as usize;
        let kind: [u8; 4] = bytes_at(file, at + 4).unwrap();
        out.push(at);
        if CONTAINERS.contains(&&kind) {
            fields(file, at + 8, at + size, out);
        } else if &kind != b"mdat" {
            out.extend((at + 8..at + size).step_by(4));
        }
        at += size;
    }
}

/// One change to a file.
#[derive(Clone, Debug)]
enum Mutation {
    /// Flip one bit anywhere.
    Flip(Index, u8),
    /// Overwrite one byte anywhere.
    Byte(Index, u8),
    /// Cut the file short.
    Truncate(Index),
    /// Overwrite a field with a 32-bit value.
    Word(Index, u32),
    /// Overwrite 8 bytes from a field with a 64-bit value (a co64 offset,
    /// a 64-bit box size, an edit's media time).
    Wide(Index, u64),
    /// Copy one field over another (one box's size or offset into another).
    Splice(Index, Index),
}

fn word() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(8),
        Just(16),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(u32::MAX - 7),
        Just(u32::MAX),
        0..4096u32,
        any::<u32>(),
    ]
}

fn wide() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1 << 32),
        Just(1 << 63),
        Just(u64::MAX - 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (
            any::<Index>(),
            prop_oneof![Just(0), Just(0xff), any::<u8>()]
        )
            .prop_map(|(i, b)| Mutation::Byte(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), word()).prop_map(|(i, v)| Mutation::Word(i, v)),
        (any::<Index>(), wide()).prop_map(|(i, v)| Mutation::Wide(i, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Splice(a, b)),
    ]
}

/// Writes `bytes` at `at` where the (maybe truncated) file still reaches.
fn put(file: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = file.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn apply(file: &mut Vec<u8>, fields: &[usize], m: &Mutation) {
    if file.is_empty() {
        return;
    }
    let len = file.len();
    let field = |i: &Index| fields[i.index(fields.len())];
    match m {
        Mutation::Flip(i, bit) => file[i.index(len)] ^= 1 << bit,
        Mutation::Byte(i, b) => file[i.index(len)] = *b,
        Mutation::Truncate(i) => file.truncate(i.index(len)),
        Mutation::Word(i, v) => put(file, field(i), &v.to_be_bytes()),
        Mutation::Wide(i, v) => put(file, field(i), &v.to_be_bytes()),
        Mutation::Splice(from, to) => {
            if let Ok(word) = bytes_at::<4>(file, field(from)) {
                put(file, field(to), &word);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_files_never_panic(
        fixture in 0..FIXTURES.len(),
        mutations in vec(mutation(), 1..6),
    ) {
        let (_, original) = FIXTURES[fixture];
        let mut at = Vec::new();
        fields(original, 0, original.len(), &mut at);
        let mut file = original.to_vec();
        for m in &mutations {
            apply(&mut file, &at, m);
        }
        package(&file);
    }
}
