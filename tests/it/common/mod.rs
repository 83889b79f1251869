//! Test harness: a real renderer in a temporary data directory, ffprobe
//! checks of the videos it makes, and checks that nothing was left behind.
#![allow(dead_code)]

pub mod mock_llm;
pub mod pg;
pub mod server;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use manimd::config::Config;
use manimd::limits::Limits;
use manimd::process::run_tool;
use manimd::protocol::Progress;
use manimd::render::{RenderError, Rendered, Renderer};
use manimd::spec::{Engine, Format, Quality, RenderSpec};

pub mod s3;
pub mod tap;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub renderer: Renderer,
}

/// Its renderer is never closed (no server runs it): the job groups'
/// parent it made goes here, once its last job group has gone.
impl Drop for Harness {
    fn drop(&mut self) {
        self.renderer.sandbox().release();
    }
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::Builder::new()
            .prefix("manimd-test-")
            .tempdir()
            .unwrap();
        let config = Config::for_tests(dir.path().join("data"));
        let renderer = Renderer::new(&config)
            .expect("the sandbox starts (run as root after scripts/setup.sh)");
        Harness {
            dir,
            config,
            renderer,
        }
    }

    pub fn out_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join("out").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub async fn render(
        &self,
        spec: &RenderSpec,
        limits: &Limits,
    ) -> (Result<Rendered, RenderError>, Vec<Progress>) {
        let out = self.out_dir(&manimd::sandbox::new_id());
        let mut events = Vec::new();
        let result = self
            .renderer
            .render(
                spec,
                None,
                limits,
                &out,
                |p| events.push(p),
                std::future::pending(),
            )
            .await;
        (result, events)
    }

    /// Renders and expects success.
    pub async fn ok(&self, spec: &RenderSpec) -> (Rendered, Vec<Progress>) {
        let (result, events) = self.render(spec, &self.config.limits).await;
        match result {
            Ok(r) => (r, events),
            Err(e) => panic!("render failed: [{}] {e:#}", e.code()),
        }
    }

    /// Renders with `limits` and expects failure.
    pub async fn fails(&self, spec: &RenderSpec, limits: &Limits) -> RenderError {
        match self.render(spec, limits).await.0 {
            Ok(r) => panic!("expected a failure, got {:?}", r.media),
            Err(e) => e,
        }
    }

    /// Nothing of any job is left: no cgroup (so no process), no mount, no area.
    pub fn assert_clean(&self) {
        let sc = self.config.sandbox_config();
        let prefix = format!("{}-", sc.instance);
        let groups = sc.placement().unwrap().children(&prefix);
        assert!(groups.is_empty(), "cgroups left behind: {groups:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let data = self.config.data_dir.to_str().unwrap();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(data)).collect();
        assert!(left.is_empty(), "mounts left behind: {left:?}");
        let areas: Vec<_> = std::fs::read_dir(&sc.areas_dir).unwrap().collect();
        assert!(areas.is_empty(), "job areas left behind: {areas:?}");
    }
}

pub fn spec(engine: Engine, code: &str) -> RenderSpec {
    RenderSpec {
        code: code.to_owned(),
        scenes: vec![],
        engine,
        quality: Quality::Low,
        format: Format::Mp4,
        fps: None,
        seed: None,
        encoding: Default::default(),
        narration: false,
        cache: true,
        parallel: Default::default(),
        project: None,
    }
}

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What ffprobe says about a file, measured on the host (tests only).
#[derive(Debug)]
pub struct Probe {
    pub codec: String,
    pub pix_fmt: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub duration: f64,
    pub frames: u64,
}

pub async fn probe(path: &Path) -> Probe {
    let out = run_tool(
        "ffprobe",
        &[
            OsStr::new("-v"),
            OsStr::new("error"),
            OsStr::new("-count_frames"),
            OsStr::new("-select_streams"),
            OsStr::new("v:0"),
            OsStr::new("-show_entries"),
            OsStr::new("stream=codec_name,pix_fmt,width,height,avg_frame_rate,nb_read_frames:format=duration"),
            OsStr::new("-of"),
            OsStr::new("json"),
            path.as_os_str(),
        ],
        Path::new("/"),
        &[],
    )
    .await
    .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    let rate = s["avg_frame_rate"].as_str().unwrap_or("0/1");
    let (n, d) = rate.split_once('/').unwrap_or((rate, "1"));
    let d: f64 = d.parse().unwrap_or(1.0);
    Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().to_owned(),
        pix_fmt: s["pix_fmt"].as_str().unwrap_or_default().to_owned(),
        width: s["width"].as_u64().unwrap_or(0) as u32,
        height: s["height"].as_u64().unwrap_or(0) as u32,
        fps: if d == 0.0 {
            0.0
        } else {
            n.parse::<f64>().unwrap_or(0.0) / d
        },
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        frames: s["nb_read_frames"]
            .as_str()
            .and_then(|f| f.parse().ok())
            .unwrap_or(0),
    }
}

