//! The per-owner animation cache, end to end: real renders in real
//! sandboxes, compared frame by frame (decoded frame checksums) with cold
//! renders; owners kept apart; tampered entries refused and re-rendered;
//! the quota kept.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::server::{cached_flags, TestServer};
use crate::common::{self, Harness};
use manimd::config::Config;
use manimd::process::run_tool;
use manimd::render::{Rendered, Renderer};
use manimd::server::ServeOptions;
use manimd::spec::{Engine, RenderSpec};

/// Plays whose frames depend on time and state: a `dt` updater, an
/// `always_redraw`, and per-frame randomness from the seeded generators.
/// Manim's own cache (and its skipping) gets each of these wrong.
const DT_UPDATER: &str = r#"from manim import *

class Drift(Scene):
    def construct(self):
        dot = Dot(LEFT * 4)
        dot.add_updater(lambda m, dt: m.shift(RIGHT * dt * 0.7))
        self.add(dot)
        square = Square(side_length=1)
        for i in range(4):
            self.play(square.animate.shift(UP * 0.3).rotate(0.3), run_time=0.4)
        self.wait(0.3)
        self.play(Create(Circle(radius=0.5)), run_time=0.4)
"#;

const ALWAYS_REDRAW: &str = r#"from manim import *

class Redraw(Scene):
    def construct(self):
        t = ValueTracker(0)
        line = always_redraw(lambda: Line(ORIGIN, RIGHT * 2).rotate(t.get_value()))
        self.add(line)
        for step in range(3):
            self.play(t.animate.increment_value(0.8), run_time=0.4)
        self.play(FadeIn(Square()), run_time=0.4)
"#;

const RANDOM_WALK: &str = r#"from manim import *
import numpy as np

class Walk(Scene):
    def construct(self):
        dot = Dot()
        dot.add_updater(lambda m, dt: m.shift(np.random.normal(0, 0.05, 3) * np.array([1, 1, 0])))
        self.add(dot)
        for i in range(3):
            self.play(Rotate(Square(), 0.5), run_time=0.4)
        self.play(FadeIn(Circle()), run_time=0.4)
"#;

fn spec(code: &str, seed: Option<u32>) -> RenderSpec {
    RenderSpec {
        seed,
        ..common::spec(Engine::Manim, code)
    }
}

async fn render_as(h: &Harness, owner: &str, spec: &RenderSpec) -> Rendered {
    let out = h.out_dir(&manimd::sandbox::new_id());
    h.renderer
        .render(
            spec,
            Some(owner),
            &h.config.limits,
            &out,
            |_| {},
            std::future::pending(),
        )
        .await
        .unwrap_or_else(|e| panic!("render failed: [{}] {e:#}", e.code()))
}

