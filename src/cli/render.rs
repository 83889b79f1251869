//! `manimd render`: a local render through the same sandboxed pipeline.
//! `render` reads as the command's steps: resolve the arguments, inspect,
//! render with a progress display, deliver the files, report; each step
//! owns its exit code (1 failed, 2 unusable, 130 interrupted).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{report, watch, RenderArgs};
use manimd::animcache::LOCAL_OWNER;
use manimd::config::Config;
use manimd::limits::Limits;
use manimd::protocol::Progress;
use manimd::render::{Inspection, RenderError, Rendered, Renderer};
use manimd::scenes::{self, NoChoice};
use manimd::spec::{Engine, Format, RenderSpec, SceneName};

/// Scene files larger than this are refused (the server's body limit too).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Exit codes: 1 the render failed, 2 the request was unusable, 130 interrupted.
const FAILED: u8 = 1;
const USAGE: u8 = 2;
pub(super) const INTERRUPTED: u8 = 130;

pub async fn run(config: &Config, args: RenderArgs) -> ExitCode {
    match render(config, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

pub(super) fn usage(msg: impl std::fmt::Display) -> u8 {
    eprintln!("error: {msg}");
    USAGE
}

async fn render(config: &Config, args: RenderArgs) -> Result<(), u8> {
    let code = read_scene_file(&args.file).map_err(usage)?;
    let scenes = args
        .scenes
        .iter()
        .map(|s| s.parse::<SceneName>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let format = output_format(&args)?;
    let limits = limits(config, &args);
    // The scene's folder is its project, laid out from the user's own files.
    let folder = crate::folder::scan(&args.file, &Default::default()).map_err(usage)?;
    let local = folder.as_ref().map(|f| f.local());

    let mut renderer = Renderer::new(config).map_err(|e| fail(&e, &args.file, &code))?;
    if let Some((_, blobs)) = &local {
        renderer = renderer.with_blobs(blobs.clone());
    }
    let inspection = renderer
        .inspect(&code)
        .await
        .map_err(|e| fail(&e, &args.file, &code))?;
    let engine = args.engine.or(inspection.engine).unwrap_or(Engine::Manim);
    let scenes = choose_scenes(&args, &inspection, scenes, &code)?;

    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.file, format));
    let spec = RenderSpec {
        code,
        scenes,
        engine,
        quality: args.quality,
        format,
        fps: args.fps,
        seed: args.seed,
        encoding: args.encoding,
        narration: args.narration,
        cache: !args.no_cache,
        // One process, one sandbox: a split needs the service's workers.
        parallel: manimd::spec::Parallel::AtMost(1),
        project: local.map(|(project, _)| project),
    };
    let first = render_and_deliver(&renderer, &spec, &limits, &output, &args).await;
    if !args.watch {
        // Like a server's stop: no job group, nor the parent made for them, stays.
        renderer.sandbox().close().await;
        return first.map(|_| ());
    }
    // One listener for the whole watch: a Ctrl-C that comes while a render
    // is being delivered waits here for the next look instead of being lost
    // (a listener hears only signals sent after it was made).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| usage(format!("cannot listen for Ctrl-C: {e}")))?;
    eprintln!("watching {} for changes (Ctrl-C ends)", args.file.display());
    let mut seen = watch::modified(&args.file);
    loop {
        tokio::select! {
            _ = interrupt.recv() => {
                renderer.sandbox().close().await;
                return Ok(());
            }
            _ = watch::next_save(&args.file, &mut seen) => {}
        }
        let code = match read_scene_file(&args.file) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let spec = watch::respec(&spec, code);
        let started = std::time::Instant::now();
        match render_and_deliver(&renderer, &spec, &limits, &output, &args).await {
            Ok((rendered, output)) => {
                eprintln!("{}", watch::summary(&rendered, started.elapsed(), &output))
            }
            Err(INTERRUPTED) => return Err(INTERRUPTED),
            // Reported already; the next save tries again.
            Err(_) => {}
        }
    }
}

/// Renders into a staging directory beside `output`, moves the files
/// there and prints the summary; returns the render and where it went.
async fn render_and_deliver(
    renderer: &Renderer,
    spec: &RenderSpec,
    limits: &Limits,
    output: &Path,
    args: &RenderArgs,
) -> Result<(Rendered, PathBuf), u8> {
    // Rendered next to the output, so that moving it there is a rename.
    let out_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".manimd-")
        .tempdir_in(out_dir)
        .map_err(|e| usage(format!("cannot write to {}: {e}", out_dir.display())))?;

    let rendered = render_showing_progress(renderer, spec, limits, staging.path(), args).await?;
    let (output, subtitles) = deliver(&rendered, output.to_owned(), spec.format)?;
    summarize(args, spec.engine, &rendered, &output, subtitles.as_deref());
    Ok((rendered, output))
}

