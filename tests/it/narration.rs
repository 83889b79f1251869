//! Narration: `narrate()` lines spoken into the video's sound track, the
//! scene waiting for its speech, WebVTT subtitles, both TTS providers.

use crate::common;

use common::server::TestServer;

use std::path::Path;

use common::{probe, spec, top_level_boxes, Harness};
use manimd::narration::{Cue, Tts};
use manimd::render::Rendered;
use manimd::spec::{Engine, RenderSpec};

const CE_SCENE: &str = r#"from manim import *

class Narrated(Scene):
    def construct(self):
        narrate("Here is a circle.")
        self.play(Create(Circle()), run_time=0.5)
        narrate("And now a square.")
        self.play(Create(Square()), run_time=0.5)
"#;

const GL_SCENE: &str = r#"from manimlib import *

class Narrated(Scene):
    def construct(self):
        narrate("Here is a circle.")
        self.play(ShowCreation(Circle()), run_time=0.5)
        narrate("And now a square.")
        self.play(ShowCreation(Square()), run_time=0.5)
"#;

/// How long espeak-ng says `text`, measured apart from the render.
async fn espeak_secs(text: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("line.wav");
    Tts::new(Default::default())
        .speak(text, &dest)
        .await
        .unwrap()
}

fn narrated(engine: Engine, code: &str) -> RenderSpec {
    RenderSpec {
        narration: true,
        ..spec(engine, code)
    }
}

/// The checks every narrated two-line render must pass.
async fn check_two_lines(r: &Rendered) {
    let narration = r.narration.as_ref().expect("a narration");
    let texts: Vec<&str> = narration.cues.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["Here is a circle.", "And now a square."]);
    let [first, second]: &[Cue; 2] = narration.cues.as_slice().try_into().unwrap();
    // Each line lasts as long as its speech.
    for cue in [first, second] {
        let speech = espeak_secs(&cue.text).await;
        assert!(
            (cue.end - cue.start - speech).abs() < 0.01,
            "{cue:?} vs {speech} s of speech"
        );
    }
    // The first line starts the video; the second waits for it (its
    // animation, 0.5 s, is shorter than the speech), within a frame.
    assert!(first.start.abs() < 1e-6, "{first:?}");
    assert!(first.end > 0.5, "{first:?}");
    assert!(
        second.start >= first.end - 1e-3 && second.start - first.end < 1.0 / 15.0 + 1e-3,
        "{narration:?}"
    );

    // The sound track: AAC, ending with the last line.
    let (codec, audio_secs) = common::probe_audio(&r.output)
        .await
        .expect("an audio stream");
    assert_eq!(codec, "aac");
    assert!(
        (audio_secs - second.end).abs() < 0.25,
        "audio {audio_secs} s, last line ends at {} s",
        second.end
    );
    // Two half-second animations, lengthened to the speech.
    let video = probe(&r.output).await;
    assert_eq!(video.codec, "h264");
    assert!(
        video.duration >= second.end - 1.0 / 15.0,
        "video {} s, last line ends at {} s",
        video.duration,
        second.end
    );
    assert!(video.duration > 1.5, "{video:?}");
    let boxes = top_level_boxes(&r.output);
    let moov = boxes.iter().position(|b| b == "moov").unwrap();
    let mdat = boxes.iter().position(|b| b == "mdat").unwrap();
    assert!(moov < mdat, "faststart: {boxes:?}");

    // The subtitles say the same.
    let vtt = std::fs::read_to_string(&narration.subtitles).unwrap();
    let read = common::read_vtt(&vtt);
    assert_eq!(read.len(), 2, "{vtt}");
    for ((start, end, text), cue) in read.iter().zip(&narration.cues) {
        assert_eq!(text, &cue.text);
        assert!(
            (start - cue.start).abs() < 0.001 && (end - cue.end).abs() < 0.001,
            "{vtt}"
        );
    }
}

