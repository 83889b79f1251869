//! Split renders on one node with two workers: the split video is the
//! single worker's, frame for frame and sample for sample; a scene that
//! reads the wall clock (or is one animation) stays whole and says why; a
//! narrated one is split too; a cancel stops every
//! chunk. The cluster form (two `manimd worker` nodes, one killed) is in
//! `scale.rs`.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use manimd::process::run_tool;
use manimd::server::ServeOptions;
use serde_json::{json, Value};

use crate::common::server::{cached_flags, TestServer};

/// Every kind of scene the issue names, in one: a `dt` updater, an
/// `always_redraw`, per-frame randomness from the seeded generators, and a
/// sound made by the scene itself and added halfway through.
pub const EVERYTHING: &str = r#"from manim import *
import random
import wave, struct, math

def beep(path, secs, freq):
    with wave.open(path, "w") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / 22050)))
                               for i in range(int(22050 * secs))))

class Everything(Scene):
    def construct(self):
        dot = Dot(color=YELLOW)
        dot.add_updater(lambda m, dt: m.shift(RIGHT * dt * 0.3 + UP * random.uniform(-0.05, 0.05)))
        ring = always_redraw(lambda: Circle(radius=0.3 + 0.1 * abs(dot.get_x())).move_to(dot))
        self.add(dot, ring)
        beep("/tmp/beep.wav", 0.3, 660)
        for i in range(8):
            if i == 4:
                self.add_sound("/tmp/beep.wav")
            self.play(Rotate(Square(side_length=1 + 0.1 * i).shift(LEFT * 2), PI / 3), run_time=0.6)
            self.wait(0.2)
"#;

/// Two workers, and splitting worth it for a few seconds of low quality.
pub fn opts() -> ServeOptions {
    ServeOptions {
        workers: 2,
        warm_pool: 1,
        chunk_min_secs: 0.05,
        chunk_min_quality: manimd::spec::Quality::Low,
        ..ServeOptions::default()
    }
}

async fn render(s: &TestServer, body: Value) -> Value {
    let id = s.submit(body).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job
}

