//! The replaced system's own client (`SwiftManimClient.swift`, an actor over
//! URLSession) replayed against manimd: its exact requests (JSON with nil
//! keys left out, as its encoder writes them) and its exact decoding rules
//! (every key of its structs required; 200 is the video, 400, 422 and 500
//! an `APIError { detail }`, any other status "Unexpected status code").

use crate::common;

use std::path::Path;

use common::mock_llm::{MockLlm, Reply};
use common::server::TestServer;
use manimd::api::Compat;
use manimd::config::Config;
use manimd::llm::LlmConfig;
use manimd::server::ServeOptions;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The client's `ServerHealth`: no defaults, so a missing key fails the
/// decoding, as it does for Swift's `JSONDecoder`.
#[derive(Debug, Deserialize)]
struct ServerHealth {
    status: String,
    service: String,
}

/// The client's `APIError`.
#[derive(Debug, Deserialize)]
struct ApiError {
    detail: String,
}

/// What the client makes of an answer.
#[derive(Debug)]
enum Answer {
    Video(Vec<u8>),
    /// 400, 422 or 500 with the `APIError` it decoded.
    Failed(u16, String),
    /// "Unexpected status code".
    Unexpected(u16),
}

impl Answer {
    fn video(self) -> Vec<u8> {
        match self {
            Answer::Video(bytes) => bytes,
            other => panic!("expected the video, got {other:?}"),
        }
    }

    /// The status and `detail` of an `APIError`, which must not be empty.
    fn failed(self) -> (u16, String) {
        match self {
            Answer::Failed(status, detail) if !detail.is_empty() => (status, detail),
            other => panic!("expected an APIError with a detail, got {other:?}"),
        }
    }
}

/// The client, as it calls and decodes.
struct SwiftClient {
    base: String,
    http: reqwest::Client,
}

