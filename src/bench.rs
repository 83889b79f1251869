//! `manimd bench`: the same scenes through the plain `manim` CLI and through
//! `manimd render`, in one run, with medians and ratios side by side.
//!
//! Both are started the same way (as a child process, timed from spawn to
//! exit), so the figures include every cost a user pays: interpreter start,
//! imports, the sandbox, encoding and stitching.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use manimd::process::{run_measured, Measured};
use manimd::runtime::Runtime;
use manimd::spec::{Engine, Quality};

/// The fixed scene set, compiled in so that every run measures the same code.
pub const SCENES: &[BenchScene] = &[
    BenchScene {
        file: "small.py",
        scene: "Small",
        quality: Quality::Low,
        note: "4 animations",
    },
    BenchScene {
        file: "text.py",
        scene: "TextScene",
        quality: Quality::Low,
        note: "Text (Pango)",
    },
    BenchScene {
        file: "mathtex.py",
        scene: "MathTexScene",
        quality: Quality::Low,
        note: "MathTex (LaTeX)",
    },
    BenchScene {
        file: "twelve.py",
        scene: "Twelve",
        quality: Quality::Low,
        note: "12 animations",
    },
    BenchScene {
        file: "small.py",
        scene: "Small",
        quality: Quality::High,
        note: "4 animations, 1080p60",
    },
];

const SOURCES: &[(&str, &str)] = &[
    ("small.py", include_str!("../bench/small.py")),
    ("text.py", include_str!("../bench/text.py")),
    ("mathtex.py", include_str!("../bench/mathtex.py")),
    ("twelve.py", include_str!("../bench/twelve.py")),
];

pub struct BenchScene {
    pub file: &'static str,
    pub scene: &'static str,
    pub quality: Quality,
    pub note: &'static str,
}

/// Medians of one side of one row.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub wall: Duration,
    pub max_rss_bytes: u64,
}

pub struct Row {
    pub label: String,
    pub plain: Figures,
    pub manimd: Figures,
}

pub struct BenchOptions {
    pub runs: usize,
    pub runtime: Runtime,
    /// The manimd binary to measure (normally this one).
    pub manimd: PathBuf,
    pub data_dir: PathBuf,
}

fn manim_flag(q: Quality) -> &'static str {
    match q {
        Quality::Low => "-ql",
        Quality::Medium => "-qm",
        Quality::High => "-qh",
        Quality::Production => "-qp",
        Quality::FourK => "-qk",
    }
}

fn median(mut xs: Vec<Measured>) -> Figures {
    xs.sort_by_key(|m| m.wall);
    let wall = xs[xs.len() / 2].wall;
    let mut rss: Vec<u64> = xs.iter().map(|m| m.max_rss_bytes).collect();
    rss.sort_unstable();
    Figures {
        wall,
        max_rss_bytes: rss[rss.len() / 2],
    }
}

fn check(m: Measured, what: &str) -> anyhow::Result<Measured> {
    if m.success {
        Ok(m)
    } else {
        anyhow::bail!("{what} failed:\n{}", m.stderr_tail)
    }
}

/// Adds the sandbox's peak RSS, which `wait4` cannot see (the worker is
/// reaped inside its own pid namespace), to manimd's own: the two run at once.
fn with_sandbox_memory(mut m: Measured) -> anyhow::Result<Measured> {
    let summary: serde_json::Value = serde_json::from_slice(&m.stdout)?;
    let worker = summary["worker_max_rss_bytes"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("manimd render --json reported no worker memory"))?;
    m.max_rss_bytes += worker;
    Ok(m)
}