#[tokio::test]
async fn manim_ce_narration_is_spoken_into_the_video_with_subtitles() {
    let h = Harness::new();
    let (r, _) = h.ok(&narrated(Engine::Manim, CE_SCENE)).await;
    check_two_lines(&r).await;
    h.assert_clean();
}

#[tokio::test]
async fn manimgl_narration_is_spoken_into_the_video_with_subtitles() {
    let h = Harness::new();
    let (r, _) = h.ok(&narrated(Engine::Manimgl, GL_SCENE)).await;
    check_two_lines(&r).await;
    h.assert_clean();
}

/// What the mock speech service was sent: the Authorization header and the
/// JSON body of each request.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, serde_json::Value)>>>;

/// Seconds of speech the mock service returns per word.
const MOCK_SECS_PER_WORD: f64 = 0.6;

/// How the mock speech service answers.
#[derive(Clone, Copy)]
enum Mock {
    /// A sine tone as WAV, `MOCK_SECS_PER_WORD` per word of input.
    Speak,
    /// 500 with a body that names internals.
    Fail,
    /// Never: it only says that a request arrived.
    Hang,
}

type MockState = (Received, Mock, std::sync::Arc<tokio::sync::Notify>);

async fn mock_speech(
    axum::extract::State((received, mode, arrived)): axum::extract::State<MockState>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let words = body["input"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .count();
    received.lock().unwrap().push((auth, body));
    arrived.notify_one();
    match mode {
        Mock::Speak => {
            let secs = words as f64 * MOCK_SECS_PER_WORD;
            let wav = manimd::narration::tts::sine_wav(secs, 24_000, 440.0);
            ([("content-type", "audio/wav")], wav).into_response()
        }
        Mock::Fail => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "upstream exploded at 10.1.2.3",
        )
            .into_response(),
        Mock::Hang => std::future::pending().await,
    }
}

