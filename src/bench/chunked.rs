//! Split renders: the long scene at `high` on one worker with one CPU,
//! against two such workers (one server, `--workers 2 --cpus 1`), whose
//! render is split in two. The videos are compared frame by frame and
//! sample by sample; the measured overheads (the plan pass, a chunk's
//! sandbox and simulated prefix, the join's stitch) give the speedup
//! projected for more workers on a ten-minute video.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::service::{figure, median, table_header, Server};
use super::BenchOptions;
use manimd::api::JobView;
use manimd::jobs::JobResult;

const LONG: &str = include_str!("../../bench/long.py");

/// `manimd bench --only chunked`.
pub async fn table(opts: &BenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("manimd-bench-chunks-")
        .tempdir()?;
    println!();
    println!(
        "split renders: bench/long.py @high (24 animations, 24 s), each worker limited to 1 CPU; medians of {}",
        opts.runs
    );
    table_header();
    let (mut one, mut two, mut last) = (vec![], vec![], None);
    for run in 0..opts.runs {
        // Fresh servers each run, one after the other: neither the result
        // cache nor the animation cache (which a split uses for its pieces)
        // holds anything, and one server's warm-up never overlaps the
        // other's render.
        let single = Server::start(
            opts,
            &dir.path().join(format!("one-{run}")),
            &["--workers", "1", "--warm-pool", "1", "--cpus", "1"],
        )
        .await?;
        single.warm(1).await?;
        let (secs, a) = single.latency(&body(LONG)).await?;
        one.push(secs);
        let video_a = single.video(&a.id).await?;
        single.stop().await;
        let split = Server::start(
            opts,
            &dir.path().join(format!("two-{run}")),
            // Every sandbox the split takes warm, as the single render's
            // one is: the plan pass, the other chunk and the join.
            &["--workers", "2", "--warm-pool", "3", "--cpus", "1"],
        )
        .await?;
        split.warm(3).await?;
        let (secs, b) = split.latency(&body(LONG)).await?;
        two.push(secs);
        let video_b = split.video(&b.id).await?;
        split.stop().await;
        last = Some((a, video_a, b, video_b));
    }
    let (a, video_a, b, video_b) = last.context("no run")?;
    let same = same_video(&video_a, &video_b, &b, dir.path()).await?;

    let (t1, t2) = (median(one), median(two));
    figure(
        "long @high, 1 worker x 1 CPU (s)",
        t1,
        t1,
        "s",
        "the anchor",
    );
    figure(
        "long @high, 2 workers x 1 CPU, split (s)",
        t2,
        t1,
        "s",
        "<= 0.60x",
    );
    println!("frames and sound of the split video identical to the single worker's: {same}");
    let (ra, rb) = (
        a.result.context("no result")?,
        b.result.context("no result")?,
    );
    overheads(&ra, &rb)
}

fn body(code: &str) -> serde_json::Value {
    json!({"code": code, "scene": "Long", "quality": "high"})
}

/// Whether both videos decode to the same frames and the same sound.
async fn same_video(a: &[u8], b: &[u8], split: &JobView, dir: &Path) -> anyhow::Result<String> {
    let (pa, pb) = (dir.join("one.mp4"), dir.join("two.mp4"));
    std::fs::write(&pa, a)?;
    std::fs::write(&pb, b)?;
    let (fa, fb) = (framemd5(&pa, "v:0").await?, framemd5(&pb, "v:0").await?);
    let chunks = split.result.as_ref().map_or(0, |r| r.chunks.len());
    Ok(if fa == fb {
        format!("yes ({} frames; {chunks} chunks)", fa.len())
    } else {
        let differ = fa.iter().zip(&fb).filter(|(x, y)| x != y).count();
        format!("NO: {differ} of {} frames differ", fa.len())
    })
}

async fn framemd5(video: &Path, stream: &str) -> anyhow::Result<Vec<String>> {
    let map = format!("0:{stream}");
    let args = [
        OsStr::new("-v"),
        OsStr::new("error"),
        OsStr::new("-i"),
        video.as_os_str(),
        OsStr::new("-map"),
        OsStr::new(&map),
        OsStr::new("-f"),
        OsStr::new("framemd5"),
        OsStr::new("-"),
    ];
    let out = manimd::process::run_tool("ffmpeg", &args, Path::new("/"), &[]).await?;
    anyhow::ensure!(out.status.success(), "ffmpeg could not decode {video:?}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap_or("").trim().to_owned())
        .collect())
}

/// The overheads of splitting, as measured, and what they make of more
/// workers on a ten-minute video.
fn overheads(single: &JobResult, split: &JobResult) -> anyhow::Result<()> {
    let video = single.duration.max(1e-3);
    // Seconds of one CPU per second of video, drawn (the single render).
    let draw = single.render_secs / video;
    // The plan skips through the plays (Manim's own skipping); the join
    // simulates the other chunks' plays frame by frame before its own: the
    // rate at which a chunk walks through the plays before its range.
    let plan = split.plan_secs.unwrap_or(0.0);
    let join_prefix = split
        .chunks
        .last()
        .map_or(0.0, |c| video - c.seconds)
        .max(1e-3);
    let simulate = split.prefix_secs.unwrap_or(0.0) / join_prefix;
    // After the last chunk, the join stitches: per second of video.
    let stitch = split.stitch_secs.unwrap_or(0.0);
    // A chunk's own cost beyond drawing its seconds and simulating the
    // ones before it: the sandbox's start and the scene's setup.
    let mut prefix = 0.0;
    let mut start = Vec::new();
    for c in &split.chunks {
        start.push((c.render_secs - draw * c.seconds - simulate * prefix).max(0.0));
        prefix += c.seconds;
    }
    let start = start.iter().copied().fold(0.0, f64::max);
    println!(
        "per split: plan pass {plan:.2} s ({:.3} s per s of video); stitch after the last chunk {stitch:.2} s ({:.3} s per s)",
        plan / video,
        stitch / video
    );
    println!(
        "per chunk: simulating the plays before its own {simulate:.3} s per s of video (the join: {:.2} s for {join_prefix:.1} s)",
        split.prefix_secs.unwrap_or(0.0)
    );
    println!(
        "per chunk: drawing {draw:.3} s per s of video; sandbox and setup beyond it {start:.2} s"
    );
    let minutes = 600.0;
    let alone = draw * minutes;
    for n in [4.0, 10.0, 50.0] {
        // The last chunk (the join) waits longest: it simulates all but its
        // own share, then stitches.
        let t = plan / video * minutes
            + start
            + draw * minutes / n
            + simulate * minutes * (n - 1.0) / n
            + stitch / video * minutes;
        println!(
            "projected, a 10-minute video on {n:>2} workers: {t:>7.1} s against {alone:.1} s alone ({:.1}x faster)",
            alone / t
        );
    }
    Ok(())
}
