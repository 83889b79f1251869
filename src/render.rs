//! The render pipeline: inspect a file, render its scenes in a sandbox with
//! the worker, collect the result. The CLI and the server both use this.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::job_error::{ErrorCode, ErrorKind, JobError};
use crate::limits::Limits;
use crate::narration::{self, Cue, NarrationError, Speech, Spoken, Tts};
use crate::protocol::{
    MediaInfo, Progress, SceneInfo, UserError, WorkerEvent, WorkerJob, WorkerResult,
    ENGINE_MISMATCH,
};
use crate::runtime::{self, Runtime, RuntimeError, WORKER_MOUNT};
use crate::sandbox::area::CollectError;
use crate::sandbox::{self, Sandbox, SandboxError, Stopped};
use crate::spec::{Engine, RenderSpec};

/// Why a render did not produce a video.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The scene's own fault: syntax, missing scene, exception, TeX.
    #[error("{}", .0.message)]
    User(Box<UserError>),
    /// Stopped by a limit, or canceled.
    #[error(transparent)]
    Stopped(Stopped),
    #[error("the render exited (code {exit_code:?}) without a result; last output:\n{stderr}")]
    Crashed {
        exit_code: Option<i32>,
        stderr: String,
    },
    #[error("the render's output cannot be used: {0}")]
    Output(#[from] CollectError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Narration(#[from] NarrationError),
    /// The sandbox ended before the scene's code ran: the installation's
    /// fault (an engine that does not import, bubblewrap that cannot start),
    /// never the scene's.
    #[error("the {stage} sandbox failed before any scene code ran (exit code {exit_code:?}); last output:\n{stderr}")]
    Broken {
        stage: &'static str,
        exit_code: Option<i32>,
        stderr: String,
    },
    /// The installed engine is not the pinned version the worker patches, or
    /// lacks a target it patches: the installation's fault, found by the
    /// worker before any user code ran. The message names what differs.
    #[error("the installed engine does not fit the worker: {0}")]
    EngineMismatch(String),
}

/// An error line of a worker that has started running user code: the scene
/// can print protocol lines too, so from then on an `engine-mismatch` (which
/// the worker only reports before) is not trusted, and is the scene's.
fn after_user_code(mut error: UserError) -> UserError {
    if error.code == ENGINE_MISMATCH {
        error.code = ErrorCode::WorkerError.as_str().into();
    }
    error
}

/// A worker-reported code, restricted to the ones a worker may report (see
/// `protocol::USER_ERROR_CODES`); anything else is `worker-error`.
fn user_code(e: &UserError) -> ErrorCode {
    ErrorCode::parse(&e.code)
        .filter(|c| c.kind() == ErrorKind::Unprocessable)
        .unwrap_or(ErrorCode::WorkerError)
}

impl RenderError {
    /// The stable, kebab-case code clients match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            RenderError::User(e) => user_code(e),
            RenderError::Stopped(s) => s.code(),
            RenderError::Crashed { .. } => ErrorCode::Crashed,
            RenderError::Output(_) => ErrorCode::BadOutput,
            RenderError::Broken { .. } | RenderError::Sandbox(_) | RenderError::Runtime(_) => {
                ErrorCode::Internal
            }
            RenderError::Narration(e) => e.code(),
            RenderError::EngineMismatch(_) => ErrorCode::EngineMismatch,
        }
    }

    /// An error the worker reported. `engine-mismatch` is the installation's
    /// fault; anything else is the scene's.
    fn from_worker(error: UserError) -> RenderError {
        if error.code == ENGINE_MISMATCH {
            RenderError::EngineMismatch(error.message)
        } else {
            RenderError::User(Box::new(error))
        }
    }

    /// Whether the service, not the scene, is at fault.
    pub fn is_internal(&self) -> bool {
        self.code().kind() != ErrorKind::Unprocessable
    }

    /// The error as API clients see it: `code`, `message` and the fields of
    /// its kind. An error that is not the scene's says only its code; the
    /// details (paths, the sandbox's output) go to the log.
    pub fn to_error(&self) -> JobError {
        let code = self.code();
        let details = match self {
            RenderError::User(e) => serde_json::to_value(e).unwrap_or_default(),
            RenderError::Stopped(s) => serde_json::to_value(s).unwrap_or_default(),
            RenderError::Crashed { exit_code, stderr } => {
                serde_json::json!({ "exit_code": exit_code, "log": stderr })
            }
            // Ours: the code, and nothing of the host.
            _ if code.kind() == ErrorKind::Internal => {
                return JobError::new(code, crate::job_error::INTERNAL_MESSAGE)
            }
            // The provider's answer may name its endpoint; clients get the code.
            RenderError::Narration(e) if !e.is_user() => {
                return JobError::new(
                    code,
                    "text to speech failed; the server log has the details",
                )
            }
            _ => serde_json::Value::Null,
        };
        let mut error = JobError::new(code, self.to_string());
        if let serde_json::Value::Object(mut map) = details {
            map.remove("code");
            map.remove("message");
            error.details = map;
        }
        error
    }

    /// The author's line the error points at, if any.
    pub fn line(&self) -> Option<u32> {
        match self {
            RenderError::User(e) => e.line,
            _ => None,
        }
    }
}

