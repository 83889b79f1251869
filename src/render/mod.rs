//! The render pipeline: inspect a file, render its scenes in a sandbox with
//! the worker, collect the result. The CLI and the server both use this.
//!
//! This module holds the public API ([`Renderer`], what it returns, warm
//! sandboxes) and one render's flow; its parts live beside it: `inspect`
//! (parsing a file without running it), `command` (the worker's command
//! line and environment), `collect` (the worker's events during a render),
//! `narrate` (speech before and after a render, the mux pass) and `error`
//! ([`RenderError`] and how a worker pass ended).

mod collect;
mod command;
mod error;
mod inspect;
mod narrate;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::job_error::ErrorCode;
use crate::limits::Limits;
use crate::narration::{Cue, Speech, Tts};
use crate::protocol::{MediaInfo, Progress, WorkerEvent, WorkerJob, WorkerResult, ENGINE_MISMATCH};
use crate::runtime::{self, Runtime};
use crate::sandbox::{self, Finished, Sandbox, Stopped};
use crate::spec::{Engine, RenderSpec};

use collect::Collector;
use error::{outcome, user_code};
use narrate::Lines;

pub use error::RenderError;
pub use inspect::{Inspection, Inspector};

/// A finished render.
#[derive(Debug)]
pub struct Rendered {
    pub media: MediaInfo,
    /// The delivered file (video, or PNG for stills).
    pub output: PathBuf,
    /// The last frame as PNG.
    pub thumbnail: Option<PathBuf>,
    pub bytes: u64,
    pub engine_version: String,
    pub wall: Duration,
    /// Peak memory of the sandbox's cgroup (processes, page cache and files).
    pub peak_memory_bytes: Option<u64>,
    /// Peak RSS of the worker or its largest child, as the worker reported it.
    pub worker_max_rss_bytes: Option<u64>,
    /// The render's own time, from the worker receiving the job to its result.
    pub job_secs: Option<f64>,
    /// With narration: the lines as heard, and the subtitles file.
    pub narration: Option<Narrated>,
}

/// A narrated render's lines and subtitles.
#[derive(Debug)]
pub struct Narrated {
    pub cues: Vec<Cue>,
    /// WebVTT, one cue per line.
    pub subtitles: PathBuf,
}

/// A sandbox with its engine imported, waiting for a job.
pub struct Warm {
    started: sandbox::Started,
    pub engine: Engine,
    limits: Limits,
}

impl Warm {
    /// Whether a job with `engine` and `limits` can run in this sandbox.
    pub fn fits(&self, engine: Engine, limits: &Limits) -> bool {
        self.engine == engine && &self.limits == limits
    }

    /// How long it has been waiting.
    pub fn age(&self) -> Duration {
        self.started.age()
    }
}

pub struct Renderer {
    sandbox: Sandbox,
    runtime: Runtime,
    worker_dir: PathBuf,
    /// Speaks narration lines, on the host.
    tts: Tts,
}

