//! The HTTP service, started for real on port 0 and driven over HTTP with
//! real renders: every endpoint, every error class, cancel, restart, flood.

use crate::common;

use common::server::{spawn_binary, TestServer};

use std::time::Duration;

use manimd::config::Config;
use manimd::server::ServeOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Options for a test server: no warm pool unless a test asks for one, so
/// that the only sandboxes are the ones the test causes.
fn opts(workers: usize) -> ServeOptions {
    ServeOptions {
        workers,
        warm_pool: 0,
        ..ServeOptions::default()
    }
}

fn code(name: &str) -> String {
    common::fixture(name)
}

/// A scene that renders for roughly `secs` seconds of wall time.
fn slow_scene(secs: u32) -> String {
    format!("from manim import *\nimport time\n\nclass Slow(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.2)\n        time.sleep({secs})\n        self.play(FadeOut(Circle()), run_time=0.2)\n")
}

/// A render's event stream with ids, times and counts taken out: what a
/// client can rely on, in order. `frames` events are left out (they are
/// throttled, so how many and where depends on timing; other tests check
/// them), and finished pieces are listed apart, sorted: each is encoded on
/// its own thread, so one may arrive after the next animation starts.
fn sequence(events: &[(String, Value)]) -> (Vec<String>, Vec<u64>) {
    let mut steps: Vec<String> = Vec::new();
    let mut pieces = Vec::new();
    for (name, data) in events {
        let step = match (name.as_str(), data["event"].as_str()) {
            ("status", _) => format!("status {}", data["status"].as_str().unwrap_or("?")),
            ("progress", Some("partial-movie")) => {
                pieces.push(data["index"].as_u64().unwrap_or(u64::MAX));
                continue;
            }
            ("progress", Some("frames")) => continue,
            ("progress", Some("ready")) => format!("ready {}", data["engine"]),
            ("progress", Some("animation")) => {
                format!(
                    "animation {} {}",
                    data["index"],
                    data["name"].as_str().unwrap_or("")
                )
            }
            ("progress", Some(kind)) => format!("{kind} {}", data["scene"].as_str().unwrap_or("")),
            (other, _) => other.to_owned(),
        };
        // The state as first seen may still be `queued`; then it runs.
        if steps.last() != Some(&step) && !(steps.is_empty() && step == "status queued") {
            steps.push(step);
        }
    }
    pieces.sort_unstable();
    (steps, pieces)
}

fn expected_sequence() -> (Vec<String>, Vec<u64>) {
    let steps = [
        "status running",
        "ready \"manim\"",
        "scene-started Shapes",
        "animation 0 Create(Circle)",
        "animation 1 Transform(Circle)",
        "animation 2 FadeOut(Circle)",
        "animation 3 Wait(Mobject)",
        "scene-finished Shapes",
        "status succeeded",
    ];
    (steps.map(String::from).to_vec(), vec![0, 1, 2, 3])
}

