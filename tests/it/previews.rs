//! Previews: storyboards and stills drawn by simulating every play, in the
//! real sandbox with the real engines, through the renderer, the HTTP API
//! and `manimd preview`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::server::TestServer;
use crate::common::{self, Harness};
use manimd::protocol::PreviewKind;
use manimd::render::{Preview, PreviewSpec, RenderError};
use manimd::server::ServeOptions;
use manimd::spec::{Engine, Quality};

/// Three plays on short run times.
const THREE_PLAYS: &str = "from manim import *\n\nclass Three(Scene):\n    def construct(self):\n        c = Circle()\n        self.play(Create(c), run_time=0.4)\n        self.play(c.animate.shift(RIGHT), run_time=0.4)\n        self.wait(0.2)\n";

/// A square moved by a `dt` updater: where it is at a time depends on every
/// frame before it being stepped, which skipping a play would get wrong.
const DRIFT: &str = "from manim import *\n\nclass Drift(Scene):\n    def construct(self):\n        sq = Square(color=BLUE, fill_opacity=1).shift(LEFT * 3)\n        sq.add_updater(lambda m, dt: m.shift(RIGHT * dt * 1.5))\n        self.add(sq)\n        self.play(Create(Circle(color=RED)), run_time=1)\n        self.wait(1)\n";

const GL_TWO_PLAYS: &str = "from manimlib import *\n\nclass Two(Scene):\n    def construct(self):\n        c = Circle()\n        self.play(ShowCreation(c), run_time=0.3)\n        self.play(c.animate.shift(RIGHT), run_time=0.3)\n";

fn preview_spec(engine: Engine, code: &str, kind: PreviewKind) -> PreviewSpec {
    PreviewSpec {
        code: code.to_owned(),
        scene: None,
        engine,
        quality: Quality::Low,
        fps: None,
        seed: None,
        kind,
        project: None,
        owner: None,
    }
}

async fn preview(h: &Harness, spec: &PreviewSpec) -> Result<Preview, RenderError> {
    let out = h.out_dir(&manimd::sandbox::new_id());
    h.renderer
        .preview(spec, None, &h.config.limits, &out, std::future::pending())
        .await
}

/// The RGB pixels of `path` (a PNG, or frame `frame` of a video) and its size.
fn rgb(path: &Path, frame: Option<u32>) -> Vec<u8> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-i"]).arg(path);
    if let Some(n) = frame {
        cmd.args(["-vf", &format!("select=eq(n\\,{n})"), "-vsync", "0"]);
    }
    let out = cmd
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn png_size(path: &Path) -> (u32, u32) {
    let p = common::probe(path).await;
    (p.width, p.height)
}

#[tokio::test]
async fn a_storyboard_has_the_end_frame_of_every_play() {
    let h = Harness::new();
    let spec = preview_spec(Engine::Manim, THREE_PLAYS, PreviewKind::Storyboard);
    let cold = Instant::now();
    let p = preview(&h, &spec).await.expect("previewed");
    eprintln!("storyboard, cold sandbox: {:?}", cold.elapsed());
    assert_eq!(p.frames.len(), 3, "{p:?}");
    let names: Vec<(&str, Option<u32>)> = p
        .animations
        .iter()
        .map(|a| (a.name.as_str(), a.line))
        .collect();
    assert_eq!(
        names,
        [
            ("Create(Circle)", Some(6)),
            ("_MethodAnimation(Circle)", Some(7)),
            ("Wait(Mobject)", Some(8))
        ]
    );
    let starts: Vec<f64> = p.animations.iter().map(|a| a.start).collect();
    assert!(
        starts[0] == 0.0 && starts[1] > 0.3 && starts[2] > starts[1],
        "{starts:?}"
    );
    for (i, f) in p.frames.iter().enumerate() {
        assert_eq!(f.animation, i as u32);
        // Each frame is where its play ends: the next one's start.
        if let Some(next) = p.animations.get(i + 1) {
            assert!((f.time - next.start).abs() < 1e-6, "{f:?} {next:?}");
        }
        assert_eq!(png_size(&f.path).await, (854, 480));
    }
    // The first frame (a circle drawn) differs from the second (moved).
    assert_ne!(rgb(&p.frames[0].path, None), rgb(&p.frames[1].path, None));
    h.assert_clean();
}

#[tokio::test]
async fn a_still_at_a_time_is_the_rendered_frame_there() {
    let h = Harness::new();
    let at = 1.4;
    let still = preview_spec(
        Engine::Manim,
        DRIFT,
        PreviewKind::Still {
            at: Some(at),
            animation: None,
        },
    );
    let p = preview(&h, &still).await.expect("previewed");
    assert_eq!(p.frames.len(), 1);
    assert_eq!(p.frames[0].animation, 1, "1.4 s is in the wait: {p:?}");
    let (rendered, _) = h.ok(&common::spec(Engine::Manim, DRIFT)).await;
    // Frame k shows [k/fps, (k+1)/fps); low quality is 15 fps.
    let k = (at * 15.0) as u32;
    let a = rgb(&p.frames[0].path, None);
    let b = rgb(&rendered.output, Some(k));
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum::<u64>() as f64
        / a.len() as f64;
    assert!(diff < 2.0, "mean abs diff {diff}");
    // Skipping the wait would have left the square a frame step away: the
    // frame one second earlier differs clearly.
    let earlier = rgb(&rendered.output, Some(k - 15));
    let far = a
        .iter()
        .zip(&earlier)
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum::<u64>() as f64
        / a.len() as f64;
    assert!(far > diff * 2.0 && far > 1.0, "{far} vs {diff}");
    h.assert_clean();
}