impl Renderer {
    pub fn new(config: &Config) -> Result<Renderer, RenderError> {
        let sandbox = Sandbox::new(config.sandbox_config())?;
        let worker_dir = runtime::install_worker(&config.data_dir.join("runtime"))?;
        Ok(Renderer {
            sandbox,
            runtime: Runtime::new(&config.runtime_dir),
            worker_dir,
            tts: Tts::new(config.tts.clone()),
        })
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn tts(&self) -> &Tts {
        &self.tts
    }

    /// Starts a sandbox for `engine` and waits until the engine is imported:
    /// a warm sandbox, ready for [`Renderer::render_warm`]. No user code has
    /// run in it.
    pub async fn start_warm(&self, engine: Engine, limits: &Limits) -> Result<Warm, RenderError> {
        self.runtime.check(engine)?;
        let mut started = self
            .sandbox
            .start(&sandbox::new_id(), &self.command(engine, true), limits)
            .await?;
        let mut mismatch = None;
        let ready = self
            .sandbox
            .wait_for_line(&mut started, Duration::from_secs(120), |line| {
                match WorkerEvent::parse(line) {
                    Some(WorkerEvent::Warm { .. }) => true,
                    // The engine check failed; the worker exits.
                    Some(WorkerEvent::Error(e)) if e.code == ENGINE_MISMATCH => {
                        mismatch = Some(e.message);
                        true
                    }
                    _ => false,
                }
            })
            .await;
        if let Some(message) = mismatch {
            self.sandbox.discard(started).await;
            return Err(RenderError::EngineMismatch(message));
        }
        if !ready {
            self.sandbox.discard(started).await;
            return Err(RenderError::Broken {
                stage: "warm",
                exit_code: None,
                stderr: format!("the {engine} worker did not start"),
            });
        }
        Ok(Warm {
            started,
            engine,
            limits: limits.clone(),
        })
    }

    /// Ends a warm sandbox that will not be used.
    pub async fn discard(&self, warm: Warm) {
        self.sandbox.discard(warm.started).await;
    }

    /// Renders `spec` into `dest_dir` (`output.<ext>`, `thumbnail.png`) in a
    /// fresh sandbox started now.
    pub async fn render(
        &self,
        spec: &RenderSpec,
        limits: &Limits,
        dest_dir: &Path,
        progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<Rendered, RenderError> {
        self.runtime.check(spec.engine)?;
        let mut cancel = std::pin::pin!(cancel);
        // Speech first: no sandbox waits while a speech service answers.
        let speech = self
            .prepare_speech(spec, limits, dest_dir, cancel.as_mut())
            .await?;
        let started = self
            .sandbox
            .start(&sandbox::new_id(), &self.command(spec.engine, true), limits)
            .await?;
        self.render_in(started, spec, limits, dest_dir, speech, progress, cancel)
            .await
    }

    /// Renders `spec` in a warm sandbox. The sandbox must have been started
    /// for the same engine and limits (see [`Warm::fits`]).
    pub async fn render_warm(
        &self,
        warm: Warm,
        spec: &RenderSpec,
        dest_dir: &Path,
        progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<Rendered, RenderError> {
        let Warm {
            started, limits, ..
        } = warm;
        let mut cancel = std::pin::pin!(cancel);
        let speech = match self
            .prepare_speech(spec, &limits, dest_dir, cancel.as_mut())
            .await
        {
            Ok(speech) => speech,
            Err(e) => {
                self.sandbox.discard(started).await;
                return Err(e);
            }
        };
        self.render_in(started, spec, &limits, dest_dir, speech, progress, cancel)
            .await
    }

    // The parts of one render; a struct for this private call would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    async fn render_in(
        &self,
        started: sandbox::Started,
        spec: &RenderSpec,
        limits: &Limits,
        dest_dir: &Path,
        speech: Option<Speech>,
        progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<Rendered, RenderError> {
        // One stop signal for rendering and muxing.
        let mut cancel = std::pin::pin!(cancel);
        let stdin = render_job(spec, speech.as_ref());
        let mut collector = Collector::new(limits, dest_dir.join("pieces"), progress);
        let mut finished = self
            .sandbox
            .finish(
                started,
                stdin,
                limits,
                |line, area| collector.on_line(line, area),
                cancel.as_mut(),
            )
            .await?;
        let Collector {
            result,
            error,
            ready,
            version,
            spoken,
            scene_durations,
            ..
        } = collector;
        let WorkerResult {
            media,
            max_rss_bytes,
            job_secs,
        } = outcome(&mut finished, result, error, "render", ready)
            .map_err(|e| space_ran_out(e, limits))?;
        let (output, thumbnail, mut bytes) =
            collect_output(&finished, spec, &media, limits, dest_dir)?;
        let narration = match speech {
            Some(speech) if !media.still => {
                let lines = Lines {
                    speech,
                    spoken,
                    scene_durations,
                    video_secs: media.duration,
                };
                // The render finished without a stop, so `cancel` has not
                // completed and can be waited on again.
                let (narrated, size) = self
                    .narrate(spec, limits, lines, &output, dest_dir, cancel)
                    .await?;
                bytes = size.unwrap_or(bytes);
                Some(narrated)
            }
            _ => None,
        };
        Ok(Rendered {
            media,
            output,
            thumbnail,
            bytes,
            engine_version: version,
            wall: finished.wall,
            peak_memory_bytes: finished.peak_memory_bytes,
            worker_max_rss_bytes: max_rss_bytes,
            job_secs,
            narration,
        })
    }

    /// Any installed engine's Python runs the worker's passes that import
    /// no engine (inspect, mux); prefer the default one.
    fn any_engine(&self) -> Engine {
        Engine::ALL
            .into_iter()
            .find(|e| self.runtime.is_installed(*e))
            .unwrap_or(Engine::Manim)
    }
}

/// The render job as the worker reads it on its stdin.
fn render_job(spec: &RenderSpec, speech: Option<&Speech>) -> Vec<u8> {
    let durations = speech.map(Speech::durations);
    let (width, height) = spec.quality.resolution();
    let job = WorkerJob::Render {
        code: &spec.code,
        engine: spec.engine,
        scenes: &spec.scenes,
        width,
        height,
        fps: spec.fps(),
        format: spec.format,
        seed: spec.seed,
        encoding: spec.encoding,
        speech: durations.as_ref(),
    };
    serde_json::to_vec(&job).expect("serializable")
}

/// A worker that saw a write fail for lack of space reports
/// `output-too-large`; the limits are ours to name.
fn space_ran_out(e: RenderError, limits: &Limits) -> RenderError {
    match e {
        RenderError::User(error) if user_code(&error) == ErrorCode::OutputTooLarge => {
            RenderError::Stopped(Stopped::OutputTooLarge {
                limit_mib: limits.output_mib,
                limit_files: limits.files,
                file_limit_mib: limits.file_size_mib,
            })
        }
        e => e,
    }
}

/// Takes the delivered file and the thumbnail out of the finished
/// sandbox: the output (its size, which fails the render when it cannot be
/// collected) and the thumbnail, if there is one.
fn collect_output(
    finished: &Finished,
    spec: &RenderSpec,
    media: &MediaInfo,
    limits: &Limits,
    dest_dir: &Path,
) -> Result<(PathBuf, Option<PathBuf>, u64), RenderError> {
    // The host decides the file names; the worker's claims decide nothing.
    let ext = if media.still {
        "png"
    } else {
        spec.format.extension()
    };
    let output = dest_dir.join(format!("output.{ext}"));
    let max = limits.output_bytes();
    let bytes = finished
        .area
        .collect(&format!("out/output.{ext}"), &output, max)?;
    let thumb_path = dest_dir.join("thumbnail.png");
    let thumbnail = finished
        .area
        .collect("out/thumbnail.png", &thumb_path, max)
        .ok()
        .map(|_| thumb_path);
    Ok((output, thumbnail, bytes))
}
