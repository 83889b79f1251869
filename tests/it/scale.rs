//! Scale-out: the job store on a real PostgreSQL, and nodes that share it.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::mock_llm::{MockLlm, Reply};
use common::pg::Postgres;
use common::s3::S3Server;
use manimd::jobs::{JobId, JobStatus, NewJob, Store};
use manimd::spec::{Engine, RenderSpec};

fn spec(code: &str) -> RenderSpec {
    common::spec(Engine::Manim, code)
}

fn new_job<'a>(id: &'a JobId, spec: &'a RenderSpec) -> NewJob<'a> {
    NewJob {
        id,
        spec,
        cache_key: "k",
        follows: None,
        owner: None,
        webhook_url: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_gives_each_job_to_one_claimer_and_fences_stale_workers() {
    let pg = Postgres::start();
    // Two nodes, each with its own pool; both migrate at start.
    let (a, b) = tokio::join!(Store::open(&pg.url), Store::open(&pg.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let s = spec("x");
    let mut ids = Vec::new();
    for _ in 0..40 {
        let id = JobId::new();
        let inserted = a.insert(&new_job(&id, &s)).await.unwrap();
        // What the insert answers is the row as the other node reads it.
        assert_eq!(Some(inserted), b.get(&id).await.unwrap());
        ids.push(id);
    }
    let lease = Duration::from_secs(30);
    // Eight claimers race over both nodes' connections.
    let claimed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        let claimed = Arc::clone(&claimed);
        tasks.push(tokio::spawn(async move {
            while let Some(c) = store.claim(&format!("w{n}"), lease).await.unwrap() {
                claimed.lock().unwrap().push(c.job.id);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let unique: HashSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), 40, "every job claimed once: {claimed:?}");
    assert_eq!(unique.len(), 40);
    assert_eq!(b.count(JobStatus::Running).await.unwrap(), 40);

    // A lease that expires is reaped by any node; the old holder's writes
    // no longer count and the next claim is attempt 2.
    let id = &ids[0];
    let job = b.get(id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 1);
    let (requeued, failed) = b.reap_leases(true, 3).await.unwrap();
    assert_eq!((requeued.len(), failed.len()), (40, 0));
    let holder = a.claim("late", lease).await.unwrap().unwrap();
    assert_eq!(holder.attempt, 2);
    assert!(!a
        .finish(&holder.job.id, "w0", 1, JobStatus::Succeeded, None, None)
        .await
        .unwrap());
    assert!(b
        .finish(&holder.job.id, "late", 2, JobStatus::Succeeded, None, None)
        .await
        .unwrap());
    assert_eq!(
        a.get(&holder.job.id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );

    // Listing and paging run the same SQL on both databases.
    let page = a.list(None, None, 25, None).await.unwrap();
    assert_eq!(page.jobs.len(), 25);
    assert!(page.next_cursor.is_some());
    a.close().await;
    b.close().await;
}

/// One `manimd serve` or `manimd worker` process with its own data dir, as
/// on its own machine.
struct Node {
    child: tokio::process::Child,
    /// The API's base URL; `None` for a worker.
    url: Option<String>,
    data: std::path::PathBuf,
}

impl Node {
    async fn spawn(role: &str, data: &std::path::Path, cluster: &Cluster) -> Node {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"));
        cmd.arg(role).arg("--data-dir").arg(data);
        cmd.args([
            "--database",
            &cluster.pg.url,
            "--storage",
            &cluster.s3.url("cluster"),
        ]);
        cmd.envs(cluster.s3.env());
        cmd.env("MANIMD_LLM_BASE_URL", &cluster.llm.base_url);
        cmd.env("MANIMD_LLM_MODEL", "mock-model");
        cmd.env("MANIMD_LLM_API_KEY", SERVER_KEY);
        cmd.envs(cluster.env.iter().copied());
        match role {
            "serve" => cmd.args([
                "--addr",
                "127.0.0.1:0",
                "--workers",
                "0",
                "--warm-pool",
                "0",
            ]),
            _ => cmd.args(["--workers", "1", "--warm-pool", "0", "--lease-secs", "3"]),
        };
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            // The node's log, kept for a failing run (appended: a restart
            // adds to it).
            .stderr(log_file(data))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("manimd listening on ") {
                return Node {
                    child,
                    url: Some(url.to_owned()),
                    data: data.to_owned(),
                };
            }
            if line == "manimd worker ready" {
                return Node {
                    child,
                    url: None,
                    data: data.to_owned(),
                };
            }
        }
        panic!("manimd {role} did not start");
    }

    fn url(&self) -> &str {
        self.url.as_deref().unwrap()
    }

    /// The sandboxes (cgroups) this node's jobs run in now.
    fn sandboxes(&self) -> Vec<String> {
        let sc = manimd::config::Config::for_tests(&self.data).sandbox_config();
        sc.job_groups()
    }

    /// Stops gracefully and checks that nothing of its sandboxes is left.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        assert!(
            self.sandboxes().is_empty(),
            "cgroups left by {}",
            self.data.display()
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(self.data.to_str().unwrap()), "mounts left");
    }
}

/// `target/tmp/scale-logs/<test dir>-<node>.log`.
fn log_file(data: &std::path::Path) -> std::fs::File {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let parent = data.parent().and_then(|p| p.file_name()).unwrap();
    let name = format!(
        "{}-{}.log",
        parent.to_str().unwrap(),
        data.file_name().unwrap().to_str().unwrap()
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn submit(client: &reqwest::Client, node: &Node, code: &str) -> String {
    let r = client
        .post(format!("{}/v1/renders", node.url()))
        .json(&serde_json::json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let job: serde_json::Value = r.json().await.unwrap();
    job["id"].as_str().unwrap().to_owned()
}

async fn wait_for(
    client: &reqwest::Client,
    node: &Node,
    id: &str,
    want: &[&str],
) -> serde_json::Value {
    for _ in 0..1800 {
        let job = get(client, &format!("{}/v1/renders/{id}", node.url())).await;
        if want.contains(&job["status"].as_str().unwrap_or("")) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} never reached {want:?}");
}

/// Reads a job's event stream from `node` to its end.
async fn events(
    client: &reqwest::Client,
    node: &Node,
    id: &str,
) -> Vec<(String, serde_json::Value)> {
    let r = client
        .get(format!("{}/v1/renders/{id}/events", node.url()))
        .send()
        .await
        .unwrap();
    common::server::read_sse(r).await
}

fn scene(tag: &str, sleep_secs: u32) -> String {
    format!(
        "from manim import *\nimport time\n\n# {tag}\nclass S(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.3)\n        time.sleep({sleep_secs})\n        self.play(FadeOut(Circle()), run_time=0.3)\n"
    )
}

/// What the nodes share: a PostgreSQL, an S3-compatible server and a
/// (scripted) language model.
struct Cluster {
    pg: Postgres,
    s3: S3Server,
    llm: MockLlm,
    /// Set on every node.
    env: Vec<(&'static str, &'static str)>,
}

/// The model provider key every node is configured with.
const SERVER_KEY: &str = "sk-server-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_nodes_and_two_workers_share_jobs_events_cancels_and_survive_a_killed_worker() {
    let shared = Cluster {
        pg: Postgres::start(),
        s3: S3Server::start("cluster").await,
        llm: MockLlm::start(vec![]).await,
        env: vec![],
    };
    let dir = tempfile::Builder::new()
        .prefix("manimd-scale-")
        .tempdir()
        .unwrap();
    let data: Vec<_> = ["a", "b", "w1", "w2"].map(|n| dir.path().join(n)).into();
    let (api_a, api_b, w1, w2) = tokio::join!(
        Node::spawn("serve", &data[0], &shared),
        Node::spawn("serve", &data[1], &shared),
        Node::spawn("worker", &data[2], &shared),
        Node::spawn("worker", &data[3], &shared),
    );
    let client = reqwest::Client::new();
    let health = get(&client, &format!("{}/health", api_a.url())).await;
    assert_eq!(health["database"], "postgres", "{health}");
    assert_eq!(health["storage"]["backend"], "s3", "{health}");
    assert_eq!(health["workers"]["busy"], 0, "{health}");

    // Jobs submitted to either API node complete, each rendered once.
    let mut ids = Vec::new();
    for n in 0..4 {
        let node = if n % 2 == 0 { &api_a } else { &api_b };
        ids.push(submit(&client, node, &scene(&format!("job {n}"), 0)).await);
    }
    for (n, id) in ids.iter().enumerate() {
        let other = if n % 2 == 0 { &api_b } else { &api_a };
        let job = wait_for(&client, other, id, &["succeeded", "failed", "canceled"]).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 1, "rendered once: {job}");
        // The worker uploaded it; the other API node serves it from the bucket.
        let bytes = client
            .get(format!("{}/v1/renders/{id}/video", other.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let file = dir.path().join(format!("{id}.mp4"));
        std::fs::write(&file, &bytes).unwrap();
        let p = common::probe(&file).await;
        assert_eq!(
            (p.codec.as_str(), p.width, p.height),
            ("h264", 854, 480),
            "{p:?}"
        );
        assert!(p.duration > 0.5 && p.frames >= 9, "{p:?}");
    }

    // A generation that brings its own key runs where the key is, on the
    // API node that took it (no workers there); one without runs on a worker.
    let circle = "from manim import *\n\n\nclass Gen(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=0.5)\n";
    for (node, key) in [(&api_a, Some("sk-request-SECRET-91c2")), (&api_b, None)] {
        shared.llm.push(Reply::Text("1. A circle.".into()));
        shared
            .llm
            .push(Reply::Text(format!("```python\n{circle}```\n")));
        let mut body = serde_json::json!({"prompt": "a circle"});
        if let Some(key) = key {
            body["api_key"] = key.into();
        }
        let r = client
            .post(format!("{}/v1/generations", node.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let id = r.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let job = wait_for(&client, &api_b, &id, &["succeeded", "failed", "canceled"]).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let requests = shared.llm.requests();
        let bearer = format!("Bearer {}", key.unwrap_or(SERVER_KEY));
        for req in &requests[requests.len() - 2..] {
            assert_eq!(req.authorization.as_deref(), Some(bearer.as_str()));
        }
    }

    // Events of a job submitted to A reach a client connected to B, and
    // B serves its live stream, which a worker uploads as it grows.
    let id = submit(&client, &api_a, &scene("events", 3)).await;
    let live = {
        let (client, url, id) = (client.clone(), api_b.url().to_owned(), id.clone());
        tokio::spawn(async move {
            for _ in 0..600 {
                let r = client
                    .get(format!("{url}/v1/renders/{id}/live.m3u8"))
                    .send()
                    .await
                    .unwrap();
                if r.status() == reqwest::StatusCode::OK {
                    let text = r.text().await.unwrap();
                    if text.contains("seg-0.m4s") {
                        let job = get(&client, &format!("{url}/v1/renders/{id}")).await;
                        return (text, job["status"].as_str().unwrap_or("").to_owned());
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no live segment");
        })
    };
    let seen = events(&client, &api_b, &id).await;
    let (playlist, status_then) = live.await.unwrap();
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    assert_eq!(
        status_then, "running",
        "the first segment was served before the job ended"
    );
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"progress"),
        "progress events via B: {names:?}"
    );
    let (last, job) = seen.last().unwrap();
    assert_eq!(
        (last.as_str(), job["status"].as_str()),
        ("status", Some("succeeded")),
        "{seen:?}"
    );

    // A cancel sent to B stops the render on whichever worker runs it.
    let id = submit(&client, &api_a, &scene("cancel", 60)).await;
    let running = loop {
        let job = get(&client, &format!("{}/v1/renders/{id}", api_a.url())).await;
        if job["progress"]["animations_done"].as_u64() >= Some(1) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(running["status"], "running");
    let r = client
        .delete(format!("{}/v1/renders/{id}", api_b.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let job = wait_for(&client, &api_b, &id, &["succeeded", "failed", "canceled"]).await;
    assert_eq!(job["status"], "canceled", "{job}");
    // The scene sleeps a minute; its sandbox is already gone on both workers.
    for _ in 0..100 {
        if w1.sandboxes().is_empty() && w2.sandboxes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w1.sandboxes().is_empty() && w2.sandboxes().is_empty());

    // SIGKILL of the worker mid-render: the other one finishes the job.
    let id = submit(&client, &api_b, &scene("kill", 4)).await;
    let victim_is_w1 = loop {
        let job = get(&client, &format!("{}/v1/renders/{id}", api_b.url())).await;
        if job["progress"]["animations_done"].as_u64() >= Some(1) {
            if !w1.sandboxes().is_empty() {
                break true;
            }
            if !w2.sandboxes().is_empty() {
                break false;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut victim, survivor) = if victim_is_w1 { (w1, w2) } else { (w2, w1) };
    victim.child.kill().await.unwrap();
    let job = wait_for(&client, &api_a, &id, &["succeeded", "failed", "canceled"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");

    // The killed worker's machine restarts it: it reaps what was left.
    let restarted = Node::spawn("worker", &victim.data.clone(), &shared).await;
    drop(victim);
    for node in [api_a, api_b, survivor, restarted] {
        node.stop().await;
    }
}

/// Every statement of the store, once, on PostgreSQL: the SQL is shared with
/// SQLite, so a clause one of them reads differently shows up here.
#[tokio::test]
async fn every_store_statement_runs_on_postgres() {
    let pg = Postgres::start();
    let store = Store::open(&pg.url).await.unwrap();
    let s = spec("every statement");
    let lease = Duration::from_secs(30);
    let result: manimd::jobs::JobResult = serde_json::from_value(serde_json::json!({
        "duration": 1.0, "width": 854, "height": 480, "fps": 15.0, "frames": 15,
        "codec": "h264", "bytes": 1000, "content_type": "video/mp4", "format": "mp4",
        "still": false, "engine_version": "0.22.0", "render_secs": 1.0, "attempt": 1,
        "has_thumbnail": true
    }))
    .unwrap();

    // Followers wait for an identical job in flight, then take its outcome.
    let (leader, follower, other) = (JobId::new(), JobId::new(), JobId::new());
    store.insert(&new_job(&leader, &s)).await.unwrap();
    let mut f = new_job(&follower, &s);
    f.follows = Some(&leader);
    store.insert(&f).await.unwrap();
    assert_eq!(store.in_flight("k").await.unwrap(), Some(leader.clone()));
    assert_eq!(
        store.followers(&leader).await.unwrap(),
        vec![follower.clone()]
    );
    let claimed = store.claim("w", lease).await.unwrap().unwrap();
    assert_eq!(claimed.job.id, leader);
    assert!(store.heartbeat(&leader, "w", 1, lease).await.unwrap());
    let progress = manimd::jobs::JobProgress::default();
    assert!(store
        .save_progress(&leader, "w", 1, &progress)
        .await
        .unwrap());
    assert!(store
        .finish(&leader, "w", 1, JobStatus::Succeeded, None, Some(&result))
        .await
        .unwrap());
    assert!(store
        .finish_follower(&follower, JobStatus::Succeeded, None, Some(&result))
        .await
        .unwrap());
    let cached = store.cached("k").await.unwrap().unwrap().id;
    assert!(cached == leader || cached == follower, "{cached}");
    let hit = JobId::new();
    store
        .insert_done(&new_job(&hit, &s), &result)
        .await
        .unwrap();
    assert_eq!(store.count(JobStatus::Succeeded).await.unwrap(), 3);

    // Unfollow by leader and for everyone.
    let (l2, f2) = (JobId::new(), JobId::new());
    store.insert(&new_job(&l2, &s)).await.unwrap();
    let mut f = new_job(&f2, &s);
    f.follows = Some(&l2);
    store.insert(&f).await.unwrap();
    assert_eq!(store.unfollow(Some(&l2)).await.unwrap(), 1);
    assert_eq!(store.unfollow(None).await.unwrap(), 0);
    assert_eq!(store.unfollow_ended().await.unwrap(), 0);

    // Cancel a queued job, ask a running one to stop, release, delete.
    assert_eq!(store.cancel(&f2).await.unwrap(), Some(JobStatus::Queued));
    let running = store.claim("w", lease).await.unwrap().unwrap();
    assert_eq!(
        store.cancel(&running.job.id).await.unwrap(),
        Some(JobStatus::Running)
    );
    assert!(
        store
            .get(&running.job.id)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    assert!(store.release(&running.job.id, "w", 1).await.unwrap());
    let mut owned = new_job(&other, &s);
    owned.owner = Some("fingerprint");
    store.insert(&owned).await.unwrap();
    assert_eq!(store.active("fingerprint").await.unwrap(), 1);
    let page = store
        .list(Some("fingerprint"), Some(JobStatus::Queued), 10, None)
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert!(store.delete(&other).await.unwrap());
    assert_eq!(store.expired(i64::MAX).await.unwrap().len(), 4);
    store.notify("manimd_test", "payload").await.unwrap();
    store.close().await;
}

/// One render split across two `manimd worker` nodes (PostgreSQL, the
/// bucket between them), then one whose worker is killed mid-chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_render_is_split_across_two_worker_nodes_and_survives_a_killed_one() {
    let shared = Cluster {
        pg: Postgres::start(),
        s3: S3Server::start("chunks").await,
        llm: MockLlm::start(vec![]).await,
        // A few seconds of low quality are worth splitting.
        env: vec![
            ("MANIMD_CHUNK_MIN_SECS", "0.05"),
            ("MANIMD_CHUNK_MIN_QUALITY", "low"),
        ],
    };
    let dir = tempfile::Builder::new()
        .prefix("manimd-chunks-")
        .tempdir()
        .unwrap();
    let data: Vec<_> = ["api", "w1", "w2"].map(|n| dir.path().join(n)).into();
    let (api, w1, w2) = tokio::join!(
        Node::spawn("serve", &data[0], &shared),
        Node::spawn("worker", &data[1], &shared),
        Node::spawn("worker", &data[2], &shared),
    );
    let client = reqwest::Client::new();
    let code = crate::chunks::EVERYTHING.replace("range(8)", "range(12)");
    let id = submit(&client, &api, &code).await;
    let job = wait_for(&client, &api, &id, &["succeeded", "failed", "canceled"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let chunks = job["result"]["chunks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(chunks.len(), 2, "{job}");
    assert_ne!(
        chunks[0]["node"], chunks[1]["node"],
        "one chunk a node: {job}"
    );
    let video = client
        .get(format!("{}/v1/renders/{id}/video", api.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let file = dir.path().join("split.mp4");
    std::fs::write(&file, &video).unwrap();
    let frames = crate::chunks::checksums(&file, "v:0").await;
    assert_eq!(frames.len(), 12 * 12, "{job}");
    assert!(!crate::chunks::checksums(&file, "a:0").await.is_empty());

    // Killed while both draw: whichever it ran (a chunk, or the job with
    // its first chunk), the other worker finishes the job.
    let id = submit(&client, &api, &format!("# kill\n{code}")).await;
    for _ in 0..600 {
        if !w1.sandboxes().is_empty() && !w2.sandboxes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!w2.sandboxes().is_empty(), "both workers draw");
    let mut victim = w2;
    victim.child.kill().await.unwrap();
    let job = wait_for(&client, &api, &id, &["succeeded", "failed", "canceled"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["frames"], 12 * 12, "{job}");
    let restarted = Node::spawn("worker", &victim.data.clone(), &shared).await;
    drop(victim);
    for node in [api, w1, restarted] {
        node.stop().await;
    }
}

/// `manimd worker --listen`: its health and metrics, before and after a job
/// it rendered (put straight into the shared store, as an API node would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_its_health_and_metrics_when_asked_to_listen() {
    use tokio::io::AsyncBufReadExt;
    let pg = Postgres::start();
    let dir = tempfile::Builder::new()
        .prefix("manimd-wstatus-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("w");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(["worker", "--database", &pg.url, "--workers", "1"])
        .args(["--warm-pool", "0", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("MANIMD_STORAGE")
        .stdout(std::process::Stdio::piped())
        .stderr(log_file(&data))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut status = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(url) = line.strip_prefix("manimd worker status on ") {
            status = Some(url.to_owned());
        }
        if line == "manimd worker ready" {
            break;
        }
    }
    let status = status.expect("the worker says where it listens");
    let client = reqwest::Client::new();
    let health = get(&client, &format!("{status}/healthz")).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"], "postgres", "{health}");
    assert_eq!(health["workers"]["idle"], 1, "{health}");
    let r = client
        .get(format!("{status}/v1/renders"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND, "no API here");

    let store = Store::open(&pg.url).await.unwrap();
    let (id, s) = (JobId::new(), spec(&scene("status", 0)));
    store.insert(&new_job(&id, &s)).await.unwrap();
    let mut ended = None;
    for _ in 0..1800 {
        let job = store.get(&id).await.unwrap().unwrap();
        if job.status.is_terminal() {
            ended = Some(job.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ended, Some(JobStatus::Succeeded));
    let r = client
        .get(format!("{status}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("# TYPE manimd_jobs_total counter")
            && text.contains("manimd_jobs_total{outcome=\"succeeded\"} 1")
            && text.contains("manimd_render_seconds_count 1"),
        "{text}"
    );
    store.close().await;
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
}

/// Cancels racing claims (and re-queues) over the same jobs: whatever a
/// cancel reports is what happened. A cancel used to read the status and
/// then write with a condition on it; a job claimed in between was
/// reported canceled while it ran on, its cancel recorded nowhere: the
/// occasional cross-node cancel that did not take effect.
async fn cancel_racing_claims_is_never_lost(store: Store) {
    const JOBS: usize = 120;
    let s = spec("race");
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        let id = JobId::new();
        store.insert(&new_job(&id, &s)).await.unwrap();
        ids.push(id);
    }
    let lease = Duration::from_secs(30);
    let claimed = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let mut claimers = Vec::new();
    for n in 0..3 {
        let (store, claimed) = (store.clone(), Arc::clone(&claimed));
        claimers.push(tokio::spawn(async move {
            let mut idle = 0;
            while idle < 20 {
                match store.claim(&format!("w{n}"), lease).await.unwrap() {
                    Some(c) => {
                        // Some runs are handed back (a reaper, a graceful
                        // stop): the same job is queued, then claimed again.
                        // (A release does not count the attempt, so each
                        // job is handed back once, by the first claimer.)
                        let first = claimed.lock().unwrap().insert(c.job.id.clone());
                        if first && c.job.id.as_str().ends_with(['0', '1', '2']) {
                            store
                                .release(&c.job.id, &format!("w{n}"), c.attempt)
                                .await
                                .unwrap();
                        }
                        idle = 0;
                    }
                    None => {
                        idle += 1;
                        tokio::task::yield_now().await;
                    }
                }
            }
        }));
    }
    let mut cancelers = Vec::new();
    for part in ids.chunks(JOBS / 3) {
        let (store, part) = (store.clone(), part.to_vec());
        cancelers.push(tokio::spawn(async move {
            let mut said = Vec::new();
            for id in part {
                said.push((id.clone(), store.cancel(&id).await.unwrap()));
            }
            said
        }));
    }
    let mut said = Vec::new();
    for c in cancelers {
        said.extend(c.await.unwrap());
    }
    for c in claimers {
        c.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    for (id, before) in said {
        let job = store.get(&id).await.unwrap().unwrap();
        match before {
            Some(JobStatus::Queued) => assert_eq!(
                job.status,
                JobStatus::Canceled,
                "reported canceled while queued, yet {:?} (claimed: {})",
                job.status,
                claimed.contains(&id)
            ),
            Some(JobStatus::Running) => {
                assert!(claimed.contains(&id), "{id} was running");
                assert!(job.cancel_requested, "{id}: the cancel was not recorded");
            }
            other => panic!("{id}: a cancel of a live job said {other:?}"),
        }
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_claims_is_never_lost_on_postgres_or_sqlite() {
    let pg = Postgres::start();
    cancel_racing_claims_is_never_lost(Store::open(&pg.url).await.unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open_sqlite(&dir.path().join("jobs.db"))
        .await
        .unwrap();
    cancel_racing_claims_is_never_lost(sqlite).await;
}
