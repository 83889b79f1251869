//! The render pipeline: inspect a file, render its scenes in a sandbox with
//! the worker, collect the result. The CLI and the server both use this.
//!
//! This module holds the public API ([`Renderer`], what it returns, warm
//! sandboxes) and one render's flow; its parts live beside it: `inspect`
//! (parsing a file without running it), `command` (the worker's command
//! line and environment), `collect` (the worker's events during a render),
//! `narrate` (speech before and after a render, the mux pass), `preview`
//! (frames of a scene without a video) and `error`
//! ([`RenderError`] and how a worker pass ended).

mod chunk;
mod collect;
mod command;
mod error;
mod inspect;
mod narrate;
mod preview;
mod project;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::animcache::{AnimationCache, Profile, Shelf};
use crate::config::Config;
use crate::job_error::ErrorCode;
use crate::limits::Limits;
use crate::narration::voiceover::{self, Voiced, Voiceovers};
use crate::narration::{Cue, Speech, Tts};
use crate::protocol::{
    MediaInfo, Progress, VoiceText, WorkerEvent, WorkerJob, WorkerResult, ENGINE_MISMATCH,
};
use crate::runtime::{self, Runtime};
use crate::sandbox::{self, Finished, Sandbox, Stopped};
use crate::spec::{Engine, RenderSpec};

use collect::Collector;
use error::{outcome, user_code};
use narrate::{Lines, Prepared};

pub use chunk::{split, ChunkRendered, ScenePlan};
pub use error::RenderError;
pub use inspect::{Inspection, Inspector};
pub use preview::{Preview, PreviewFrame, PreviewSpec, MAX_FRAMES};
pub use project::BlobSource;

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
    /// Every animation played, in order over all scenes, with its times in
    /// the video and whether its piece came from the animation cache.
    pub animations: Vec<AnimationInfo>,
    /// manim-voiceover's voiceovers, with their times in the video and
    /// their bookmarks' times from their start.
    pub voiceovers: Vec<Voiced>,
}