/// The decoded frames' checksums (ffmpeg's framemd5), one per frame.
async fn frame_checksums(video: &Path) -> Vec<String> {
    let out = run_tool(
        "ffmpeg",
        &[
            OsStr::new("-v"),
            OsStr::new("error"),
            OsStr::new("-i"),
            video.as_os_str(),
            OsStr::new("-map"),
            OsStr::new("0:v:0"),
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

fn cached(r: &Rendered) -> Vec<bool> {
    r.animations.iter().map(|a| a.cached).collect()
}

fn entries(data_dir: &Path, owner: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(profiles) = std::fs::read_dir(data_dir.join("animations").join(owner)) else {
        return out;
    };
    for p in profiles.flatten() {
        for f in std::fs::read_dir(p.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn cached_rerenders_have_the_frames_of_cold_renders() {
    let h = Harness::new();
    for (code, seed) in [
        (DT_UPDATER, None),
        (ALWAYS_REDRAW, None),
        (RANDOM_WALK, Some(7)),
    ] {
        let cold = render_as(&h, "exact", &spec(code, seed)).await;
        let plays = cold.animations.len();
        assert!(plays >= 4, "{:?}", cold.animations);
        assert!(
            cached(&cold).iter().all(|c| !c),
            "a first render draws everything"
        );
        let want = frame_checksums(&cold.output).await;
        assert_eq!(want.len() as u64, cold.media.frames.unwrap());

        // Only a comment changed: every play comes from the cache, and the
        // video is the same frame for frame.
        let edited = format!("# edited\n{code}");
        let warm = render_as(&h, "exact", &spec(&edited, seed)).await;
        assert_eq!(cached(&warm), vec![true; plays], "{code}");
        assert_eq!(frame_checksums(&warm.output).await, want, "{code}");
        for (a, b) in cold.animations.iter().zip(&warm.animations) {
            assert_eq!((a.start, a.end, &a.name), (b.start, b.end, &b.name));
            assert_eq!(a.line.map(|l| l + 1), b.line, "lines move with the comment");
        }

        // The last play edited: the ones before it are reused, it is drawn,
        // and the video is the cold render of the edited file.
        let last_edit = edited.replacen("FadeIn(", "GrowFromCenter(", 1).replacen(
            "Create(Circle(radius=0.5))",
            "GrowFromCenter(Circle(radius=0.5))",
            1,
        );
        assert_ne!(last_edit, edited);
        let partial = render_as(&h, "exact", &spec(&last_edit, seed)).await;
        let mut expect = vec![true; plays];
        expect[plays - 1] = false;
        assert_eq!(cached(&partial), expect, "{code}");
        let fresh = render_as(
            &h,
            "exact",
            &RenderSpec {
                cache: false,
                ..spec(&last_edit, seed)
            },
        )
        .await;
        assert!(
            cached(&fresh).iter().all(|c| !c),
            "cache: false draws everything"
        );
        assert_eq!(
            frame_checksums(&partial.output).await,
            frame_checksums(&fresh.output).await,
            "{code}"
        );
    }
    h.assert_clean();
}

#[tokio::test]
async fn randomness_is_seeded_by_default_and_a_play_that_draws_it_is_keyed_by_the_seed() {
    // The first play draws no random numbers; the two after it do, from the
    // global generators, which every render seeds (the request's seed, or
    // the default one the result reports).
    const RANDOM: &str = r#"from manim import *
import numpy as np

class Walk(Scene):
    def construct(self):
        self.play(Create(Square()), run_time=0.4)
        dot = Dot()
        dot.add_updater(lambda m, dt: m.shift(np.random.normal(0, 0.05, 3) * np.array([1, 1, 0])))
        self.add(dot)
        self.play(FadeIn(Circle()), run_time=0.4)
        self.play(Rotate(Square(), 0.5), run_time=0.4)
"#;
    let h = Harness::new();
    let first = render_as(&h, "rng", &spec(RANDOM, None)).await;
    assert_eq!(cached(&first), vec![false; 3]);
    let again = render_as(&h, "rng", &spec(&format!("# again\n{RANDOM}"), None)).await;
    // Seeded the same: the same draws, so every piece is reused.
    assert_eq!(cached(&again), vec![true; 3], "{:?}", again.animations);
    assert_eq!(
        frame_checksums(&first.output).await,
        frame_checksums(&again.output).await
    );
    // Another seed: the play that draws none is reused; the ones that
    // depend on the generators' state are drawn again.
    let reseeded = render_as(&h, "rng", &spec(RANDOM, Some(7))).await;
    assert_eq!(
        cached(&reseeded),
        vec![true, false, false],
        "{:?}",
        reseeded.animations
    );
    h.assert_clean();
}

#[tokio::test]
async fn a_tampered_entry_is_refused_and_rendered_again() {
    let h = Harness::new();
    let cold = render_as(&h, "tamper", &spec(DT_UPDATER, None)).await;
    let want = frame_checksums(&cold.output).await;
    let stored = entries(&h.config.data_dir, "tamper");
    assert_eq!(stored.len(), cold.animations.len());

    // Truncated: its size no longer matches its name, so it is never shown
    // to a sandbox.
    let truncated = &stored[0];
    let bytes = std::fs::read(truncated).unwrap();
    std::fs::write(truncated, &bytes[..bytes.len() / 2]).unwrap();
    // The same size, but not H.264 any more: found by our reader after the
    // worker used it, which renders the job again.
    let garbled = &stored[1];
    let len = std::fs::metadata(garbled).unwrap().len() as usize;
    std::fs::write(garbled, vec![0u8; len]).unwrap();

    let again = render_as(&h, "tamper", &spec(&format!("# x\n{DT_UPDATER}"), None)).await;
    // The zeroed play is drawn again in the second pass. The truncated one
    // is drawn in the first; when that pass still got through (the zeroed
    // piece did not stop the stitch), it admitted the piece before the
    // second pass, which then reuses it.
    let drawn = cached(&again).iter().filter(|c| !**c).count();
    assert!(
        (1..=2).contains(&drawn),
        "the spoiled plays are drawn again: {:?}",
        again.animations
    );
    assert_eq!(frame_checksums(&again.output).await, want);
    // Both were replaced by good entries.
    let third = render_as(&h, "tamper", &spec(&format!("# y\n{DT_UPDATER}"), None)).await;
    assert!(cached(&third).iter().all(|c| *c), "{:?}", third.animations);
    assert_eq!(frame_checksums(&third.output).await, want);
    h.assert_clean();
}

/// (Which entries go first is `animcache`'s unit test.)
#[tokio::test]
async fn a_zero_quota_keeps_nothing() {
    let dir = tempfile::Builder::new()
        .prefix("manimd-test-")
        .tempdir()
        .unwrap();
    let config = Config {
        cache_quota_mib: 0,
        ..Config::for_tests(dir.path().join("data"))
    };
    let h = Harness {
        renderer: Renderer::new(&config).unwrap(),
        config,
        dir,
    };
    render_as(&h, "small", &spec(DT_UPDATER, None)).await;
    assert!(
        entries(&h.config.data_dir, "small").is_empty(),
        "a zero quota keeps nothing"
    );
    // The same render with the default quota, on the same data dir, keeps
    // its pieces: the quota, not the render, left the shelf empty.
    let default = Renderer::new(&Config::for_tests(h.config.data_dir.clone())).unwrap();
    let out = h.out_dir("default-quota");
    default
        .render(
            &spec(DT_UPDATER, None),
            Some("small"),
            &h.config.limits,
            &out,
            |_| {},
            std::future::pending(),
        )
        .await
        .unwrap();
    assert_eq!(entries(&h.config.data_dir, "small").len(), 6);

    h.assert_clean();
}

#[tokio::test]
async fn owners_never_share_entries() {
    let mut s = TestServer::start(ServeOptions {
        workers: 1,
        warm_pool: 0,
        api_keys: ["owner-one-key", "owner-two-key"]
            .into_iter()
            .filter_map(manimd::secret::Secret::new)
            .collect(),
        ..ServeOptions::default()
    })
    .await;
    // Each render as the holder of `key`, through the harness's own calls.
    async fn render(s: &mut TestServer, key: &str, code: String) -> Value {
        let mut auth = reqwest::header::HeaderMap::new();
        auth.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        s.client = reqwest::Client::builder()
            .default_headers(auth)
            .build()
            .unwrap();
        let id = s.submit(json!({ "code": code })).await;
        let job = s.wait_for(&id, None).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        job
    }
    let one = render(&mut s, "owner-one-key", ALWAYS_REDRAW.to_owned()).await;
    assert!(cached_flags(&one).iter().all(|c| !c));
    let animation = &one["result"]["animations"][0];
    assert!(
        animation["name"].as_str().unwrap().contains("ValueTracker"),
        "{animation}"
    );
    assert_eq!(animation["line"], 9);
    assert_eq!(animation["start"], 0.0);

    // The same scene (a comment apart, so no whole-result reuse) from the
    // other owner draws every play; the first owner's edit reuses them all.
    let two = render(&mut s, "owner-two-key", format!("# two\n{ALWAYS_REDRAW}")).await;
    assert!(cached_flags(&two).iter().all(|c| !c), "{}", two["result"]);
    let again = render(&mut s, "owner-one-key", format!("# one\n{ALWAYS_REDRAW}")).await;
    assert!(
        cached_flags(&again).iter().all(|c| *c),
        "{}",
        again["result"]
    );
    s.stop().await;
    s.assert_clean();
}
