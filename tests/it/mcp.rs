//! The MCP server, driven by the official MCP Python SDK's client
//! (`tests/mcp/client.py`, in the tools venv) as an assistant would: over
//! stdio (`manimd mcp`, spawned by the SDK, talking to a real server) and
//! over Streamable HTTP (`/mcp` on the real server, with and without keys).
//! Real renders, real previews, generation against the scripted model.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock_llm::{MockLlm, Reply};
use common::server::TestServer;
use manimd::llm::LlmConfig;
use manimd::secret::Secret;
use manimd::server::ServeOptions;
use serde_json::{json, Value};

/// One second of a circle being drawn: line 6 is the play.
const GOOD: &str = "from manim import *\n\n\nclass Circ(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=1)\n";

/// Fails when it runs: a NameError at line 6.
const NAME_ERROR: &str = "from manim import *\n\n\nclass Bad(Scene):\n    def construct(self):\n        self.play(Create(undefined_circle), run_time=1)\n";

/// Does not parse: refused at submission (422), the error at line 5.
const SYNTAX_ERROR: &str =
    "from manim import *\n\n\nclass Broken(Scene):\n    def construct(self:\n        pass\n";

/// Two plays: a storyboard of two frames.
const TWO_PLAYS: &str = "from manim import *\n\n\nclass Two(Scene):\n    def construct(self):\n        sq = Square(color=BLUE)\n        self.play(Create(sq), run_time=1)\n        self.play(sq.animate.shift(RIGHT * 2), run_time=1)\n";

fn options(keys: &[&str], llm: Option<&MockLlm>) -> ServeOptions {
    ServeOptions {
        workers: 1,
        warm_pool: 0,
        grace: Duration::from_millis(200),
        api_keys: keys.iter().copied().filter_map(Secret::new).collect(),
        llm: llm.map_or_else(LlmConfig::default, |mock| LlmConfig {
            base_url: Some(mock.base_url.clone()),
            model: "mock-model".into(),
            ..LlmConfig::default()
        }),
        ..ServeOptions::default()
    }
}

/// How the Python client reaches the tools.
enum Transport<'a> {
    /// `manimd mcp --server URL`, spawned by the SDK's stdio client.
    Stdio { server: &'a str },
    /// The SDK's Streamable HTTP client at this URL.
    Http { url: String },
}

/// Runs the SDK's client through `plan` (steps as `client.py` reads them);
/// returns its report, one entry per step, after checking no step raised.
async fn drive(transport: Transport<'_>, key: Option<&str>, plan: Value) -> Value {
    let report = run_client(transport, key, plan).await;
    for (name, step) in report.as_object().unwrap() {
        assert!(
            step.get("exception").is_none(),
            "step {name} raised: {step:#}"
        );
    }
    report
}

/// `drive` without the check: what the client saw, exceptions included.
async fn run_client(transport: Transport<'_>, key: Option<&str>, plan: Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.json");
    let out_path = dir.path().join("out.json");
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let python = manimd::config::Config::for_tests("/")
        .runtime_dir
        .join("venv/tools/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(script);
    match transport {
        Transport::Stdio { server } => {
            cmd.args(["stdio", env!("CARGO_BIN_EXE_manimd"), server]);
        }
        Transport::Http { url } => {
            cmd.args(["http", &url]);
        }
    }
    if let Some(key) = key {
        cmd.args(["--key", key]);
    }
    cmd.arg(&plan_path).arg(&out_path).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), cmd.output())
        .await
        .expect("the MCP client ends")
        .expect("the tools venv's python runs (scripts/setup.sh)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "client.py failed: {said}");
    let mut report: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap())
        .unwrap_or_else(|e| panic!("no report ({e}): {said}"));
    // What the client and (over stdio) `manimd mcp` printed, for failures.
    report["_said"] = Value::String(said);
    report
}

fn step(name: &str, tool: &str, args: Value) -> Value {
    json!({"name": name, "tool": tool, "args": args})
}