pub use collect::AnimationInfo;

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
    /// The sandbox, taken up for a job: back to the ordinary CPU share.
    fn take_up(self) -> (sandbox::Started, Limits) {
        self.started.set_cpu_share(false);
        (self.started, self.limits)
    }

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
    /// Each owner's cached animations.
    animations: AnimationCache,
    /// Where projects' blobs are (none: a project may not use blobs).
    blobs: Option<std::sync::Arc<dyn BlobSource>>,
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
            animations: AnimationCache::new(
                config.data_dir.join("animations"),
                config.cache_quota_mib,
            ),
            blobs: None,
        })
    }

    /// Finds projects' blobs in `blobs`.
    pub fn with_blobs(mut self, blobs: std::sync::Arc<dyn BlobSource>) -> Renderer {
        self.blobs = Some(blobs);
        self
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
        // No job waits on it yet: it takes only CPU that renders leave.
        started.set_cpu_share(true);
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
    ///
    /// With an `owner` (and `spec.cache`), plays found in the owner's
    /// animation cache are simulated instead of drawn and their cached
    /// pieces used; the pieces this render draws are added to it.
    pub async fn render(
        &self,
        spec: &RenderSpec,
        owner: Option<&str>,
        limits: &Limits,
        dest_dir: &Path,
        progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<Rendered, RenderError> {
        self.runtime.check(spec.engine)?;
        let mut cancel = std::pin::pin!(cancel);
        // Speech first: no sandbox waits while a speech service answers.
        let prepared = self
            .prepare_speech(spec, limits, dest_dir, cancel.as_mut())
            .await?;
        let started = self
            .sandbox
            .start(&sandbox::new_id(), &self.command(spec.engine, true), limits)
            .await?;
        let shelf = self.shelf(spec, owner);
        self.render_in(
            started, spec, owner, shelf, limits, dest_dir, prepared, None, progress, cancel,
        )
        .await
    }

    /// Renders `spec` in a warm sandbox. The sandbox must have been started
    /// for the same engine and limits (see [`Warm::fits`]).
    pub async fn render_warm(
        &self,
        warm: Warm,
        spec: &RenderSpec,
        owner: Option<&str>,
        dest_dir: &Path,
        progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<Rendered, RenderError> {
        let (started, limits) = warm.take_up();
        let mut cancel = std::pin::pin!(cancel);
        let prepared = match self
            .prepare_speech(spec, &limits, dest_dir, cancel.as_mut())
            .await
        {
            Ok(prepared) => prepared,
            Err(e) => {
                self.sandbox.discard(started).await;
                return Err(e);
            }
        };
        let shelf = self.shelf(spec, owner);
        self.render_in(
            started, spec, owner, shelf, &limits, dest_dir, prepared, None, progress, cancel,
        )
        .await
    }

    /// A split render's join: renders `spec` (in `warm` when there is one)
    /// drawing only the plays from `join.awaits_before` on, while other
    /// workers draw the ones before; their pieces are awaited in the
    /// owner's cache and stitched as a single render's would be. It never
    /// ends by itself while a piece is missing: `cancel` gives up.
    #[allow(clippy::too_many_arguments)]
    pub async fn render_join(
        &self,
        warm: Option<Warm>,
        spec: &RenderSpec,
        owner: &str,
        limits: &Limits,
        dest_dir: &Path,
        join: Join,
        progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<Rendered, RenderError> {
        let mut cancel = std::pin::pin!(cancel);
        let (prepared, started) = self
            .prepare_and_start(spec, warm, limits, dest_dir, cancel.as_mut())
            .await?;
        let shelf = self.shelf(spec, Some(owner));
        self.render_in(
            started,
            spec,
            Some(owner),
            shelf,
            limits,
            dest_dir,
            prepared,
            Some(&join),
            progress,
            cancel,
        )
        .await
    }

    /// The owner's shelf of the animation cache for this render, when it
    /// uses the cache (never for stills, which have no pieces).
    pub fn shelf(&self, spec: &RenderSpec, owner: Option<&str>) -> Option<Shelf> {
        // ManimGL has no hash of a play, so none of its plays is cached.
        if !spec.cache || spec.format == crate::spec::Format::Png || spec.engine != Engine::Manim {
            return None;
        }
        let (width, height) = spec.quality.resolution();
        let profile = Profile {
            engine: spec.engine,
            width,
            height,
            fps: spec.fps(),
            encoding: spec.encoding,
            project: spec.project.as_ref().map(|p| p.files_digest()),
        };
        self.animations.shelf(owner?, profile)
    }

    // The parts of one render; a struct for this private call would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    async fn render_in(
        &self,
        started: sandbox::Started,
        spec: &RenderSpec,
        owner: Option<&str>,
        shelf: Option<Shelf>,
        limits: &Limits,
        dest_dir: &Path,
        mut prepared: Prepared,
        join: Option<&Join>,
        mut progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<Rendered, RenderError> {
        let mut cancel = std::pin::pin!(cancel);
        let mut started = Some(started);
        let mut pass = 0u32;
        let mut spoiled_once = false;
        let mut rounds = 0;
        loop {
            let sandbox = match started.take() {
                Some(started) => started,
                None => {
                    self.sandbox
                        .start(&sandbox::new_id(), &self.command(spec.engine, true), limits)
                        .await?
                }
            };
            let mut spoiled = false;
            let mut unvoiced = Vec::new();
            // Each pass collects into its own directory: an earlier pass's
            // pieces may still be on their way into the live stream.
            let pieces = match pass {
                0 => dest_dir.join("pieces"),
                n => dest_dir.join(format!("pieces-again-{n}")),
            };
            pass += 1;
            let result = self
                .render_once(
                    sandbox,
                    spec,
                    owner,
                    shelf.as_ref(),
                    limits,
                    dest_dir,
                    &prepared,
                    pieces,
                    join,
                    &mut progress,
                    cancel.as_mut(),
                    (&mut spoiled, &mut unvoiced),
                )
                .await;
            if spoiled && !spoiled_once {
                // A cached piece the worker used was refused (and removed):
                // the video may hold it, so the render runs again in a fresh
                // sandbox and draws that play. Rare: entries are checked
                // when admitted.
                spoiled_once = true;
                continue;
            }
            let unprepared =
                matches!(&result, Err(RenderError::User(e)) if e.code == VOICEOVER_UNPREPARED);
            if unprepared && !unvoiced.is_empty() && rounds < MAX_VOICEOVER_ROUNDS {
                // A voiceover's text was computed at run time: spoken now,
                // and the scene runs again in a fresh sandbox.
                rounds += 1;
                let voice = prepared.voice.get_or_insert_with(Default::default);
                self.speak_voiceovers(voice, unvoiced, limits, dest_dir, cancel.as_mut())
                    .await?;
                continue;
            }
            return result;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn render_once(
        &self,
        started: sandbox::Started,
        spec: &RenderSpec,
        owner: Option<&str>,
        shelf: Option<&Shelf>,
        limits: &Limits,
        dest_dir: &Path,
        prepared: &Prepared,
        pieces: PathBuf,
        join: Option<&Join>,
        progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
        (spoiled, unvoiced): (&mut bool, &mut Vec<VoiceText>),
    ) -> Result<Rendered, RenderError> {
        // One stop signal for rendering and muxing.
        let mut cancel = std::pin::pin!(cancel);
        if let Err(e) = self
            .lay_out(&started, &spec.code, spec.project.as_ref(), owner)
            .await
            .and_then(|()| lay_out_voice(prepared, &started))
        {
            self.sandbox.discard(started).await;
            return Err(e);
        }
        // A join's arrivals are linked in as they come, from the moment
        // the shelf is shown: none falls between.
        let arrivals = join.map(|j| {
            let mut arrivals = j.arrivals.clone();
            arrivals.borrow_and_update();
            arrivals
        });
        if let Some(shelf) = shelf {
            self.show_shelf(shelf, &started).await;
        }
        let relink = match (arrivals, shelf, started.view()) {
            (Some(arrivals), Some(shelf), Some(view)) => {
                Some(tokio::spawn(link_arrivals(shelf.clone(), view, arrivals)))
            }
            _ => None,
        };
        let awaits_before = join.filter(|_| shelf.is_some()).map(|j| j.awaits_before);
        let stdin = render_job(spec, prepared, shelf.is_some(), None, awaits_before);
        let mut collector = Collector::new(limits, pieces, shelf, progress);
        let finished = self
            .sandbox
            .finish(
                started,
                stdin,
                limits,
                |line, area| collector.on_line(line, area),
                cancel.as_mut(),
            )
            .await;
        if let Some(relink) = relink {
            relink.abort();
        }
        *spoiled = collector.spoiled;
        *unvoiced = std::mem::take(&mut collector.unvoiced);
        let mut finished = finished?;
        let animations = collector.animations();
        let Collector {
            result,
            error,
            ready,
            version,
            spoken,
            voiced,
            scene_durations,
            fresh,
            ..
        } = collector;
        let answer = match (
            outcome(&mut finished, result, error, "render", ready),
            join,
            shelf,
        ) {
            (Err(stopped @ RenderError::Stopped(_)), Some(_), Some(shelf)) => {
                // A join stopped while it waited (given up, or out of
                // time): the pieces it drew are whole, and the pass that
                // takes over finds them instead of drawing them again.
                let shelf = shelf.clone();
                let _ = tokio::task::spawn_blocking(move || keep_pieces(&shelf, fresh)).await;
                return Err(stopped);
            }
            (answer, ..) => answer,
        };
        let WorkerResult {
            media,
            max_rss_bytes,
            job_secs,
        } = answer.map_err(|e| space_ran_out(e, limits))?;
        let (output, thumbnail, mut bytes) =
            collect_output(&finished, spec, &media, limits, dest_dir)?;
        if let Some(shelf) = shelf.cloned() {
            // Each piece is read and checked: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || keep_pieces(&shelf, fresh)).await;
        }
        let voiceovers = voiceover::place(&voiced, &scene_durations);
        let voiced_cues = voiceover::cues(&voiceovers, media.duration);
        let narration = match prepared.speech.clone() {
            Some(speech) if !media.still => {
                let lines = Lines {
                    speech,
                    spoken,
                    voiced: voiced_cues,
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
            // manim-voiceover's speech is in the video already (the
            // scene's own sounds): only its subtitles are left to write.
            _ if !voiced_cues.is_empty() && !media.still => {
                Some(narrate::subtitles(Vec::new(), voiced_cues, dest_dir)?)
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
            animations,
            voiceovers,
        })
    }

    /// Links the owner's entries into the sandbox's view, where the worker
    /// looks plays up: one link each, off the runtime's threads.
    async fn show_shelf(&self, shelf: &Shelf, started: &sandbox::Started) {
        if let Some(view) = started.view() {
            show(shelf.clone(), view).await;
        }
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

/// A split render's join (see [`Renderer::render_join`]).
pub struct Join {
    /// The first play this render draws; the plays before it that the
    /// cache lacks are other workers' chunks.
    pub awaits_before: u32,
    /// Changes whenever more pieces are on the owner's shelf.
    pub arrivals: tokio::sync::watch::Receiver<u64>,
}

/// Links the shelf's entries into a sandbox's view (those not there yet),
/// off the runtime's threads.
async fn show(shelf: Shelf, view: PathBuf) {
    match tokio::task::spawn_blocking(move || shelf.link_into(&view)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!(%err, "cannot show the animation cache to a sandbox"),
        Err(err) => tracing::warn!(%err, "cannot show the animation cache to a sandbox"),
    }
}

/// Links the shelf's new entries into a join's view each time more arrive,
/// until the render ends (and this task with it).
async fn link_arrivals(
    shelf: Shelf,
    view: PathBuf,
    mut arrivals: tokio::sync::watch::Receiver<u64>,
) {
    while arrivals.changed().await.is_ok() {
        show(shelf.clone(), view.clone()).await;
    }
}

/// The render job as the worker reads it on its stdin.
fn render_job(
    spec: &RenderSpec,
    prepared: &Prepared,
    cache: bool,
    chunk: Option<crate::protocol::ChunkRange>,
    awaits_before: Option<u32>,
) -> Vec<u8> {
    let durations = prepared.speech.as_ref().map(Speech::durations);
    let voice = prepared.voice.as_ref().map(Voiceovers::for_worker);
    let (width, height) = spec.quality.resolution();
    let job = WorkerJob::Render {
        code: &spec.code,
        engine: spec.engine,
        scenes: &spec.scenes,
        width,
        height,
        fps: spec.fps(),
        format: spec.format,
        seed: Some(spec.seed()),
        encoding: spec.encoding,
        speech: durations.as_ref(),
        cache,
        environment: runtime::environment(spec.engine),
        chunk,
        awaits_before,
        main: spec.project.as_ref().map(|p| p.main.as_str()),
        voiceover: voice.as_ref(),
    };
    serde_json::to_vec(&job).expect("serializable")
}

/// The code a worker stops a render with when a voiceover's text was not
/// prepared (`python/manimd_worker/voiceover.py`).
const VOICEOVER_UNPREPARED: &str = "voiceover-unprepared";

/// Rounds of speaking a render's new voiceover texts before it fails with
/// `voiceover-unprepared`: each costs a pass up to the first new text.
const MAX_VOICEOVER_ROUNDS: u32 = 4;

/// Puts the voiceovers' clips into the sandbox's view, where the worker
/// finds them (`/cache/voiceover`).
fn lay_out_voice(prepared: &Prepared, started: &sandbox::Started) -> Result<(), RenderError> {
    let (Some(voice), Some(view)) = (&prepared.voice, started.view()) else {
        return Ok(());
    };
    voice
        .lay_out(&view)
        .map_err(|e| RenderError::from(crate::narration::NarrationError::Io(e)))
}

/// Adds the pieces a successful render drew to the owner's cache, then
/// keeps the owner within the quota. A piece our reader refuses is not kept.
fn keep_pieces(shelf: &Shelf, fresh: Vec<collect::Fresh>) {
    let pieces = fresh
        .iter()
        .map(|p| (p.key.as_str(), p.path.as_path(), p.frames));
    for (key, err) in shelf.admit_all(pieces) {
        tracing::warn!(%key, %err, "an animation piece was not cached");
    }
    if let Err(err) = shelf.evict() {
        tracing::warn!(%err, "cannot keep the animation cache within its quota");
    }
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