/// The format asked for, else the output's extension, else MP4; refused
/// when narration is asked for a format without sound.
fn output_format(args: &RenderArgs) -> Result<Format, u8> {
    let format = match (args.format, &args.output) {
        (Some(f), _) => f,
        (None, Some(out)) => out
            .extension()
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension)
            .unwrap_or(Format::Mp4),
        (None, None) => Format::Mp4,
    };
    if args.narration && matches!(format, Format::Gif | Format::Png) {
        return Err(usage(format!(
            "{} has no sound track: --narration needs mp4, mov or webm",
            format.extension()
        )));
    }
    Ok(format)
}

/// The configured limits, with the command line's overrides.
fn limits(config: &Config, args: &RenderArgs) -> Limits {
    let mut limits = config.limits.clone();
    if let Some(secs) = args.timeout {
        limits.wall_secs = secs;
    }
    if let Some(mib) = args.memory {
        limits.set_memory_mib(mib);
    }
    limits
}

/// The scenes to render: all of them with `--all`, else those named, chosen
/// by the service's own rule (`scenes::choose`). A file of several scenes
/// with none named is a usage error that lists them; no scene, or a name
/// the file lacks, fails as the server would refuse it, before any sandbox.
fn choose_scenes(
    args: &RenderArgs,
    inspection: &Inspection,
    named: Vec<SceneName>,
    code: &str,
) -> Result<Vec<SceneName>, u8> {
    if args.all {
        return Ok(inspection
            .scenes
            .iter()
            .filter_map(|s| s.name.parse().ok())
            .collect());
    }
    match scenes::choose(&inspection.scenes, &named) {
        Ok(_) => Ok(named),
        // At a terminal the fix is a usage one: list the scenes with their
        // lines, and mention --all.
        Err(NoChoice::Several { .. }) => {
            eprintln!(
                "{} defines several scenes; name the ones to render, or pass --all:",
                args.file.display()
            );
            for s in &inspection.scenes {
                eprintln!("  {:<30} (line {})", s.name, s.line);
            }
            Err(USAGE)
        }
        Err(no) => Err(fail(&no.into(), &args.file, code)),
    }
}