/// `code` rendered by one worker, nothing cached or kept (the baseline),
/// then as a split render: a comment apart, or the result cache would
/// answer. `extra` goes in both requests.
async fn single_and_split(s: &TestServer, code: &str, extra: Value) -> (Value, Value) {
    let with = |mut body: Value| {
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let single = render(
        s,
        with(json!({"code": code, "parallel": 1, "cache": false})),
    )
    .await;
    let split = render(s, with(json!({"code": format!("# split\n{code}")}))).await;
    (single, split)
}

async fn download(s: &TestServer, job: &Value, dir: &Path) -> std::path::PathBuf {
    let id = job["id"].as_str().unwrap();
    let bytes = s.bytes(&format!("/v1/renders/{id}/video")).await;
    let path = dir.join(format!("{id}.mp4"));
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// ffmpeg's checksum of each decoded frame of `stream` (`v:0`, `a:0`).
pub async fn checksums(video: &Path, stream: &str) -> Vec<String> {
    let map = format!("0:{stream}");
    let out = run_tool(
        "ffmpeg",
        &[
            OsStr::new("-v"),
            OsStr::new("error"),
            OsStr::new("-i"),
            video.as_os_str(),
            OsStr::new("-map"),
            OsStr::new(&map),
            OsStr::new("-f"),
            OsStr::new("framemd5"),
            OsStr::new("-"),
        ],
        Path::new("/"),
        &[],
    )
    .await
    .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

/// The job's runner drew the last chunk itself, in the render that made
/// the video (the join), and took every other chunk's pieces from the cache.
fn assert_joined(job: &Value) {
    let chunks = job["result"]["chunks"].as_array().unwrap();
    let last = chunks.last().unwrap();
    let own = last["first_animation"].as_u64().unwrap();
    let flags = cached_flags(job);
    assert_eq!(
        last["last_animation"].as_u64().unwrap() as usize,
        flags.len() - 1
    );
    let expected: Vec<bool> = (0..flags.len() as u64).map(|i| i < own).collect();
    assert_eq!(flags, expected, "{job}");
}

#[tokio::test]
async fn a_split_render_is_the_single_workers_video_frame_for_frame() {
    let s = TestServer::start(opts()).await;
    let dir = tempfile::tempdir().unwrap();
    let (single, split) = single_and_split(&s, EVERYTHING, json!({})).await;
    let result = &single["result"];
    assert_eq!(result["split"]["code"], "parallel-1", "{single}");
    assert!(result.get("chunks").is_none(), "{single}");
    assert_eq!(result["seed"], 0, "every render is seeded: {single}");
    let result = &split["result"];
    assert!(result.get("split").is_none(), "{split}");
    let chunks = result["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 2, "two workers, two chunks: {split}");
    // Contiguous, in order, every animation once, never cut.
    assert_eq!(chunks[0]["first_animation"], 0);
    assert_eq!(
        chunks[1]["first_animation"].as_u64().unwrap(),
        chunks[0]["last_animation"].as_u64().unwrap() + 1
    );
    assert_eq!(chunks[1]["last_animation"], 15, "{split}");
    for c in chunks {
        assert!(c["seconds"].as_f64().unwrap() > 1.0, "{c}");
        assert!(!c["node"].as_str().unwrap().is_empty(), "{c}");
    }
    assert_joined(&split);
    // The live stream got every chunk's pieces, in order, and ended.
    s.assert_live_covers_video(&split).await;

    let (a, b) = (
        download(&s, &single, dir.path()).await,
        download(&s, &split, dir.path()).await,
    );
    let frames = checksums(&a, "v:0").await;
    assert_eq!(frames.len(), 8 * 12, "0.8 s a round at 15 fps");
    assert_eq!(frames, checksums(&b, "v:0").await, "the same frames");
    // One sound track, mixed once over the whole video: no seam.
    let audio = checksums(&a, "a:0").await;
    assert!(!audio.is_empty());
    assert_eq!(audio, checksums(&b, "a:0").await, "the same sound");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn a_scene_that_reads_the_wall_clock_is_not_split_and_says_why() {
    let s = TestServer::start(opts()).await;
    let code = r#"from manim import *
import time

class Clock(Scene):
    def construct(self):
        dot = Dot()
        dot.add_updater(lambda m, dt: m.set_x((time.time() % 2) * 0))
        self.add(dot)
        for _ in range(6):
            self.play(FadeIn(Square()), run_time=0.5)
"#;
    let job = render(&s, json!({"code": code})).await;
    let split = &job["result"]["split"];
    assert_eq!(split["code"], "wall-clock", "{job}");
    assert!(
        split["message"].as_str().unwrap().contains("line 7"),
        "{split}"
    );
    assert!(job["result"].get("chunks").is_none(), "{job}");
    // One animation is never cut: also said.
    let one = render(
        &s,
        json!({"code": "from manim import *\nclass S(Scene):\n    def construct(self):\n        self.play(FadeIn(Dot()), run_time=0.5)\n"}),
    )
    .await;
    assert_eq!(one["result"]["split"]["code"], "one-animation", "{one}");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn canceling_a_split_render_stops_every_chunk() {
    let s = TestServer::start(opts()).await;
    // Long enough to be canceled while both chunks draw.
    let code = EVERYTHING
        .replace("range(8)", "range(40)")
        .replace("run_time=0.6", "run_time=1.5");
    let id = s.submit(json!({"code": code, "quality": "medium"})).await;
    // Both workers busy: the job's runner and the other worker's chunk.
    let mut both = false;
    for _ in 0..600 {
        let (_, health) = s.get("/health").await;
        if health["workers"]["busy"].as_u64() == Some(2) {
            both = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(both, "a chunk never started beside its job");
    let r = s
        .client
        .delete(format!("{}/v1/renders/{id}", s.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "canceled", "{job}");
    // Every sandbox ends: nothing runs, nothing is left.
    for _ in 0..200 {
        let (_, health) = s.get("/health").await;
        if health["workers"]["busy"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, health) = s.get("/health").await;
    assert_eq!(health["workers"]["busy"], 0, "{health}");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn a_narrated_render_is_split_and_sounds_as_the_single_workers() {
    let s = TestServer::start(opts()).await;
    let dir = tempfile::tempdir().unwrap();
    // The lines are spoken before the render; each play waits for its own.
    let code = r#"from manim import *

class Told(Scene):
    def construct(self):
        square = Square()
        for i, words in enumerate(["One square.", "It turns.", "It turns again.", "And stops."]):
            narrate(words)
            self.play(Rotate(square, PI / 4), run_time=0.5)
"#;
    let (single, split) = single_and_split(&s, code, json!({"narration": true})).await;
    let chunks = split["result"]["chunks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(chunks.len(), 2, "{split}");
    assert_joined(&split);
    let (a, b) = (
        download(&s, &single, dir.path()).await,
        download(&s, &split, dir.path()).await,
    );
    assert_eq!(checksums(&a, "v:0").await, checksums(&b, "v:0").await);
    assert_eq!(checksums(&a, "a:0").await, checksums(&b, "a:0").await);
    assert_eq!(
        single["result"]["narration"]["cues"], split["result"]["narration"]["cues"],
        "the same lines at the same times"
    );
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

/// A scene that fails only in a chunk, at its first chunk's last play and
/// only after the join has drawn its own half: a look at the worker's own
/// plan (a test's trick; no real scene sees it) tells a chunk's sandbox.
const FAILS_IN_A_CHUNK: &str = r#"from manim import *
import gc
import time

def in_a_chunk():
    return any(type(o).__name__ == "Plan" and getattr(o, "chunk", None) for o in gc.get_objects())

class Halves(Scene):
    def construct(self):
        dot = Dot()
        dot.add_updater(lambda m, dt: m.shift(RIGHT * dt * 0.3))
        self.add(dot)
        for i in range(8):
            if i == 3 and in_a_chunk():
                time.sleep(6)
                raise RuntimeError("only a chunk fails")
            self.play(Rotate(Square(side_length=1 + 0.1 * i), PI / 3), run_time=0.6)
"#;

#[tokio::test]
async fn a_chunk_that_fails_gives_the_join_up_and_one_pass_draws_its_animations() {
    let s = TestServer::start(opts()).await;
    let dir = tempfile::tempdir().unwrap();
    let (single, split) = single_and_split(&s, FAILS_IN_A_CHUNK, json!({})).await;
    let result = &split["result"];
    assert_eq!(result["split"]["code"], "chunk-failed", "{split}");
    assert!(
        result["split"]["message"]
            .as_str()
            .unwrap()
            .contains("chunk 0"),
        "{split}"
    );
    assert!(result.get("chunks").is_none(), "{split}");
    // The join's half, drawn before it gave up, came from the cache; the
    // failed chunk's half was drawn by the last pass.
    assert_eq!(
        cached_flags(&split),
        [false, false, false, false, true, true, true, true],
        "{split}"
    );
    s.assert_live_covers_video(&split).await;
    let (a, b) = (
        download(&s, &single, dir.path()).await,
        download(&s, &split, dir.path()).await,
    );
    let frames = checksums(&a, "v:0").await;
    assert_eq!(frames.len(), 8 * 9, "0.6 s a play at 15 fps");
    assert_eq!(frames, checksums(&b, "v:0").await, "the same frames");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn a_chunk_no_worker_takes_is_drawn_by_the_runner_once_its_join_waits() {
    let s = TestServer::start(opts()).await;
    // The other worker is busy for the whole split.
    let blocker = s
        .submit(json!({
            "code": EVERYTHING.replace("range(8)", "range(200)"),
            "parallel": 1,
            "cache": false,
        }))
        .await;
    s.wait_for(&blocker, Some("running")).await;
    let split = render(&s, json!({"code": format!("# alone\n{EVERYTHING}")})).await;
    let (_, still) = s.get(&format!("/v1/renders/{blocker}")).await;
    assert_eq!(
        still["status"], "running",
        "the other worker never was free"
    );
    let chunks = split["result"]["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 2, "{split}");
    assert_eq!(chunks[0]["node"], chunks[1]["node"], "{split}");
    assert_joined(&split);
    let dir = tempfile::tempdir().unwrap();
    let video = download(&s, &split, dir.path()).await;
    assert_eq!(checksums(&video, "v:0").await.len(), 8 * 12);
    let r = s
        .client
        .delete(format!("{}/v1/renders/{blocker}", s.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    s.wait_for(&blocker, Some("canceled")).await;
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn chunks_that_draw_what_the_join_does_not_await_are_given_up_in_seconds() {
    let s = TestServer::start(opts()).await;
    let dir = tempfile::tempdir().unwrap();
    // A scene the plan cannot see through: in a chunk's sandbox its squares
    // are another colour, so the chunk's pieces have keys the join never
    // asks for.
    let code = FAILS_IN_A_CHUNK.replace(
        "            if i == 3 and in_a_chunk():\n                time.sleep(6)\n                raise RuntimeError(\"only a chunk fails\")\n",
        "",
    )
    .replace(
        "Square(side_length=1 + 0.1 * i)",
        "Square(side_length=1 + 0.1 * i, color=RED if in_a_chunk() else BLUE)",
    );
    assert!(code.contains("RED if in_a_chunk()") && !code.contains("sleep"));
    let (single, split) = single_and_split(&s, &code, json!({})).await;
    assert_eq!(
        split["result"]["split"]["code"], "chunk-mismatch",
        "{split}"
    );
    let (a, b) = (
        download(&s, &single, dir.path()).await,
        download(&s, &split, dir.path()).await,
    );
    assert_eq!(checksums(&a, "v:0").await, checksums(&b, "v:0").await);
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}
