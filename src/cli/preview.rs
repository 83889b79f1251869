//! `manimd preview`: a scene's storyboard or one still, locally, through
//! the same sandboxed worker as `manimd render`, without a video. Errors
//! and exit codes are render's (1 failed, 2 unusable, 130 interrupted).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::render::{fail, read_scene_file, usage, INTERRUPTED};
use super::PreviewArgs;
use manimd::config::Config;
use manimd::protocol::PreviewKind;
use manimd::render::{Preview, PreviewSpec, RenderError, Renderer};
use manimd::scenes;
use manimd::spec::{Engine, SceneName};

pub async fn run(config: &Config, args: PreviewArgs) -> ExitCode {
    match preview(config, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

async fn preview(config: &Config, args: PreviewArgs) -> Result<(), u8> {
    let code = read_scene_file(&args.file).map_err(usage)?;
    let scene = args
        .scene
        .as_deref()
        .map(str::parse::<SceneName>)
        .transpose()
        .map_err(usage)?;
    let kind = kind(&args)?;
    let mut limits = config.limits.clone();
    if let Some(secs) = args.timeout {
        limits.wall_secs = secs;
    }
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
    // The service's rule: the named scene, or the file's only one.
    scenes::choose(&inspection.scenes, scene.as_slice())
        .map_err(|no| fail(&no.into(), &args.file, &code))?;
    let spec = PreviewSpec {
        engine: args.engine.or(inspection.engine).unwrap_or(Engine::Manim),
        code,
        scene,
        quality: args.quality,
        fps: args.fps,
        seed: args.seed,
        kind,
        project: local.map(|(project, _)| project),
        owner: None,
    };
    let staging = staging_dir(&args.output)?;
    let result = renderer
        .preview(&spec, None, &limits, staging.path(), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    let preview = match result {
        Ok(p) => p,
        Err(RenderError::Stopped(manimd::sandbox::Stopped::Canceled)) => {
            eprintln!("interrupted; the preview was stopped");
            return Err(INTERRUPTED);
        }
        Err(e) => return Err(fail(&e, &args.file, &spec.code)),
    };
    let delivered = deliver(&preview, &spec.kind, &args.output)?;
    for (frame, path) in preview.frames.iter().zip(&delivered) {
        let animation = preview.animations.get(frame.animation as usize);
        let name = animation.map(|a| a.name.as_str()).unwrap_or("?");
        let line = animation
            .and_then(|a| a.line)
            .map(|l| format!("line {l}"))
            .unwrap_or_else(|| "line ?".into());
        println!(
            "{:>3}  {name:<32} {line:<9} {:>8.3} s  {}",
            frame.animation,
            frame.time,
            path.display()
        );
    }
    eprintln!(
        "previewed {} frame(s) in {:.2} s",
        delivered.len(),
        preview.wall.as_secs_f64()
    );
    Ok(())
}

/// `--storyboard`, `--at SECONDS` or `--animation N` (clap keeps them apart).
fn kind(args: &PreviewArgs) -> Result<PreviewKind, u8> {
    match (args.storyboard, args.at, args.animation) {
        (true, None, None) => Ok(PreviewKind::Storyboard),
        (false, Some(at), None) if at.is_finite() && at >= 0.0 => Ok(PreviewKind::Still {
            at: Some(at),
            animation: None,
        }),
        (false, Some(_), None) => Err(usage("--at takes a number of seconds, 0 or more")),
        (false, None, Some(n)) => Ok(PreviewKind::Still {
            at: None,
            animation: Some(n),
        }),
        _ => Err(usage(
            "give one of --storyboard, --at SECONDS, --animation N",
        )),
    }
}

/// A temporary directory where the frames are collected: beside `out` (a
/// still's file) or inside it (a storyboard's directory), so that moving
/// the frames there is a rename.
fn staging_dir(out: &Path) -> Result<tempfile::TempDir, u8> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| usage(format!("cannot write to {}: {e}", parent.display())))?;
    tempfile::Builder::new()
        .prefix(".manimd-")
        .tempdir_in(parent)
        .map_err(|e| usage(format!("cannot write to {}: {e}", parent.display())))
}

/// Moves the frames out: a still's one frame to `out`; a storyboard's into
/// the directory `out` as `NN.png`, by animation. Returns where each went.
fn deliver(preview: &Preview, kind: &PreviewKind, out: &Path) -> Result<Vec<PathBuf>, u8> {
    let cannot = |p: &Path, e: std::io::Error| usage(format!("cannot write {}: {e}", p.display()));
    let targets: Vec<PathBuf> = match kind {
        PreviewKind::Still { .. } => vec![out.to_owned()],
        PreviewKind::Storyboard => {
            std::fs::create_dir_all(out).map_err(|e| cannot(out, e))?;
            preview
                .frames
                .iter()
                .map(|f| out.join(format!("{:02}.png", f.animation)))
                .collect()
        }
    };
    for (frame, target) in preview.frames.iter().zip(&targets) {
        std::fs::rename(&frame.path, target).map_err(|e| cannot(target, e))?;
    }
    Ok(targets)
}
