//! Real renders with both engines, checked with ffprobe; every error code of
//! the worker with the author's line numbers.

use crate::common;

use common::{assert_video, fixture, spec, Harness};
use manimd::protocol::Progress;
use manimd::render::RenderError;
use manimd::spec::{Engine, Format, Quality};

const LOW: (u32, u32) = (854, 480);

#[tokio::test]
async fn manim_shapes_render_to_a_faststart_h264_mp4_with_progress() {
    let h = Harness::new();
    let (r, events) = h.ok(&spec(Engine::Manim, &fixture("ce_shapes.py"))).await;
    assert_video(&r.output, "h264", LOW, 15.0, 3.0).await;
    assert_eq!(r.engine_version, "0.22.0");
    assert!(!r.media.still);
    assert_eq!(r.media.width, Some(854));
    let animations: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Animation { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(animations.len(), 4, "{events:?}");
    assert!(animations[0].starts_with("Create"), "{animations:?}");
    let pieces = events
        .iter()
        .filter(|e| matches!(e, Progress::PartialMovie { .. }))
        .count();
    assert_eq!(pieces, 4, "one partial movie per animation: {events:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, Progress::Frames { frames, .. } if *frames > 0)));
    let thumb = r.thumbnail.expect("a thumbnail");
    assert_eq!(&std::fs::read(&thumb).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    h.assert_clean();
}

#[tokio::test]
async fn manim_text_mathtex_and_tex() {
    let h = Harness::new();
    let (r, _) = h.ok(&spec(Engine::Manim, &fixture("ce_text_tex.py"))).await;
    assert_video(&r.output, "h264", LOW, 15.0, 2.5).await;
    h.assert_clean();
}

#[tokio::test]
async fn manim_3d_scene() {
    let h = Harness::new();
    let (r, _) = h.ok(&spec(Engine::Manim, &fixture("ce_3d.py"))).await;
    assert_video(&r.output, "h264", LOW, 15.0, 2.0).await;
}

#[tokio::test]
async fn manim_two_scenes_are_stitched_in_the_order_asked() {
    let h = Harness::new();
    let mut s = spec(Engine::Manim, &fixture("ce_two.py"));
    s.scenes = vec!["Outro".parse().unwrap(), "Intro".parse().unwrap()];
    let (r, events) = h.ok(&s).await;
    assert_video(&r.output, "h264", LOW, 15.0, 2.5).await;
    let started: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Progress::SceneStarted { scene, .. } => Some(scene.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["Outro", "Intro"]);
}

#[tokio::test]
async fn manimgl_shapes_render_headless() {
    let h = Harness::new();
    let (r, events) = h.ok(&spec(Engine::Manimgl, &fixture("gl_shapes.py"))).await;
    assert_video(&r.output, "h264", LOW, 15.0, 3.0).await;
    assert_eq!(r.engine_version, "1.7.2");
    let pieces = events
        .iter()
        .filter(|e| matches!(e, Progress::PartialMovie { .. }))
        .count();
    assert_eq!(pieces, 4, "{events:?}");
    h.assert_clean();
}

#[tokio::test]
async fn manimgl_text_and_tex_with_the_light_template() {
    let h = Harness::new();
    let (r, _) = h
        .ok(&spec(Engine::Manimgl, &fixture("gl_text_tex.py")))
        .await;
    assert_video(&r.output, "h264", LOW, 15.0, 2.0).await;
}

#[tokio::test]
async fn manimgl_3d_scene() {
    let h = Harness::new();
    let (r, _) = h.ok(&spec(Engine::Manimgl, &fixture("gl_3d.py"))).await;
    assert_video(&r.output, "h264", LOW, 15.0, 2.0).await;
}

#[tokio::test]
async fn manimgl_two_scenes_stitched_at_medium_quality() {
    let h = Harness::new();
    let mut s = spec(Engine::Manimgl, &fixture("gl_two.py"));
    s.scenes = vec!["IntroGL".parse().unwrap(), "OutroGL".parse().unwrap()];
    s.quality = Quality::Medium;
    let (r, _) = h.ok(&s).await;
    assert_video(&r.output, "h264", (1280, 720), 30.0, 2.5).await;
}

#[tokio::test]
async fn fps_override_and_other_formats() {
    let h = Harness::new();
    let code = fixture("ce_two.py");
    let mut s = spec(Engine::Manim, &code);
    s.scenes = vec!["Intro".parse().unwrap()];
    s.fps = Some(24);
    s.format = Format::Webm;
    let (r, _) = h.ok(&s).await;
    assert_eq!(r.output.extension().unwrap(), "webm");
    assert_video(&r.output, "vp9", LOW, 24.0, 1.0).await;

    s.format = Format::Mov;
    let (r, _) = h.ok(&s).await;
    assert_video(&r.output, "h264", LOW, 24.0, 1.0).await;

    s.format = Format::Gif;
    s.fps = Some(10);
    let (r, _) = h.ok(&s).await;
    assert_video(&r.output, "gif", LOW, 10.0, 1.0).await;

    s.format = Format::Png;
    let (r, _) = h.ok(&s).await;
    assert!(r.media.still);
    assert!(r.media.notice.is_none(), "a PNG was asked for: no notice");
    let png = std::fs::read(&r.output).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 854);
    h.assert_clean();
}

fn user_error(e: RenderError) -> manimd::protocol::UserError {
    match e {
        RenderError::User(u) => *u,
        other => panic!("expected a user error, got [{}] {other}", other.code()),
    }
}

#[tokio::test]
async fn syntax_error_names_line_and_column() {
    let h = Harness::new();
    let code = fixture("syntax_error.py");
    let e = user_error(h.renderer.inspect(&code).await.unwrap_err());
    assert_eq!(e.code, "syntax-error");
    assert_eq!(e.line, Some(6), "{e:?}");
    assert!(e.column.is_some());
    // The render path reports it the same way.
    let e = user_error(h.fails(&spec(Engine::Manim, &code), &h.config.limits).await);
    assert_eq!((e.code.as_str(), e.line), ("syntax-error", Some(6)));
    h.assert_clean();
}

#[tokio::test]
async fn inspection_finds_engine_and_scenes_without_running_code() {
    let h = Harness::new();
    let i = h.renderer.inspect(&fixture("ce_two.py")).await.unwrap();
    assert_eq!(i.engine, Some(Engine::Manim));
    let names: Vec<&str> = i.scenes.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Intro", "Outro"]);
    assert_eq!(i.scenes[1].line, 9);
    let i = h.renderer.inspect(&fixture("gl_3d.py")).await.unwrap();
    assert_eq!(i.engine, Some(Engine::Manimgl));
    // An endless loop at import is not run by inspection.
    let i = h
        .renderer
        .inspect("import time\nwhile True: time.sleep(1)\nclass A(Scene): pass\n")
        .await
        .unwrap();
    assert_eq!(i.engine, None);
    assert_eq!(i.scenes.len(), 1);
}

#[tokio::test]
async fn no_scene_and_scene_not_found() {
    let h = Harness::new();
    let e = user_error(
        h.fails(
            &spec(Engine::Manim, &fixture("no_scene.py")),
            &h.config.limits,
        )
        .await,
    );
    assert_eq!(e.code, "no-scene");

    let mut s = spec(Engine::Manim, &fixture("ce_two.py"));
    s.scenes = vec!["Middle".parse().unwrap()];
    let e = user_error(h.fails(&s, &h.config.limits).await);
    assert_eq!(e.code, "scene-not-found");
    assert_eq!(
        e.available,
        Some(vec!["Intro".to_string(), "Outro".to_string()])
    );
    assert!(e.message.contains("Middle"), "{}", e.message);

    // Several scenes and none named: the worker refuses to guess.
    let s = spec(Engine::Manim, &fixture("ce_two.py"));
    let e = user_error(h.fails(&s, &h.config.limits).await);
    assert_eq!(e.code, "scene-not-found");
}

#[tokio::test]
async fn scene_error_points_at_the_authors_line_with_a_trimmed_traceback() {
    let h = Harness::new();
    let e = user_error(
        h.fails(
            &spec(Engine::Manim, &fixture("scene_error.py")),
            &h.config.limits,
        )
        .await,
    );
    assert_eq!(e.code, "scene-error");
    assert_eq!(e.exception.as_deref(), Some("ZeroDivisionError"));
    assert_eq!(e.line, Some(5));
    assert_eq!(e.scene.as_deref(), Some("Broken"));
    let lines: Vec<u32> = e.traceback.iter().map(|f| f.line).collect();
    assert_eq!(
        lines,
        [11, 5],
        "only the author's frames: {:?}",
        e.traceback
    );
    assert!(e.traceback.iter().all(|f| f.file == "scene.py"));
    assert_eq!(e.traceback[0].code, "value = ratio(1, 0)");

    // An exception while the file is imported is the author's too.
    let e = user_error(
        h.fails(
            &spec(Engine::Manim, &fixture("import_error.py")),
            &h.config.limits,
        )
        .await,
    );
    assert_eq!((e.code.as_str(), e.line), ("scene-error", Some(3)));
    assert_eq!(e.exception.as_deref(), Some("KeyError"));
    h.assert_clean();
}

#[tokio::test]
async fn manimgl_scene_error_has_the_same_shape() {
    let h = Harness::new();
    let code = "from manimlib import *\n\nclass G(Scene):\n    def construct(self):\n        self.play(ShowCreation(Circle()), run_time=0.2)\n        raise ValueError('nope')\n";
    let e = user_error(
        h.fails(&spec(Engine::Manimgl, code), &h.config.limits)
            .await,
    );
    assert_eq!((e.code.as_str(), e.line), ("scene-error", Some(6)));
    assert_eq!(e.exception.as_deref(), Some("ValueError"));
}

#[tokio::test]
async fn latex_errors_carry_the_tex_message_and_expression() {
    let h = Harness::new();
    let e = user_error(
        h.fails(
            &spec(Engine::Manim, &fixture("ce_latex_error.py")),
            &h.config.limits,
        )
        .await,
    );
    assert_eq!(e.code, "latex-error");
    assert_eq!(e.line, Some(7), "{e:?}");
    assert!(
        e.tex_error
            .as_deref()
            .unwrap()
            .contains("Undefined control sequence"),
        "{e:?}"
    );
    assert_eq!(e.expression.as_deref(), Some(r"\notacommand{x}"));

    let e = user_error(
        h.fails(
            &spec(Engine::Manimgl, &fixture("gl_latex_error.py")),
            &h.config.limits,
        )
        .await,
    );
    assert_eq!(e.code, "latex-error");
    assert_eq!(e.line, Some(6), "{e:?}");
    assert!(
        e.tex_error
            .as_deref()
            .unwrap()
            .contains("Undefined control sequence"),
        "{e:?}"
    );
    assert!(e
        .expression
        .as_deref()
        .unwrap()
        .contains(r"\notacommand{x}"));
    h.assert_clean();
}

#[tokio::test]
async fn a_scene_that_plays_nothing_gives_a_still_and_says_so() {
    let h = Harness::new();
    let (r, _) = h.ok(&spec(Engine::Manim, &fixture("still.py"))).await;
    assert!(r.media.still);
    assert_eq!(r.output.extension().unwrap(), "png");
    let notice = r.media.notice.expect("a notice");
    assert_eq!(notice.code, "no-animation");
    assert_eq!(&std::fs::read(&r.output).unwrap()[..4], b"\x89PNG");

    let gl = "from manimlib import *\n\nclass S(Scene):\n    def construct(self):\n        self.add(Square())\n";
    let (r, _) = h.ok(&spec(Engine::Manimgl, gl)).await;
    assert!(r.media.still);
    assert_eq!(r.media.notice.unwrap().code, "no-animation");
}

#[tokio::test]
async fn seeded_renders_are_reproducible() {
    let h = Harness::new();
    let code = "from manim import *\nimport random\n\nclass R(Scene):\n    def construct(self):\n        self.add(Dot(RIGHT * random.uniform(-3, 3)))\n        raise RuntimeError(f'x={random.random()}')\n";
    let mut s = spec(Engine::Manim, code);
    s.seed = Some(7);
    let a = user_error(h.fails(&s, &h.config.limits).await).message;
    let b = user_error(h.fails(&s, &h.config.limits).await).message;
    assert_eq!(a, b);
    s.seed = Some(8);
    let c = user_error(h.fails(&s, &h.config.limits).await).message;
    assert_ne!(a, c);
}

#[tokio::test]
async fn preview_encoding_makes_the_same_video_faster() {
    let h = Harness::new();
    let mut s = spec(Engine::Manim, &fixture("ce_shapes.py"));
    s.encoding = manimd::spec::Encoding::Preview;
    let (r, _) = h.ok(&s).await;
    assert_video(&r.output, "h264", LOW, 15.0, 3.0).await;
    let mut s = spec(Engine::Manimgl, &fixture("gl_shapes.py"));
    s.encoding = manimd::spec::Encoding::Preview;
    let (r, _) = h.ok(&s).await;
    assert_video(&r.output, "h264", LOW, 15.0, 3.0).await;
}

/// A whole-core CPU limit keeps the running job on cores of its own (the
/// scene reports the affinity it runs with, as its error's message);
/// another limit leaves it free to run anywhere under its quota.
#[tokio::test]
async fn a_whole_core_cpu_limit_runs_the_job_on_cores_of_its_own() {
    let h = Harness::new();
    let code = "from manim import *\nimport os\n\n\
class Where(Scene):\n    def construct(self):\n        \
raise RuntimeError(f\"cores {len(os.sched_getaffinity(0))}\")\n";
    let cores_here = std::thread::available_parallelism().unwrap().get();
    let mut limits = h.config.limits.clone();
    for (millis, expect) in [(1000, 1), (1500, cores_here)] {
        limits.cpu_millis = Some(millis);
        let e = user_error(h.fails(&spec(Engine::Manim, code), &limits).await);
        assert_eq!(e.exception.as_deref(), Some("RuntimeError"), "{e:?}");
        assert!(
            e.message.contains(&format!("cores {expect}")),
            "{millis} thousandths of a CPU: {}",
            e.message
        );
    }
    h.assert_clean();
}