#[tokio::test]
async fn submit_follow_and_fetch_a_render() {
    let mut s = TestServer::start(opts(2)).await;
    let (status, job) = s
        .post(
            "/v1/renders",
            &json!({"code": code("ce_shapes.py"), "quality": "low"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(matches!(job["status"].as_str(), Some("queued" | "running")));
    assert_eq!(job["links"]["self"], format!("/v1/renders/{id}"));
    assert_eq!(job["links"]["video"], format!("/v1/renders/{id}/video"));

    // Follow from the start: state changes and progress, ending with the final state.
    let events = s.events(&id).await;
    let (last_name, last) = events.last().unwrap();
    assert_eq!(
        (last_name.as_str(), last["status"].as_str()),
        ("status", Some("succeeded"))
    );
    assert!(
        events
            .iter()
            .any(|(n, d)| n == "progress" && d["event"] == "animation"),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|(n, d)| n == "progress" && d["event"] == "frames"));
    let statuses: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "status")
        .filter_map(|(_, d)| d["status"].as_str())
        .collect();
    assert!(statuses.contains(&"running"), "{statuses:?}");
    assert_eq!(sequence(&events), expected_sequence());

    let (_, job) = s.get(&format!("/v1/renders/{id}")).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["attempts"], 1);
    let r = &job["result"];
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(854), Some(480))
    );
    assert_eq!(r["content_type"], "video/mp4");
    assert!((r["duration"].as_f64().unwrap() - 3.0).abs() < 0.15, "{r}");
    assert!(job["timings"]["render_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(job["progress"]["animations_done"], 4);

    // The video: type, ETag, ranges, conditional GET.
    let url = format!("{}/v1/renders/{id}/video", s.url);
    let full = s.client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    let h = full.headers().clone();
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline; filename=\"manimd-"));
    let etag = h["etag"].to_str().unwrap().to_owned();
    let bytes = full.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, r["bytes"].as_u64().unwrap());
    let path = s.config.data_dir.join("fetched.mp4");
    std::fs::write(&path, &bytes).unwrap();
    common::assert_video(&path, "h264", (854, 480), 15.0, 3.0).await;

    let part = s
        .client
        .get(&url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", bytes.len())
    );
    assert_eq!(part.bytes().await.unwrap(), bytes.slice(100..200));
    let tail = s
        .client
        .get(&url)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap(), bytes.slice(bytes.len() - 10..));
    let bad = s
        .client
        .get(&url)
        .header("Range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        bad.headers()["content-range"],
        format!("bytes */{}", bytes.len())
    );
    let cached = s
        .client
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    let thumb = s
        .client
        .get(format!("{}/v1/renders/{id}/thumbnail", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.headers()["content-type"], "image/png");
    assert_eq!(&thumb.bytes().await.unwrap()[..4], b"\x89PNG");

    // A late follower gets the final state at once, and the stream ends.
    let late = s.events(&id).await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].1["status"], "succeeded");

    let (_, list) = s.get("/v1/renders?status=succeeded&limit=5").await;
    assert_eq!(list["renders"][0]["id"], id.as_str());

    let metrics = s.text("/metrics").await;
    assert!(
        metrics.contains("manimd_jobs_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("manimd_render_seconds_count 1"));
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn health_capabilities_and_openapi() {
    let mut s = TestServer::start(opts(2)).await;
    let (status, h) = s.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["database"], "sqlite");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!(h["memory"]["rss_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(h["memory"]["vms_bytes"].as_u64().unwrap() > 0);
    assert!(h["memory"]["percent"].as_f64().unwrap() > 0.0);
    assert_eq!(
        (h["workers"]["busy"].as_u64(), h["workers"]["idle"].as_u64()),
        (Some(0), Some(2))
    );
    assert!(h["workers"]["rss_bytes"].is_u64());
    assert_eq!(
        (
            h["queue"]["depth"].as_u64(),
            h["queue"]["capacity"].as_u64()
        ),
        (Some(0), Some(100))
    );
    assert!(h["uptime_secs"].is_u64());

    let (_, c) = s.get("/v1/capabilities").await;
    let engines: Vec<(&str, &str)> = c["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["version"].as_str().unwrap()))
        .collect();
    assert_eq!(engines, [("manim", "0.22.0"), ("manimgl", "1.7.2")]);
    assert_eq!(c["tex"], true);
    assert_eq!(c["qualities"][4]["name"], "4k");
    assert_eq!(c["formats"].as_array().unwrap().len(), 5);
    assert_eq!(c["limits"]["network"], false);
    assert_eq!(c["generation"], false, "no model provider configured");

    let (_, doc) = s.get("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/renders",
        "/v1/renders/{id}",
        "/v1/renders/{id}/events",
        "/v1/renders/{id}/video",
        "/render",
        "/health",
        "/v1/capabilities",
        "/v1/generations",
        "/v1/code/generations",
        "/generate",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("JobView").is_some());
    s.stop().await;
}

#[tokio::test]
async fn code_that_cannot_render_is_refused_before_queueing() {
    let mut s = TestServer::start(opts(1)).await;
    let (status, e) = s
        .post("/v1/renders", &json!({"code": code("syntax_error.py")}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (e["error"]["code"].as_str(), e["error"]["line"].as_u64()),
        (Some("syntax-error"), Some(6))
    );
    assert!(e["error"]["column"].is_u64());

    let (status, e) = s
        .post("/v1/renders", &json!({"code": code("no_scene.py")}))
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no-scene"))
    );

    let (status, e) = s
        .post(
            "/v1/renders",
            &json!({"code": code("ce_two.py"), "scene": "Middle"}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("scene-not-found"))
    );
    assert_eq!(e["error"]["available"], json!(["Intro", "Outro"]));
    let (status, e) = s
        .post("/v1/renders", &json!({"code": code("ce_two.py")}))
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("scene-not-found"))
    );

    let (_, list) = s.get("/v1/renders").await;
    assert_eq!(list["renders"], json!([]), "nothing was queued");
    s.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400_naming_the_field_and_oversize_is_413() {
    let mut s = TestServer::start(opts(1)).await;
    let raw = |body: Vec<u8>| {
        s.client
            .post(format!("{}/v1/renders", s.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = raw(b"{not json".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid-request"
    );

    for (body, field) in [
        (json!({"code": "x", "quality": 5}), "quality"),
        (json!({"code": "x", "quality": "ultra"}), "quality"),
        (json!({"code": "x", "colour": "red"}), ""),
        (json!({"code": 1}), "code"),
        (json!({"code": "x", "fps": -1}), "fps"),
        (
            json!({"code": "x", "scenes": ["ok", "; rm -rf /"]}),
            "scenes[1]",
        ),
        (json!({"code": "x", "fps": 1000}), "fps"),
    ] {
        let (status, e) = s.post("/v1/renders", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["error"]["code"], "invalid-request");
        if field.is_empty() {
            assert!(
                e["error"]["message"].as_str().unwrap().contains("colour"),
                "{e}"
            );
        } else {
            assert_eq!(e["error"]["field"], field, "{body}: {e}");
        }
    }
    let r = raw(vec![b'{', 0xff, 0xfe, b'}']).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (status, e) = s.post("/v1/renders", &json!({"code": "a\u{0}b"})).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("code"))
    );

    // Over the limit: refused from Content-Length before any of it is read,
    // and while reading when the body is streamed without one.
    let big = raw(vec![b' '; 2 * 1024 * 1024]).await.unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        big.json::<Value>().await.unwrap()["error"]["code"],
        "payload-too-large"
    );
    let chunked = s
        .client
        .post(format!("{}/v1/renders", s.url))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(
            (0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for bad in ["../../etc/passwd", "%2e%2e", "0123", &"a".repeat(10_000)] {
        let (status, e) = s.get(&format!("/v1/renders/{bad}")).await;
        assert!(
            matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
            "{bad}: {status}"
        );
        assert!(e["error"]["code"].is_string());
    }
    let (status, e) = s.get(&format!("/v1/renders/{}", "0".repeat(32))).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );
    let (status, _) = s.get("/v1/renders?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s.get("/v1/renders?status=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, e) = s.get("/nowhere").await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );
    s.stop().await;
}

#[tokio::test]
async fn a_failing_scene_ends_failed_with_its_typed_error() {
    let mut s = TestServer::start(opts(1)).await;
    let id = s.submit(json!({"code": code("scene_error.py")})).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["code"], "scene-error");
    assert_eq!(job["error"]["line"], 5);
    assert_eq!(job["error"]["exception"], "ZeroDivisionError");
    let (status, e) = s.get(&format!("/v1/renders/{id}/video")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not-ready"))
    );
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn cancel_a_running_render_and_a_queued_one_then_delete() {
    let mut s = TestServer::start(opts(1)).await;
    let running = s.submit(json!({"code": slow_scene(60)})).await;
    let queued = s.submit(json!({"code": code("ce_shapes.py")})).await;
    s.wait_for(&running, Some("running")).await;

    let r = s
        .client
        .delete(format!("{}/v1/renders/{queued}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "canceled");

    let asked = std::time::Instant::now();
    let r = s
        .client
        .delete(format!("{}/v1/renders/{running}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let job = s.wait_for(&running, None).await;
    assert_eq!(job["status"], "canceled");
    assert_eq!(job["error"]["code"], "canceled");
    // Reported, not asserted as a test condition: speed belongs to the benchmark.
    eprintln!("running render canceled in {:?}", asked.elapsed());
    s.assert_clean();

    // A finished job is deleted with its files.
    let r = s
        .client
        .delete(format!("{}/v1/renders/{running}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _) = s.get(&format!("/v1/renders/{running}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn deleting_a_finished_render_removes_its_files() {
    let mut s = TestServer::start(opts(1)).await;
    let id = s
        .submit(json!({"code": code("ce_two.py"), "scene": "Intro"}))
        .await;
    assert_eq!(s.wait_for(&id, None).await["status"], "succeeded");
    let files = s.config.data_dir.join("videos").join(&id);
    assert!(files.exists());
    let r = s
        .client
        .delete(format!("{}/v1/renders/{id}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!files.exists());
    s.stop().await;
}

#[tokio::test]
async fn the_synchronous_render_call_returns_the_video() {
    let mut s = TestServer::start(opts(1)).await;
    let r = s
        .client
        .post(format!("{}/render", s.url))
        .json(&json!({"code": code("ce_two.py"), "scene_name": "Outro", "quality": "low", "format": "mp4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let path = s.config.data_dir.join("sync.mp4");
    std::fs::write(&path, r.bytes().await.unwrap()).unwrap();
    common::assert_video(&path, "h264", (854, 480), 15.0, 1.5).await;

    let (status, e) = s
        .post("/render", &json!({"code": code("scene_error.py")}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (e["error"]["code"].as_str(), e["error"]["line"].as_u64()),
        (Some("scene-error"), Some(5))
    );
    let (status, e) = s
        .post("/render", &json!({"code": code("syntax_error.py")}))
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("syntax-error"))
    );
    let (status, _) = s
        .post("/render", &json!({"code": "x", "scene_name": 3}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_every_accepted_job_finishes() {
    let mut s = TestServer::start(ServeOptions {
        queue_capacity: 3,
        ..opts(1)
    })
    .await;
    let first = s.submit(json!({"code": slow_scene(3)})).await;
    s.wait_for(&first, Some("running")).await;
    let body = json!({"code": code("ce_two.py"), "scene": "Intro"});
    let mut accepted = vec![first];
    let mut refused = 0;
    for _ in 0..6 {
        let r = s
            .client
            .post(format!("{}/v1/renders", s.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::ACCEPTED => accepted.push(
                r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
                assert_eq!(
                    r.json::<Value>().await.unwrap()["error"]["code"],
                    "queue-full"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted.len(), 4, "one running and three queued");
    assert_eq!(refused, 3);
    for id in &accepted {
        assert_eq!(s.wait_for(id, None).await["status"], "succeeded", "{id}");
    }
    // Listing pages through all of them, newest first, without overlap.
    let (_, page1) = s.get("/v1/renders?limit=3").await;
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, page2) = s.get(&format!("/v1/renders?limit=3&cursor={cursor}")).await;
    assert!(page2["next_cursor"].is_null());
    let listed: Vec<&str> = page1["renders"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["renders"].as_array().unwrap())
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = accepted.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    let (status, _) = s.get("/v1/renders?cursor=garbage").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn sigterm_requeues_running_work_and_the_next_start_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_tests(dir.path().join("data"));
    let o = ServeOptions {
        grace: Duration::from_millis(200),
        ..opts(1)
    };
    let mut s = TestServer::start_on(config.clone(), o.clone()).await;
    let id = s.submit(json!({"code": slow_scene(4)})).await;
    s.wait_for(&id, Some("running")).await;
    s.stop().await;
    s.assert_clean();

    let mut s = TestServer::start_on(config, o).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(
        job["attempts"], 1,
        "a graceful stop does not use up an attempt"
    );
    s.stop().await;
}

#[tokio::test]
async fn sigkill_mid_render_then_restart_finishes_the_job_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = Config::for_tests(&data);
    let sc = config.sandbox_config();
    let placement = sc.placement().unwrap();
    let prefix = format!("{}-", sc.instance);

    let (mut first, url) = spawn_binary(&data, &[]).await;
    let client = reqwest::Client::new();
    let job: Value = client
        .post(format!("{url}/v1/renders"))
        .json(&json!({"code": slow_scene(5)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    // Wait until the scene itself is running in its sandbox.
    let mut group = None;
    for _ in 0..300 {
        let j: Value = client
            .get(format!("{url}/v1/renders/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["progress"]["animations_done"].as_u64() >= Some(1) {
            group = placement.children(&prefix).into_iter().next();
            if group.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let group = group.expect("the render is running in a sandbox");
    first.kill().await.unwrap();

    // The sandbox dies with the server.
    let cg = placement.open(&group);
    let mut alive = cg.pids();
    for _ in 0..100 {
        if alive.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        alive = cg.pids();
    }
    assert!(
        alive.is_empty(),
        "sandbox processes outlived the server: {alive:?}"
    );

    let (mut second, url) = spawn_binary(&data, &[]).await;
    let mut job = Value::Null;
    for _ in 0..600 {
        job = client
            .get(format!("{url}/v1/renders/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "succeeded" || job["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2);
    let video = client
        .get(format!("{url}/v1/renders/{id}/video"))
        .send()
        .await
        .unwrap();
    assert_eq!(video.status(), StatusCode::OK);

    // Nothing of the first process is left: its job group and area were reaped.
    assert!(placement.children(&prefix).is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(data.to_str().unwrap()));
    assert_eq!(std::fs::read_dir(&sc.areas_dir).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(data.join("work")).unwrap().count(), 0);
    second.kill().await.unwrap();
}

#[tokio::test]
async fn submit_command_follows_progress_and_downloads_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = spawn_binary(&dir.path().join("data"), &[]).await;
    let submit = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
            .arg("submit")
            .args(args)
            .args(["--server", &url, "--quiet"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let fixture = |name: &str| format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let o = submit(&[&fixture("ce_two.py"), "Intro", "Outro", "-o", "both.mp4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "both.mp4");
    common::assert_video(&dir.path().join("both.mp4"), "h264", (854, 480), 15.0, 2.5).await;

    let o = submit(&[&fixture("scene_error.py")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("error[scene-error]") && err.contains("scene_error.py:5"),
        "{err}"
    );

    let o = submit(&[&fixture("syntax_error.py")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error[syntax-error]"));

    // The server killed while a job is followed: submit says so, and where
    // the job is, instead of a decoding error.
    std::fs::write(dir.path().join("slow.py"), slow_scene(30)).unwrap();
    let following = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(["submit", "slow.py", "--server", &url, "--quiet"])
        .current_dir(dir.path())
        .output();
    let kill = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        server.kill().await.unwrap();
    };
    let (o, ()) = tokio::join!(following, kill);
    let o = o.unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("lost the server at {url} while following job"))
            && err.contains("/v1/renders/"),
        "{err}"
    );
    // A restart reaps the killed server's sandbox and takes the job up
    // again; canceled there, it leaves nothing behind.
    let id = err
        .split("following job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    let (mut again, url) = spawn_binary(&dir.path().join("data"), &[]).await;
    let client = reqwest::Client::new();
    let r = client
        .delete(format!("{url}/v1/renders/{id}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    for _ in 0..100 {
        let health: Value = client
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["workers"]["busy"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    again.kill().await.unwrap();
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_and_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TestServer::start(ServeOptions {
        header_timeout: Duration::from_millis(500),
        max_connections: 2,
        ..opts(1)
    })
    .await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    // Two idle connections fill the cap; a third is closed at once.
    let mut idle1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut idle2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle1
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let n = third.read_to_end(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "over the cap, the connection is closed unanswered");
    // The slow clients are cut off at the header timeout...
    let mut buf = [0u8; 1024];
    let r1 = tokio::time::timeout(Duration::from_secs(5), idle1.read(&mut buf))
        .await
        .expect("closed by the server");
    assert!(matches!(r1, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).contains("408"));
    let _ = tokio::time::timeout(Duration::from_secs(5), idle2.read(&mut buf))
        .await
        .expect("closed by the server");
    // ...and then the service answers again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, h) = s.get("/health").await;
    assert_eq!((status, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    s.stop().await;
}

async fn sandboxes_started(s: &TestServer) -> u64 {
    let text = s.text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix("manimd_sandboxes_started_total "))
        .and_then(|n| n.parse().ok())
        .expect("the sandbox counter")
}

async fn video_bytes(s: &TestServer, id: &str) -> bytes::Bytes {
    s.bytes(&format!("/v1/renders/{id}/video")).await
}

#[tokio::test]
async fn identical_jobs_share_one_render_and_a_cache_hit_starts_no_sandbox() {
    let mut s = TestServer::start(opts(1)).await;
    let body = json!({"code": slow_scene(2), "quality": "low"});
    let before = sandboxes_started(&s).await;
    let leader = s.submit(body.clone()).await;
    let follower = s.submit(body.clone()).await;
    let a = s.wait_for(&leader, None).await;
    let b = s.wait_for(&follower, None).await;
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("succeeded"), Some("succeeded"))
    );
    assert_eq!(a["result"]["cache_hit"], false);
    assert_eq!(b["result"]["cache_hit"], true, "{b}");
    // One inspection (the follower skips it) and one render.
    assert_eq!(sandboxes_started(&s).await - before, 2);
    assert_eq!(
        video_bytes(&s, &leader).await,
        video_bytes(&s, &follower).await
    );

    // The same request again is done at once, from the cache, with no sandbox.
    let before = sandboxes_started(&s).await;
    let (status, hit) = s.post("/v1/renders", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(hit["status"], "succeeded", "{hit}");
    assert_eq!(hit["result"]["cache_hit"], true);
    let hit_id = hit["id"].as_str().unwrap().to_owned();
    assert_eq!(
        video_bytes(&s, &hit_id).await,
        video_bytes(&s, &leader).await
    );
    // The synchronous call shares the cache.
    let r = s
        .client
        .post(format!("{}/render", s.url))
        .json(&json!({"code": slow_scene(2)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), video_bytes(&s, &leader).await);
    assert_eq!(
        sandboxes_started(&s).await,
        before,
        "cache hits start no sandbox"
    );

    // Deleting the original keeps the hits' files; a different request misses.
    let r = s
        .client
        .delete(format!("{}/v1/renders/{leader}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!video_bytes(&s, &hit_id).await.is_empty());
    let (_, other) = s
        .post("/v1/renders", &json!({"code": slow_scene(2), "fps": 10}))
        .await;
    assert_eq!(other["status"], "queued");
    s.stop().await;
}

#[tokio::test]
async fn warm_sandboxes_serve_jobs_share_nothing_and_go_when_idle() {
    let mut s = TestServer::start(ServeOptions {
        warm_pool: 1,
        // Long enough that a loaded machine still hands the warm sandbox
        // to the next job before it idles out.
        warm_idle: Duration::from_secs(6),
        ..opts(1)
    })
    .await;
    let warm = || async {
        for _ in 0..300 {
            if s.get("/health").await.1["workers"]["warm"] == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no warm sandbox");
    };
    warm().await;
    let plant = "from manim import *\nimport os, manim\n\nclass Plant(Scene):\n    def construct(self):\n        for p in ['/tmp/marker', '/job/home/marker', '/dev/shm/marker']:\n            os.makedirs(os.path.dirname(p), exist_ok=True)\n            open(p, 'w').write('left behind')\n        manim.LEFTOVER = True\n        os.environ['LEFTOVER'] = '1'\n        self.play(Create(Circle()), run_time=0.2)\n";
    let id = s.submit(json!({"code": plant})).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["warm_start"], true);

    warm().await;
    let check = "from manim import *\nimport os, manim\n\nclass Check(Scene):\n    def construct(self):\n        seen = [p for p in ['/tmp/marker', '/job/home/marker', '/dev/shm/marker'] if os.path.exists(p)]\n        if hasattr(manim, 'LEFTOVER') or 'LEFTOVER' in os.environ:\n            seen.append('module or environment state')\n        if seen:\n            raise RuntimeError(f'saw the previous job: {seen}')\n        self.play(Create(Square()), run_time=0.2)\n";
    let id = s.submit(json!({"code": check})).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["warm_start"], true);

    // Idle past the timeout, the warm sandboxes (and the ready inspector)
    // are gone, with their cgroups.
    warm().await;
    let sc = s.config.sandbox_config();
    let mut gone = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let groups = sc.job_groups();
        if s.get("/health").await.1["workers"]["warm"] == 0 && groups.is_empty() {
            gone = true;
            break;
        }
    }
    assert!(gone, "the idle warm sandboxes were not let go");
    s.assert_clean();
    s.stop().await;
}

#[tokio::test]
async fn hostile_jobs_fail_cleanly_while_others_succeed_and_the_server_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().join("data"));
    // Generous enough that ordinary jobs finish even on a loaded machine.
    config.limits.wall_secs = 20;
    config.limits.memory_mib = 700;
    config.limits.pids = 64;
    config.limits.output_mib = 64;
    config.limits.files = 2000;
    let mut s = TestServer::start_on(config, opts(2)).await;
    let (_, health) = s.get("/health").await;
    let rss_before = health["memory"]["rss_bytes"].as_u64().unwrap();
    let hostile = |body: &str| {
        format!("from manim import *\nimport os, time\n\nclass H(Scene):\n    def construct(self):\n{body}\n")
    };
    let cases = [
        (hostile("        while True:\n            pass"), "timeout"),
        (hostile("        while True:\n            os.fork()"), "process-limit"),
        (hostile(crate::security::HOG_10_GIB), "out-of-memory"),
        (hostile("        with open('/tmp/fill', 'wb') as f:\n            while True:\n                f.write(b'x' * 1024 * 1024)"), "output-too-large"),
        (
            "from manim import *\nimport os\nimport manimd_worker.media as m\nm.finalize = lambda i, f, out, l: os.symlink('/etc/ld.so.cache', out)\nm.probe = lambda p: {'codec': 'h264', 'width': 1, 'height': 1, 'fps': 1.0, 'duration': 1.0, 'frames': 1}\n\nclass H(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.2)\n".to_string(),
            "bad-output",
        ),
    ];
    let mut hostile_ids = Vec::new();
    for (code, expected) in &cases {
        hostile_ids.push((s.submit(json!({"code": code})).await, *expected));
    }
    let bystanders = [
        s.submit(json!({"code": code("ce_shapes.py")})).await,
        s.submit(json!({"code": code("gl_shapes.py")})).await,
    ];
    for (id, expected) in &hostile_ids {
        let job = s.wait_for(id, None).await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"]["code"], *expected, "{job}");
    }
    for id in &bystanders {
        let job = s.wait_for(id, None).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let bytes = video_bytes(&s, id).await;
        let path = s.config.data_dir.join(format!("{id}.mp4"));
        std::fs::write(&path, bytes).unwrap();
        common::assert_video(&path, "h264", (854, 480), 15.0, 3.0).await;
    }
    let (status, health) = s.get("/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    assert_eq!(health["workers"]["busy"], 0);
    let rss_after = health["memory"]["rss_bytes"].as_u64().unwrap();
    assert!(
        rss_after < rss_before + 40 * 1024 * 1024,
        "server memory grew from {rss_before} to {rss_after}"
    );
    s.assert_clean();
    s.stop().await;
}

#[tokio::test]
async fn hostile_names_are_refused_and_outputs_are_only_media() {
    let mut s = TestServer::start(opts(1)).await;
    for name in ["-o /x", "; rm -rf /", "../../etc/passwd", "A B"] {
        let (status, e) = s
            .post(
                "/v1/renders",
                &json!({"code": code("ce_two.py"), "scene": name}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(e["error"]["field"], "scenes[0]");
    }
    // A scene that writes HTML where its video should be: it is served as
    // the video type it claims to be, never as something a browser renders.
    let html = "from manim import *\nimport manimd_worker.media as m\n\ndef finalize(inputs, fmt, out, concat):\n    open(out, 'w').write('<html><script>alert(document.cookie)</script></html>')\n\nm.finalize = finalize\nm.probe = lambda p: {'codec': 'h264', 'width': 854, 'height': 480, 'fps': 15.0, 'duration': 1.0, 'frames': 15}\n\nclass Page(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.2)\n";
    let id = s.submit(json!({"code": html})).await;
    assert_eq!(s.wait_for(&id, None).await["status"], "succeeded");
    let r = s
        .client
        .get(format!("{}/v1/renders/{id}/video", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("inline; filename=\"manimd-{id}.mp4\"").as_str()
    );
    for path in ["/health", "/nowhere", "/v1/renders/zzz"] {
        let r = s
            .client
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn api_keys_gate_v1_with_per_key_jobs_quotas_and_rates() {
    let mut s = TestServer::start(ServeOptions {
        api_keys: ["alpha-key", "beta-key"]
            .into_iter()
            .filter_map(manimd::secret::Secret::new)
            .collect(),
        rate_limit_per_minute: 30,
        max_jobs_per_key: 1,
        ..opts(1)
    })
    .await;
    let with = |key: &str, rb: reqwest::RequestBuilder| {
        rb.header("Authorization", format!("Bearer {key}"))
    };
    let r = s
        .client
        .post(format!("{}/v1/renders", s.url))
        .json(&json!({"code": code("ce_shapes.py")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let r = with("nope", s.client.get(format!("{}/v1/renders", s.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .client
        .post(format!("{}/render", s.url))
        .json(&json!({"code": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Health stays open, for probes.
    assert_eq!(s.get("/health").await.0, StatusCode::OK);

    let r = with("alpha-key", s.client.post(format!("{}/v1/renders", s.url)))
        .json(&json!({"code": slow_scene(30)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // One job at a time for this key.
    let r = with("alpha-key", s.client.post(format!("{}/v1/renders", s.url)))
        .json(&json!({"code": code("ce_shapes.py")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "quota-exceeded"
    );

    // Another key sees nothing of it.
    let r = with(
        "beta-key",
        s.client.get(format!("{}/v1/renders/{id}", s.url)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = with(
        "beta-key",
        s.client.delete(format!("{}/v1/renders/{id}", s.url)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list: Value = with("beta-key", s.client.get(format!("{}/v1/renders", s.url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["renders"], json!([]));
    let list: Value = with("alpha-key", s.client.get(format!("{}/v1/renders", s.url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["renders"][0]["id"], id.as_str());

    // Past its rate, a key gets 429 with Retry-After; the other key does not.
    let mut limited = 0;
    for _ in 0..40 {
        let r = with(
            "beta-key",
            s.client.get(format!("{}/v1/capabilities", s.url)),
        )
        .send()
        .await
        .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            assert_eq!(
                r.json::<Value>().await.unwrap()["error"]["code"],
                "rate-limited"
            );
            limited += 1;
        }
    }
    assert!(limited >= 5, "{limited} requests were limited");
    let r = with(
        "alpha-key",
        s.client.delete(format!("{}/v1/renders/{id}", s.url)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for _ in 0..100 {
        let job: Value = with(
            "alpha-key",
            s.client.get(format!("{}/v1/renders/{id}", s.url)),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if job["status"] == "canceled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn without_keys_the_server_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args([
            "serve",
            "--addr",
            "0.0.0.0:0",
            "--warm-pool",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("MANIMD_API_KEYS")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to listen") && err.contains("MANIMD_API_KEYS"),
        "{err}"
    );
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_never_aimed_at_private_addresses() {
    use std::sync::{Arc, Mutex};
    let secret = "webhook-test-secret";
    // A receiver that fails the first delivery and takes the second.
    let got: Arc<Mutex<Vec<(axum::http::HeaderMap, bytes::Bytes)>>> = Arc::default();
    let seen = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push((headers, body));
                if seen.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut s = TestServer::start(ServeOptions {
        webhooks: manimd::webhooks::WebhookConfig {
            secret: manimd::secret::Secret::new(secret),
            allow_private: true,
            attempts: 3,
            backoff: Duration::from_millis(200),
        },
        ..opts(1)
    })
    .await;
    let id = s
        .submit(json!({"code": code("ce_two.py"), "scene": "Intro", "webhook_url": hook}))
        .await;
    assert_eq!(s.wait_for(&id, None).await["status"], "succeeded");
    for _ in 0..100 {
        if got.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deliveries = got.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2, "one failed delivery, one retry");
    let (headers, body) = &deliveries[1];
    let ts: u64 = headers["x-manimd-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = format!(
        "sha256={}",
        manimd::webhooks::Webhooks::sign(secret, ts, body)
    );
    assert_eq!(headers["x-manimd-signature"], expected.as_str());
    assert_eq!(headers["x-manimd-event"], "render.succeeded");
    let record: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (record["id"].as_str(), record["status"].as_str()),
        (Some(id.as_str()), Some("succeeded"))
    );
    s.stop().await;

    // With the default policy, loopback, private and link-local targets are refused up front.
    let mut s = TestServer::start(ServeOptions {
        webhooks: manimd::webhooks::WebhookConfig {
            secret: manimd::secret::Secret::new(secret),
            ..Default::default()
        },
        ..opts(1)
    })
    .await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://[::1]/",
        // IPv4 loopback and private addresses inside NAT64, 6to4 and Teredo.
        "http://[64:ff9b::7f00:1]:9/",
        "http://[64:ff9b:1::a00:1]:9/",
        "http://[2002:c0a8:101::1]:9/",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:9/",
        "http://localhost:9/",
        "ftp://example.com/",
        "not a url",
    ] {
        let (status, e) = s
            .post(
                "/v1/renders",
                &json!({"code": code("ce_shapes.py"), "webhook_url": url}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {e}");
        assert_eq!(e["error"]["field"], "webhook_url", "{url}");
    }
    s.stop().await;
}

#[tokio::test]
async fn schemathesis_fuzzing_finds_no_5xx_and_no_schema_violation() {
    let mut s = TestServer::start(opts(2)).await;
    let tools = std::path::Path::new(&s.config.runtime_dir).join("venv/tools/bin/schemathesis");
    let out = tokio::process::Command::new(&tools)
        .args(["run", &format!("{}/openapi.json", s.url)])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        // Without a model provider the generation calls answer 503
        // llm-not-configured by design; the generate module covers them.
        .args(["--exclude-path-regex", "generat"])
        .args([
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "30",
            "--workers",
            "1",
        ])
        .args([
            "--request-timeout",
            "120",
            "--seed",
            "7",
            "--no-color",
            "--suppress-health-check",
            "all",
        ])
        .current_dir(s.config.data_dir.parent().unwrap())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{} ({e}): run scripts/setup.sh", tools.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    let (status, health) = s.get("/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn finished_jobs_expire_with_their_files_and_responses_carry_a_request_id() {
    let mut s = TestServer::start(ServeOptions {
        retention: Duration::from_secs(2),
        ..opts(1)
    })
    .await;
    let r = s
        .client
        .get(format!("{}/health", s.url))
        .send()
        .await
        .unwrap();
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 36, "a UUID per request: {request_id}");
    let id = s
        .submit(json!({"code": code("ce_two.py"), "scene": "Intro"}))
        .await;
    assert_eq!(s.wait_for(&id, None).await["status"], "succeeded");
    let files = s.config.data_dir.join("videos").join(&id);
    assert!(files.exists());
    let mut gone = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.get(&format!("/v1/renders/{id}")).await.0 == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
    }
    assert!(gone, "the job outlived its retention");
    assert!(!files.exists(), "its files were deleted with it");
    s.stop().await;
}

/// Twelve animations, with pauses so that the job is watched while it runs.
fn twelve_animations() -> String {
    let mut code = String::from("from manim import *\nimport time\n\nclass Twelve(Scene):\n    def construct(self):\n        sq = Square()\n");
    for i in 0..12 {
        code.push_str(&format!("        self.play(sq.animate.rotate(PI / 6).shift(UP * 0.1 * {}), run_time=0.5)\n        time.sleep(0.3)\n", if i % 2 == 0 { 1 } else { -1 }));
    }
    code
}

#[tokio::test]
async fn live_hls_is_playable_before_the_job_ends_and_matches_the_video_after() {
    let mut s = TestServer::start(opts(1)).await;
    let id = s.submit(json!({"code": twelve_animations()})).await;
    let live = |path: &str| format!("{}/v1/renders/{id}/{path}", s.url);
    // Poll the playlist until it lists a segment while the job still runs.
    let mut seen_early = false;
    for _ in 0..300 {
        let r = s.client.get(live("live.m3u8")).send().await.unwrap();
        if r.status() == StatusCode::OK {
            assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
            assert_eq!(r.headers()["cache-control"], "no-cache");
            let playlist = r.text().await.unwrap();
            let (_, segments) = common::extinf_total(&playlist);
            if segments >= 1 && !playlist.contains("#EXT-X-ENDLIST") {
                assert!(
                    playlist.contains("#EXT-X-MAP:URI=\"live/init.mp4\"")
                        && playlist.contains("\nlive/seg-0.m4s\n"),
                    "{playlist}"
                );
                let init = s
                    .client
                    .get(live("live/init.mp4"))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let seg = s.client.get(live("live/seg-0.m4s")).send().await.unwrap();
                assert!(seg.headers()["cache-control"]
                    .to_str()
                    .unwrap()
                    .contains("immutable"));
                let seg = seg.bytes().await.unwrap();
                let path = s.config.data_dir.join("early.mp4");
                std::fs::write(&path, [init.as_ref(), seg.as_ref()].concat()).unwrap();
                let p = common::probe(&path).await;
                assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 854, 480));
                assert!(p.frames > 0);
                let (_, job) = s.get(&format!("/v1/renders/{id}")).await;
                assert_eq!(
                    job["status"], "running",
                    "the segment was playable before the job ended"
                );
                seen_early = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_early, "no segment was listed while the job ran");

    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    s.assert_live_covers_video(&job).await;
    // Names outside the stream are refused before any path is made.
    for bad in [
        "..%2Fmanimd.db",
        "seg-1.mp4",
        "live.m3u8.part",
        ".init.mp4.part",
    ] {
        let r = s
            .client
            .get(live(&format!("live/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_studio_page_its_script_styles_and_player_library_are_served_from_our_origin() {
    let mut s = TestServer::start(opts(1)).await;
    let r = s.client.get(format!("{}/", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("http"),
        "{csp}"
    );
    // No inline script or style may run: both come from our origin only.
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for wanted in ["script-src 'self'", "style-src 'self'"] {
        assert!(directives.contains(&wanted), "{wanted} in {csp}");
    }
    let page = r.text().await.unwrap();
    for needle in [
        "<textarea id=\"code\"",
        "<input id=\"api-key\" type=\"password\"",
        "<div id=\"timeline\"",
        "src=\"/assets/hls.min.js\"",
        "src=\"/assets/editor.js\"",
        "src=\"/assets/studio.js\"",
        "src=\"/assets/files.js\"",
        "<ul id=\"file-list\"",
        "<input type=\"file\" id=\"file-upload\" multiple",
        "href=\"/assets/studio.css\"",
    ] {
        assert!(page.contains(needle), "the page lacks {needle}");
    }
    // Nothing inline that the policy would block: no <script> with a body,
    // no <style>, no style attribute, no event-handler attribute.
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script src=").count(),
        "an inline script"
    );
    assert!(!page.contains("<style"), "an inline style sheet");
    assert!(!page.contains(" style="), "an inline style attribute");
    let lower = page.to_ascii_lowercase();
    let handler = lower
        .split(|c: char| c.is_whitespace())
        .find(|w| w.starts_with("on") && w.contains('='));
    assert_eq!(handler, None, "an inline event handler");
    assert!(
        !page.contains("https://"),
        "nothing is fetched from elsewhere"
    );
    let asset = |path: &'static str| {
        let client = s.client.clone();
        let url = format!("{}{path}", s.url);
        async move {
            let r = client.get(url).send().await.unwrap();
            // hls.js, the editor and the names: scripts/setup.sh installs them.
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let cache = if path.ends_with("hls.min.js") {
                "public, max-age=3600"
            } else {
                // The page's own files change with the binary, the editor
                // and the names with the checkout and the engines.
                "no-cache"
            };
            assert_eq!(r.headers()["cache-control"], cache, "{path}");
            let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
            (kind, r.text().await.unwrap())
        }
    };
    let (kind, js) = asset("/assets/studio.js").await;
    assert_eq!(kind, "text/javascript; charset=utf-8");
    // The event stream is read with fetch, which can send the key.
    for needle in [
        "/v1/renders",
        "/v1/previews",
        "text/event-stream",
        "authorization",
        "sessionStorage",
        "live",
    ] {
        assert!(js.contains(needle), "the script lacks {needle}");
    }
    assert!(
        !js.contains("https://"),
        "nothing is fetched from elsewhere"
    );
    // The files panel: blobs hashed in the page and uploaded once, the
    // project kept in the browser.
    let (kind, files) = asset("/assets/files.js").await;
    assert_eq!(kind, "text/javascript; charset=utf-8");
    for needle in [
        "ManimdFiles",
        "crypto.subtle",
        "/v1/blobs/missing",
        "indexedDB",
        "localStorage",
    ] {
        assert!(files.contains(needle), "the files panel lacks {needle}");
    }
    assert!(!files.contains("https://"), "nothing from elsewhere");
    let (kind, css) = asset("/assets/studio.css").await;
    assert_eq!(kind, "text/css; charset=utf-8");
    assert!(css.contains(".editor"), "{css}");
    let (kind, hls) = asset("/assets/hls.min.js").await;
    assert!(kind.starts_with("text/javascript"), "{kind}");
    assert!(hls.contains("Hls"));
    let (kind, editor) = asset("/assets/editor.js").await;
    assert_eq!(kind, "text/javascript; charset=utf-8");
    assert!(
        editor.contains("ManimdEditor") && editor.contains("createEditor"),
        "the bundle lacks the editor"
    );
    assert!(!editor.contains("https://cdn"), "nothing from a CDN");
    // The names come from the installed engines: each has its own, and
    // ManimGL's ShowCreation is not Manim Community's.
    let (kind, names) = asset("/assets/engine-names.json").await;
    assert_eq!(kind, "application/json");
    let names: Value = serde_json::from_str(&names).unwrap();
    let has = |engine: &str, name: &str| {
        names[engine]
            .as_array()
            .unwrap_or_else(|| panic!("no {engine} names"))
            .iter()
            .any(|n| n[0] == name)
    };
    for engine in ["manim", "manimgl"] {
        assert!(has(engine, "Circle") && has(engine, "Scene"), "{engine}");
        assert!(names[engine].as_array().unwrap().len() > 300, "{engine}");
    }
    assert!(has("manimgl", "ShowCreation") && !has("manim", "ShowCreation"));
    assert!(has("manim", "Create") && !has("manimgl", "Create"));
    s.stop().await;
}

/// Runs a studio script of `web/tests` against a fresh server with a warm
/// sandbox; checks that it left `shots` (kept as test artifacts) and returns
/// what it printed.
async fn studio_in_chromium(script: &str, shots: &[&str]) -> String {
    let mut s = TestServer::start(ServeOptions {
        warm_pool: 1,
        ..opts(1)
    })
    .await;
    let (dir, report) =
        common::server::run_studio_script(script, &s.url, &s.config.runtime_dir, &[]).await;
    for shot in shots {
        let png = std::fs::read(dir.join(shot)).unwrap();
        assert_eq!(&png[..4], b"\x89PNG", "{shot}");
    }
    s.stop().await;
    report
}

#[tokio::test]
async fn the_studio_renders_plays_live_and_highlights_errors_in_chromium() {
    let report = studio_in_chromium(
        "studio.mjs",
        &[
            "studio-loaded.png",
            "studio-playing-live.png",
            "studio-done.png",
            "studio-error.png",
            "studio-phone.png",
        ],
    )
    .await;
    assert!(report.contains("ok: video advanced"), "{report}");
}

#[tokio::test]
async fn the_studio_timeline_seeks_shows_lines_and_marks_what_an_edit_changed_in_chromium() {
    let report = studio_in_chromium(
        "studio_timeline.mjs",
        &[
            "studio-timeline.png",
            "studio-timeline-changed.png",
            "studio-timeline-phone.png",
        ],
    )
    .await;
    assert!(report.contains("ok: 3 marks"), "{report}");
    // The storyboard's check runs once the server has previews; until then
    // the script says why it skipped it.
    println!("{report}");
}

#[tokio::test]
async fn the_studio_editor_completes_marks_errors_and_sends_the_key_in_chromium() {
    // A server with keys (and its default request rate): the page must send
    // the key with every request, the event stream and the video included.
    let key = "studio-editor-key";
    let mut s = TestServer::start(ServeOptions {
        api_keys: [key]
            .into_iter()
            .filter_map(manimd::secret::Secret::new)
            .collect(),
        warm_pool: 1,
        ..opts(1)
    })
    .await;
    let (dir, report) = common::server::run_studio_script(
        "studio_editor.mjs",
        &s.url,
        &s.config.runtime_dir,
        &[key],
    )
    .await;
    for shot in [
        "studio-editor-key-asked.png",
        "studio-editor-completion.png",
        "studio-editor-rendered.png",
        "studio-editor-error.png",
        "studio-editor-phone.png",
    ] {
        let png = std::fs::read(dir.join(shot)).unwrap();
        assert_eq!(&png[..4], b"\x89PNG", "{shot}");
    }
    assert!(report.contains("ok: typed, completed Circle"), "{report}");
    assert!(report.contains("line 6 marked"), "{report}");
    // It ran on the setup's pinned Node, not the machine's own.
    let pinned = std::process::Command::new(s.config.runtime_dir.join("web/bin/node"))
        .arg("--version")
        .output()
        .unwrap();
    let pinned = String::from_utf8_lossy(&pinned.stdout).trim().to_owned();
    assert!(
        report.contains(&format!("node {pinned}")),
        "{pinned}: {report}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let mut s = TestServer::start(opts(1)).await;
    let second = manimd::server::start_node(&s.config, &opts(1)).await;
    let err = second.err().expect("the data dir is taken").to_string();
    assert!(
        err.contains("another manimd process uses the data dir"),
        "{err}"
    );
    // The first one is untouched.
    let (status, h) = s.get("/health").await;
    assert_eq!((status, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    s.stop().await;
}

#[tokio::test]
async fn a_graceful_stop_leaves_no_warm_sandbox_or_inspector_behind() {
    let mut s = TestServer::start(ServeOptions {
        warm_pool: 1,
        ..opts(1)
    })
    .await;
    let id = s.submit(json!({"code": code("ce_shapes.py")})).await;
    assert_eq!(s.wait_for(&id, None).await["status"], "succeeded");
    // The submission's inspection took the warm inspector; wait until the
    // pool has warmed both again, so the stop has each kind to end.
    for _ in 0..300 {
        let (_, health) = s.get("/health").await;
        if health["workers"]["warm"].as_u64() >= Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn a_test_server_dropped_mid_render_leaves_nothing_behind() {
    // What a test that fails mid-render leaves: a server never stopped.
    let s = TestServer::start(opts(1)).await;
    let id = s.submit(json!({"code": slow_scene(60)})).await;
    s.wait_for(&id, Some("running")).await;
    let (sandbox, data) = (s.config.sandbox_config(), s.config.data_dir.clone());
    // A job is running from its claim; its sandbox's group comes a moment later.
    for _ in 0..100 {
        if !sandbox.job_groups().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!sandbox.job_groups().is_empty(), "the render has its group");
    drop(s);
    let groups = sandbox.job_groups();
    assert!(groups.is_empty(), "cgroups left: {groups:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let data = data.to_str().unwrap();
    assert!(!mounts.contains(data), "mounts left under {data}");
}
