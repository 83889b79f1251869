//! The edit-and-look loop: the twelve-animation scene at `high` rendered
//! cold, resubmitted with a comment changed, and with one late animation
//! edited, through the animation cache; beside the plain `manim -qh` CLI
//! with its own cache in the same state (the local anchor).

use std::ffi::OsStr;
use std::path::Path;

use serde_json::{json, Value};

use super::service::{figure, median, table_header, Server};
use super::{check, BenchOptions, SOURCES};
use manimd::process::run_measured;
use manimd::spec::Engine;

/// The twelve-animation scene, made distinct per run by its background
/// (which every play's hash covers), optionally with its last animation
/// edited and a comment added.
fn twelve(run: usize, late_edit: bool, comment: &str) -> String {
    let mut code = SOURCES[3].1.replacen(
        "    def construct(self):\n",
        &format!(
            "    def construct(self):\n        self.camera.background_color = ManimColor(\"#0000{:02x}\")\n",
            run % 256
        ),
        1,
    );
    if late_edit {
        code = edit_last(&code);
    }
    format!("{code}\n# {comment}\n")
}

/// The last play a little longer: the scene's last `self.play` runs in a
/// loop of six, so only its last pass changes; the eleven plays before it
/// do not.
fn edit_last(code: &str) -> String {
    const LAST: &str = "run_time=0.5)";
    let at = code.rfind(LAST).expect("the scene sets run times");
    let rest = &code[at + LAST.len()..];
    format!("{}run_time=0.5 if i < 5 else 0.6){rest}", &code[..at])
}

/// The plain CLI at `high` with its own cache on (Manim's default).
const CLI_HIGH: [&str; 8] = [
    "render",
    "-qh",
    "--progress_bar",
    "none",
    "-v",
    "WARNING",
    "twelve.py",
    "Twelve",
];

fn body(code: String) -> Value {
    json!({"code": code, "scene": "Twelve", "quality": "high"})
}

/// `manimd bench --only iteration`: these figures alone, in their own table.
pub async fn table(opts: &BenchOptions) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("manimd-bench-iter-")
        .tempdir()?;
    println!();
    println!(
        "the edit-and-look loop (manimd serve over HTTP, 1 worker; medians of {})",
        opts.runs
    );
    table_header();
    figures(opts, scratch.path()).await
}

pub async fn figures(opts: &BenchOptions, dir: &Path) -> anyhow::Result<()> {
    let server = Server::start(
        opts,
        &dir.join("data"),
        &["--warm-pool", "1", "--workers", "1"],
    )
    .await?;
    let manim = opts.runtime.venv(Engine::Manim).join("bin/manim");
    let (mut cold, mut comment, mut late, mut cli_late) = (vec![], vec![], vec![], vec![]);
    for run in 0..opts.runs {
        server.warm(1).await?;
        cold.push(server.latency(&body(twelve(run, false, "a"))).await?.0);
        server.warm(1).await?;
        let (secs, job) = server.latency(&body(twelve(run, false, "b"))).await?;
        let reused = job
            .result
            .map_or(0, |r| r.animations.iter().filter(|a| a.cached).count());
        anyhow::ensure!(
            reused == 12,
            "a comment's edit reused {reused} of 12 animations"
        );
        comment.push(secs);
        server.warm(1).await?;
        late.push(server.latency(&body(twelve(run, true, "c"))).await?.0);

        // The plain CLI with its own cache: first the scene as it was (which
        // fills the cache), then the same late edit, which is measured.
        let work = dir.join(format!("cli-{run}"));
        std::fs::create_dir_all(&work)?;
        for (edited, measured) in [(false, false), (true, true)] {
            std::fs::write(work.join("twelve.py"), twelve(run, edited, "cli"))?;
            let args: Vec<&OsStr> = CLI_HIGH.iter().map(OsStr::new).collect();
            let (m, w) = (manim.clone(), work.clone());
            let cli =
                tokio::task::spawn_blocking(move || run_measured(&m, &args, &w, &w)).await??;
            let cli = check(cli, "manim -qh")?;
            if measured {
                cli_late.push(cli.wall.as_secs_f64());
            }
        }
    }
    let previews = preview_figures(&server, opts.runs).await?;
    server.stop().await;
    let cold = median(cold);
    figure(
        "twelve @high, cold: submit to video (s)",
        cold,
        cold,
        "s",
        "the anchor",
    );
    figure(
        "twelve @high, a comment changed (s)",
        median(comment),
        cold,
        "s",
        "<= 0.10x cold",
    );
    figure(
        "twelve @high, last animation edited (s)",
        median(late.clone()),
        cold,
        "s",
        "<= 0.30x cold",
    );
    figure(
        "twelve @high, last animation edited vs manim -qh cached (s)",
        median(late),
        median(cli_late),
        "s",
        "< 1.00x",
    );
    let (board, still) = previews;
    figure(
        "twelve @high, storyboard from a warm sandbox (s)",
        board,
        0.8,
        "s",
        "<= 0.8 s",
    );
    figure(
        "twelve @high, still at a time from a warm sandbox (s)",
        still,
        0.3,
        "s",
        "<= 0.3 s",
    );
    Ok(())
}

/// Previews of the twelve-animation scene at 1080p from a warm sandbox:
/// the storyboard (twelve frames) and one still at a time; medians of the
/// answers' times over HTTP.
async fn preview_figures(server: &Server, runs: usize) -> anyhow::Result<(f64, f64)> {
    let (mut board, mut still) = (vec![], vec![]);
    for run in 0..runs {
        let code = twelve(run, false, "preview");
        server.warm(1).await?;
        let (secs, view) = server
            .preview(
                &json!({"code": code, "scene": "Twelve", "quality": "high", "kind": "storyboard"}),
            )
            .await?;
        anyhow::ensure!(
            view.frames.len() == 12,
            "a storyboard of {} frames",
            view.frames.len()
        );
        board.push(secs);
        server.warm(1).await?;
        let (secs, view) = server
            .preview(&json!({"code": code, "scene": "Twelve", "quality": "high", "kind": "still", "at": 4.2}))
            .await?;
        anyhow::ensure!(
            view.frames.len() == 1,
            "a still of {} frames",
            view.frames.len()
        );
        still.push(secs);
    }
    Ok((median(board), median(still)))
}