/// A local OpenAI-compatible `/v1/audio/speech`; `arrived` is notified of
/// each request.
async fn mock_speech_service(
    mode: Mock,
) -> (String, Received, std::sync::Arc<tokio::sync::Notify>) {
    let received: Received = Default::default();
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let app = axum::Router::new()
        .route("/v1/audio/speech", axum::routing::post(mock_speech))
        .with_state((received.clone(), mode, arrived.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received, arrived)
}

/// A harness whose renderer speaks through the OpenAI-compatible `base_url`.
fn openai_harness(base_url: String, key: &str) -> Harness {
    let dir = tempfile::Builder::new()
        .prefix("manimd-test-")
        .tempdir()
        .unwrap();
    let mut config = manimd::config::Config::for_tests(dir.path().join("data"));
    config.tts = manimd::narration::TtsConfig::OpenAi {
        base_url,
        model: "tts-1".into(),
        voice: "alloy".into(),
        api_key: manimd::secret::Secret::new(key),
    };
    let renderer = manimd::render::Renderer::new(&config).unwrap();
    Harness {
        dir,
        config,
        renderer,
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(files_under(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn openai_compatible_speech_gets_the_key_as_bearer_and_fits_computed_lines() {
    const KEY: &str = "sk-test-4f9c1e-never-leaks";
    let (base_url, received, _) = mock_speech_service(Mock::Speak).await;
    let h = openai_harness(base_url, KEY);
    assert!(!format!("{:?}", h.config.tts).contains(KEY));
    // The second line is computed at run time: the scene waits for an
    // estimate (4 words: 1.9 s), and the 2.4 s of speech are sped up to fit.
    let code = r#"from manim import *

class Narrated(Scene):
    def construct(self):
        narrate("Here is a circle.")
        self.play(Create(Circle()), run_time=0.5)
        n = 3
        narrate(f"We count to {n}.")
"#;
    let (r, events) = h.ok(&narrated(Engine::Manim, code)).await;
    let narration = r.narration.as_ref().unwrap();
    let cues: Vec<(f64, f64, &str)> = narration
        .cues
        .iter()
        .map(|c| (c.start, c.end, c.text.as_str()))
        .collect();
    assert_eq!(cues.len(), 2, "{cues:?}");
    let (s0, e0, t0) = cues[0];
    let (s1, e1, t1) = cues[1];
    assert_eq!((t0, t1), ("Here is a circle.", "We count to 3."));
    assert!(
        s0.abs() < 1e-6 && (e0 - 4.0 * MOCK_SECS_PER_WORD).abs() < 0.01,
        "{cues:?}"
    );
    assert!(s1 >= e0 - 1e-3 && s1 - e0 < 1.0 / 15.0 + 1e-3, "{cues:?}");
    // Sped up from 2.4 s into the 1.9 s the scene waited.
    assert!((e1 - s1 - 1.9).abs() < 0.01, "{cues:?}");
    let (codec, audio_secs) = common::probe_audio(&r.output).await.unwrap();
    assert_eq!(codec, "aac");
    assert!(
        (audio_secs - e1).abs() < 0.25,
        "audio {audio_secs} s, cues {cues:?}"
    );
    let video = probe(&r.output).await;
    assert!(video.duration >= e1 - 1.0 / 15.0, "{video:?} {cues:?}");

    // The literal was spoken before the render, the computed line after it;
    // each request carried the key as a Bearer token and asked for WAV.
    let got = received.lock().unwrap().clone();
    let inputs: Vec<&str> = got
        .iter()
        .map(|(_, b)| b["input"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["Here is a circle.", "We count to 3."]);
    for (auth, body) in &got {
        assert_eq!(auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
        assert_eq!(body["model"], "tts-1");
        assert_eq!(body["voice"], "alloy");
        assert_eq!(body["response_format"], "wav");
    }
    // The key is nowhere else: not in events, results, or any file the
    // render left (video, subtitles, speech clips).
    let shown = format!("{events:?} {:?} {:?}", r.media, narration);
    assert!(!shown.contains(KEY));
    for file in files_under(h.dir.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "{} contains the key",
            file.display()
        );
    }
    h.assert_clean();
}

#[tokio::test]
async fn server_serves_subtitles_of_narrated_jobs_only() {
    use serde_json::json;
    let mut s = TestServer::start(manimd::server::ServeOptions {
        workers: 1,
        warm_pool: 0,
        ..Default::default()
    })
    .await;
    let (url, client) = (s.url.clone(), s.client.clone());
    let server = &s;
    let submit = |body: serde_json::Value| async move {
        let (status, job) = server.post("/v1/renders", &body).await;
        (status.as_u16(), job)
    };
    let code = "from manim import *\n\nclass Hello(Scene):\n    def construct(self):\n        narrate(\"Hello there.\")\n        self.play(FadeIn(Dot()), run_time=0.2)\n";

    // A GIF has no sound track.
    let (status, body) = submit(json!({"code": code, "format": "gif", "narration": true})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid-request");
    assert_eq!(body["error"]["field"], "narration");

    let (status, job) = submit(json!({"code": code, "narration": true})).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(
        job["links"]["subtitles"],
        format!("/v1/renders/{id}/subtitles")
    );
    let early = client
        .get(format!("{url}/v1/renders/{id}/subtitles"))
        .send()
        .await
        .unwrap();
    if early.status() != 200 {
        // Not succeeded yet: 404 with the typed code.
        assert_eq!(early.status(), 404);
        let body: serde_json::Value = early.json().await.unwrap();
        assert_eq!(body["error"]["code"], "no-subtitles");
    }
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let cues = job["result"]["narration"]["cues"].as_array().unwrap();
    assert_eq!(cues.len(), 1, "{job}");
    assert_eq!(cues[0]["text"], "Hello there.");
    assert_eq!(
        job["result"]["narration"]["subtitles_url"],
        format!("/v1/renders/{id}/subtitles")
    );

    let r = client
        .get(format!("{url}/v1/renders/{id}/subtitles"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/vtt"));
    let vtt = r.text().await.unwrap();
    let read = common::read_vtt(&vtt);
    assert_eq!(read.len(), 1, "{vtt}");
    assert_eq!(read[0].2, "Hello there.");
    let end = cues[0]["end"].as_f64().unwrap();
    assert!((read[0].1 - end).abs() < 0.001, "{vtt} vs {job}");

    // The video carries the speech.
    let bytes = client
        .get(format!("{url}/v1/renders/{id}/video"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let video = s.config.data_dir.join("narrated.mp4");
    std::fs::write(&video, &bytes).unwrap();
    let (codec, audio_secs) = common::probe_audio(&video).await.expect("an audio stream");
    assert_eq!(codec, "aac");
    assert!((audio_secs - end).abs() < 0.25, "{audio_secs} vs {end}");

    // The same request again is a cache hit, with subtitles of its own.
    let (status, hit) = submit(json!({"code": code, "narration": true})).await;
    assert_eq!(status, 202, "{hit}");
    let hit_id = hit["id"].as_str().unwrap();
    assert_eq!(hit["result"]["cache_hit"], true);
    let r = client
        .get(format!("{url}/v1/renders/{hit_id}/subtitles"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), vtt);

    // Without narration: the same code renders, silently, with no subtitles.
    let (status, plain) = submit(json!({"code": code})).await;
    assert_eq!(status, 202, "{plain}");
    let plain_id = plain["id"].as_str().unwrap().to_owned();
    assert!(plain["links"].get("subtitles").is_none(), "{plain}");
    let plain = s.wait_for(&plain_id, None).await;
    assert_eq!(plain["status"], "succeeded", "{plain}");
    assert!(plain["result"].get("narration").is_none(), "{plain}");
    let r = client
        .get(format!("{url}/v1/renders/{plain_id}/subtitles"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no-subtitles");

    let doc: serde_json::Value = client
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/renders/{id}/subtitles"]["get"].is_object());
    let caps: serde_json::Value = client
        .get(format!("{url}/v1/capabilities"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(caps["narration"]["provider"], "espeak");
    assert_eq!(caps["narration"]["formats"], json!(["mp4", "mov", "webm"]));

    s.stop().await;
}

#[tokio::test]
async fn speech_longer_than_the_animations_lengthens_the_scene() {
    let h = Harness::new();
    let line = "This sentence takes much longer to say than the tiny animation that follows it.";
    let code = format!(
        "from manim import *\n\nclass Short(Scene):\n    def construct(self):\n        narrate({line:?})\n        self.play(FadeIn(Dot()), run_time=0.2)\n"
    );
    // Without narration, `narrate` does nothing: a 0.2 s video.
    let (plain, _) = h.ok(&spec(Engine::Manim, &code)).await;
    assert!(plain.narration.is_none());
    assert!(common::probe_audio(&plain.output).await.is_none());
    assert!((probe(&plain.output).await.duration - 0.2).abs() < 2.0 / 15.0);

    // With it, the scene waits for the speech; WebM gets Opus.
    let webm = RenderSpec {
        format: manimd::spec::Format::Webm,
        ..narrated(Engine::Manim, &code)
    };
    let (r, _) = h.ok(&webm).await;
    let speech = espeak_secs(line).await;
    assert!(speech > 2.0, "{speech}");
    let cues = &r.narration.as_ref().unwrap().cues;
    assert_eq!(cues.len(), 1);
    assert!((cues[0].end - speech).abs() < 0.01, "{cues:?} vs {speech}");
    let video = probe(&r.output).await;
    assert_eq!(video.codec, "vp9");
    assert!(
        video.duration >= speech - 1.0 / 15.0,
        "{video:?} vs {speech} s of speech"
    );
    let (codec, audio_secs) = common::probe_audio(&r.output).await.unwrap();
    assert_eq!(codec, "opus");
    assert!(
        (audio_secs - speech).abs() < 0.25,
        "{audio_secs} vs {speech}"
    );
    h.assert_clean();
}

#[tokio::test]
async fn lines_of_stitched_scenes_are_offset_by_the_scenes_before_them() {
    let h = Harness::new();
    let code = r#"from manim import *

class First(Scene):
    def construct(self):
        narrate("One.")
        self.play(FadeIn(Dot()), run_time=0.2)

class Second(Scene):
    def construct(self):
        self.play(FadeIn(Square()), run_time=0.6)
        narrate("Two.")
"#;
    let spec = RenderSpec {
        scenes: vec!["First".parse().unwrap(), "Second".parse().unwrap()],
        ..narrated(Engine::Manim, code)
    };
    let (r, _) = h.ok(&spec).await;
    let cues = &r.narration.as_ref().unwrap().cues;
    let one = espeak_secs("One.").await;
    let two = espeak_secs("Two.").await;
    assert!(one > 0.2, "{one}");
    // The first scene lasts as long as its line; the second line starts
    // 0.6 s into the second scene.
    assert!((cues[0].end - one).abs() < 0.01, "{cues:?}");
    assert!(
        (cues[1].start - (one + 0.6)).abs() < 2.0 / 15.0,
        "{cues:?}, first line {one} s"
    );
    assert!((cues[1].end - cues[1].start - two).abs() < 0.01, "{cues:?}");
    let video = probe(&r.output).await;
    assert!(
        video.duration >= cues[1].end - 2.0 / 15.0,
        "{video:?} {cues:?}"
    );
    let (_, audio_secs) = common::probe_audio(&r.output).await.unwrap();
    assert!(
        (audio_secs - cues[1].end).abs() < 0.25,
        "{audio_secs} {cues:?}"
    );
    h.assert_clean();
}

#[tokio::test]
async fn a_failing_speech_service_is_tts_failed_without_its_details() {
    let (base_url, received, _) = mock_speech_service(Mock::Fail).await;
    let h = openai_harness(base_url, "sk-test");
    let e = h
        .fails(&narrated(Engine::Manim, CE_SCENE), &h.config.limits)
        .await;
    assert_eq!(e.code(), "tts-failed");
    assert!(e.is_internal());
    // The log gets the provider's answer; clients only the code.
    assert!(e.to_string().contains("500"), "{e}");
    let shown = serde_json::to_string(&e.to_error()).unwrap();
    assert!(!shown.contains("10.1.2.3"), "{shown}");
    assert_eq!(received.lock().unwrap().len(), 1);
    h.assert_clean();
}

#[tokio::test]
async fn canceling_while_the_speech_is_made_stops_the_render() {
    let (base_url, _, arrived) = mock_speech_service(Mock::Hang).await;
    let h = openai_harness(base_url, "sk-test");
    let out = h.out_dir("canceled");
    let result = h
        .renderer
        .render(
            &narrated(Engine::Manim, CE_SCENE),
            None,
            &h.config.limits,
            &out,
            |_| {},
            arrived.notified(),
        )
        .await;
    match result {
        Err(manimd::render::RenderError::Stopped(manimd::sandbox::Stopped::Canceled)) => {}
        other => panic!("expected a cancel, got {:?}", other.map(|r| r.media)),
    }
    h.assert_clean();
}

#[tokio::test]
async fn speech_that_outlasts_the_wall_clock_is_a_timeout() {
    let (base_url, _, _) = mock_speech_service(Mock::Hang).await;
    let h = openai_harness(base_url, "sk-test");
    let mut limits = h.config.limits.clone();
    limits.wall_secs = 2;
    let e = h.fails(&narrated(Engine::Manim, CE_SCENE), &limits).await;
    assert_eq!(e.code(), "timeout", "{e}");
    h.assert_clean();
}