/// Runs every scene `runs` times each way, alternating the order.
pub fn run(opts: &BenchOptions, mut on_row: impl FnMut(&Row)) -> anyhow::Result<Vec<Row>> {
    let scratch = tempfile::Builder::new().prefix("manimd-bench-").tempdir()?;
    for (name, text) in SOURCES {
        std::fs::write(scratch.path().join(name), text)?;
    }
    let manim = opts.runtime.venv(Engine::Manim).join("bin/manim");
    opts.runtime.check(Engine::Manim)?;
    let mut rows = Vec::new();
    for s in SCENES {
        let (mut plain, mut ours) = (Vec::new(), Vec::new());
        for run in 0..opts.runs {
            let media = scratch.path().join(format!("media-{run}"));
            let out = scratch.path().join(format!("out-{run}.mp4"));
            let plain_run = || {
                let args = [
                    OsStr::new("render"),
                    OsStr::new(manim_flag(s.quality)),
                    OsStr::new("--disable_caching"),
                    OsStr::new("--progress_bar"),
                    OsStr::new("none"),
                    OsStr::new("-v"),
                    OsStr::new("WARNING"),
                    OsStr::new("--media_dir"),
                    media.as_os_str(),
                    OsStr::new(s.file),
                    OsStr::new(s.scene),
                ];
                run_measured(&manim, &args, scratch.path(), scratch.path())
                    .map(|m| check(m, "manim"))
            };
            let ours_run = || {
                let args = [
                    OsStr::new("render"),
                    OsStr::new(s.file),
                    OsStr::new(s.scene),
                    OsStr::new("--quality"),
                    OsStr::new(s.quality.as_str()),
                    OsStr::new("--json"),
                    OsStr::new("-o"),
                    out.as_os_str(),
                    OsStr::new("--data-dir"),
                    opts.data_dir.as_os_str(),
                    OsStr::new("--runtime-dir"),
                    opts.runtime.root().as_os_str(),
                ];
                run_measured(&opts.manimd, &args, scratch.path(), scratch.path())
                    .map(|m| check(m, "manimd render").and_then(with_sandbox_memory))
            };
            // Alternate which goes first so that neither always gets a warm cache.
            if run % 2 == 0 {
                plain.push(plain_run()??);
                ours.push(ours_run()??);
            } else {
                ours.push(ours_run()??);
                plain.push(plain_run()??);
            }
            let _ = std::fs::remove_dir_all(&media);
        }
        let row = Row {
            label: format!("{} @{} ({})", s.scene, s.quality.as_str(), s.note),
            plain: median(plain),
            manimd: median(ours),
        };
        on_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

pub fn header() -> String {
    format!(
        "{:<40} {:>10} {:>10} {:>7}   {:>10} {:>10} {:>7}",
        "scene", "manim s", "manimd s", "ratio", "manim MiB", "manimd MiB", "ratio"
    )
}

pub fn format_row(r: &Row) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "{:<40} {:>10.2} {:>10.2} {:>6.2}x   {:>10.0} {:>10.0} {:>6.2}x",
        r.label,
        r.plain.wall.as_secs_f64(),
        r.manimd.wall.as_secs_f64(),
        r.manimd.wall.as_secs_f64() / r.plain.wall.as_secs_f64(),
        mib(r.plain.max_rss_bytes),
        mib(r.manimd.max_rss_bytes),
        r.manimd.max_rss_bytes as f64 / r.plain.max_rss_bytes.max(1) as f64,
    )
}

/// A line about the machine, for the record.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = manimd::metrics::total_memory() as f64 / (1024.0 * 1024.0 * 1024.0);
    format!("{cores} cores, {cpu}, {mem_gib:.0} GiB RAM")
}

/// The service figures: a real `manimd serve` (this binary, as a child
/// process) driven over HTTP, next to the plain CLI measured in the same run.
pub mod service {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use manimd::api::JobView;
    use manimd::client::Client;
    use manimd::jobs::JobStatus;
    use serde_json::{json, Value};
    use tokio::io::AsyncBufReadExt;

    use super::BenchOptions;

    pub struct Server {
        child: tokio::process::Child,
        client: Client,
    }

    impl Server {
        pub async fn start(
            opts: &BenchOptions,
            data: &Path,
            args: &[&str],
        ) -> anyhow::Result<Server> {
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
            let mut lines =
                tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
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

        pub async fn stop(mut self) {
            let _ = self.child.kill().await;
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
        })
    }