#[tokio::test]
async fn a_manimgl_storyboard_works() {
    let h = Harness::new();
    let spec = preview_spec(Engine::Manimgl, GL_TWO_PLAYS, PreviewKind::Storyboard);
    let p = preview(&h, &spec).await.expect("previewed");
    assert_eq!(p.frames.len(), 2, "{p:?}");
    assert_eq!(p.animations.len(), 2);
    for f in &p.frames {
        assert_eq!(png_size(&f.path).await, (854, 480));
    }
    h.assert_clean();
}

fn keyed(opts: ServeOptions) -> ServeOptions {
    ServeOptions {
        api_keys: ["alpha-key", "beta-key"]
            .into_iter()
            .filter_map(manimd::secret::Secret::new)
            .collect(),
        workers: 1,
        warm_pool: 1,
        ..opts
    }
}

async fn post(s: &TestServer, key: &str, body: Value) -> (StatusCode, Value) {
    let r = s
        .client
        .post(format!("{}/v1/previews", s.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn fetch(s: &TestServer, key: &str, url: &str) -> reqwest::Response {
    s.client
        .get(format!("{}{url}", s.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_api_previews_for_the_owner_only_with_typed_errors() {
    let mut s = TestServer::start(keyed(ServeOptions::default())).await;
    // The first one may find no warm sandbox yet; time the later ones.
    let (status, body) = post(
        &s,
        "alpha-key",
        json!({"code": THREE_PLAYS, "kind": "storyboard"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let frames = body["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(body["animations"].as_array().unwrap().len(), 3);
    assert_eq!(body["animations"][1]["line"], 7);
    let url = frames[2]["url"].as_str().unwrap().to_owned();
    let r = fetch(&s, "alpha-key", &url).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.bytes().await.unwrap().starts_with(b"\x89PNG"));
    // Another owner's key gets nothing.
    let r = fetch(&s, "beta-key", &url).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = fetch(&s, "alpha-key", &url.replace("/2.png", "/3.png")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let t = Instant::now();
    let (status, body) = post(
        &s,
        "alpha-key",
        json!({"code": THREE_PLAYS, "engine": "manim", "kind": "storyboard"}),
    )
    .await;
    eprintln!("storyboard over HTTP, warm: {:?}", t.elapsed());
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let t = Instant::now();
    let (status, body) = post(
        &s,
        "alpha-key",
        json!({"code": THREE_PLAYS, "engine": "manim", "kind": "still", "animation": 1}),
    )
    .await;
    eprintln!("still over HTTP, warm: {:?}", t.elapsed());
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["frames"].as_array().unwrap().len(), 1);

    // A broken scene: 422 with its line.
    let broken = "from manim import *\n\nclass B(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.2)\n        raise ValueError('nope')\n";
    let (status, body) = post(
        &s,
        "alpha-key",
        json!({"code": broken, "kind": "storyboard"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "scene-error");
    assert_eq!(body["error"]["line"], 6);
    // Past the last animation.
    let (status, body) = post(
        &s,
        "alpha-key",
        json!({"code": THREE_PLAYS, "kind": "still", "animation": 9}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "no-such-animation");
    assert_eq!(body["error"]["plays"], 3);
    // Malformed: a still needs exactly one of `at` and `animation`.
    for (req, field) in [
        (json!({"code": THREE_PLAYS, "kind": "still"}), "at"),
        (
            json!({"code": THREE_PLAYS, "kind": "still", "at": 1, "animation": 1}),
            "animation",
        ),
        (
            json!({"code": THREE_PLAYS, "kind": "storyboard", "at": 1}),
            "at",
        ),
    ] {
        let (status, body) = post(&s, "alpha-key", req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid-request");
        assert_eq!(body["error"]["field"], field);
    }
    // Without a key: refused like every /v1 call.
    let r = s
        .client
        .post(format!("{}/v1/previews", s.url))
        .json(&json!({"code": THREE_PLAYS, "kind": "storyboard"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, doc) = s.get("/openapi.json").await;
    assert!(doc["paths"]["/v1/previews"]["post"].is_object());
    assert!(doc["paths"]["/v1/previews/{id}/frames/{name}"]["get"].is_object());
    s.stop().await;
}

#[tokio::test]
async fn manimd_preview_writes_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("three.py"), THREE_PLAYS).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_manimd"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .current_dir(dir.path())
            .output()
            .expect("manimd runs")
    };
    let o = run(&["preview", "three.py", "--storyboard", "-o", "board"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed = String::from_utf8(o.stdout).unwrap();
    assert_eq!(printed.lines().count(), 3, "{printed}");
    assert!(
        printed.contains("Create(Circle)") && printed.contains("line 6"),
        "{printed}"
    );
    for n in ["00", "01", "02"] {
        assert_eq!(
            png_size(&dir.path().join(format!("board/{n}.png"))).await,
            (854, 480)
        );
    }
    let o = run(&[
        "preview",
        "three.py",
        "Three",
        "--at",
        "0.5",
        "-o",
        "still.png",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(png_size(&dir.path().join("still.png")).await, (854, 480));
    // Typed errors and exit codes as `manimd render`.
    let o = run(&["preview", "three.py", "--animation", "7", "-o", "x.png"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error[no-such-animation]"));
    let o = run(&["preview", "three.py", "-o", "x.png"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "one of --storyboard, --at, --animation"
    );
}