impl SwiftClient {
    fn new(base: &str) -> SwiftClient {
        SwiftClient {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    fn of(server: &TestServer) -> SwiftClient {
        SwiftClient::new(&server.url)
    }

    /// `ServerHealth`, or why it did not decode.
    async fn health(&self) -> Result<ServerHealth, String> {
        let r = self.http.get(self.url("/health")).send().await;
        let bytes = r.unwrap().bytes().await.unwrap();
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    /// The client's health check: the decoding succeeds and the status
    /// starts with `ALIVE`.
    async fn is_healthy(&self) -> bool {
        self.health()
            .await
            .is_ok_and(|h| h.status.starts_with("ALIVE"))
    }

    async fn render(
        &self,
        code: &str,
        scene_name: Option<&str>,
        quality: &str,
        format: &str,
    ) -> Answer {
        let fields = [
            ("code", Some(code)),
            ("scene_name", scene_name),
            ("quality", Some(quality)),
            ("format", Some(format)),
        ];
        self.post("/render", &encode(&fields)).await
    }

    async fn generate(
        &self,
        prompt: &str,
        quality: &str,
        format: &str,
        api_key: Option<&str>,
    ) -> Answer {
        let fields = [
            ("prompt", Some(prompt)),
            ("quality", Some(quality)),
            ("format", Some(format)),
            ("api_key", api_key),
        ];
        self.post("/generate", &encode(&fields)).await
    }

    async fn post(&self, path: &str, body: &str) -> Answer {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        match status {
            200 => Answer::Video(bytes.to_vec()),
            400 | 422 | 500 => match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(e) => Answer::Failed(status, e.detail),
                Err(e) => panic!(
                    "the client cannot decode APIError from {status} ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                ),
            },
            other => Answer::Unexpected(other),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The body as the client's `JSONEncoder` writes it: nil keys left out, and
/// `/` escaped as `\/` (Foundation's default).
fn encode(fields: &[(&str, Option<&str>)]) -> String {
    let map: Map<String, Value> = fields
        .iter()
        .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), Value::from(v))))
        .collect();
    serde_json::to_string(&map).unwrap().replace('/', "\\/")
}

fn options(compat: Option<Compat>) -> ServeOptions {
    ServeOptions {
        workers: 2,
        warm_pool: 0,
        compat,
        ..ServeOptions::default()
    }
}

/// One second of a circle, in each engine; `1 / 2` makes the client escape a slash.
const CE: &str = "from manim import *\n\n\nclass Circles(Scene):\n    def construct(self):\n        self.play(Create(Circle(radius=1 / 2)), run_time=1)\n";
const GL: &str = "from manimlib import *\n\n\nclass CirclesGL(Scene):\n    def construct(self):\n        self.play(ShowCreation(Circle(radius=1 / 2)), run_time=1)\n";

/// A NameError at line 7.
const NAME_ERROR: &str = "from manim import *\n\n\nclass Broken(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.2)\n        self.play(Create(undefined_shape))\n";

/// Does not parse: line 6.
const SYNTAX_ERROR: &str =
    "from manimlib import *\n\n\nclass Bad(Scene):\n    def construct(self):\n        x = = 1\n";

/// Checks that `bytes` are a one-second 854x480 video of `format`.
async fn assert_is(bytes: &[u8], format: &str, dir: &Path, name: &str) {
    let path = dir.join(format!("{name}.{format}"));
    std::fs::write(&path, bytes).unwrap();
    match format {
        "mp4" | "mov" => {
            // The ftyp box's major brand tells QuickTime from MPEG-4.
            assert_eq!(&bytes[4..8], b"ftyp", "{name}");
            let quicktime = &bytes[8..12] == b"qt  ";
            assert_eq!(
                quicktime,
                format == "mov",
                "{name}: brand {:?}",
                &bytes[8..12]
            );
            common::assert_video(&path, "h264", (854, 480), 15.0, 1.0).await;
        }
        "gif" => {
            assert_eq!(&bytes[..6], b"GIF89a", "{name}");
            // A GIF's delays are in hundredths: 15 fps is not exact.
            let p = common::probe(&path).await;
            assert_eq!(
                (p.codec.as_str(), p.width, p.height),
                ("gif", 854, 480),
                "{p:?}"
            );
            assert!((p.duration - 1.0).abs() < 0.15, "{p:?}");
        }
        other => unreachable!("{other}"),
    }
}

#[tokio::test]
async fn health_decodes_and_passes_the_clients_check_only_with_compat_manim_api() {
    let mut own = TestServer::start(options(None)).await;
    let client = SwiftClient::of(&own);
    let h = client.health().await.expect("both keys are there");
    assert_eq!((h.status.as_str(), h.service.as_str()), ("ok", "manimd"));
    assert!(!client.is_healthy().await, "manimd's own form is not ALIVE");
    own.stop().await;

    let mut compat = TestServer::start(options(Some(Compat::ManimApi))).await;
    let client = SwiftClient::of(&compat);
    let h = client.health().await.expect("both keys are there");
    let version = env!("CARGO_PKG_VERSION").replace('.', "_");
    assert_eq!(h.status, format!("ALIVE_V{version}"));
    assert_eq!(h.service, "manim-video-streaming-api");
    assert!(client.is_healthy().await);
    // The rest of manimd's answer is still there for its own tools.
    let (_, full) = compat.get("/health").await;
    assert!(full["queue"]["capacity"].is_u64(), "{full}");

    // The document says so: `service` is required, and the replaced
    // system's calls answer errors with `detail`.
    let (_, doc) = compat.get("/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    let required = schemas["Health"]["required"].as_array().unwrap();
    assert!(required.contains(&Value::from("service")), "{required:?}");
    assert!(schemas["LegacyErrorBody"]["required"]
        .as_array()
        .unwrap()
        .contains(&Value::from("detail")));
    for path in ["/render", "/generate"] {
        let body = &doc["paths"][path]["post"]["responses"]["422"]["content"]["application/json"];
        assert_eq!(
            body["schema"]["$ref"], "#/components/schemas/LegacyErrorBody",
            "{path}"
        );
    }
    compat.stop().await;
}

#[tokio::test]
async fn the_binary_takes_compat_from_manimd_compat() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) =
        common::server::spawn_binary(&dir.path().join("data"), &[("MANIMD_COMPAT", "manim-api")])
            .await;
    assert!(SwiftClient::new(&url).is_healthy().await);
    child.kill().await.unwrap();

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(["serve", "--compat", "manim-apy"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manim-api"), "the choices are named: {err}");
}

#[tokio::test]
async fn renders_of_both_engines_in_every_format_the_client_offers() {
    let mut s = TestServer::start(options(Some(Compat::ManimApi))).await;
    let client = SwiftClient::of(&s);
    // Manim Community's scene by name; ManimGL's with scene_name left out.
    let calls = ["mp4", "gif", "mov"].into_iter().flat_map(|format| {
        [
            ("ce", CE, Some("Circles"), format),
            ("gl", GL, None, format),
        ]
    });
    let calls: Vec<_> = calls.collect();
    let answers = futures::future::join_all(
        calls
            .iter()
            .map(|(_, code, scene, format)| client.render(code, *scene, "low", format)),
    )
    .await;
    for ((engine, _, _, format), answer) in calls.iter().zip(answers) {
        assert_is(&answer.video(), format, &s.config.data_dir, engine).await;
    }
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn render_errors_decode_as_api_error_with_the_line_in_detail() {
    let mut s = TestServer::start(options(None)).await;
    let client = SwiftClient::of(&s);

    let (status, detail) = client.render(NAME_ERROR, None, "low", "mp4").await.failed();
    assert_eq!(status, 422);
    assert!(detail.starts_with("line 7: NameError"), "{detail}");
    assert!(detail.contains("undefined_shape"), "{detail}");

    let (status, detail) = client
        .render(SYNTAX_ERROR, None, "low", "gif")
        .await
        .failed();
    assert_eq!(status, 422);
    assert!(detail.starts_with("line 6: "), "{detail}");

    // Malformed: not JSON, a wrong type, a scene name that is no identifier.
    let (status, detail) = client.post("/render", "{\"code\": ").await.failed();
    assert_eq!(status, 400, "{detail}");
    let (status, detail) = client.post("/render", "{\"code\": 3}").await.failed();
    assert_eq!(status, 400, "{detail}");
    let answer = client.render(CE, Some("not a name"), "low", "mp4").await;
    assert_eq!(answer.failed().0, 400);

    // The error object is still beside `detail`, and /v1 is unchanged.
    let (_, e) = s.post("/render", &serde_json::json!({"code": ""})).await;
    assert_eq!(
        (e["error"]["field"].as_str(), e["detail"].as_str()),
        (Some("code"), Some("code is empty"))
    );
    let (_, e) = s
        .post("/v1/renders", &serde_json::json!({"code": ""}))
        .await;
    assert_eq!(
        e,
        serde_json::json!({"error": {"code": "invalid-request", "message": "code is empty", "field": "code"}})
    );
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn an_installation_fault_is_a_500_the_client_decodes() {
    // A broken engine install (its Python exits at once): the
    // installation's fault, never the scene's. (With none at all the
    // server refuses to start; see `manimd doctor`.)
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().join("data"));
    config.runtime_dir = dir.path().join("broken-runtime");
    let venv = manimd::runtime::Runtime::new(&config.runtime_dir).venv(manimd::spec::Engine::Manim);
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(venv.join(".manimd-complete"), "broken").unwrap();
    let python = venv.join("bin/python");
    std::fs::write(&python, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&python, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut s = TestServer::start_on(config, options(None)).await;
    let client = SwiftClient::of(&s);
    let (status, detail) = client.render(CE, None, "low", "mp4").await.failed();
    assert_eq!(status, 500);
    assert_eq!(detail, manimd::job_error::INTERNAL_MESSAGE);
    s.stop().await;
}

const PLAN: &str = "1. A circle is drawn.";

/// A server whose model provider is `llm`, with the Groq preset (the
/// replaced system's) at `groq` instead of Groq itself.
async fn with_models(llm: LlmConfig, groq: &MockLlm) -> TestServer {
    TestServer::start(ServeOptions {
        llm,
        legacy_llm: LlmConfig {
            base_url: Some(groq.base_url.clone()),
            ..LlmConfig::legacy()
        },
        ..options(None)
    })
    .await
}

/// Both requests of a generation (plan, code) went to `mock` with the
/// caller's key, for `model`.
fn assert_asked(mock: &MockLlm, model: &str) {
    let asked = mock.requests();
    assert_eq!(asked.len(), 2);
    for r in &asked {
        assert_eq!(r.authorization.as_deref(), Some("Bearer gsk_caller"));
        assert_eq!(r.body["model"], model);
    }
}

fn fenced(code: &str) -> Reply {
    Reply::Text(format!("```python\n{code}```\n"))
}

#[tokio::test]
async fn generate_with_a_provider_uses_it_with_the_callers_key_and_errors_carry_detail() {
    let configured = MockLlm::start(vec![Reply::Text(PLAN.into()), fenced(CE)]).await;
    let groq = MockLlm::start(vec![]).await;
    let llm = LlmConfig {
        base_url: Some(configured.base_url.clone()),
        model: "mock-model".into(),
        ..LlmConfig::default()
    };
    let mut s = with_models(llm, &groq).await;
    let client = SwiftClient::of(&s);
    let video = client
        .generate("a circle", "low", "mp4", Some("gsk_caller"))
        .await;
    assert_is(&video.video(), "mp4", &s.config.data_dir, "generated").await;
    // A configured provider wins: today's behaviour, the caller's key sent to it.
    assert_asked(&configured, "mock-model");
    assert!(groq.requests().is_empty());

    // Every attempt uses the other engine: generation-failed, with its line.
    configured.push(Reply::Text(PLAN.into()));
    for _ in 0..3 {
        configured.push(fenced(GL));
    }
    let (status, detail) = client
        .generate("a circle", "low", "gif", None)
        .await
        .failed();
    assert_eq!(status, 422);
    assert!(detail.starts_with("line 1: "), "{detail}");

    let (status, detail) = client.generate("  ", "low", "mp4", None).await.failed();
    assert_eq!(status, 400, "{detail}");
    // The provider's refusal is a 502: not one the client decodes.
    configured.push(Reply::Status(401, None));
    let answer = client.generate("a circle", "low", "mp4", None).await;
    assert!(matches!(answer, Answer::Unexpected(502)), "{answer:?}");
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn generate_without_a_provider_takes_the_callers_key_to_groq() {
    let groq = MockLlm::start(vec![Reply::Text(PLAN.into()), fenced(CE)]).await;
    let mut s = with_models(LlmConfig::default(), &groq).await;
    let client = SwiftClient::of(&s);
    // Without a key there is no model to ask: 503, unexpected to the client.
    let answer = client.generate("a circle", "low", "mov", None).await;
    assert!(matches!(answer, Answer::Unexpected(503)), "{answer:?}");
    // The /v1 API is unchanged: a key alone does not say where the model is.
    let body = serde_json::json!({"prompt": "a circle", "api_key": "gsk_caller"});
    let (status, e) = s.post("/v1/generations", &body).await;
    assert_eq!(
        (status.as_u16(), &e["error"]["code"]),
        (503, &Value::from("llm-not-configured"))
    );
    assert!(groq.requests().is_empty());

    // With the caller's key, the model is Groq's, as it was for this client.
    let video = client
        .generate("a circle", "low", "mov", Some("gsk_caller"))
        .await;
    assert_is(&video.video(), "mov", &s.config.data_dir, "groq").await;
    assert_asked(&groq, "llama-3.3-70b-versatile");
    s.stop().await;
    s.assert_clean();
}
