//! The service figures: a real `manimd serve` (this binary, as a child
//! process) driven over HTTP, next to the plain CLI measured in the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use manimd::api::JobView;
use manimd::client::Client;
use manimd::jobs::JobStatus;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use super::{check, BenchOptions, Row, SOURCES};
use manimd::process::run_measured;
use std::ffi::OsStr;

pub struct Server {
    child: tokio::process::Child,
    client: Client,
}

impl Server {
    pub async fn start(opts: &BenchOptions, data: &Path, args: &[&str]) -> anyhow::Result<Server> {
        let mut all: Vec<&std::ffi::OsStr> = ["serve", "--addr", "127.0.0.1:0", "--data-dir"]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect();
        all.push(data.as_os_str());
        all.push(std::ffi::OsStr::new("--runtime-dir"));
        all.push(opts.runtime.root().as_os_str());
        all.extend(args.iter().map(std::ffi::OsStr::new));
        let mut child =
            manimd::process::spawn_service(&opts.manimd, &all, &[("MANIMD_LOG", "warn")])?;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("manimd listening on ") {
                return Ok(Server {
                    child,
                    client: Client::new(url, None)?,
                });
            }
        }
        bail!("manimd serve did not start")
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.client.base()
    }

    pub async fn health(&self) -> anyhow::Result<Value> {
        Ok(self.client.health().await?)
    }

    /// Waits until `n` warm sandboxes are ready.
    pub async fn warm(&self, n: u64) -> anyhow::Result<()> {
        for _ in 0..600 {
            if self.health().await?["workers"]["warm"].as_u64() >= Some(n) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the warm pool did not fill")
    }

    /// A finished job's video.
    pub async fn video(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self
            .client
            .bytes(&format!("/v1/renders/{id}/video"))
            .await?)
    }

    /// `POST /v1/previews`: seconds to the answer, with the answer.
    pub async fn preview(&self, body: &Value) -> anyhow::Result<(f64, manimd::api::PreviewView)> {
        let t = Instant::now();
        let view = self.client.preview(body).await?;
        Ok((t.elapsed().as_secs_f64(), view))
    }

    pub async fn submit(&self, body: &Value) -> anyhow::Result<JobView> {
        Ok(self.client.submit(body).await?)
    }

    /// Polls until the job has ended; fails unless it succeeded.
    pub async fn done(&self, id: &str) -> anyhow::Result<JobView> {
        loop {
            let job = self.client.job(id).await?;
            match job.status {
                JobStatus::Succeeded => return Ok(job),
                JobStatus::Failed | JobStatus::Canceled => {
                    bail!("job {id} ended: {:?}", job.error)
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Submit to video available, in seconds, with the finished job.
    pub async fn latency(&self, body: &Value) -> anyhow::Result<(f64, JobView)> {
        let t = Instant::now();
        let job = self.submit(body).await?;
        let job = if job.status == JobStatus::Succeeded {
            job
        } else {
            self.done(&job.id).await?
        };
        Ok((t.elapsed().as_secs_f64(), job))
    }

    /// Peak RSS of the server process so far (VmHWM).
    pub fn peak_rss_bytes(&self) -> u64 {
        self.child
            .id()
            .map_or(0, |pid| manimd::metrics::status_bytes(Some(pid), "VmHWM:"))
    }

    /// A graceful stop (SIGTERM), so that the server ends its warm
    /// sandboxes and unmounts their areas; killed after a minute.
    pub async fn stop(mut self) {
        self.terminate();
        if tokio::time::timeout(STOP_WITHIN, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

const STOP_WITHIN: Duration = Duration::from_secs(60);

impl Drop for Server {
    /// A bench that fails midway drops its servers without `stop`. Killed
    /// outright, a server would leave its warm sandboxes' groups and
    /// mounts on the host, so it is stopped gracefully here too.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.start_kill();
    }
}

/// A request for the fixed small scene; `salt` makes the code unique so
/// that the cache does not answer.
pub fn small(salt: &str, quality: &str, encoding: &str) -> Value {
    json!({
        "code": format!("{}\n# {salt}\n", super::SOURCES[0].1),
        "scene": "Small",
        "quality": quality,
        "encoding": encoding,
        // These figures measure rendering; the animation cache has its own.
        "cache": false,
    })
}

/// The fixed twelve-animation scene at `high`, made unique by `salt`.
pub fn twelve_high(salt: &str) -> Value {
    json!({
        "code": format!("{}\n# {salt}\n", super::SOURCES[3].1),
        "scene": "Twelve",
        "quality": "high",
        "cache": false,
    })
}

/// Submits and returns (seconds to the first playable live segment,
/// seconds to the final video).
pub async fn first_segment(server: &Server, body: &Value) -> anyhow::Result<(f64, f64)> {
    let t = Instant::now();
    let id = server.submit(body).await?.id;
    let mut first = None;
    loop {
        if first.is_none() {
            let playlist = server.client.live_playlist(&id).await?;
            if playlist.is_some_and(|p| p.contains("#EXTINF")) {
                first = Some(t.elapsed().as_secs_f64());
            }
        }
        let job = server.client.job(&id).await?;
        match job.status {
            JobStatus::Succeeded => {
                return Ok((
                    first.unwrap_or(t.elapsed().as_secs_f64()),
                    t.elapsed().as_secs_f64(),
                ))
            }
            JobStatus::Failed | JobStatus::Canceled => {
                bail!("job {id} ended: {:?}", job.error)
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// The plain CLI rendering the small scene at `low`.
const CLI_LOW: [&str; 9] = [
    "render",
    "-ql",
    "--disable_caching",
    "--progress_bar",
    "none",
    "-v",
    "WARNING",
    "small.py",
    "Small",
];

/// The columns of the service's tables.
pub fn table_header() {
    println!(
        "{:<52} {:>10} {:>10} {:<4} {:>8}   target",
        "figure", "manimd", "baseline", "", "ratio"
    );
}

/// One line of the service table.
pub fn figure(name: &str, ours: f64, base: f64, unit: &str, target: &str) {
    let ratio = if base > 0.0 {
        format!("{:.2}x", ours / base)
    } else {
        "-".into()
    };
    println!("{name:<52} {ours:>10.3} {base:>10.3} {unit:<4} {ratio:>8}   {target}");
}

/// The service figures, printed as a table beside their baselines.
pub async fn service_table(opts: &BenchOptions, rows: &[Row]) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("manimd-bench-svc-")
        .tempdir()?;
    let runs = opts.runs;
    let cli_small = rows[0].plain.wall.as_secs_f64();
    println!();
    println!("service (manimd serve over HTTP; 2 workers; medians of {runs})");
    table_header();
    cold(opts, &scratch.path().join("cold"), cli_small).await?;
    let warm = Server::start(
        opts,
        &scratch.path().join("warm"),
        &["--warm-pool", "2", "--workers", "2"],
    )
    .await?;
    let last = warm_figures(&warm, runs, cli_small).await?;
    cache_figure(&warm, runs, &last).await?;
    saturated(&warm, opts, &scratch.path().join("cli-saturated")).await?;
    live_first_segment(&warm, runs).await?;
    encoding_tiers(&warm, runs, rows).await?;
    warm.stop().await;
    super::iteration::figures(opts, &scratch.path().join("iteration")).await?;
    Ok(())
}

/// Cold: every job starts its sandbox and imports Manim.
async fn cold(opts: &BenchOptions, data: &Path, cli_small: f64) -> anyhow::Result<()> {
    let cold = Server::start(opts, data, &["--warm-pool", "0", "--workers", "2"]).await?;
    let mut lat = Vec::new();
    for i in 0..opts.runs {
        lat.push(
            cold.latency(&small(&format!("cold {i}"), "low", "final"))
                .await?
                .0,
        );
    }
    cold.stop().await;
    figure(
        "small @low, cold sandbox: submit to video (s)",
        median(lat),
        cli_small,
        "s",
        "vs manim -ql",
    );
    Ok(())
}

/// Warm: the engine is imported before the job arrives. Returns the last
/// request, for the cache's figure.
async fn warm_figures(warm: &Server, runs: usize, cli_small: f64) -> anyhow::Result<Value> {
    warm.warm(2).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = warm.health().await?;
    let (mut lat, mut engine, mut peak) = (Vec::new(), Vec::new(), 0u64);
    let mut last = Value::Null;
    for i in 0..runs {
        warm.warm(2).await?;
        let body = small(&format!("warm {i}"), "low", "final");
        let (secs, job) = warm.latency(&body).await?;
        lat.push(secs);
        let result = job.result.as_ref();
        engine.push(result.and_then(|r| r.engine_secs).unwrap_or(f64::NAN));
        let together = warm.peak_rss_bytes() + result.and_then(|r| r.peak_rss_bytes).unwrap_or(0);
        peak = peak.max(together);
        last = body;
    }
    let (lat, engine) = (median(lat), median(engine));
    figure(
        "small @low, warm sandbox: submit to video (s)",
        lat,
        cli_small,
        "s",
        "<= 0.40x manim -ql",
    );
    figure(
        "  same, against the render inside imported Manim (s)",
        lat,
        engine,
        "s",
        "<= 1.20x",
    );
    memory_figures(&idle, peak);
    Ok(last)
}

fn memory_figures(idle: &Value, peak: u64) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let rss = idle["memory"]["rss_bytes"].as_u64().unwrap_or(0);
    figure("idle manimd RSS (MiB)", mib(rss), 20.0, "MiB", "<= 20 MB");
    println!(
        "{:<52} {:>10.1} {:>10} {:<4}",
        format!(
            "  warm sandboxes, reported apart ({})",
            idle["workers"]["warm"]
        ),
        mib(idle["workers"]["rss_bytes"].as_u64().unwrap_or(0)),
        "",
        "MiB"
    );
    figure(
        "peak of a low render, manimd + sandbox (MiB)",
        mib(peak),
        350.0,
        "MiB",
        "<= 350 MB",
    );
}

/// An identical resubmission, answered from the cache.
async fn cache_figure(warm: &Server, runs: usize, last: &Value) -> anyhow::Result<()> {
    let mut hits = Vec::new();
    for _ in 0..runs {
        let (secs, job) = warm.latency(last).await?;
        anyhow::ensure!(
            job.result.is_some_and(|r| r.cache_hit),
            "expected a cache hit"
        );
        hits.push(secs * 1000.0);
    }
    figure(
        "identical resubmission, from the cache (ms)",
        median(hits),
        20.0,
        "ms",
        "<= 20 ms",
    );
    Ok(())
}

/// Saturation: 20 small jobs at once, against the CLI back to back.
async fn saturated(warm: &Server, opts: &BenchOptions, dir: &Path) -> anyhow::Result<()> {
    warm.warm(2).await?;
    let n = 20;
    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let job = warm
            .submit(&small(&format!("saturated {i}"), "low", "final"))
            .await?;
        ids.push(job.id);
    }
    for id in &ids {
        warm.done(id).await?;
    }
    let ours = n as f64 / t.elapsed().as_secs_f64() * 60.0;
    let manim = opts
        .runtime
        .venv(manimd::spec::Engine::Manim)
        .join("bin/manim");
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("small.py"), SOURCES[0].1)?;
    let t = Instant::now();
    for _ in 0..n {
        let (d, m) = (dir.to_owned(), manim.clone());
        let run = tokio::task::spawn_blocking(move || {
            let args: Vec<&OsStr> = CLI_LOW.iter().map(OsStr::new).collect();
            run_measured(&m, &args, &d, &d)
        })
        .await??;
        check(run, "manim")?;
    }
    let cli = n as f64 / t.elapsed().as_secs_f64() * 60.0;
    figure(
        "saturated: 20 small jobs queued (jobs/min)",
        ours,
        cli,
        "/min",
        ">= 1.5x CLI back to back",
    );
    Ok(())
}

/// Live playback: the first segment of a long render, against all of it.
async fn live_first_segment(warm: &Server, runs: usize) -> anyhow::Result<()> {
    let (mut first, mut full) = (Vec::new(), Vec::new());
    for i in 0..runs {
        warm.warm(1).await?;
        let (f, t) = first_segment(warm, &twelve_high(&format!("live {i}"))).await?;
        first.push(f);
        full.push(t);
    }
    figure(
        "twelve @high: first playable live segment (s)",
        median(first),
        median(full),
        "s",
        "<= 0.25x full render",
    );
    Ok(())
}

/// Encoding tiers at 1080p60, and the final tier against `manim -qh`.
async fn encoding_tiers(warm: &Server, runs: usize, rows: &[Row]) -> anyhow::Result<()> {
    let (mut fin, mut pre) = (Vec::new(), Vec::new());
    for i in 0..runs {
        warm.warm(1).await?;
        let (_, job) = warm
            .latency(&small(&format!("final {i}"), "high", "final"))
            .await?;
        fin.push(job.result.map_or(0.0, |r| r.render_secs));
        warm.warm(1).await?;
        let (_, job) = warm
            .latency(&small(&format!("preview {i}"), "high", "preview"))
            .await?;
        pre.push(job.result.map_or(0.0, |r| r.render_secs));
    }
    figure(
        "small @high, preview encoding: render (s)",
        median(pre),
        median(fin),
        "s",
        "<= 0.60x final",
    );
    let high = rows.iter().find(|r| r.label.contains("@high"));
    let wall = |f: fn(&Row) -> f64| high.map(f).unwrap_or(0.0);
    figure(
        "small @high, final: manimd render vs manim -qh (s)",
        wall(|r| r.manimd.wall.as_secs_f64()),
        wall(|r| r.plain.wall.as_secs_f64()),
        "s",
        "<= 1.05x",
    );
    Ok(())
}
