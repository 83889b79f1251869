//! Previews: frames of one scene without a video. The worker simulates every
//! play (time stepped frame by frame, nothing encoded) and saves only the
//! frames asked for, so a storyboard or a still is exact and costs a
//! fraction of a render. Each frame is collected here from the finished
//! area, under a name the host picks, in the order the worker numbered them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::collect::{AnimationInfo, Collector};
use super::error::outcome;
use super::{RenderError, Renderer, Warm};
use crate::limits::Limits;
use crate::protocol::{PreviewKind, WorkerEvent, WorkerJob};
use crate::sandbox::{self, Finished};
use crate::spec::{Engine, Quality, SceneName};

/// At most this many frames are kept from one preview: a storyboard has one
/// per play, and the worker is untrusted.
pub const MAX_FRAMES: usize = 1000;

/// What to preview: one scene, drawn as a render of the same settings would
/// draw it.
#[derive(Clone, Debug)]
pub struct PreviewSpec {
    pub code: String,
    /// `None`: the file's only scene.
    pub scene: Option<SceneName>,
    pub engine: Engine,
    pub quality: Quality,
    /// Overrides the quality's frame rate (the times a still can land on).
    pub fps: Option<u32>,
    pub seed: Option<u32>,
    pub kind: PreviewKind,
    /// The files beside the scene file (`code` is `project.main`'s text).
    pub project: Option<crate::project::Project>,
    /// Whose blobs the project's files refer to.
    pub owner: Option<String>,
}

/// A finished preview: the scene's animations and the frames, in order.
#[derive(Debug)]
pub struct Preview {
    pub animations: Vec<AnimationInfo>,
    pub frames: Vec<PreviewFrame>,
    pub engine_version: String,
    pub wall: Duration,
    /// The worker's own time, from receiving the job to its answer.
    pub job_secs: Option<f64>,
}

/// One collected frame.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviewFrame {
    /// The animation it ends (storyboard) or falls in (still).
    pub animation: u32,
    /// Seconds into the scene.
    pub time: f64,
    /// The PNG, on the host.
    pub path: PathBuf,
}

/// The worker's closing line of a preview.
struct Previewed {
    job_secs: Option<f64>,
}

impl Renderer {
    /// Previews `spec` into `dest_dir` (`NNN.png`), in `warm` when it fits
    /// the engine, else in a fresh sandbox. `limits` bound the run (a warm
    /// sandbox keeps the memory and process limits it started with; the
    /// wall clock and output caps are these).
    pub async fn preview(
        &self,
        spec: &PreviewSpec,
        warm: Option<Warm>,
        limits: &Limits,
        dest_dir: &Path,
        cancel: impl Future<Output = ()>,
    ) -> Result<Preview, RenderError> {
        let started = self.start_or_take(spec.engine, warm, limits).await?;
        if let Err(e) = self
            .lay_out(
                &started,
                &spec.code,
                spec.project.as_ref(),
                spec.owner.as_deref(),
            )
            .await
        {
            self.sandbox.discard(started).await;
            return Err(e);
        }
        std::fs::create_dir_all(dest_dir)
            .map_err(|e| sandbox::SandboxError::Area(dest_dir.to_owned(), e))?;
        let stdin = preview_job(spec);
        let mut collector = Collector::new(limits, dest_dir.join("pieces"), None, |_| {});
        let mut frames: Vec<(u32, f64)> = Vec::new();
        let mut previewed = None;
        let mut finished = self
            .sandbox
            .finish(
                started,
                stdin,
                limits,
                |line, area| match WorkerEvent::parse(line) {
                    // Numbered from 0 in order; any other number is not ours
                    // to name a file after (the collector ignores it).
                    Some(WorkerEvent::PreviewFrame {
                        n, animation, time, ..
                    }) if n as usize == frames.len() && frames.len() < MAX_FRAMES => {
                        frames.push((animation, time))
                    }
                    Some(WorkerEvent::Previewed { job_secs, .. }) => {
                        previewed = Some(Previewed { job_secs })
                    }
                    Some(event) => collector.on_event(event, area),
                    None => {}
                },
                cancel,
            )
            .await?;
        let animations = collector.animations();
        let answer = outcome(
            &mut finished,
            previewed,
            collector.error.take(),
            "preview",
            collector.ready,
        )?;
        let frames = collect_frames(&finished, &frames, limits, dest_dir)?;
        Ok(Preview {
            animations,
            frames,
            engine_version: collector.version.clone(),
            wall: finished.wall,
            job_secs: answer.job_secs,
        })
    }
}

/// The preview job as the worker reads it on its stdin.
fn preview_job(spec: &PreviewSpec) -> Vec<u8> {
    let (width, height) = spec.quality.resolution();
    let job = WorkerJob::Preview {
        code: &spec.code,
        engine: spec.engine,
        scenes: spec.scene.as_slice(),
        width,
        height,
        fps: spec.fps.unwrap_or(spec.quality.fps()),
        seed: Some(spec.seed.unwrap_or(crate::spec::DEFAULT_SEED)),
        preview: &spec.kind,
        main: spec.project.as_ref().map(|p| p.main.as_str()),
    };
    serde_json::to_vec(&job).expect("serializable")
}

/// Takes each announced frame out of the finished area (`out/frames/NNN.png`,
/// names the host derives from the order), within the output cap over all
/// of them. A frame the worker announced that cannot be collected fails
/// the preview (`bad-output`), as a render's missing video would.
fn collect_frames(
    finished: &Finished,
    announced: &[(u32, f64)],
    limits: &Limits,
    dest_dir: &Path,
) -> Result<Vec<PreviewFrame>, RenderError> {
    let mut left = limits.output_bytes();
    let mut frames = Vec::with_capacity(announced.len());
    for (n, &(animation, time)) in announced.iter().enumerate() {
        let path = dest_dir.join(format!("{n:03}.png"));
        let bytes = finished
            .area
            .collect(&format!("out/frames/{n:03}.png"), &path, left)?;
        left = left.saturating_sub(bytes);
        frames.push(PreviewFrame {
            animation,
            time,
            path,
        });
    }
    Ok(frames)
}