/// Top-level MP4/MOV box types in order.
pub fn top_level_boxes(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let mut boxes = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let mut size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned();
        if size == 1 && pos + 16 <= data.len() {
            size = u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap());
        } else if size == 0 {
            size = (data.len() - pos) as u64;
        }
        boxes.push(kind);
        if size < 8 {
            break;
        }
        pos += size as usize;
    }
    boxes
}

/// Checks a video: codec, pixel format, size, frame rate, and a duration
/// within two frames of `seconds`; for MP4/MOV also moov before mdat.
pub async fn assert_video(
    path: &Path,
    codec: &str,
    (w, h): (u32, u32),
    fps: f64,
    seconds: f64,
) -> Probe {
    let p = probe(path).await;
    assert_eq!(p.codec, codec, "{p:?}");
    assert_eq!((p.width, p.height), (w, h), "{p:?}");
    assert!(
        (p.fps - fps).abs() < 0.01,
        "frame rate {} != {fps}: {p:?}",
        p.fps
    );
    let tolerance = 2.0 / fps;
    assert!(
        (p.duration - seconds).abs() <= tolerance + 1e-6,
        "duration {} is not within two frames of {seconds}: {p:?}",
        p.duration
    );
    let frames_expected = (seconds * fps).round();
    assert!(
        (p.frames as f64 - frames_expected).abs() <= 2.0,
        "{} frames, expected about {frames_expected}: {p:?}",
        p.frames
    );
    if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("mp4" | "mov")
    ) {
        assert_eq!(p.pix_fmt, "yuv420p", "{p:?}");
        let boxes = top_level_boxes(path);
        let moov = boxes.iter().position(|b| b == "moov").expect("a moov box");
        let mdat = boxes.iter().position(|b| b == "mdat").expect("an mdat box");
        assert!(
            moov < mdat,
            "faststart: moov must precede mdat, got {boxes:?}"
        );
    }
    p
}

/// The audio stream's codec and duration, as ffprobe sees them.
pub async fn probe_audio(path: &Path) -> Option<(String, f64)> {
    let out = run_tool(
        "ffprobe",
        &[
            OsStr::new("-v"),
            OsStr::new("error"),
            OsStr::new("-select_streams"),
            OsStr::new("a:0"),
            OsStr::new("-show_entries"),
            OsStr::new("stream=codec_name,duration:stream_tags=DURATION"),
            OsStr::new("-of"),
            OsStr::new("json"),
            path.as_os_str(),
        ],
        Path::new("/"),
        &[],
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = v["streams"].get(0)?;
    // Matroska keeps a stream's duration in its DURATION tag (h:mm:ss.nnn).
    let tagged = || {
        let t = s["tags"]["DURATION"].as_str()?;
        let p: Vec<f64> = t
            .split(':')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        Some(p[0] * 3600.0 + p[1] * 60.0 + p[2])
    };
    let duration = s["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .or_else(tagged)?;
    Some((s["codec_name"].as_str()?.to_owned(), duration))
}

/// Parses our own WebVTT back into cues (start, end, text).
/// A media playlist's total duration (its `#EXTINF`s) and segment count.
pub fn extinf_total(playlist: &str) -> (f64, usize) {
    let durations: Vec<f64> = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.trim_end_matches(',').parse().unwrap())
        .collect();
    (durations.iter().sum(), durations.len())
}

pub fn read_vtt(text: &str) -> Vec<(f64, f64, String)> {
    let secs = |t: &str| {
        let (hms, ms) = t.split_once('.').unwrap();
        let p: Vec<f64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600.0 + p[1] * 60.0 + p[2] + ms.parse::<f64>().unwrap() / 1000.0
    };
    assert!(text.starts_with("WEBVTT\n"), "{text}");
    text.split("\n\n")
        .skip(1)
        .map(|block| {
            let lines: Vec<&str> = block.lines().collect();
            let (a, b) = lines[1].split_once(" --> ").unwrap();
            (secs(a), secs(b), lines[2].to_owned())
        })
        .collect()
}
