//! Generation against a scripted model provider (`common::mock_llm`): the
//! real server on port 0, real sandboxes and renders, the model's answers
//! and failures scripted per test.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::mock_llm::{MockLlm, Reply, COMPLETION_TOKENS, PROMPT_TOKENS};
use common::server::Sse;
use manimd::config::Config;
use manimd::llm::LlmConfig;
use manimd::server::ServeOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// The common test server, started with a model provider, plus the calls
/// generation tests make.
struct TestServer(common::server::TestServer);

impl std::ops::Deref for TestServer {
    type Target = common::server::TestServer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for TestServer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// One worker, no warm pool, `llm` as given.
fn options(llm: LlmConfig) -> ServeOptions {
    ServeOptions {
        workers: 1,
        warm_pool: 0,
        grace: Duration::from_millis(200),
        llm,
        ..ServeOptions::default()
    }
}

impl TestServer {
    async fn start(llm: LlmConfig) -> TestServer {
        TestServer(common::server::TestServer::start(options(llm)).await)
    }

    async fn start_on(config: Config, llm: LlmConfig) -> TestServer {
        TestServer(common::server::TestServer::start_on(config, options(llm)).await)
    }

    async fn with_mock(mock: &MockLlm) -> TestServer {
        TestServer::start(llm_config(mock)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.0.get(path).await.1
    }

    async fn wait_running(&self, id: &str) {
        self.wait_for(id, Some("running")).await;
    }

    async fn generate(&self, body: Value) -> String {
        let (status, job) = self.post("/v1/generations", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        assert_eq!(job["kind"], "generation");
        job["id"].as_str().unwrap().to_owned()
    }

    async fn wait(&self, id: &str) -> Value {
        self.wait_for(id, None).await
    }

    /// Follows a job's events in the background; resolves once subscribed
    /// (the first event has arrived), the handle gives all events at the end.
    async fn follow(&self, id: &str) -> tokio::task::JoinHandle<Vec<(String, Value)>> {
        let r = self
            .client
            .get(format!("{}/v1/renders/{id}/events", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let mut sse = Sse::new(r);
        let first = sse.next().await.expect("the current state first");
        tokio::spawn(async move {
            let mut out = vec![first];
            while let Some(event) = sse.next().await {
                out.push(event);
            }
            out
        })
    }

    async fn video(&self, id: &str, name: &str) -> std::path::PathBuf {
        let r = self
            .client
            .get(format!("{}/v1/renders/{id}/video", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let path = self.config.data_dir.join(name);
        std::fs::write(&path, r.bytes().await.unwrap()).unwrap();
        path
    }
}

fn llm_config(mock: &MockLlm) -> LlmConfig {
    LlmConfig {
        base_url: Some(mock.base_url.clone()),
        model: "mock-model".into(),
        ..LlmConfig::default()
    }
}

const PLAN: &str = "1. A circle is drawn in the middle.";

/// A scene that renders one second of video.
const GOOD: &str = "from manim import *\n\n\nclass Gen(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=1)\n";

/// Fails when it runs: a NameError at line 6.
const NAME_ERROR: &str = "from manim import *\n\n\nclass Gen(Scene):\n    def construct(self):\n        self.play(Create(undefined_circle), run_time=1)\n";

fn fenced(code: &str) -> String {
    format!("Here is the scene:\n\n```python\n{code}```\n")
}

#[tokio::test]
async fn a_failing_scene_goes_back_with_its_error_and_line_and_the_fix_renders() {
    let gate = Arc::new(Notify::new());
    let mock = MockLlm::start(vec![
        Reply::Gated(Arc::clone(&gate), Box::new(Reply::Text(PLAN.into()))),
        Reply::Text(fenced(NAME_ERROR)),
        Reply::Text(fenced(GOOD)),
    ])
    .await;
    let s = TestServer::with_mock(&mock).await;
    let id = s
        .generate(json!({"prompt": "draw a circle", "quality": "low", "max_attempts": 3}))
        .await;
    let events = s.follow(&id).await;
    gate.notify_one();
    let job = s.wait(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // Every attempt is on the record with its code, error, cost and render time.
    let g = &job["generation"];
    assert_eq!(g["prompt"], "draw a circle");
    assert_eq!(g["storyboard"], PLAN);
    let attempts = g["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{g}");
    assert_eq!(attempts[0]["code"], NAME_ERROR);
    assert_eq!(attempts[0]["error"]["code"], "scene-error");
    assert_eq!(attempts[0]["error"]["line"], 6);
    assert_eq!(attempts[0]["failed_in"], "render");
    assert_eq!(attempts[1]["code"], GOOD);
    assert!(attempts[1]["error"].is_null());
    assert!(attempts[1]["render_secs"].as_f64().unwrap() > 0.0);
    for a in attempts {
        assert_eq!(a["prompt_tokens"], PROMPT_TOKENS);
        assert_eq!(a["completion_tokens"], COMPLETION_TOKENS);
    }
    assert_eq!(g["totals"]["prompt_tokens"], 3 * PROMPT_TOKENS);
    assert_eq!(g["totals"]["completion_tokens"], 3 * COMPLETION_TOKENS);
    assert!(g["totals"]["render_secs"].as_f64().unwrap() > 0.0);

    // The repair request carries the error's code, message and line, with the code around it.
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].body["stream"], true);
    assert_eq!(requests[1].body["model"], "mock-model");
    let repair = requests[2].last_message();
    let message = attempts[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("undefined_circle"), "{message}");
    assert!(
        repair.contains("scene-error") && repair.contains(message) && repair.contains("line 6"),
        "{repair}"
    );
    assert!(
        repair.contains(">    6 |         self.play(Create(undefined_circle), run_time=1)"),
        "{repair}"
    );

    // The video is the fixed scene's.
    let path = s.video(&id, "gen.mp4").await;
    common::assert_video(&path, "h264", (854, 480), 15.0, 1.0).await;

    // The stream showed every stage, the code as it came, each attempt.
    let events = events.await.unwrap();
    let stages: Vec<(String, u64)> = events
        .iter()
        .filter(|(n, _)| n == "stage")
        .map(|(_, v)| {
            (
                v["stage"].as_str().unwrap().to_owned(),
                v["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [
        ("planning", 0),
        ("writing", 1),
        ("checking", 1),
        ("rendering", 1),
        ("repairing", 2),
        ("checking", 2),
        ("rendering", 2),
    ]
    .iter()
    .map(|(s, n)| (s.to_string(), *n))
    .collect();
    assert_eq!(stages, expected);
    let streamed: String = events
        .iter()
        .filter(|(n, v)| n == "delta" && v["attempt"] == 2)
        .map(|(_, v)| v["text"].as_str().unwrap())
        .collect();
    assert!(streamed.contains("class Gen(Scene):"), "{streamed}");
    let outcomes: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "attempt")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0]["error"]["code"], "scene-error");
    assert!(outcomes[1]["error"].is_null());
    let (last, view) = events.last().unwrap();
    assert_eq!(
        (last.as_str(), view["status"].as_str()),
        ("status", Some("succeeded"))
    );
}

#[tokio::test]
async fn a_model_that_never_fixes_it_fails_after_max_attempts_with_every_attempt_recorded() {
    let forbidden = "from manim import *\nimport os\n\n\nclass Gen(Scene):\n    def construct(self):\n        self.play(Create(Circle()))\n";
    let mock = MockLlm::start(vec![
        Reply::Text(PLAN.into()),
        Reply::Text(fenced(NAME_ERROR)),
        Reply::Text(fenced(forbidden)),
        Reply::Text(fenced(NAME_ERROR)),
    ])
    .await;
    let s = TestServer::with_mock(&mock).await;
    let id = s
        .generate(json!({"prompt": "draw a circle", "max_attempts": 3}))
        .await;
    let job = s.wait(&id).await;
    assert_eq!(job["status"], "failed");
    let e = &job["error"];
    assert_eq!(e["code"], "generation-failed", "{e}");
    assert_eq!(e["attempts"], 3);
    assert_eq!(e["last_error"]["code"], "scene-error");
    assert_eq!(e["line"], 6);
    let attempts = job["generation"]["attempts"].as_array().unwrap();
    let seen: Vec<(u64, &str, &str, Option<u64>)> = attempts
        .iter()
        .map(|a| {
            (
                a["number"].as_u64().unwrap(),
                a["code"].as_str().unwrap(),
                a["error"]["code"].as_str().unwrap(),
                a["error"]["line"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, NAME_ERROR, "scene-error", Some(6)),
            (2, forbidden, "forbidden-import", Some(2)),
            (3, NAME_ERROR, "scene-error", Some(6)),
        ]
    );
    assert!(
        attempts[1]["render_secs"].is_null(),
        "no render for a static error"
    );
    assert_eq!(mock.requests().len(), 4);
    assert_eq!(mock.left(), 0);
}

#[tokio::test]
async fn wrong_engine_api_is_caught_statically_and_repaired_without_a_render() {
    let gl_api = GOOD.replace("Create(", "ShowCreation(");
    let mock = MockLlm::start(vec![
        Reply::Text(PLAN.into()),
        // Some servers ignore `stream`: a plain answer works as well.
        Reply::Plain(fenced(&gl_api)),
        Reply::Text(fenced(GOOD)),
    ])
    .await;
    let s = TestServer::with_mock(&mock).await;
    let (status, out) = s
        .post(
            "/v1/code/generations",
            &json!({"prompt": "draw a circle", "engine": "manim"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["code"], GOOD);
    assert_eq!(out["engine"], "manim");
    assert_eq!(out["storyboard"], PLAN);
    let attempts = out["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["error"]["code"], "wrong-engine-api");
    assert_eq!(attempts[0]["error"]["line"], 6);
    assert_eq!(attempts[0]["failed_in"], "check");
    assert!(attempts.iter().all(|a| a["render_secs"].is_null()));
    assert_eq!(out["prompt_tokens"], 3 * PROMPT_TOKENS);
    let repair = mock.requests()[2].last_message();
    assert!(
        repair.contains("wrong-engine-api")
            && repair.contains("ShowCreation")
            && repair.contains("line 6"),
        "{repair}"
    );
    // Nothing was rendered: the code-only call has no job.
    let list = s.get("/v1/renders").await;
    assert_eq!(list["renders"].as_array().unwrap().len(), 0);

    // Code that does not parse is caught by the sandboxed parse, at its line.
    mock.push(Reply::Text(PLAN.into()));
    mock.push(Reply::Text(
        GOOD.replace("def construct(self):", "def construct(self)"),
    ));
    let (status, e) = s
        .post(
            "/v1/code/generations",
            &json!({"prompt": "circle", "max_attempts": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "generation-failed");
    assert_eq!(e["error"]["last_error"]["code"], "syntax-error");
    assert_eq!(e["error"]["line"], 5);
}

#[tokio::test]
async fn provider_failures_end_jobs_with_clear_typed_errors() {
    let mock = MockLlm::start(vec![]).await;
    let s = TestServer::start(LlmConfig {
        timeout: Duration::from_secs(1),
        retries: 1,
        max_retry_wait: Duration::from_millis(200),
        ..llm_config(&mock)
    })
    .await;
    let cases: Vec<(Vec<Reply>, &str, usize)> = vec![
        (vec![Reply::Status(401, None)], "llm-unauthorized", 1),
        (vec![Reply::Status(403, None)], "llm-unauthorized", 1),
        (
            vec![Reply::Status(429, Some(0)), Reply::Status(429, Some(0))],
            "llm-rate-limited",
            2,
        ),
        (
            vec![Reply::Status(503, None), Reply::Status(500, None)],
            "llm-unavailable",
            2,
        ),
        (vec![Reply::Hang(Duration::from_secs(30))], "llm-timeout", 1),
        (vec![Reply::Garbage], "llm-bad-response", 1),
    ];
    for (replies, code, calls) in cases {
        let before = mock.requests().len();
        for r in replies {
            mock.push(r);
        }
        let id = s.generate(json!({"prompt": "a circle"})).await;
        let job = s.wait(&id).await;
        assert_eq!(job["status"], "failed", "{code}: {job}");
        assert_eq!(job["error"]["code"], code, "{job}");
        assert!(!job["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(mock.requests().len() - before, calls, "{code}");
    }
    // A server that refuses streamed requests is asked again plainly.
    let before = mock.requests().len();
    for r in [
        Reply::Status(400, None),
        Reply::Text(PLAN.into()),
        Reply::Status(400, None),
        Reply::Text(fenced(GOOD)),
    ] {
        mock.push(r);
    }
    let (status, out) = s
        .post("/v1/code/generations", &json!({"prompt": "a circle"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["code"], GOOD);
    let streamed: Vec<bool> = mock.requests()[before..]
        .iter()
        .map(|r| r.body["stream"].as_bool().unwrap())
        .collect();
    assert_eq!(streamed, [true, false, true, false]);
    // Without usage from the provider, tokens are estimated (4 bytes a token).
    mock.push(Reply::NoUsage(PLAN.into()));
    mock.push(Reply::NoUsage(GOOD.into()));
    let (status, out) = s
        .post("/v1/code/generations", &json!({"prompt": "a circle"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let a = &out["attempts"][0];
    assert_eq!(a["tokens_estimated"], true, "{out}");
    assert_eq!(a["completion_tokens"], GOOD.len().div_ceil(4) as u64);
    assert!(a["prompt_tokens"].as_u64().unwrap() > 50);
    // A 429 that clears on retry is no failure.
    mock.push(Reply::Status(429, Some(0)));
    mock.push(Reply::Text(PLAN.into()));
    mock.push(Reply::Text(fenced(GOOD)));
    let (status, out) = s
        .post("/v1/code/generations", &json!({"prompt": "a circle"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    // The code-only call answers the provider's failures with gateway statuses.
    mock.push(Reply::Status(401, None));
    let (status, e) = s
        .post("/v1/code/generations", &json!({"prompt": "a circle"}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(e["error"]["code"], "llm-unauthorized");
}

#[tokio::test]
async fn without_a_provider_generation_is_503_and_capabilities_say_so() {
    let s = TestServer::start(LlmConfig::default()).await;
    let caps = s.get("/v1/capabilities").await;
    assert_eq!(caps["generation"], false);
    // A key alone is not enough, except on the replaced system's /generate,
    // which takes it to Groq (tests/it/compat.rs).
    let with_key = json!({"prompt": "a circle", "api_key": "k"});
    for (path, body) in [
        ("/v1/generations", &with_key),
        ("/v1/code/generations", &with_key),
        ("/generate", &json!({"prompt": "a circle"})),
    ] {
        let (status, e) = s.post(path, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {e}");
        assert_eq!(e["error"]["code"], "llm-not-configured");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("MANIMD_LLM_PROVIDER") && msg.contains("MANIMD_LLM_BASE_URL"),
            "{msg}"
        );
    }
    let (status, e) = s.post("/v1/generations", &json!({"prompt": " "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "prompt");

    let mock = MockLlm::start(vec![]).await;
    let s = TestServer::with_mock(&mock).await;
    assert_eq!(s.get("/v1/capabilities").await["generation"], true);
    let (status, e) = s
        .post(
            "/v1/generations",
            &json!({"prompt": "x", "max_attempts": 6}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "max_attempts");
}

#[tokio::test]
async fn narration_needs_a_format_with_a_sound_track() {
    let mock = MockLlm::start(vec![]).await;
    let s = TestServer::with_mock(&mock).await;
    let (status, e) = s
        .post(
            "/v1/generations",
            &json!({"prompt": "a circle", "format": "gif", "narration": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["field"], "narration");
    assert!(mock.requests().is_empty(), "refused before any model call");
}

#[tokio::test]
async fn the_synchronous_generate_call_returns_the_video() {
    let mock = MockLlm::start(vec![Reply::Text(PLAN.into()), Reply::Text(fenced(GOOD))]).await;
    let s = TestServer::with_mock(&mock).await;
    let r = s
        .client
        .post(format!("{}/generate", s.url))
        .json(&json!({"prompt": "draw a circle", "quality": "low", "format": "mp4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let path = s.config.data_dir.join("sync.mp4");
    std::fs::write(&path, r.bytes().await.unwrap()).unwrap();
    common::assert_video(&path, "h264", (854, 480), 15.0, 1.0).await;

    mock.push(Reply::Status(401, None));
    let (status, e) = s.post("/generate", &json!({"prompt": "x"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(e["error"]["code"], "llm-unauthorized");
}

#[tokio::test]
async fn narration_asks_the_model_for_lines_and_narrate_calls_and_marks_the_spec() {
    let mock = MockLlm::start(vec![Reply::Text(PLAN.into()), Reply::Text(fenced(GOOD))]).await;
    let s = TestServer::with_mock(&mock).await;
    let (status, out) = s
        .post(
            "/v1/code/generations",
            &json!({"prompt": "a circle", "narration": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let requests = mock.requests();
    assert!(requests[0].last_message().contains("Narration:"));
    let system = requests[1].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains(
            "Call `narrate(\"<line>\")` (a builtin, no import) at the start of each step"
        ),
        "{system}"
    );

    // A generation job with narration carries it in its render spec, with
    // the latest attempt's code.
    let wrong = GOOD.replace("Create(", "ShowCreation(");
    mock.push(Reply::Text(PLAN.into()));
    mock.push(Reply::Text(fenced(&wrong)));
    let id = s
        .generate(json!({"prompt": "a circle", "narration": true, "max_attempts": 1}))
        .await;
    let job = s.wait(&id).await;
    assert_eq!(
        job["error"]["last_error"]["code"], "wrong-engine-api",
        "{job}"
    );
    let store = manimd::jobs::Store::open_sqlite(&s.config.data_dir.join("manimd.db"))
        .await
        .unwrap();
    let stored = store
        .get(&manimd::jobs::JobId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.spec.narration);
    assert_eq!(stored.spec.code, wrong);
    assert!(stored.generation.unwrap().narration);
}

#[tokio::test]
async fn a_running_generation_can_be_canceled_and_a_restart_does_not_spend_the_servers_key() {
    let gate = Arc::new(Notify::new());
    let mock = MockLlm::start(vec![Reply::Gated(
        Arc::clone(&gate),
        Box::new(Reply::Text(PLAN.into())),
    )])
    .await;
    let s = TestServer::with_mock(&mock).await;
    let id = s.generate(json!({"prompt": "a circle"})).await;
    s.wait_running(&id).await;
    let r = s
        .client
        .delete(format!("{}/v1/renders/{id}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let job = s.wait(&id).await;
    assert_eq!(job["status"], "canceled", "{job}");
    assert_eq!(job["error"]["code"], "canceled");

    // A job with its own key is stopped by a shutdown while it waits for
    // the model; after the restart its key is gone, and it says so.
    mock.push(Reply::Gated(
        Arc::clone(&gate),
        Box::new(Reply::Text(PLAN.into())),
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_tests(dir.path().join("data"));
    let server_key = LlmConfig {
        api_key: manimd::secret::Secret::new("server-key"),
        ..llm_config(&mock)
    };
    let mut first = TestServer::start_on(config.clone(), server_key.clone()).await;
    let id = first
        .generate(json!({"prompt": "a circle", "api_key": "own-key"}))
        .await;
    first.wait_running(&id).await;
    first.stop().await;
    let calls = mock.requests().len();
    assert_eq!(
        mock.requests().last().unwrap().authorization.as_deref(),
        Some("Bearer own-key")
    );
    let second = TestServer::start_on(config, server_key).await;
    let job = second.wait(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "llm-key-lost");
    assert_eq!(
        mock.requests().len(),
        calls,
        "the server's key was not used"
    );
    gate.notify_waiters();
}

const SECRET: &str = "sk-test-SECRET-7f3a";

#[tokio::test]
async fn a_request_key_reaches_only_the_provider() {
    use tokio::io::AsyncBufReadExt;
    let mock = MockLlm::start(vec![Reply::Text(PLAN.into()), Reply::Text(fenced(GOOD))]).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("server.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--warm-pool",
            "0",
            "--data-dir",
        ])
        .arg(&data)
        .env("MANIMD_LLM_BASE_URL", &mock.base_url)
        .env("MANIMD_LLM_MODEL", "mock-model")
        .env("MANIMD_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&logs).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut url = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        stdout.push_str(&line);
        if let Some(u) = line.strip_prefix("manimd listening on ") {
            url = Some(u.to_owned());
            break;
        }
    }
    let url = url.expect("the server started");
    let client = reqwest::Client::new();
    let job: Value = client
        .post(format!("{url}/v1/generations"))
        .json(&json!({"prompt": "draw a circle", "api_key": SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let mut seen = job.to_string();
    let events = client
        .get(format!("{url}/v1/renders/{id}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("\"succeeded\""), "{events}");
    seen.push_str(&events);
    let job: Value = client
        .get(format!("{url}/v1/renders/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    seen.push_str(&job.to_string());
    seen.push_str(
        &client
            .get(format!("{url}/v1/renders"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let video = client
        .get(format!("{url}/v1/renders/{id}/video"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let path = dir.path().join("v.mp4");
    std::fs::write(&path, &video).unwrap();
    common::assert_video(&path, "h264", (854, 480), 15.0, 1.0).await;

    // The provider got it, as a bearer token, on every call.
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(
            r.authorization.as_deref(),
            Some(&*format!("Bearer {SECRET}"))
        );
        assert!(!r.body.to_string().contains(SECRET));
    }
    // Nothing else has it: responses, events, logs, the database, any file.
    let _ = child.start_kill();
    let _ = child.wait().await;
    while let Ok(Some(line)) = lines.next_line().await {
        stdout.push_str(&line);
    }
    seen.push_str(&stdout);
    seen.push_str(&std::fs::read_to_string(&logs).unwrap());
    assert!(
        seen.contains("generation enabled"),
        "the log was captured: {seen}"
    );
    assert!(
        !seen.contains(SECRET),
        "the key leaked into responses or logs"
    );
    let mut files = vec![data.clone()];
    let mut checked = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
            assert!(!found, "the key is in {}", p.display());
            checked += 1;
        }
    }
    assert!(data.join("manimd.db").is_file());
    assert!(checked >= 3, "the database and the video were read");
}

#[tokio::test]
async fn the_generate_command_shows_stages_and_writes_the_video() {
    let mock = MockLlm::start(vec![
        Reply::Text(PLAN.into()),
        Reply::Text(fenced(NAME_ERROR)),
        Reply::Text(fenced(GOOD)),
    ])
    .await;
    let s = TestServer::with_mock(&mock).await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args([
            "generate",
            "draw a circle",
            "--server",
            &s.url,
            "-o",
            "circle.mp4",
            "--max-attempts",
            "2",
        ])
        .current_dir(out_dir.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "circle.mp4");
    for line in [
        "planning",
        "attempt 1: writing",
        "attempt 1: rendering",
        "attempt 1 failed in render: [scene-error]",
        "attempt 2: repairing",
        "attempt 2 succeeded",
    ] {
        assert!(stderr.contains(line), "{line:?} missing in:\n{stderr}");
    }
    common::assert_video(
        &out_dir.path().join("circle.mp4"),
        "h264",
        (854, 480),
        15.0,
        1.0,
    )
    .await;
}

#[tokio::test]
async fn the_studio_generates_repairs_and_plays_in_chromium() {
    let mock = MockLlm::start(vec![
        Reply::Text(PLAN.into()),
        Reply::Text(fenced(NAME_ERROR)),
        Reply::Text(fenced(GOOD)),
    ])
    .await;
    let s = TestServer::with_mock(&mock).await;
    let (shots, report) = common::server::run_studio_script(
        "studio_generate.mjs",
        &s.url,
        &s.config.runtime_dir,
        &[],
    )
    .await;
    assert!(
        report.contains("ok: generated, repaired and played"),
        "{report}"
    );
    assert!(shots.join("studio-generated.png").is_file());
    assert_eq!(mock.left(), 0);
}

#[tokio::test]
async fn a_narrated_generation_speaks_its_lines_into_the_video_with_matching_subtitles() {
    let plan = "1. A circle is drawn.\n   Narration: Here is a circle.\n2. It becomes a square.\n   Narration: Now it becomes a square.";
    let code = "from manim import *\n\n\nclass Gen(Scene):\n    def construct(self):\n        c = Circle()\n        narrate(\"Here is a circle.\")\n        self.play(Create(c), run_time=0.5)\n        narrate(\"Now it becomes a square.\")\n        self.play(Transform(c, Square()), run_time=0.5)\n";
    let mock = MockLlm::start(vec![Reply::Text(plan.into()), Reply::Text(fenced(code))]).await;
    let s = TestServer::with_mock(&mock).await;
    let id = s
        .generate(json!({"prompt": "a circle that becomes a square", "narration": true}))
        .await;
    let job = s.wait(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // `text` asserts the 200.
    let vtt = s.text(&format!("/v1/renders/{id}/subtitles")).await;
    let cues = common::read_vtt(&vtt);
    let texts: Vec<&str> = cues.iter().map(|c| c.2.as_str()).collect();
    assert_eq!(texts, ["Here is a circle.", "Now it becomes a square."]);
    assert!(
        cues[0].1 <= cues[1].0 + 1e-3,
        "the second line waits for the first: {cues:?}"
    );

    let bytes = s.bytes(&format!("/v1/renders/{id}/video")).await;
    let path = s.config.data_dir.join("narrated.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let (codec, audio_secs) = common::probe_audio(&path).await.expect("a sound track");
    assert_eq!(codec, "aac");
    let end = cues[1].1;
    assert!(
        (audio_secs - end).abs() < 0.25,
        "audio {audio_secs} s, speech ends at {end} s"
    );
    let video = common::probe(&path).await;
    assert!(
        video.duration + 0.1 >= end,
        "{video:?} shorter than the speech ({end} s)"
    );
}
