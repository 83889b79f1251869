//! The MP4 reader on arbitrary bytes, as a hostile sandbox could write a
//! finished piece: `read`, and packaging whatever it returns (init segment,
//! segments, fragments), must never panic, overflow or allocate without
//! bound. Seeded with the real x264 files in tests/fixtures/mp4.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manimd::hls::mp4;

fuzz_target!(|file: &[u8]| {
    let Ok(track) = mp4::read(file) else {
        return;
    };
    let _ = mp4::init_segment(&track);
    let _ = track.duration();
    for range in mp4::segment_ranges(&track.samples, u64::from(track.timescale)) {
        let samples = track
            .samples
            .get(range)
            .expect("segment ranges lie within the samples");
        let _ = mp4::fragment(file, samples, 1, 0);
    }
});