/// Static facts about a file, found without running it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspection {
    /// The engine its imports name, if any.
    pub engine: Option<Engine>,
    pub scenes: Vec<SceneInfo>,
    /// String literals passed to `narrate(...)`.
    pub narrations: Vec<String>,
}

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

/// A sandbox started for an inspection, waiting for the code.
pub struct Inspector(sandbox::Started);

impl Inspector {
    pub fn age(&self) -> Duration {
        self.0.age()
    }
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

/// Limits for inspection, which only parses.
fn inspect_limits() -> Limits {
    Limits {
        wall_secs: 20,
        memory_mib: 512,
        pids: 16,
        output_mib: 16,
        files: 100,
        file_size_mib: 16,
        ..Limits::default()
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

    /// The worker command; with `preload` it imports `engine` before it
    /// reads its job.
    fn command(&self, engine: Engine, preload: bool) -> sandbox::Command {
        let venv = self.runtime.venv(engine);
        let mut env: Vec<(String, String)> = [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/job/home"),
            ("USER", "sandbox"),
            ("LOGNAME", "sandbox"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("TMPDIR", "/tmp"),
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("MPLCONFIGDIR", "/tmp/matplotlib"),
            ("XDG_CACHE_HOME", "/tmp/cache"),
            ("TEXMFVAR", "/tmp/texmf-var"),
            // Mesa's software rasterizer behind EGL, with no display.
            ("EGL_PLATFORM", "surfaceless"),
            ("LIBGL_ALWAYS_SOFTWARE", "1"),
            // One BLAS thread: threads count against the pids cap, and
            // renders gain nothing from them.
            ("OPENBLAS_NUM_THREADS", "1"),
            ("OMP_NUM_THREADS", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // Set on hosts whose CPUs some OpenBLAS builds misdetect; not secret.
        for key in ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"] {
            if let Ok(v) = std::env::var(key) {
                env.push((key.to_owned(), v));
            }
        }
        let mut args = vec![
            "-I".into(),
            "-B".into(),
            format!("{WORKER_MOUNT}/run_worker.py"),
        ];
        if preload {
            args.extend(["--engine".into(), engine.as_str().into()]);
        }
        sandbox::Command {
            program: venv.join("bin/python"),
            args,
            env,
            ro_binds: vec![
                (venv.clone(), venv),
                (self.worker_dir.clone(), WORKER_MOUNT.into()),
            ],
        }
    }

    /// Parses the file in a sandbox: syntax errors, the engine it imports,
    /// its scenes. Runs none of its code.
    pub async fn inspect(&self, code: &str) -> Result<Inspection, RenderError> {
        let inspector = self.start_inspector().await?;
        self.inspect_with(inspector, code).await
    }

    /// Starts a sandbox for an inspection, ready for its code: the pool
    /// keeps one so that checking a submission does not wait for Python.
    pub async fn start_inspector(&self) -> Result<Inspector, RenderError> {
        let engine = self.any_engine();
        self.runtime.check(engine)?;
        let started = self
            .sandbox
            .start(
                &sandbox::new_id(),
                &self.command(engine, false),
                &inspect_limits(),
            )
            .await?;
        Ok(Inspector(started))
    }

    /// Inspects `code` in a started inspector.
    pub async fn inspect_with(
        &self,
        inspector: Inspector,
        code: &str,
    ) -> Result<Inspection, RenderError> {
        let stdin = serde_json::to_vec(&WorkerJob::Inspect { code }).expect("serializable");
        let mut found = None;
        let mut error = None;
        let finished = self
            .sandbox
            .finish(
                inspector.0,
                stdin,
                &inspect_limits(),
                |line, _| match WorkerEvent::parse(line) {
                    Some(WorkerEvent::Inspected {
                        engine,
                        scenes,
                        narrations,
                    }) => {
                        found = Some(Inspection {
                            engine,
                            scenes,
                            narrations,
                        })
                    }
                    Some(WorkerEvent::Error(e)) => error = Some(e),
                    _ => {}
                },
                std::future::pending(),
            )
            .await?;
        if let Some(stopped) = finished.stopped {
            return Err(RenderError::Stopped(stopped));
        }
        match (found, error) {
            (Some(found), _) if finished.exit_code == Some(0) => Ok(found),
            (_, Some(error)) => Err(RenderError::from_worker(error)),
            // An inspection parses and runs nothing of the scene's.
            _ => Err(RenderError::Broken {
                stage: "inspection",
                exit_code: finished.exit_code,
                stderr: finished.stderr.last_lines(20),
            }),
        }
    }

    /// Ends an inspector that will not be used.
    pub async fn discard_inspector(&self, inspector: Inspector) {
        self.sandbox.discard(inspector.0).await;
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

    /// With narration, speaks the lines known before the render (the
    /// `narrate("...")` literals an inspection finds): the scene will wait
    /// for each as long as its speech lasts. Bounded by the render's wall
    /// clock, like the render itself.
    async fn prepare_speech(
        &self,
        spec: &RenderSpec,
        limits: &Limits,
        dest_dir: &Path,
        cancel: impl Future<Output = ()>,
    ) -> Result<Option<Speech>, RenderError> {
        if !spec.narration {
            return Ok(None);
        }
        let prepare = async {
            let found = self.inspect(&spec.code).await?;
            let mut speech = Speech::default();
            speech
                .speak(&self.tts, found.narrations, &dest_dir.join("speech"))
                .await?;
            Ok(Some(speech))
        };
        tokio::select! {
            speech = prepare => speech,
            () = cancel => Err(RenderError::Stopped(Stopped::Canceled)),
            () = tokio::time::sleep(limits.wall()) => Err(RenderError::Stopped(Stopped::Timeout { limit_secs: limits.wall_secs })),
        }
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
        mut progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<Rendered, RenderError> {
        // One stop signal for rendering and muxing.
        let mut cancel = std::pin::pin!(cancel);
        let durations = speech.as_ref().map(Speech::durations);
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
        let stdin = serde_json::to_vec(&job).expect("serializable");
        let mut result = None;
        let mut error = None;
        // Until the worker says `ready`, no scene code has run: a crash
        // before it is the installation's, not the scene's.
        let mut ready = false;
        let mut version = String::new();
        let pieces_dir = dest_dir.join("pieces");
        let mut pieces = 0u32;
        let mut spoken = Vec::new();
        let mut scene_durations = Vec::new();
        let finished = self
            .sandbox
            .finish(
                started,
                stdin,
                limits,
                |line, area| {
                    let Some(event) = WorkerEvent::parse(line) else {
                        return;
                    };
                    match event {
                        WorkerEvent::Result(r) => result = Some(r),
                        WorkerEvent::Error(e) if ready => error = Some(after_user_code(e)),
                        WorkerEvent::Error(e) => error = Some(e),
                        WorkerEvent::Inspected { .. } | WorkerEvent::Warm { .. } => {}
                        WorkerEvent::Ready {
                            engine, version: v, ..
                        } => {
                            ready = true;
                            version.clone_from(&v);
                            progress(Progress::Ready { engine, version: v });
                        }
                        WorkerEvent::SceneStarted {
                            scene,
                            index,
                            count,
                        } => progress(Progress::SceneStarted {
                            scene,
                            index,
                            count,
                        }),
                        WorkerEvent::Animation { scene, index, name } => {
                            progress(Progress::Animation { scene, index, name })
                        }
                        WorkerEvent::Frames { scene, frames } => {
                            progress(Progress::Frames { scene, frames })
                        }
                        WorkerEvent::PartialMovie { scene, index, path } => {
                            // The finished piece, collected now (safely: no
                            // links, regular files only) for live playback.
                            let piece = path.strip_prefix("/job/").and_then(|rel| {
                                let dest = pieces_dir.join(format!("{pieces}.mp4"));
                                std::fs::create_dir_all(&pieces_dir).ok()?;
                                area.collect(rel, &dest, limits.output_bytes()).ok()?;
                                pieces += 1;
                                Some(dest)
                            });
                            progress(Progress::PartialMovie {
                                scene,
                                index,
                                piece,
                            })
                        }
                        WorkerEvent::Narration {
                            index,
                            start,
                            text,
                            duration,
                            ..
                        } => {
                            if spoken.len() < narration::MAX_LINES {
                                spoken.push(Spoken {
                                    scene_index: index,
                                    start,
                                    text,
                                    slot: duration,
                                });
                            }
                        }
                        WorkerEvent::SceneFinished {
                            scene,
                            index,
                            plays,
                            duration,
                        } => {
                            // Scenes finish in order; an index out of order is ignored.
                            if index as usize == scene_durations.len() {
                                scene_durations.push(duration);
                            }
                            progress(Progress::SceneFinished {
                                scene,
                                index,
                                plays,
                                duration,
                            })
                        }
                    }
                },
                cancel.as_mut(),
            )
            .await?;

        if let Some(stopped) = finished.stopped {
            return Err(RenderError::Stopped(stopped));
        }
        let WorkerResult {
            media,
            max_rss_bytes,
            job_secs,
        } = match (result, error) {
            (Some(result), _) if finished.exit_code == Some(0) => result,
            // The worker saw a write fail for lack of space; the limits are ours to name.
            (_, Some(error)) if user_code(&error) == ErrorCode::OutputTooLarge => {
                return Err(RenderError::Stopped(Stopped::OutputTooLarge {
                    limit_mib: limits.output_mib,
                    limit_files: limits.files,
                    file_limit_mib: limits.file_size_mib,
                }))
            }
            (_, Some(error)) => return Err(RenderError::from_worker(error)),
            _ if !ready => {
                return Err(RenderError::Broken {
                    stage: "render",
                    exit_code: finished.exit_code,
                    stderr: finished.stderr.last_lines(20),
                })
            }
            _ => {
                return Err(RenderError::Crashed {
                    exit_code: finished.exit_code,
                    stderr: finished.stderr.last_lines(20),
                })
            }
        };
        // The host decides the file names; the worker's claims decide nothing.
        let ext = if media.still {
            "png"
        } else {
            spec.format.extension()
        };
        let output = dest_dir.join(format!("output.{ext}"));
        let max = limits.output_bytes();
        let mut bytes = finished
            .area
            .collect(&format!("out/output.{ext}"), &output, max)?;
        let thumb_path = dest_dir.join("thumbnail.png");
        let thumbnail = finished
            .area
            .collect("out/thumbnail.png", &thumb_path, max)
            .ok()
            .map(|_| thumb_path);
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

    /// After the render: speaks lines computed at run time, places every
    /// line in the stitched video, writes the subtitles, and has a fresh
    /// sandbox mux the speech into `output` (replaced in place). Returns the
    /// new size of `output` when it was remuxed.
    async fn narrate(
        &self,
        spec: &RenderSpec,
        limits: &Limits,
        lines: Lines,
        output: &Path,
        dest_dir: &Path,
        cancel: impl Future<Output = ()>,
    ) -> Result<(Narrated, Option<u64>), RenderError> {
        let Lines {
            mut speech,
            spoken,
            scene_durations,
            video_secs,
        } = lines;
        let mut cancel = std::pin::pin!(cancel);
        let texts = spoken.iter().map(|l| l.text.clone()).collect();
        let clips_dir = dest_dir.join("speech");
        tokio::select! {
            r = speech.speak(&self.tts, texts, &clips_dir) => r?,
            () = &mut cancel => return Err(RenderError::Stopped(Stopped::Canceled)),
            () = tokio::time::sleep(limits.wall()) => return Err(RenderError::Stopped(Stopped::Timeout { limit_secs: limits.wall_secs })),
        }
        let placed = narration::place(&spoken, &scene_durations, &speech.secs(), video_secs);
        let cues: Vec<Cue> = placed.iter().map(|p| p.cue.clone()).collect();
        let subtitles = dest_dir.join(narration::SUBTITLES_FILE);
        std::fs::write(&subtitles, narration::vtt::write(&cues)).map_err(NarrationError::Io)?;
        let narrated = Narrated { cues, subtitles };
        if placed.is_empty() {
            return Ok((narrated, None));
        }
        let ext = spec.format.extension();
        let input = dest_dir.join("mux-in");
        let (video, clips) = narration::mux::prepare(&input, output, ext, &placed, &speech)
            .map_err(NarrationError::Io)?;
        let job = WorkerJob::Mux {
            video: &video,
            format: spec.format,
            clips: &clips,
        };
        let stdin = serde_json::to_vec(&job).expect("serializable");
        let engine = self.any_engine();
        let mut command = self.command(engine, false);
        command
            .ro_binds
            .push((input.clone(), narration::mux::MOUNT.into()));
        let started = self
            .sandbox
            .start(&sandbox::new_id(), &command, limits)
            .await?;
        let mut done = false;
        let mut error = None;
        let finished = self
            .sandbox
            .finish(
                started,
                stdin,
                limits,
                |line, _| match WorkerEvent::parse(line) {
                    Some(WorkerEvent::Result(_)) => done = true,
                    Some(WorkerEvent::Error(e)) => error = Some(e),
                    _ => {}
                },
                cancel,
            )
            .await?;
        let _ = std::fs::remove_dir_all(&input);
        if let Some(stopped) = finished.stopped {
            return Err(RenderError::Stopped(stopped));
        }
        match (done, error) {
            (true, _) if finished.exit_code == Some(0) => {}
            (_, Some(error)) => return Err(RenderError::from_worker(error)),
            // The mux pass runs none of the scene's code.
            _ => {
                return Err(RenderError::Broken {
                    stage: "mux",
                    exit_code: finished.exit_code,
                    stderr: finished.stderr.last_lines(20),
                })
            }
        }
        let bytes =
            finished
                .area
                .collect(&format!("out/output.{ext}"), output, limits.output_bytes())?;
        Ok((narrated, Some(bytes)))
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

/// A narrated render's lines: spoken before it, and as the worker reported
/// them during it.
struct Lines {
    speech: Speech,
    spoken: Vec<Spoken>,
    /// Each rendered scene's duration, in order.
    scene_durations: Vec<f64>,
    /// The stitched video's duration.
    video_secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_error(code: &str) -> UserError {
        let line = format!(
            r#"{{"event":"error","code":"{code}","message":"manim 0.23.0 is installed, but the worker is written for 0.22.0"}}"#
        );
        match WorkerEvent::parse(line.as_bytes()) {
            Some(WorkerEvent::Error(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_engine_mismatch_is_the_installations_fault() {
        let e = RenderError::from_worker(worker_error(ENGINE_MISMATCH));
        assert!(matches!(e, RenderError::EngineMismatch(_)), "{e:?}");
        assert_eq!(e.code(), "engine-mismatch");
        assert!(e.is_internal());
        assert!(e.to_string().contains("written for 0.22.0"), "{e}");
        // Clients get the code of an internal error (a 500), never the
        // scene's 422, and nothing of what differs.
        let shown = e.to_error();
        assert_eq!(shown.code, ErrorCode::EngineMismatch);
        assert!(!shown.message.contains("0.22.0"));
        assert!(shown.details.is_empty());
        assert_eq!(e.line(), None);
    }

    #[test]
    fn the_scenes_errors_stay_the_scenes() {
        let e = RenderError::from_worker(worker_error("scene-error"));
        assert!(matches!(e, RenderError::User(_)));
        assert!(!e.is_internal());
        assert_eq!(e.to_error().code, ErrorCode::SceneError);
    }

    #[test]
    fn a_mismatch_said_after_user_code_ran_is_not_trusted() {
        let e = RenderError::from_worker(after_user_code(worker_error(ENGINE_MISMATCH)));
        assert_eq!(e.code(), "worker-error");
        assert!(!e.is_internal());
        let e = after_user_code(worker_error("latex-error"));
        assert_eq!(e.code, "latex-error");
    }

    #[test]
    fn a_crash_before_the_scene_ran_is_internal_and_shows_no_log() {
        let e = RenderError::Broken {
            stage: "render",
            exit_code: Some(1),
            stderr: "bwrap: Can't find source path /tmp/x/runtime: Permission denied".into(),
        };
        assert!(e.is_internal());
        let shown = e.to_error();
        assert_eq!(shown.code, ErrorCode::Internal);
        assert!(shown.details.is_empty() && !shown.message.contains("bwrap"));
        let crash = RenderError::Crashed {
            exit_code: Some(139),
            stderr: "Segmentation fault".into(),
        };
        assert!(!crash.is_internal());
        assert_eq!(crash.to_error().code, ErrorCode::Crashed);
    }
}
