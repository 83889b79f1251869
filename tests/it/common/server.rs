//! The real server, started in this process on port 0 with its own data
//! directory and driven over HTTP, and a reader of its event streams.

use std::time::Duration;

use futures::StreamExt;
use manimd::config::Config;
use manimd::server::{self, ServeOptions};
use reqwest::StatusCode;
use serde_json::Value;

pub struct TestServer {
    pub url: String,
    pub client: reqwest::Client,
    pub config: Config,
    /// The node's service, for what HTTP does not reach (the blob sweep).
    pub service: manimd::server::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start(opts: ServeOptions) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("manimd-srv-")
            .tempdir()
            .unwrap();
        let mut s = TestServer::start_on(Config::for_tests(dir.path().join("data")), opts).await;
        s._dir = Some(dir);
        s
    }

    pub async fn start_on(config: Config, opts: ServeOptions) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = server::start(&config, &opts, &listener)
            .await
            .expect("server starts");
        let url = format!("http://{}", server.addr);
        let service = std::sync::Arc::clone(&server.node.service);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, &opts, async {
                    let _ = rx.await;
                })
                .await
        });
        TestServer {
            url,
            client: reqwest::Client::new(),
            config,
            service,
            stop: Some(tx),
            task: Some(task),
            _dir: None,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A GET of `path` that answers 200: its body.
    pub async fn bytes(&self, path: &str) -> bytes::Bytes {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.bytes().await.unwrap()
    }

    /// A GET of `path` that answers 200: its body as text.
    pub async fn text(&self, path: &str) -> String {
        String::from_utf8(self.bytes(path).await.to_vec()).expect("UTF-8")
    }

    /// Asserts that the finished `job`'s live playlist has ended and lists
    /// the whole video (within a frame at 15 fps a segment).
    pub async fn assert_live_covers_video(&self, job: &Value) {
        let id = job["id"].as_str().unwrap();
        let playlist = self.text(&format!("/v1/renders/{id}/live.m3u8")).await;
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
        let (total, segments) = super::extinf_total(&playlist);
        let duration = job["result"]["duration"].as_f64().unwrap();
        assert!(
            (total - duration).abs() <= segments as f64 / 15.0,
            "playlist {total} s vs video {duration} s over {segments} segments"
        );
    }

    pub async fn submit(&self, body: Value) -> String {
        let (status, job) = self.post("/v1/renders", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        job["id"].as_str().unwrap().to_owned()
    }

    /// Polls until the job is in `status` (or any terminal state when `None`).
    pub async fn wait_for(&self, id: &str, status: Option<&str>) -> Value {
        for _ in 0..1200 {
            let (_, job) = self.get(&format!("/v1/renders/{id}")).await;
            let s = job["status"].as_str().unwrap_or("");
            let done = matches!(s, "succeeded" | "failed" | "canceled");
            if status.map_or(done, |want| s == want) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {id} never reached {status:?}");
    }

    /// Reads a job's SSE stream to its end: (event name, data) pairs.
    pub async fn events(&self, id: &str) -> Vec<(String, Value)> {
        let r = self
            .client
            .get(format!("{}/v1/renders/{id}/events", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        read_sse(r).await
    }

    pub fn assert_clean(&self) {
        let sc = self.config.sandbox_config();
        let groups = sc.job_groups();
        assert!(groups.is_empty(), "cgroups left: {groups:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let data = self.config.data_dir.to_str().unwrap();
        assert!(!mounts.contains(data), "mounts left under {data}");
    }
}

impl Drop for TestServer {
    /// A test that fails never reaches `stop`. Its server is then stopped
    /// here, and its sandboxes are killed and their groups and areas
    /// removed, as a restart of the same installation would. Otherwise
    /// they would stay on the host: the next test server is another
    /// installation and never reaps them.
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        task.abort();
        let sandbox = self.config.sandbox_config();
        let reaped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                if let Ok(sandbox) = manimd::sandbox::Sandbox::new(sandbox) {
                    sandbox.reap().await;
                    // And the job groups' parent, once no server uses it.
                    sandbox.release();
                }
            })
        })
        .join();
        if reaped.is_err() && !std::thread::panicking() {
            panic!("reaping a dropped test server's sandboxes panicked");
        }
    }
}

/// Starts the real binary (`serve`, one worker, no warm pool) with `envs`
/// set; returns it and its base URL.
pub async fn spawn_binary(
    data: &std::path::Path,
    envs: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
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
        .arg(data)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(url) = line.strip_prefix("manimd listening on ") {
            return (child, url.to_owned());
        }
    }
    panic!("the server did not start");
}

/// Server-Sent Events from a response, one `(event name, data)` at a time,
/// through the service's own decoder.
pub struct Sse {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: manimd::sse::Decoder,
    ready: std::collections::VecDeque<manimd::sse::Event>,
}

impl Sse {
    pub fn new(response: reqwest::Response) -> Sse {
        Sse {
            stream: response.bytes_stream().boxed(),
            decoder: manimd::sse::Decoder::new(16 << 20),
            ready: Default::default(),
        }
    }

    /// The next event; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some((e.event, serde_json::from_str(&e.data).unwrap()));
            }
            let chunk = self.stream.next().await?.unwrap();
            self.ready.extend(self.decoder.feed(&chunk).unwrap());
        }
    }
}

/// Reads an event stream to its end.
pub async fn read_sse(response: reqwest::Response) -> Vec<(String, Value)> {
    let mut sse = Sse::new(response);
    let mut out = Vec::new();
    while let Some(event) = sse.next().await {
        out.push(event);
    }
    out
}

/// Runs a Playwright script of `web/tests` against `url` in Debian's
/// Chromium, with the Node the setup pins (`<runtime>/web/bin/node`, not
/// whatever Node is on `PATH`) and `args` after the URL and the screenshot
/// directory; returns where its screenshots went
/// (`$CARGO_TARGET_TMPDIR/studio-screenshots`, kept as test artefacts) and
/// what it printed, after checking that it succeeded.
pub async fn run_studio_script(
    script: &str,
    url: &str,
    runtime_dir: &std::path::Path,
    args: &[&str],
) -> (std::path::PathBuf, String) {
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("studio-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("web/tests")
        .join(script);
    let node = runtime_dir.join("web/bin/node");
    assert!(
        node.exists(),
        "{} is missing: scripts/setup.sh installs the pinned Node",
        node.display()
    );
    let out = tokio::process::Command::new(&node)
        .arg(&script)
        .arg(url)
        .arg(&shots)
        .args(args)
        .env(
            "PLAYWRIGHT_CORE",
            runtime_dir.join("web/node_modules/playwright-core/index.mjs"),
        )
        .output()
        .await
        .expect("the pinned node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    (shots, report)
}

/// A finished render's `result.animations[].cached`, in order.
pub fn cached_flags(job: &Value) -> Vec<bool> {
    job["result"]["animations"]
        .as_array()
        .unwrap_or_else(|| panic!("no animations: {job}"))
        .iter()
        .map(|a| a["cached"].as_bool().unwrap())
        .collect()
}
