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

mod service;

mod chunked;
mod iteration;
mod projects;
pub use chunked::table as chunked_table;
pub use iteration::table as iteration_table;
pub use projects::table as projects_table;
pub use service::service_table;

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
    ("small.py", include_str!("../../bench/small.py")),
    ("text.py", include_str!("../../bench/text.py")),
    ("mathtex.py", include_str!("../../bench/mathtex.py")),
    ("twelve.py", include_str!("../../bench/twelve.py")),
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
                    // Like the plain CLI's --disable_caching: every run draws.
                    OsStr::new("--no-cache"),
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