/// Renders with a spinner that shows the worker's progress; Ctrl-C stops
/// the render, which exits 130.
async fn render_showing_progress(
    renderer: &Renderer,
    spec: &RenderSpec,
    limits: &Limits,
    staging: &Path,
    args: &RenderArgs,
) -> Result<Rendered, u8> {
    let bar = progress_bar(args.quiet);
    bar.set_message(format!("starting {}", spec.engine));
    let result = renderer
        .render(
            spec,
            Some(LOCAL_OWNER),
            limits,
            staging,
            |p| show(&bar, &p),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await;
    bar.finish_and_clear();
    match result {
        Ok(r) => Ok(r),
        Err(RenderError::Stopped(manimd::sandbox::Stopped::Canceled)) => {
            eprintln!("interrupted; the render was stopped");
            Err(INTERRUPTED)
        }
        Err(e) => Err(fail(&e, &args.file, &spec.code)),
    }
}

/// Moves the video (a still becomes `.png`) and the subtitles (beside it,
/// `.vtt`) out of the staging directory; returns where they went.
fn deliver(
    rendered: &Rendered,
    mut output: PathBuf,
    format: Format,
) -> Result<(PathBuf, Option<PathBuf>), u8> {
    if rendered.media.still && format != Format::Png {
        output.set_extension("png");
    }
    std::fs::rename(&rendered.output, &output)
        .map_err(|e| usage(format!("cannot write {}: {e}", output.display())))?;
    let subtitles = rendered.narration.as_ref().map(|n| {
        let vtt = output.with_extension("vtt");
        std::fs::rename(&n.subtitles, &vtt)
            .map(|()| vtt.clone())
            .map_err(|e| usage(format!("cannot write {}: {e}", vtt.display())))
    });
    let subtitles = subtitles.transpose()?;
    Ok((output, subtitles))
}

/// What the render made: the paths on stdout (or one JSON summary with
/// `--json`), a line about it on stderr unless quiet.
fn summarize(
    args: &RenderArgs,
    engine: Engine,
    rendered: &Rendered,
    output: &Path,
    subtitles: Option<&Path>,
) {
    if let Some(notice) = &rendered.media.notice {
        eprintln!("note[{}]: {}", notice.code, notice.message);
    }
    if args.json {
        let summary = serde_json::json!({
            "output": output,
            "engine": engine,
            "engine_version": rendered.engine_version,
            "media": rendered.media,
            "bytes": rendered.bytes,
            "wall_secs": rendered.wall.as_secs_f64(),
            "sandbox_peak_bytes": rendered.peak_memory_bytes,
            "worker_max_rss_bytes": rendered.worker_max_rss_bytes,
            "subtitles": subtitles,
            "narration": rendered.narration.as_ref().map(|n| &n.cues),
            "animations": rendered.animations,
        });
        println!("{summary}");
        return;
    }
    println!("{}", output.display());
    if let Some(vtt) = subtitles {
        println!("{}", vtt.display());
    }
    if !args.quiet {
        eprintln!(
            "rendered with {engine} {} in {:.1} s: {}",
            rendered.engine_version,
            rendered.wall.as_secs_f64(),
            report::media(&rendered.media, rendered.bytes)
        );
    }
}

pub(super) fn read_scene_file(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes; scene files are limited to {MAX_FILE_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

fn default_output(file: &Path, format: Format) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_owned())
        .unwrap_or_else(|| "scene".into());
    let mut name = PathBuf::from(stem);
    name.set_extension(format.extension());
    name
}

pub(super) fn fail(err: &RenderError, file: &Path, code: &str) -> u8 {
    eprint!("{}", report::error(err, file, code));
    FAILED
}

pub(super) fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn show(bar: &ProgressBar, p: &Progress) {
    let msg = match p {
        Progress::Ready { engine, version } => {
            format!("{engine} {version} loaded, running the file")
        }
        Progress::SceneStarted {
            scene,
            index,
            count,
        } => format!("scene {}/{count} {scene}", index + 1),
        Progress::Animation {
            scene,
            index,
            name,
            cached,
            ..
        } => {
            let cached = if *cached { " (cached)" } else { "" };
            format!("{scene}: animation {index} {name}{cached}")
        }
        Progress::Frames { scene, frames } => format!("{scene}: {frames} frames"),
        Progress::PartialMovie { .. } => return,
        Progress::AwaitingPieces { count } => {
            format!("waiting for {count} animations other workers are drawing")
        }
        Progress::SceneFinished {
            scene,
            plays,
            duration,
            ..
        } => {
            format!("{scene}: done, {plays} animations, {duration:.2} s; encoding")
        }
    };
    bar.set_message(msg);
}