    /// The fixed twelve-animation scene at `high`, made unique by `salt`.
    pub fn twelve_high(salt: &str) -> Value {
        json!({
            "code": format!("{}\n# {salt}\n", super::SOURCES[3].1),
            "scene": "Twelve",
            "quality": "high",
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

/// One line of the service table.
fn figure(name: &str, ours: f64, base: f64, unit: &str, target: &str) {
    let ratio = if base > 0.0 {
        format!("{:.2}x", ours / base)
    } else {
        "-".into()
    };
    println!("{name:<52} {ours:>10.3} {base:>10.3} {unit:<4} {ratio:>8}   {target}");
}

/// Runs the service figures against the CLI rows measured just before.
pub async fn service_table(opts: &BenchOptions, rows: &[Row]) -> anyhow::Result<()> {
    use service::{median, small, Server};
    let scratch = tempfile::Builder::new()
        .prefix("manimd-bench-svc-")
        .tempdir()?;
    let runs = opts.runs;
    let cli_small = rows[0].plain.wall.as_secs_f64();
    println!();
    println!("service (manimd serve over HTTP; 2 workers; medians of {runs})");
    println!(
        "{:<52} {:>10} {:>10} {:<4} {:>8}   target",
        "figure", "manimd", "baseline", "", "ratio"
    );

    // Cold: every job starts its sandbox and imports Manim.
    let cold = Server::start(
        opts,
        &scratch.path().join("cold"),
        &["--warm-pool", "0", "--workers", "2"],
    )
    .await?;
    let mut cold_lat = Vec::new();
    for i in 0..runs {
        cold_lat.push(
            cold.latency(&small(&format!("cold {i}"), "low", "final"))
                .await?
                .0,
        );
    }
    cold.stop().await;
    let cold_lat = median(cold_lat);
    figure(
        "small @low, cold sandbox: submit to video (s)",
        cold_lat,
        cli_small,
        "s",
        "vs manim -ql",
    );

    // Warm: the engine is imported before the job arrives.
    let warm = Server::start(
        opts,
        &scratch.path().join("warm"),
        &["--warm-pool", "2", "--workers", "2"],
    )
    .await?;
    warm.warm(2).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = warm.health().await?;
    let (mut lat, mut engine, mut peak) = (Vec::new(), Vec::new(), 0u64);
    let mut last = serde_json::Value::Null;
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
    let mut hits = Vec::new();
    for _ in 0..runs {
        let (secs, job) = warm.latency(&last).await?;
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

    // Saturation: 20 small jobs at once, against the CLI back to back.
    warm.warm(2).await?;
    let n = 20;
    let t = std::time::Instant::now();
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
    let cli = {
        let opts_manim = opts
            .runtime
            .venv(manimd::spec::Engine::Manim)
            .join("bin/manim");
        let dir = scratch.path().join("cli-saturated");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("small.py"), SOURCES[0].1)?;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let (d, m) = (dir.clone(), opts_manim.clone());
            let run = tokio::task::spawn_blocking(move || {
                let args: Vec<&OsStr> = CLI_LOW.iter().map(OsStr::new).collect();
                run_measured(&m, &args, &d, &d)
            })
            .await??;
            check(run, "manim")?;
        }
        n as f64 / t.elapsed().as_secs_f64() * 60.0
    };
    figure(
        "saturated: 20 small jobs queued (jobs/min)",
        ours,
        cli,
        "/min",
        ">= 1.5x CLI back to back",
    );

    // Live playback: the first segment of a long render, against all of it.
    let (mut first, mut full) = (Vec::new(), Vec::new());
    for i in 0..runs {
        warm.warm(1).await?;
        let (f, t) =
            service::first_segment(&warm, &service::twelve_high(&format!("live {i}"))).await?;
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

    // Encoding tiers at 1080p60.
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
    let (fin, pre) = (median(fin), median(pre));
    figure(
        "small @high, preview encoding: render (s)",
        pre,
        fin,
        "s",
        "<= 0.60x final",
    );
    let cli_high = rows
        .iter()
        .find(|r| r.label.contains("@high"))
        .map(|r| r.plain.wall.as_secs_f64())
        .unwrap_or(0.0);
    let ours_high = rows
        .iter()
        .find(|r| r.label.contains("@high"))
        .map(|r| r.manimd.wall.as_secs_f64())
        .unwrap_or(0.0);
    figure(
        "small @high, final: manimd render vs manim -qh (s)",
        ours_high,
        cli_high,
        "s",
        "<= 1.05x",
    );
    warm.stop().await;
    Ok(())
}