fn text(step: &Value) -> String {
    step["texts"]
        .as_array()
        .unwrap_or_else(|| panic!("no text: {step:#}"))
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A successful tool result's structured content.
fn ok(report: &Value, name: &str) -> Value {
    let step = &report[name];
    assert_eq!(step["is_error"], false, "{name}: {step:#}");
    step["structured"].clone()
}

/// The plan every transport runs: the handshake, the listing, each tool,
/// and the errors an assistant must be able to read.
fn full_plan(generation: bool) -> Value {
    let mut plan = vec![
        json!({"name": "init", "tool": "initialize"}),
        json!({"name": "tools", "tool": "list_tools"}),
        step("capabilities", "capabilities", json!({})),
        step("storyboard", "preview", json!({"code": TWO_PLAYS})),
        step(
            "still",
            "preview",
            json!({"code": TWO_PLAYS, "kind": "still", "at": 0.5, "quality": "medium"}),
        ),
        step("render", "render", json!({"code": GOOD, "wait": true})),
        step(
            "failing",
            "render",
            json!({"code": NAME_ERROR, "wait": true}),
        ),
        step("syntax", "render", json!({"code": SYNTAX_ERROR})),
        step(
            "missing",
            "get_job",
            json!({"id": "0123456789abcdef0123456789abcdef"}),
        ),
        step(
            "bad-quality",
            "render",
            json!({"code": GOOD, "quality": "ultra"}),
        ),
    ];
    plan.push(if generation {
        step(
            "generate",
            "generate",
            json!({"prompt": "a circle being drawn", "wait": true, "timeout_secs": 300}),
        )
    } else {
        step("generate", "generate", json!({"prompt": "a circle"}))
    });
    Value::Array(plan)
}

/// Checks what every transport must show for `full_plan`; returns the
/// rendered job's id and its video URL.
fn check_full(report: &Value, generation: bool) -> (String, String) {
    let init = &report["init"];
    assert_eq!(init["server"], "manimd", "{init}");
    assert_eq!(init["tools"], true);

    let tools = report["tools"].as_object().unwrap();
    let mut names: Vec<&str> = tools.keys().map(String::as_str).collect();
    names.sort();
    let mut want = vec!["capabilities", "get_job", "preview", "render"];
    if generation {
        want.push("generate");
        want.sort();
    }
    assert_eq!(names, want, "generate is listed only with a model");
    let render_schema = &tools["render"]["schema"];
    assert_eq!(render_schema["required"], json!(["code"]));
    for field in ["code", "scene", "quality", "engine", "wait", "timeout_secs"] {
        let description = render_schema["properties"][field]["description"].as_str();
        assert!(
            description.is_some_and(|d| !d.is_empty()),
            "render.{field} is described: {render_schema:#}"
        );
    }
    assert!(render_schema["properties"]["quality"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("4k")));

    let caps = ok(report, "capabilities");
    assert_eq!(caps["engines"][0]["name"], "manim");
    assert_eq!(caps["generation"], generation);

    // The storyboard: one real PNG per play, at the quality's size.
    let board = &report["storyboard"];
    let board_data = ok(report, "storyboard");
    let images = board["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{board:#}");
    for image in images {
        assert_eq!(image["mime"], "image/png");
        assert_eq!(image["png"], json!([854, 480]), "a real PNG: {image}");
        assert!(image["bytes"].as_u64().unwrap() > 1000);
    }
    assert_eq!(board_data["animations"][1]["line"], 8);
    let board_text = text(board);
    assert!(
        board_text.contains("Create(Square) (line 7)"),
        "{board_text}"
    );
    let still = &report["still"];
    assert_eq!(ok(report, "still")["frames"].as_array().unwrap().len(), 1);
    assert_eq!(still["images"][0]["png"], json!([1280, 720]), "{still:#}");

    // A real render, waited for: its video's URL.
    let render = ok(report, "render");
    assert_eq!(render["status"], "succeeded", "{render:#}");
    let id = render["id"].as_str().unwrap().to_owned();
    let video_url = render["video_url"].as_str().unwrap().to_owned();
    assert!(
        video_url.starts_with("http://127.0.0.1:")
            && video_url.ends_with(&format!("/v1/renders/{id}/video")),
        "{video_url}"
    );
    assert_eq!(render["job"]["result"]["animations"][0]["line"], 6);
    assert!(text(&report["render"]).contains(&video_url));

    // A scene's error: a tool error (not a protocol error) with code and line.
    let failing = &report["failing"];
    assert_eq!(failing["is_error"], true, "{failing:#}");
    let failing_text = text(failing);
    assert!(
        failing_text.starts_with("[scene-error] line 6: NameError"),
        "{failing_text}"
    );
    assert_eq!(failing["structured"]["error"]["code"], "scene-error");
    assert_eq!(failing["structured"]["error"]["line"], 6);

    // Refused at submission (the API's 422): the same shape, no job.
    let syntax = &report["syntax"];
    assert_eq!(syntax["is_error"], true, "{syntax:#}");
    assert!(
        text(syntax).starts_with("[syntax-error] line 5: "),
        "{syntax:#}"
    );
    assert_eq!(syntax["structured"]["error"]["line"], 5);
    assert!(syntax["structured"].get("id").is_none());

    let missing = &report["missing"];
    assert_eq!(missing["is_error"], true, "{missing:#}");
    assert!(text(missing).starts_with("[not-found]"), "{missing:#}");
    let bad = &report["bad-quality"];
    assert_eq!(bad["is_error"], true, "{bad:#}");
    assert!(text(bad).starts_with("[invalid-request]"), "{bad:#}");
    assert!(text(bad).contains("ultra"), "{bad:#}");
    (id, video_url)
}

/// Downloads the video at `url` (with the key) and checks it is the MP4
/// of `GOOD`: H.264, one second at `low`'s 854x480 and 15 fps.
async fn check_video(url: &str, key: Option<&str>, dest: &Path) {
    let mut get = reqwest::Client::new().get(url);
    if let Some(key) = key {
        get = get.bearer_auth(key);
    }
    let r = get.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    std::fs::write(dest, r.bytes().await.unwrap()).unwrap();
    let probe = common::probe(dest).await;
    assert_eq!(probe.codec, "h264", "{probe:?}");
    assert_eq!((probe.width, probe.height), (854, 480), "{probe:?}");
    assert!((probe.duration - 1.0).abs() < 0.2, "{probe:?}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test]
async fn mcp_over_stdio_renders_previews_generates_and_reports_errors() {
    let fenced = format!("Here is the scene:\n\n```python\n{GOOD}```\n");
    let mock = MockLlm::start(vec![
        Reply::Text("1. A circle is drawn in the middle.".into()),
        Reply::Text(fenced),
    ])
    .await;
    let mut s = TestServer::start(options(&["stdio-key"], Some(&mock))).await;
    let report = drive(
        Transport::Stdio { server: &s.url },
        Some("stdio-key"),
        full_plan(true),
    )
    .await;
    let (id, video_url) = check_full(&report, true);
    check_video(&video_url, Some("stdio-key"), &scratch("stdio.mp4")).await;

    // The generation ran against the scripted model, with the server's
    // configuration, and rendered what the model wrote.
    let generated = ok(&report, "generate");
    assert_eq!(generated["status"], "succeeded", "{generated:#}");
    assert_eq!(generated["job"]["kind"], "generation");
    assert_eq!(generated["code"], GOOD);
    assert_ne!(generated["id"], id.as_str());
    check_video(
        generated["video_url"].as_str().unwrap(),
        Some("stdio-key"),
        &scratch("stdio-generated.mp4"),
    )
    .await;
    assert_eq!(
        mock.left(),
        0,
        "the model was asked for a plan and the code"
    );

    // get_job over stdio: the job as the API has it.
    let again = drive(
        Transport::Stdio { server: &s.url },
        Some("stdio-key"),
        json!([
            {"name": "init", "tool": "initialize"},
            step("job", "get_job", json!({"id": id})),
        ]),
    )
    .await;
    let job = ok(&again, "job");
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["video_url"], video_url.as_str());
    assert!(job["job"]["result"]["bytes"].as_u64().unwrap() > 1000);

    // The jobs are the key's, as if submitted over the API.
    let jobs: Value = s
        .client
        .get(format!("{}/v1/renders/{id}", s.url))
        .bearer_auth("stdio-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["status"], "succeeded");
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn mcp_over_http_needs_the_key_and_keeps_each_keys_jobs_its_own() {
    let mut s = TestServer::start(options(&["key-a", "key-b"], None)).await;
    let url = format!("{}/mcp", s.url);
    let report = drive(
        Transport::Http { url: url.clone() },
        Some("key-a"),
        full_plan(false),
    )
    .await;
    let (id, video_url) = check_full(&report, false);
    check_video(&video_url, Some("key-a"), &scratch("http.mp4")).await;
    // Without a model, generate is not listed, and calling it says why.
    let generate = &report["generate"];
    assert_eq!(generate["is_error"], true, "{generate:#}");
    assert!(
        text(generate).starts_with("[llm-not-configured]"),
        "{generate:#}"
    );

    // The render is key A's: key B's tools do not see it, as over the API.
    let other = drive(
        Transport::Http { url: url.clone() },
        Some("key-b"),
        json!([
            {"name": "init", "tool": "initialize"},
            step("theirs", "get_job", json!({"id": id})),
        ]),
    )
    .await;
    assert_eq!(other["theirs"]["is_error"], true, "{other:#}");
    assert!(text(&other["theirs"]).starts_with("[not-found]"));
    let mine = drive(
        Transport::Http { url: url.clone() },
        Some("key-a"),
        json!([
            {"name": "init", "tool": "initialize"},
            step("mine", "get_job", json!({"id": id})),
        ]),
    )
    .await;
    assert_eq!(ok(&mine, "mine")["status"], "succeeded");

    // No key or a wrong one: refused before any MCP message is read (the
    // SDK reports the 401 as a failed handshake; the status is checked below).
    for key in [None, Some("not-a-key")] {
        let refused = run_client(
            Transport::Http { url: url.clone() },
            key,
            json!([{"name": "init", "tool": "initialize"}]),
        )
        .await;
        let init = &refused["init"];
        assert!(
            init.get("exception").is_some() && init.get("server").is_none(),
            "{key:?}: {refused:#}"
        );
    }
    let r = s
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn mcp_over_http_on_a_keyless_server_is_open_like_the_api() {
    let mut s = TestServer::start(options(&[], None)).await;
    let report = drive(
        Transport::Http {
            url: format!("{}/mcp", s.url),
        },
        None,
        json!([
            {"name": "init", "tool": "initialize"},
            {"name": "tools", "tool": "list_tools"},
            step("capabilities", "capabilities", json!({})),
            step("queued", "render", json!({"code": GOOD})),
        ]),
    )
    .await;
    assert_eq!(report["init"]["server"], "manimd");
    assert_eq!(report["tools"].as_object().unwrap().len(), 4);
    assert_eq!(ok(&report, "capabilities")["generation"], false);
    // Without `wait`, the job comes back at once; the API shows it.
    let queued = ok(&report, "queued");
    let id = queued["id"].as_str().unwrap();
    assert!(
        ["queued", "running", "succeeded"].contains(&queued["status"].as_str().unwrap()),
        "{queued:#}"
    );
    if queued["status"] != "succeeded" {
        assert!(text(&report["queued"]).contains("get_job"));
    }
    let job = s.wait_for(id, None).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    // The OpenAPI document names `/mcp`, which is no REST path of its own.
    let (_, doc) = s.get("/openapi.json").await;
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(description.contains("`/mcp`"), "{description}");
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn a_full_queue_is_a_tool_error_with_its_code_and_when_to_retry() {
    // An API node (no workers): the first render stays queued and fills
    // the queue; the next is the API's 429.
    let mut s = TestServer::start(ServeOptions {
        workers: 0,
        queue_capacity: 1,
        ..options(&[], None)
    })
    .await;
    let report = drive(
        Transport::Http {
            url: format!("{}/mcp", s.url),
        },
        None,
        json!([
            {"name": "init", "tool": "initialize"},
            step("first", "render", json!({"code": GOOD})),
            step("second", "render", json!({"code": NAME_ERROR})),
        ]),
    )
    .await;
    assert_eq!(ok(&report, "first")["status"], "queued");
    let second = &report["second"];
    assert_eq!(second["is_error"], true, "{second:#}");
    assert!(text(second).starts_with("[queue-full] "), "{second:#}");
    let error = &second["structured"]["error"];
    assert_eq!(error["code"], "queue-full");
    assert!(error["retry_after_secs"].as_u64().unwrap() >= 1, "{error}");
    s.stop().await;
    s.assert_clean();
}
