//! `manimd load`: a bounded burst of submissions against a server, half of
//! them hostile, and a report of what happened to every one. `chaos` is the
//! other form: jobs on a throwaway cluster whose parts are killed as they
//! run (`cluster` starts and kills them).

pub mod chaos;
mod cluster;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use manimd::client::Client;
use manimd::jobs::JobStatus;
use serde_json::{json, Value};

pub struct LoadOptions {
    pub server: String,
    pub count: usize,
    /// Submissions per second.
    pub rate: f64,
    pub api_key: Option<String>,
    /// How long to wait for accepted jobs to end.
    pub deadline: Duration,
}

/// What the run saw.
#[derive(Default, Debug)]
pub struct Report {
    pub sent: usize,
    pub accepted: usize,
    pub refused_429: usize,
    /// Refused up front, by status code (400, 413, 422).
    pub refused: BTreeMap<u16, usize>,
    pub succeeded: usize,
    pub cache_hits: usize,
    /// Ended without a video, by error code.
    pub failed: BTreeMap<String, usize>,
    pub canceled: usize,
    /// Accepted and never ended before the deadline.
    pub lost: usize,
    pub server_max_rss_bytes: u64,
    pub server_rss_before: u64,
    pub server_rss_after: u64,
    pub health_after: Value,
    pub elapsed: Duration,
}

fn scene(body: &str) -> String {
    format!("from manim import *\nimport os, time\n\nclass Load(Scene):\n    def construct(self):\n{body}\n")
}

/// The i-th submission: even ones are ordinary scenes, odd ones hostile.
fn submission(i: usize) -> (Value, Option<Vec<u8>>) {
    if i.is_multiple_of(2) {
        // One in five ordinary requests repeats an earlier one (a cache hit).
        let salt = if i.is_multiple_of(10) { 0 } else { i };
        let code = scene(&format!(
            "        # {salt}\n        self.play(Create(Circle()), run_time=0.5)\n        self.play(FadeOut(Circle()), run_time=0.5)"
        ));
        return (json!({"code": code}), None);
    }
    let hostile = [
        (
            json!({"code": "from manim import *\nclass A(Scene):\n  def construct(self)\n    pass\n"}),
            None,
        ),
        (json!({}), Some(b"{not json".to_vec())),
        (json!({}), Some(vec![b' '; 2 * 1024 * 1024])),
        (json!({"code": "x", "colour": "red"}), None),
        (
            json!({"code": scene("        while True:\n            pass")}),
            None,
        ),
        (
            json!({"code": scene("        while True:\n            os.fork()")}),
            None,
        ),
        (
            json!({"code": scene("        x = b'x' * (10 * 1024**3)")}),
            None,
        ),
        (
            json!({"code": scene("        with open('/tmp/f', 'wb') as f:\n            while True:\n                f.write(b'x' * 1024 * 1024)")}),
            None,
        ),
        (
            json!({"code": scene("        import socket\n        socket.create_connection(('169.254.169.254', 80), timeout=2)")}),
            None,
        ),
        (
            json!({"code": scene("        os.kill(-1, 9)\n        raise SystemExit(3)")}),
            None,
        ),
    ];
    let (mut v, raw) = hostile[(i / 2) % hostile.len()].clone();
    if let Value::Object(map) = &mut v {
        if let Some(Value::String(code)) = map.get_mut("code") {
            code.push_str(&format!("\n# {i}\n"));
        }
    }
    (v, raw)
}

pub async fn run(opts: &LoadOptions) -> anyhow::Result<Report> {
    let client = Client::new(&opts.server, opts.api_key.as_deref())?;
    let rss = |h: &Value| h["memory"]["rss_bytes"].as_u64().unwrap_or(0);
    let mut report = Report {
        server_rss_before: rss(&client.health().await?),
        ..Report::default()
    };
    // Sample the server's memory throughout.
    let max_rss = Arc::new(AtomicU64::new(report.server_rss_before));
    let sampler = {
        let (client, max) = (client.clone(), Arc::clone(&max_rss));
        tokio::spawn(async move {
            loop {
                if let Ok(h) = client.health().await {
                    max.fetch_max(rss(&h), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let started = Instant::now();
    let accepted = send(&client, opts, started, &mut report).await?;
    report.lost = wait(&client, accepted, opts.deadline, &mut report).await?;
    report.elapsed = started.elapsed();
    sampler.abort();
    report.health_after = client.health().await?;
    report.server_rss_after = rss(&report.health_after);
    report.server_max_rss_bytes = max_rss.load(Ordering::Relaxed).max(report.server_rss_after);
    Ok(report)
}

/// Sends the submissions at the set rate; returns the ids accepted.
async fn send(
    client: &Client,
    opts: &LoadOptions,
    started: Instant,
    report: &mut Report,
) -> anyhow::Result<Vec<String>> {
    let interval = Duration::from_secs_f64(1.0 / opts.rate.max(0.1));
    let mut accepted = Vec::new();
    for i in 0..opts.count {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (body, raw) = submission(i);
        let body = raw.unwrap_or_else(|| body.to_string().into_bytes());
        report.sent += 1;
        match client.submit_raw(body).await {
            Ok((202, Some(job))) => {
                report.accepted += 1;
                accepted.push(job.id);
            }
            Ok((429, _)) => report.refused_429 += 1,
            Ok((code, _)) => *report.refused.entry(code).or_default() += 1,
            // The server answers an oversized body with 413 from its
            // Content-Length and closes the connection before reading it.
            Err(_) => *report.refused.entry(413).or_default() += 1,
        }
    }
    Ok(accepted)
}

/// Polls the accepted jobs until they end or the deadline passes; returns
/// how many never ended.
async fn wait(
    client: &Client,
    mut pending: Vec<String>,
    deadline: Duration,
    report: &mut Report,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + deadline;
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for id in pending {
            let job = client.job(&id).await?;
            match job.status {
                JobStatus::Succeeded => {
                    report.succeeded += 1;
                    if job.result.is_some_and(|r| r.cache_hit) {
                        report.cache_hits += 1;
                    }
                }
                JobStatus::Failed => {
                    let code = job.error.map_or("?".into(), |e| e.code.to_string());
                    *report.failed.entry(code).or_default() += 1;
                }
                JobStatus::Canceled => report.canceled += 1,
                _ => still.push(id),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(pending.len())
}

pub fn print(r: &Report, leftovers: Option<(usize, usize)>) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "manimd load: {} submissions in {:.1} s (half of them hostile)",
        r.sent,
        r.elapsed.as_secs_f64()
    );
    println!("  accepted (202)            {}", r.accepted);
    println!("  refused, queue full (429) {}", r.refused_429);
    for (code, n) in &r.refused {
        println!("  refused up front ({code})    {n}");
    }
    println!(
        "  succeeded                 {} ({} from the cache)",
        r.succeeded, r.cache_hits
    );
    for (code, n) in &r.failed {
        println!("  failed: {code:<17} {n}");
    }
    println!("  canceled                  {}", r.canceled);
    println!("  lost (never ended)        {}", r.lost);
    println!(
        "  server RSS: before {:.1} MiB, max {:.1} MiB, after {:.1} MiB",
        mib(r.server_rss_before),
        mib(r.server_max_rss_bytes),
        mib(r.server_rss_after)
    );
    println!(
        "  after: status {}, busy {}, queue {}",
        r.health_after["status"],
        r.health_after["workers"]["busy"],
        r.health_after["queue"]["depth"]
    );
    if let Some((groups, mounts)) = leftovers {
        println!("  leaked: {groups} sandbox cgroups, {mounts} mounts (beyond warm sandboxes)");
    }
}
