//! S3-compatible storage, end to end: the real binary on port 0 with
//! `--storage s3://…` against moto's server (`common::s3`), real renders,
//! and the bucket read back independently of the server.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::s3::S3Server;
use common::server::cached_flags;
use common::tap::Tap;
use reqwest::header::{CONTENT_RANGE, IF_NONE_MATCH, LOCATION, RANGE};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The real binary, serving with a bucket; stopped with SIGTERM on drop.
struct Node {
    child: tokio::process::Child,
    url: String,
    client: reqwest::Client,
    data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(s3: &S3Server, prefix: &str, serve: &str) -> Node {
        Node::start_url(s3, &s3.url(prefix), serve).await
    }

    /// With `storage` as the `--storage` URL (another endpoint before
    /// the same bucket: a `Tap`).
    async fn start_url(s3: &S3Server, storage: &str, serve: &str) -> Node {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::Builder::new()
            .prefix("manimd-s3-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
            .args(["serve", "--addr", "127.0.0.1:0", "--workers", "1"])
            .args(["--warm-pool", "0", "--storage", storage])
            .args(["--storage-serve", serve, "--data-dir"])
            .arg(&data)
            .env_remove("MANIMD_STORAGE")
            .envs(s3.env())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("manimd listening on ") {
                return Node {
                    child,
                    url: url.to_owned(),
                    client: reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap(),
                    data,
                    _dir: dir,
                };
            }
        }
        panic!("the server did not start");
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    async fn submit(&self, code: &str) -> Value {
        let r = self
            .client
            .post(format!("{}/v1/renders", self.url))
            .json(&json!({"code": code, "quality": "low"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        r.json().await.unwrap()
    }

    async fn wait(&self, id: &str) -> Value {
        for _ in 0..1200 {
            let job = self.json(&format!("/v1/renders/{id}")).await;
            if matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "canceled")
            ) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {id} never ended");
    }

    /// SIGTERM, then waits: the server stops its workers cleanly.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// Two animations with a pause between them, so the live stream has a
/// segment while the job still runs.
const TWO_STEPS: &str = "from manim import *\nimport time\n\nclass Two(Scene):\n    def construct(self):\n        c = Circle()\n        self.play(Create(c), run_time=0.5)\n        time.sleep(3)\n        self.play(FadeOut(c), run_time=0.5)\n";

const ONE_STEP: &str = "from manim import *\n\nclass One(Scene):\n    def construct(self):\n        self.play(Create(Square()), run_time=0.5)\n";

async fn probe_bytes(dir: &Path, name: &str, bytes: &[u8]) -> common::Probe {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    common::probe(&path).await
}

#[tokio::test]
async fn renders_live_streams_cache_hits_and_deletes_go_through_the_bucket() {
    let s3 = S3Server::start("renders").await;
    let node = Node::start(&s3, "team/videos", "proxy").await;
    let health = node.json("/health").await;
    assert_eq!(
        health["storage"],
        json!({"backend": "s3", "serve": "proxy"})
    );
    assert!(!health.to_string().contains(common::s3::SECRET_KEY));

    let id = node.submit(TWO_STEPS).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job_prefix = format!("team/videos/{id}");
    let live_key = format!("{job_prefix}/1/live/live.m3u8");

    // While the job runs, the growing playlist and its first segment are in
    // the bucket, where a node on another machine can read them.
    let mut seen_running = false;
    for _ in 0..600 {
        let keys = s3.keys(&job_prefix).await;
        if keys.contains(&live_key) {
            let playlist = String::from_utf8(s3.get(&live_key).await.to_vec()).unwrap();
            let job = node.json(&format!("/v1/renders/{id}")).await;
            if playlist.contains("\nlive/seg-0.m4s\n") && job["status"] == "running" {
                assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
                assert!(keys.contains(&format!("{job_prefix}/1/live/init.mp4")));
                assert!(keys.contains(&format!("{job_prefix}/1/live/seg-0.m4s")));
                seen_running = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen_running,
        "no live segment reached the bucket while the job ran"
    );

    let job = node.wait(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let keys = s3.keys(&job_prefix).await;
    for name in [
        "output.mp4",
        "thumbnail.png",
        "live/init.mp4",
        "live/seg-0.m4s",
    ] {
        assert!(
            keys.contains(&format!("{job_prefix}/1/{name}")),
            "{name} not in {keys:?}"
        );
    }
    // The final playlist is in the bucket and served from it.
    let playlist = s3.get(&live_key).await;
    assert!(playlist.ends_with(b"#EXT-X-ENDLIST\n"));
    let served = node.get(&format!("/v1/renders/{id}/live.m3u8")).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.unwrap(), playlist);
    let segment = node.get(&format!("/v1/renders/{id}/live/seg-0.m4s")).await;
    assert_eq!(segment.status(), StatusCode::OK);
    assert_eq!(
        segment.bytes().await.unwrap(),
        s3.get(&format!("{job_prefix}/1/live/seg-0.m4s")).await
    );
    // Nothing of the job stays on the node's disk: the bucket has it all.
    assert!(!node.data.join("videos").join(&id).exists());
    assert!(!node.data.join("live-spool").join(&id).exists());

    // The object is a real video.
    let object = s3.get(&format!("{job_prefix}/1/output.mp4")).await;
    assert_eq!(
        object.len() as u64,
        job["result"]["bytes"].as_u64().unwrap()
    );
    let p = probe_bytes(&node.data, "downloaded.mp4", &object).await;
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 854, 480));
    assert!(p.frames > 0);

    // Proxied: a range, the whole file, a conditional GET, a bad range.
    let video = format!("/v1/renders/{id}/video");
    let r = node
        .client
        .get(format!("{}{video}", node.url))
        .header(RANGE, "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()[CONTENT_RANGE],
        format!("bytes 0-99/{}", object.len()).as_str()
    );
    let etag = r.headers()["etag"].clone();
    assert_eq!(r.bytes().await.unwrap(), object.slice(0..100));
    let full = node.get(&video).await;
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.headers()["content-type"], "video/mp4");
    assert_eq!(full.bytes().await.unwrap(), object);
    let r = node
        .client
        .get(format!("{}{video}", node.url))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = node
        .client
        .get(format!("{}{video}", node.url))
        .header(RANGE, format!("bytes={}-", object.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = node
        .client
        .head(format!("{}{video}", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        object.len().to_string().as_str()
    );

    // An identical request is a cache hit: its files are server-side
    // copies under its own id, and they outlive the original's deletion.
    let hit = node.submit(TWO_STEPS).await;
    assert_eq!(hit["status"], "succeeded", "{hit}");
    assert_eq!(hit["result"]["cache_hit"], true);
    let hit_id = hit["id"].as_str().unwrap().to_owned();
    let hit_prefix = format!("team/videos/{hit_id}");
    assert_eq!(
        s3.keys(&hit_prefix).await,
        vec![
            format!("{hit_prefix}/1/output.mp4"),
            format!("{hit_prefix}/1/thumbnail.png")
        ]
    );
    assert_eq!(s3.get(&format!("{hit_prefix}/1/output.mp4")).await, object);

    let r = node
        .client
        .delete(format!("{}/v1/renders/{id}", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        s3.keys(&job_prefix).await.is_empty(),
        "the job's objects are gone"
    );
    let hit_video = node.get(&format!("/v1/renders/{hit_id}/video")).await;
    assert_eq!(hit_video.status(), StatusCode::OK);
    assert_eq!(hit_video.bytes().await.unwrap(), object);
    node.stop().await;
}

#[tokio::test]
async fn redirect_mode_sends_presigned_urls_and_an_unreachable_store_is_a_503() {
    let s3 = S3Server::start("redirects").await;
    let node = Node::start(&s3, "", "redirect").await;
    let id = node.submit(ONE_STEP).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = node.wait(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(node.json("/health").await["storage"]["serve"], "redirect");

    for (path, key) in [("video", "output.mp4"), ("thumbnail", "thumbnail.png")] {
        let r = node.get(&format!("/v1/renders/{id}/{path}")).await;
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT, "{path}");
        let location = r.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(
            location.starts_with(&format!("{}/redirects/{id}/1/{key}?", s3.endpoint)),
            "{location}"
        );
        assert!(location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=900"));
        // Fetched with no credentials at all, the URL yields the object.
        let fetched = reqwest::get(&location).await.unwrap();
        assert_eq!(fetched.status(), StatusCode::OK, "{location}");
        assert_eq!(
            fetched.bytes().await.unwrap(),
            s3.get(&format!("{id}/1/{key}")).await
        );
    }
    // The live playlist changes, so it is always proxied.
    let r = node.get(&format!("/v1/renders/{id}/live.m3u8")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().ends_with("#EXT-X-ENDLIST\n"));

    // With the store gone, files are 503 storage-unavailable (within
    // seconds, not minutes of retries) and the API itself still answers.
    drop(s3);
    let started = std::time::Instant::now();
    let r = node.get(&format!("/v1/renders/{id}/live.m3u8")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage-unavailable", "{body}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // A delete that cannot reach the files keeps the job, to be retried.
    let r = node
        .client
        .delete(format!("{}/v1/renders/{id}", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        node.json(&format!("/v1/renders/{id}")).await["status"],
        "succeeded"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_bad_storage_url_stops_the_server_at_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(["serve", "--addr", "127.0.0.1:0", "--warm-pool", "0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("MANIMD_STORAGE", "s3://renders?endpoint=ftp://127.0.0.1")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid storage URL: endpoint is an http:// or https:// URL"),
        "{stderr}"
    );
}

/// Three plays, cached per owner: the one local owner of a server without keys.
const THREE_STEPS: &str = "from manim import *\n\nclass Three(Scene):\n    def construct(self):\n        s = Square()\n        self.play(Create(s), run_time=0.4)\n        self.play(s.animate.shift(RIGHT), run_time=0.4)\n        self.play(FadeOut(s), run_time=0.4)\n";

#[tokio::test]
async fn animations_drawn_on_one_node_serve_the_next_render_on_another() {
    let s3 = S3Server::start("animations").await;
    let first = Node::start(&s3, "anim", "proxy").await;
    let job = first.submit(THREE_STEPS).await;
    let job = first.wait(job["id"].as_str().unwrap()).await;
    assert_eq!(cached_flags(&job), vec![false; 3], "{job}");
    first.stop().await;
    let keys = s3.keys("anim/animations/local").await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.iter().all(|k| k.ends_with(".mp4")), "{keys:?}");

    // A node with an empty disk: the bucket's entries serve its render.
    let second = Node::start(&s3, "anim", "proxy").await;
    let job = second
        .submit(&format!("# another node\n{THREE_STEPS}"))
        .await;
    let job = second.wait(job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(cached_flags(&job), vec![true; 3], "{job}");
    let local = std::fs::read_dir(second.data.join("animations/local"))
        .unwrap()
        .flatten()
        .flat_map(|p| std::fs::read_dir(p.path()).unwrap().flatten())
        .count();
    assert_eq!(local, 3);
    second.stop().await;
}

#[tokio::test]
async fn a_failed_upload_queues_the_job_again_and_a_head_asks_the_bucket_for_no_bytes() {
    let s3 = S3Server::start("flaky").await;
    // The store refuses the first attempt's video, every time it is tried.
    let tap = Tap::start(&s3.endpoint, |method, path| {
        method == "PUT" && path.contains("/1/output.")
    })
    .await;
    let url = format!(
        "s3://flaky/p?endpoint={}&region={}",
        tap.endpoint,
        common::s3::REGION
    );
    let node = Node::start_url(&s3, &url, "proxy").await;
    let id = node.submit(ONE_STEP).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = node.wait(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "queued again and rendered again: {job}");
    assert_eq!(job["result"]["attempt"], 2, "{job}");
    let refused: Vec<_> = tap
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "PUT" && p.contains(&format!("{id}/1/output.")))
        .collect();
    assert!(!refused.is_empty(), "the first upload was tried");
    let keys = s3.keys(&format!("p/{id}")).await;
    assert!(keys.contains(&format!("p/{id}/2/output.mp4")), "{keys:?}");
    assert!(!keys.contains(&format!("p/{id}/1/output.mp4")), "{keys:?}");

    // A HEAD answers the GET's headers from the object's size: the bucket
    // sees a HEAD, never a GET of its bytes.
    let video = format!("{}/v1/renders/{id}/video", node.url);
    let before = tap.requests().len();
    let r = node.client.head(&video).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let size = job["result"]["bytes"].as_u64().unwrap();
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    let asked: Vec<_> = tap.requests().split_off(before);
    assert!(asked.iter().any(|(m, _)| m == "HEAD"), "{asked:?}");
    assert!(asked.iter().all(|(m, _)| m != "GET"), "{asked:?}");
    let r = node
        .client
        .head(&video)
        .header(RANGE, "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-length"], "10");
    assert!(tap
        .requests()
        .split_off(before)
        .iter()
        .all(|(m, _)| m != "GET"));
    // A GET does read it.
    let body = node.get(&format!("/v1/renders/{id}/video")).await;
    assert_eq!(body.bytes().await.unwrap().len() as u64, size);
    assert!(tap
        .requests()
        .split_off(before)
        .iter()
        .any(|(m, _)| m == "GET"));
    node.stop().await;
}

#[tokio::test]
async fn serve_refuses_to_start_on_a_bucket_it_cannot_use_and_doctor_names_it() {
    let s3 = S3Server::start("present").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let absent = format!("s3://absent/p?endpoint={}&region=us-east-1", s3.endpoint);
    let nowhere = format!("s3://present?endpoint=http://127.0.0.1:{closed}&region=us-east-1");
    for (url, named) in [
        (&absent, format!("the bucket absent at {}", s3.endpoint)),
        (
            &nowhere,
            format!("the bucket present at http://127.0.0.1:{closed}"),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
            .args(["serve", "--addr", "127.0.0.1:0", "--warm-pool", "0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("MANIMD_STORAGE", url)
            .envs(s3.env())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&named) && stderr.contains("cannot be used"),
            "{url}: {stderr}"
        );
        assert!(!stderr.contains(common::s3::SECRET_KEY));
    }
    let doctor = |url: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_manimd"));
        cmd.arg("doctor").env("MANIMD_STORAGE", url).envs(s3.env());
        cmd.output().unwrap()
    };
    let out = doctor(&absent);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("storage"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.starts_with("FAIL") && line.contains("absent"),
        "{stdout}"
    );
    assert!(!out.status.success());
    let out = doctor(&s3.url("p"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("storage")).unwrap();
    assert!(
        line.starts_with("ok") && line.contains("present"),
        "{stdout}"
    );
}
