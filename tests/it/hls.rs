//! The live packager on real H.264 pieces (as x264 makes them for each
//! animation): one init segment, keyframe-aligned fragments, a playlist
//! that players read, and timing that adds up.

use crate::common;

use std::ffi::OsStr;
use std::path::Path;

use manimd::hls::Live;
use manimd::process::run_tool;

/// A piece like the worker's: H.264 with B-frames, yuv420p, GOP of 1 s,
/// `size` pixels.
async fn piece(dir: &Path, name: &str, secs: f64, size: &str) -> Vec<u8> {
    let out = dir.join(name);
    let secs = secs.to_string();
    let source = format!("testsrc2=size={size}:rate=15");
    let fixed = [
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        &source,
        "-t",
        &secs,
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "15",
    ];
    let args: Vec<&OsStr> = fixed
        .iter()
        .map(OsStr::new)
        .chain([out.as_os_str()])
        .collect();
    let o = run_tool("ffmpeg", &args, dir, &[])
        .await
        .expect("ffmpeg runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

#[tokio::test]
async fn pieces_become_one_playable_fmp4_stream() {
    let dir = tempfile::tempdir().unwrap();
    let lengths = [2.4, 1.0, 3.2];
    let mut live = Live::new(dir.path().join("live"), 2.0, "").unwrap();
    let mut segments = 0;
    for (i, secs) in lengths.iter().enumerate() {
        let data = piece(dir.path(), &format!("p{i}.mp4"), *secs, "854x480").await;
        segments += live.add_piece(&data).unwrap();
        // Playable as it grows: the playlist lists what exists, and no end yet.
        let playlist = std::fs::read_to_string(dir.path().join("live/live.m3u8")).unwrap();
        assert!(!playlist.contains("#EXT-X-ENDLIST"));
        assert!(playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""));
    }
    live.end().unwrap();
    let playlist = std::fs::read_to_string(dir.path().join("live/live.m3u8")).unwrap();
    assert!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && playlist.ends_with("#EXT-X-ENDLIST\n"),
        "{playlist}"
    );
    assert_eq!(playlist.matches("#EXTINF").count(), segments);
    assert!(
        segments >= 5,
        "pieces longer than the target are cut at keyframes: {playlist}"
    );
    for line in playlist.lines().filter(|l| l.starts_with("#EXTINF:")) {
        let secs: f64 = line["#EXTINF:".len()..]
            .trim_end_matches(',')
            .parse()
            .unwrap();
        assert!(
            secs <= 2.0 + 1e-6,
            "a segment longer than the target: {line}"
        );
    }
    let total: f64 = lengths.iter().sum();
    assert!(
        (live.duration() - total).abs() < 0.07 * lengths.len() as f64,
        "{} vs {total}",
        live.duration()
    );

    // The playlist itself, read by ffmpeg's HLS demuxer.
    let p = common::probe(&dir.path().join("live/live.m3u8")).await;
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 854, 480));
    assert_eq!(p.frames, (total * 15.0).round() as u64, "{p:?}");
    // And init + segments concatenated, as a player's buffer holds them.
    let mut joined = std::fs::read(dir.path().join("live/init.mp4")).unwrap();
    for i in 0..segments {
        joined.extend(std::fs::read(dir.path().join(format!("live/seg-{i}.m4s"))).unwrap());
    }
    std::fs::write(dir.path().join("joined.mp4"), &joined).unwrap();
    let p = common::probe(&dir.path().join("joined.mp4")).await;
    assert_eq!(p.frames, (total * 15.0).round() as u64, "{p:?}");
    assert!(
        (p.duration - total).abs() <= segments as f64 / 15.0,
        "{p:?}"
    );
}

#[tokio::test]
async fn a_piece_with_other_codec_parameters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Live::new(dir.path().join("live"), 2.0, "").unwrap();
    live.add_piece(&piece(dir.path(), "a.mp4", 1.0, "854x480").await)
        .unwrap();
    // Another size: other SPS/PPS, so it cannot share the init segment.
    let other = piece(dir.path(), "b.mp4", 1.0, "640x360").await;
    assert!(matches!(
        live.add_piece(&other),
        Err(manimd::hls::HlsError::Mismatch)
    ));
}
