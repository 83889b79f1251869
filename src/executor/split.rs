//! Split renders, the cluster's part: whether a job is worth splitting, its
//! chunks queued for any worker (local slots or `manimd worker` nodes), the
//! job's runner drawing chunks of its own while it waits for the rest, and
//! the chunk runs themselves, leased and heartbeated like jobs.
//!
//! The chunks only fill the owner's animation cache. The job's last pass is
//! the ordinary render, which finds their pieces there, so the video, its
//! sound and its errors are always the ones a single worker would make
//! (see `render::chunk`). A chunk that fails therefore fails nothing: its
//! plays are drawn by that last pass.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Executor;
use crate::animcache::Shelf;
use crate::control::{Run, Slot, Stop, Stopper};
use crate::jobs::{Chunk, ChunkEnding, ChunkInfo, ChunkStatus, Job, Store};
use crate::protocol::{ChunkRange, Notice, Progress};
use crate::render::{RenderError, Rendered, ScenePlan};
use crate::spec::{Engine, Format, Parallel, Quality};

/// How often the job's runner looks at its chunks, and a chunk's lease is
/// renewed with its frames.
const POLL: Duration = Duration::from_millis(250);
const CHUNK_BEAT: Duration = Duration::from_secs(1);
/// How long a join may go on waiting once every chunk is done and its
/// pieces are linked in: past it, the chunks drew other pieces than the
/// join awaits (a scene that differs from run to run in a way the plan
/// could not see), and the last pass takes over.
const MISMATCH_GRACE: Duration = Duration::from_secs(5);

/// What splitting did for a job.
#[derive(Debug, Default)]
pub(super) struct Split {
    pub chunks: Vec<ChunkInfo>,
    /// Why the job was not split.
    pub reason: Option<Notice>,
    /// Pieces already sent to the live stream, in play order: the last
    /// pass's first pieces are these and are not sent again.
    pub live_sent: usize,
    /// Seconds of the plan pass, when one ran.
    pub plan_secs: Option<f64>,
    /// Seconds of the join's stitch, once it had every piece.
    pub stitch_secs: Option<f64>,
    /// Seconds the join took to reach its own first play.
    pub prefix_secs: Option<f64>,
    /// The join's outcome (and whether its sandbox was warm): the video
    /// is made and no last pass runs.
    pub joined: Option<Box<(Result<Rendered, RenderError>, bool)>>,
}

impl Split {
    fn not(code: &str, message: impl Into<String>) -> Split {
        Split {
            reason: Some(notice(code, message)),
            ..Split::default()
        }
    }
}

fn notice(code: &str, message: impl Into<String>) -> Notice {
    Notice {
        code: code.into(),
        message: message.into(),
    }
}

/// Where a running job's progress and live pieces go.
#[derive(Clone)]
pub(super) struct Feed {
    pub progress: mpsc::Sender<Progress>,
    pub pieces: mpsc::UnboundedSender<PathBuf>,
    /// Where cached pieces get the second name the live stream takes (on
    /// the cache's filesystem).
    pub live_dir: PathBuf,
}

impl Executor {
    /// Splits `job` over the cluster's workers when it is worth it and
    /// draws the chunks into `shelf`; says what it did.
    pub(super) async fn split(
        &self,
        job: &Job,
        attempt: u32,
        run: &Run,
        shelf: Option<&Shelf>,
        scratch: &Path,
        feed: &Feed,
    ) -> Split {
        let workers = match self.parts.store.live_workers(self.cfg.lease * 2).await {
            Ok(n) => n.max(self.cfg.workers as u32),
            Err(err) => {
                tracing::warn!(%err, "cannot count the workers");
                self.cfg.workers as u32
            }
        };
        let max_chunks = job.spec.parallel.chunks(workers);
        let shelf = match (shelf, self.cannot_split(job, max_chunks)) {
            (_, Some(split)) => return split,
            (None, None) => {
                return Split::not(
                    "no-cache",
                    "a render with \"cache\": false is not split: its chunks meet in the animation cache",
                )
            }
            (Some(shelf), None) => shelf,
        };
        let warm = self.parts.pool.take(job.spec.engine, &self.cfg.limits);
        let plan = self
            .parts
            .renderer
            .plan(&job.spec, warm, &self.cfg.limits, scratch, run.stopped())
            .await;
        let plan_secs = Some(plan.as_ref().map_or(0.0, |p| p.wall.as_secs_f64()));
        let chunks = match plan {
            Ok(plan) => chunks_of(&plan, max_chunks, self.cfg.chunk_min_secs),
            // The last pass meets the same error and reports it as a
            // single render would.
            Err(err) => Err(notice(
                "plan-failed",
                format!("the scene could not be planned ({})", err.code()),
            )),
        };
        let split = match chunks {
            Ok(chunks) => {
                tracing::info!(chunks = chunks.len(), "render split");
                self.draw_chunks(job, attempt, run, shelf, &chunks, feed, scratch)
                    .await
            }
            Err(reason) => Split {
                reason: Some(reason),
                ..Split::default()
            },
        };
        Split { plan_secs, ..split }
    }

    /// The whole-job reasons not to split, known before any plan.
    fn cannot_split(&self, job: &Job, max_chunks: u32) -> Option<Split> {
        let spec = &job.spec;
        let not = |code, message: &str| Some(Split::not(code, message));
        if spec.parallel == Parallel::AtMost(1) {
            return not(
                "parallel-1",
                "the request asked for one worker (\"parallel\": 1)",
            );
        }
        if spec.engine != Engine::Manim {
            return not(
                "engine",
                "ManimGL renders are not split: its plays have no hash to check a chunk's pieces by",
            );
        }
        if spec.format == Format::Png {
            return not("still", "a still has nothing to split");
        }
        if spec.scenes.len() > 1 {
            return not("several-scenes", "only a render of one scene is split");
        }
        if spec.project.is_some() {
            return not(
                "project",
                "a project's render is not split: its chunks would each need the project laid out",
            );
        }
        if rank(spec.quality) < rank(self.cfg.chunk_min_quality) {
            return Some(Split::not(
                "quality",
                format!(
                    "renders below {} quality are not split (--chunk-min-quality)",
                    self.cfg.chunk_min_quality.as_str()
                ),
            ));
        }
        if max_chunks < 2 {
            return not(
                "one-worker",
                "one worker is all this cluster has free for it",
            );
        }
        None
    }

    /// Queues every chunk but the last for the cluster's workers and draws
    /// the last itself as the join: a render of the whole scene that
    /// simulates the other chunks' plays and awaits their pieces, then
    /// stitches. Chunks nobody took are drawn here once the join waits.
    /// A chunk that fails gives the join up; the last pass then draws its
    /// plays.
    #[allow(clippy::too_many_arguments)]
    async fn draw_chunks(
        &self,
        job: &Job,
        attempt: u32,
        run: &Run,
        shelf: &Shelf,
        planned: &[(ChunkRange, f64)],
        feed: &Feed,
        scratch: &Path,
    ) -> Split {
        let store = &self.parts.store;
        let Some(((own, own_secs), others)) = planned.split_last() else {
            return Split::not("internal", "a split needs two chunks");
        };
        if let Err(err) = store.insert_chunks(&job.id, attempt, others).await {
            tracing::error!(%err, "cannot queue the chunks");
            return Split::not("internal", "the chunks could not be queued");
        }
        self.parts.control.wake();
        let (arrived, arrivals) = tokio::sync::watch::channel(0u64);
        let live = Arc::new(LiveGate::default());
        let mut watch = tokio::spawn(
            ChunkWatch {
                store: store.clone(),
                storage: self.parts.storage.clone(),
                job: job.clone(),
                attempt,
                shelf: shelf.clone(),
                feed: feed.clone(),
                ended_here: self.chunk_ends.subscribe(),
                arrived,
                live: Arc::clone(&live),
            }
            .run(),
        );
        let (give_up, gave_up) = tokio::sync::watch::channel(false);
        let (waits, waiting) = tokio::sync::watch::channel(false);
        let (done, helper_stop) = tokio::sync::watch::channel(false);
        let progress = join_progress(own.first, job.spec.fps(), feed, &live, waits);
        let stop = stopped_or(run, gave_up.clone());
        let join = crate::render::Join {
            awaits_before: own.first,
            arrivals,
        };
        let warm = self.parts.pool.take(job.spec.engine, &self.cfg.limits);
        let warm_start = warm.is_some();
        let started = std::time::Instant::now();
        let render = self.parts.renderer.render_join(
            warm,
            &job.spec,
            owner_of(job),
            &self.cfg.limits,
            scratch,
            join,
            progress,
            stop,
        );
        let helper = self.draw_unclaimed(job, attempt, run, shelf, waiting, helper_stop);
        tokio::pin!(render, helper);
        let (mut watched, mut helped, mut mismatch) = (None, false, false);
        let mut chunks_done = None;
        let outcome = loop {
            let all_done = watched.is_some() && !*gave_up.borrow();
            tokio::select! {
                out = &mut render => break out,
                _ = tokio::time::sleep(POLL), if all_done => {
                    if chunks_done.is_some_and(|done| live.stalled(done, MISMATCH_GRACE)) {
                        mismatch = true;
                        give_up.send_replace(true);
                    }
                }
                w = &mut watch, if watched.is_none() => {
                    chunks_done = Some(std::time::Instant::now());
                    let w = w.unwrap_or_default();
                    if w.is_empty() || w.iter().any(|c| c.status != ChunkStatus::Done) {
                        give_up.send_replace(true);
                    }
                    watched = Some(w);
                }
                () = &mut helper, if !helped => helped = true,
            }
        };
        let ended = std::time::Instant::now();
        let _ = done.send(true);
        if !helped {
            helper.await;
        }
        if run.reason().is_some() {
            // Stopped (canceled, shutdown, lease lost): this attempt's
            // chunks stop with it, here and on every node.
            watch.abort();
            let _ = store.cancel_chunks(&job.id).await;
            self.parts.control.cancel_everywhere(&job.id);
            return Split::default();
        }
        // A join that ran out of time while it waited (it drew a chunk
        // nobody took, say) is no scene's fault: the last pass takes over.
        let out_of_time = live.waited().is_some()
            && matches!(
                outcome,
                Err(RenderError::Stopped(
                    crate::sandbox::Stopped::Timeout { .. }
                ))
            );
        if watched.is_none() {
            // Stopped first: what it sent live is final.
            watch.abort();
            watched = (&mut watch).await.ok();
        }
        let watched = watched.unwrap_or_default();
        if *gave_up.borrow() || out_of_time {
            let _ = store.cancel_chunks(&job.id).await;
            let live_sent = live.lock().sent;
            // None of the join's pieces went live: the last pass sends its
            // own from where the chunks' stopped; it finds the pieces the
            // join drew in the cache.
            let _ = std::fs::remove_dir_all(scratch.join("pieces"));
            let reason = match watched.iter().find(|c| c.status != ChunkStatus::Done) {
                _ if mismatch => Split::not(
                    "chunk-mismatch",
                    "the chunks drew other animations than the render awaited (the scene differs from run to run); the rest is drawn in one pass",
                ),
                Some(failed) => Split::not(
                    "chunk-failed",
                    format!(
                        "chunk {} ended {}; its animations are drawn in one pass",
                        failed.index,
                        failed.error.as_deref().unwrap_or("canceled")
                    ),
                ),
                None => Split::not(
                    "join-timeout",
                    "the render ran out of time waiting for its chunks; the rest is drawn in one pass",
                ),
            };
            return Split {
                live_sent,
                ..reason
            };
        }
        // The join ended (its video, or the scene's error): chunks still
        // drawing are not needed, nor the watcher once it has stopped.
        let _ = store.cancel_chunks(&job.id).await;
        live.finish(&feed.pieces);
        // The join's own part ended when it began to wait; the stitch
        // began once the last piece was there too.
        let waited = live.waited();
        let own_secs_drawn = waited.unwrap_or(ended).duration_since(started);
        // (A join that found every piece cached never waited: no figure.)
        let stitch_secs = waited
            .map(|w| chunks_done.map_or(w, |c| c.max(w)))
            .map(|from| ended.duration_since(from).as_secs_f64());
        let mut chunks: Vec<ChunkInfo> = match store.chunks_of(&job.id, attempt).await {
            Ok(chunks) => chunks.iter().map(chunk_info).collect(),
            Err(_) => watched.iter().map(chunk_info).collect(),
        };
        chunks.push(ChunkInfo {
            index: others.len() as u32,
            first_animation: own.first,
            last_animation: own.last,
            seconds: (own_secs * 1e6).round() / 1e6,
            node: self.owner.clone(),
            render_secs: own_secs_drawn.as_secs_f64(),
        });
        let reached = *live.reached.lock().unwrap_or_else(|e| e.into_inner());
        Split {
            chunks,
            stitch_secs,
            prefix_secs: reached.map(|r| r.duration_since(started).as_secs_f64()),
            joined: Some(Box::new((outcome, warm_start))),
            ..Split::default()
        }
    }

    /// Draws this job's chunks that no worker claimed, from the moment the
    /// join waits for pieces (before that, its own drawing has the slot)
    /// until `done`.
    async fn draw_unclaimed(
        &self,
        job: &Job,
        attempt: u32,
        run: &Run,
        shelf: &Shelf,
        mut waiting: tokio::sync::watch::Receiver<bool>,
        mut done: tokio::sync::watch::Receiver<bool>,
    ) {
        tokio::select! {
            w = waiting.wait_for(|w| *w) => if w.is_err() { return },
            _ = done.wait_for(|d| *d) => return,
        }
        loop {
            if *done.borrow() || run.reason().is_some() {
                return;
            }
            let claimed = self
                .parts
                .store
                .claim_chunk(&self.owner, self.cfg.lease, Some((&job.id, attempt)))
                .await;
            match claimed {
                Ok(Some(chunk)) => {
                    let beat = ChunkBeat::new(self, &chunk, run.stopper());
                    let ending = self
                        .draw_chunk(
                            &chunk,
                            job,
                            shelf,
                            &beat.frames,
                            stopped_or(run, done.clone()),
                        )
                        .await;
                    beat.end(self, &chunk, ending, run.reason()).await;
                    continue;
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(%err, "cannot claim a chunk"),
            }
            tokio::select! {
                _ = done.wait_for(|d| *d) => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Runs a chunk the worker loop claimed: under its job's name (a
    /// cancel of the job stops it), with its own lease.
    pub(super) async fn run_chunk(&self, chunk: Chunk, slot: Slot) {
        let job = match self.parts.store.get(&chunk.job_id).await {
            Ok(Some(job)) if !job.status.is_terminal() => job,
            _ => {
                // Its job ended or is gone: nothing to draw for.
                let ending = ChunkEnding {
                    status: ChunkStatus::Canceled,
                    frames: 0,
                    keys: &[],
                    render_secs: 0.0,
                    error: None,
                };
                let _ = self
                    .parts
                    .store
                    .finish_chunk(&chunk, &self.owner, &ending)
                    .await;
                return;
            }
        };
        let run = slot.begin(&job);
        let beat = ChunkBeat::new(self, &chunk, run.stopper());
        let ending = match self.parts.renderer.shelf(&job.spec, Some(owner_of(&job))) {
            Some(shelf) => {
                self.draw_chunk(&chunk, &job, &shelf, &beat.frames, run.stopped())
                    .await
            }
            // Never queued so (see `split`); ended rather than left to expire.
            None => Err(RenderError::Broken {
                stage: "chunk",
                exit_code: None,
                stderr: "the job has no animation cache to draw into".into(),
            }),
        };
        beat.end(self, &chunk, ending, run.reason()).await;
    }

    /// Draws one chunk in a sandbox of its own into `shelf` (and, with a
    /// bucket, into the bucket for the job's node).
    async fn draw_chunk(
        &self,
        chunk: &Chunk,
        job: &Job,
        shelf: &Shelf,
        frames: &Arc<AtomicU64>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<crate::render::ChunkRendered, RenderError> {
        let scratch = self
            .cfg
            .work_dir
            .join(format!("chunk-{}-{}", chunk.id, chunk.attempts));
        if let Err(err) = std::fs::create_dir_all(&scratch) {
            return Err(RenderError::Sandbox(crate::sandbox::SandboxError::Area(
                scratch, err,
            )));
        }
        // Frames drawn in the range. The worker counts the simulated plays
        // before it too; their frames end where the range's first play
        // starts, at its start time's frame.
        let (first, fps, counter) = (
            chunk.range.first,
            f64::from(job.spec.fps()),
            Arc::clone(frames),
        );
        let mut base = None;
        let progress = move |p: Progress| match p {
            Progress::Animation { index, start, .. } if index == first => {
                base = Some((start * fps).round() as u64)
            }
            Progress::Frames { frames, .. } => {
                if let Some(b) = base {
                    counter.store(frames.saturating_sub(b), Ordering::Relaxed)
                }
            }
            _ => {}
        };
        let warm = self.parts.pool.take(job.spec.engine, &self.cfg.limits);
        let out = self
            .parts
            .renderer
            .render_chunk(
                &job.spec,
                shelf,
                chunk.range,
                warm,
                &self.cfg.limits,
                &scratch,
                progress,
                stop,
            )
            .await;
        let _ = std::fs::remove_dir_all(&scratch);
        if out.is_ok() {
            if let Err(err) = self.parts.storage.push_animations(shelf).await {
                tracing::warn!(%err, "cannot keep a chunk's animations in the bucket");
            }
        }
        out
    }
}

/// Resolves once `run` is told to stop or `flag` turns true.
fn stopped_or(
    run: &Run,
    mut flag: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let stopped = run.stopped();
    async move {
        tokio::select! {
            _ = stopped => {}
            _ = flag.wait_for(|f| *f) => {}
        }
    }
}

/// The chunks a plan makes: at most `max_chunks`, each at least half of
/// `min_secs` long, balanced by duration; or why there are none.
fn chunks_of(
    plan: &ScenePlan,
    max_chunks: u32,
    min_secs: f64,
) -> Result<Vec<(ChunkRange, f64)>, Notice> {
    if let Some(&line) = plan.clock.first() {
        return Err(notice(
            "wall-clock",
            format!("the scene reads the wall clock (line {line}), so separate workers would draw different frames"),
        ));
    }
    if let Some(&line) = plan.entropy.first() {
        return Err(notice(
            "entropy",
            format!("the scene draws unseeded randomness (line {line}), so separate workers would draw different frames"),
        ));
    }
    if plan.duration < min_secs {
        return Err(notice(
            "short",
            format!(
                "{:.1} s of video is under the {min_secs} s worth splitting (--chunk-min-secs)",
                plan.duration
            ),
        ));
    }
    let worth = ((plan.duration / (min_secs / 2.0).max(1e-3)) as u32).max(2);
    let ranges = crate::render::split(&plan.plays, max_chunks.min(worth) as usize);
    if ranges.len() < 2 {
        return Err(notice(
            "one-animation",
            "the scene is one animation, which is never cut",
        ));
    }
    Ok(ranges
        .iter()
        .map(|r| {
            (
                *r,
                plan.plays[r.first as usize..=r.last as usize].iter().sum(),
            )
        })
        .collect())
}

/// Qualities in order of cost.
fn rank(q: Quality) -> u8 {
    match q {
        Quality::Low => 0,
        Quality::Medium => 1,
        Quality::High => 2,
        Quality::Production => 3,
        Quality::FourK => 4,
    }
}

fn owner_of(job: &Job) -> &str {
    job.owner
        .as_deref()
        .unwrap_or(crate::animcache::LOCAL_OWNER)
}

fn chunk_info(c: &Chunk) -> ChunkInfo {
    ChunkInfo {
        index: c.index,
        first_animation: c.range.first,
        last_animation: c.range.last,
        seconds: (c.seconds * 1e6).round() / 1e6,
        node: c.node.clone().unwrap_or_default(),
        render_secs: c.render_secs.unwrap_or(0.0),
    }
}

/// A chunk run's lease: renewed every second with the frames drawn so far;
/// a lost lease (its job canceled, or reaped) stops the run.
struct ChunkBeat {
    frames: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ChunkBeat {
    fn new(executor: &Executor, chunk: &Chunk, stop: Stopper) -> ChunkBeat {
        let frames = Arc::new(AtomicU64::new(0));
        let (store, owner, lease) = (
            executor.parts.store.clone(),
            executor.owner.clone(),
            executor.cfg.lease,
        );
        let (chunk, counter) = (chunk.clone(), Arc::clone(&frames));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHUNK_BEAT.min(lease / 3)).await;
                let frames = counter.load(Ordering::Relaxed);
                match store.heartbeat_chunk(&chunk, &owner, lease, frames).await {
                    Ok(true) => {}
                    Ok(false) => return stop.stop(Stop::Canceled),
                    Err(err) => tracing::warn!(%err, "chunk heartbeat failed"),
                }
            }
        });
        ChunkBeat { frames, task }
    }

    /// Stops the heartbeat and records how the run ended: a chunk stopped
    /// for shutdown goes back to the queue.
    async fn end(
        self,
        executor: &Executor,
        chunk: &Chunk,
        out: Result<crate::render::ChunkRendered, RenderError>,
        reason: Option<Stop>,
    ) {
        self.task.abort();
        let store = &executor.parts.store;
        let owner = &executor.owner;
        if reason == Some(Stop::Shutdown) {
            let _ = store.release_chunk(chunk, owner).await;
            return;
        }
        let (status, keys, frames, secs, error) = match &out {
            Ok(done) => (
                ChunkStatus::Done,
                done.keys.as_slice(),
                done.frames,
                done.wall.as_secs_f64(),
                None,
            ),
            Err(RenderError::Stopped(crate::sandbox::Stopped::Canceled)) => {
                (ChunkStatus::Canceled, &[][..], 0, 0.0, None)
            }
            Err(e) => (
                ChunkStatus::Failed,
                &[][..],
                0,
                0.0,
                Some(e.code().to_string()),
            ),
        };
        let ending = ChunkEnding {
            status,
            frames,
            keys,
            render_secs: secs,
            error: error.as_deref(),
        };
        match store.finish_chunk(chunk, owner, &ending).await {
            Ok(true) => {
                executor.chunk_ends.send_modify(|n| *n += 1);
                tracing::info!(chunk = %chunk.id, status = status.as_str(), secs, "chunk ended")
            }
            Ok(false) => {
                tracing::warn!(chunk = %chunk.id, "chunk lease lost; this outcome is dropped")
            }
            Err(err) => tracing::error!(%err, "cannot record a chunk"),
        }
    }
}

/// One attempt's chunks, watched until all have ended (see `run`).
struct ChunkWatch {
    store: Store,
    storage: crate::storage::Storage,
    job: Job,
    attempt: u32,
    shelf: Shelf,
    feed: Feed,
    /// Bumped when a chunk ends on this node.
    ended_here: tokio::sync::watch::Receiver<u64>,
    /// Bumped when more chunks' pieces are on the shelf, for the join.
    arrived: tokio::sync::watch::Sender<u64>,
    live: Arc<LiveGate>,
}

impl ChunkWatch {
    /// Publishes the frames drawn over all chunks, sends each done chunk's
    /// pieces to the live stream once every chunk before it is done (the
    /// gate counts them), and tells the join of each arrival. Returns the
    /// chunks once all have ended.
    async fn run(self) -> Vec<Chunk> {
        let ChunkWatch {
            store,
            storage,
            job,
            attempt,
            shelf,
            feed,
            mut ended_here,
            arrived,
            live,
        } = self;
        let Feed {
            progress,
            pieces,
            live_dir,
        } = feed;
        let scene = job
            .spec
            .scenes
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let (mut live_chunks, mut live_sent, mut frames_seen, mut pulled) =
            (0usize, 0usize, 0u64, 0usize);
        loop {
            // A chunk that ends on this node says so; one that ends on another
            // is found at the next look.
            tokio::select! {
                changed = ended_here.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(POLL).await;
                    }
                }
                _ = tokio::time::sleep(POLL) => {}
            }
            let chunks = match store.chunks_of(&job.id, attempt).await {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!(%err, "cannot read the chunks");
                    continue;
                }
            };
            let frames: u64 = chunks.iter().map(|c| c.frames).sum();
            if frames != frames_seen {
                frames_seen = frames;
                live.others.store(frames, Ordering::Relaxed);
                let _ = progress.try_send(Progress::Frames {
                    scene: scene.clone(),
                    frames: live.frames(),
                });
            }
            let done = chunks
                .iter()
                .filter(|c| c.status == ChunkStatus::Done)
                .count();
            if done > pulled {
                // Pieces drawn on other nodes come through the bucket.
                let _ = storage.pull_animations(&shelf).await;
                pulled = done;
                // The join links them in where its worker awaits them.
                arrived.send_modify(|n| *n += 1);
            }
            while let Some(c) = chunks
                .get(live_chunks)
                .filter(|c| c.status == ChunkStatus::Done)
            {
                let mut links = Vec::with_capacity(c.keys.len());
                for (_, key) in &c.keys {
                    if let Some(link) = link_for_live(&shelf, key, &live_dir, live_sent) {
                        links.push(link);
                        live_sent += 1;
                    }
                }
                live_chunks += 1;
                // The last of them opens the stream to the join's own pieces.
                live.chunk_done(
                    links,
                    c.range.last + 1,
                    live_chunks == chunks.len(),
                    &pieces,
                );
            }
            if !chunks.is_empty() && chunks.iter().all(|c| c.status.is_over()) {
                // The pieces' links stay: the packager may not have read the
                // last ones yet. It removes each it took; the job's scratch
                // directory goes, with the rest, once the stream has ended.
                return chunks;
            }
        }
    }
}

/// The live stream's order during a join: the other chunks' pieces first,
/// sent by the watcher as it finds each chunk done, then the join's own,
/// held until those are out. The pieces the join itself reports of the
/// other chunks' plays are kept aside, for when a chunk ended without its
/// pieces going live (canceled once the join had them from the cache).
/// And the frames drawn so far over all of them.
#[derive(Default)]
struct LiveGate {
    state: std::sync::Mutex<Gate>,
    /// When the join began to await the other chunks' pieces.
    waited: std::sync::Mutex<Option<std::time::Instant>>,
    /// When the join reached its own first play.
    reached: std::sync::Mutex<Option<std::time::Instant>>,
    /// The join reported an awaited piece: its wait is over.
    resumed: std::sync::atomic::AtomicBool,
    /// Frames the other chunks drew (as their leases last reported).
    others: AtomicU64,
    /// Frames the join drew itself.
    own: AtomicU64,
}

#[derive(Default)]
struct Gate {
    /// Every other chunk's pieces are live: the join's go straight through.
    open: bool,
    /// How many of the chunks' pieces went live.
    sent: usize,
    /// The plays before this one are live.
    through: u32,
    /// The join's own pieces, until the gate opens.
    held: Vec<PathBuf>,
    /// The join's pieces of the other chunks' plays, not yet live.
    aside: Vec<(u32, PathBuf)>,
}

impl LiveGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waited(&self) -> Option<std::time::Instant> {
        *self.waited.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the join still waits `grace` after it began to, and after
    /// the chunks were all `done`.
    fn stalled(&self, done: std::time::Instant, grace: Duration) -> bool {
        let Some(waited) = self.waited() else {
            return false;
        };
        !self.resumed.load(Ordering::Relaxed) && waited.max(done).elapsed() > grace
    }

    fn frames(&self) -> u64 {
        self.others.load(Ordering::Relaxed) + self.own.load(Ordering::Relaxed)
    }

    /// The watcher's: a done chunk's pieces (its plays end before
    /// `through`) go live; after the `last` of them, the held ones follow.
    fn chunk_done(
        &self,
        links: Vec<PathBuf>,
        through: u32,
        last: bool,
        to: &mpsc::UnboundedSender<PathBuf>,
    ) {
        let mut gate = self.lock();
        gate.sent += links.len();
        for link in links {
            let _ = to.send(link);
        }
        gate.through = through;
        if last {
            for piece in std::mem::take(&mut gate.held) {
                let _ = to.send(piece);
            }
            gate.open = true;
        }
    }

    /// One of the join's pieces, of play `index`; its own start at `first`.
    fn offer(&self, index: u32, first: u32, piece: PathBuf, to: &mpsc::UnboundedSender<PathBuf>) {
        if index < first && self.waited().is_some() {
            self.resumed.store(true, Ordering::Relaxed);
        }
        let mut gate = self.lock();
        if index < first {
            if index < gate.through {
                // Sent live already, from its chunk.
                let _ = std::fs::remove_file(&piece);
            } else {
                gate.aside.push((index, piece));
            }
        } else if gate.open {
            let _ = to.send(piece);
        } else {
            gate.held.push(piece);
        }
    }

    /// The join made the video and the watcher has stopped: whatever did
    /// not go live yet goes now, in play order.
    fn finish(&self, to: &mpsc::UnboundedSender<PathBuf>) {
        let mut gate = self.lock();
        let mut aside = std::mem::take(&mut gate.aside);
        aside.sort_by_key(|(index, _)| *index);
        for (index, piece) in aside {
            if gate.open || index < gate.through {
                let _ = std::fs::remove_file(&piece);
            } else {
                let _ = to.send(piece);
            }
        }
        for piece in std::mem::take(&mut gate.held) {
            let _ = to.send(piece);
        }
        gate.open = true;
    }
}

/// The join's progress, passed on with two changes: its frames count from
/// its own first play (the plays before are simulated) and are added to
/// the other chunks'; of its pieces, only its own go live, in order after
/// the chunks'. `waits` says when it started awaiting their pieces.
fn join_progress(
    first: u32,
    fps: u32,
    feed: &Feed,
    live: &Arc<LiveGate>,
    waits: tokio::sync::watch::Sender<bool>,
) -> impl FnMut(Progress) + Send + 'static {
    let (progress, pieces, live) = (feed.progress.clone(), feed.pieces.clone(), Arc::clone(live));
    let mut base = None;
    move |p: Progress| {
        match &p {
            Progress::Animation { index, start, .. } if *index == first => {
                base = Some((start * f64::from(fps)).round() as u64);
                *live.reached.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now());
            }
            Progress::Frames { scene, frames } => {
                if let Some(base) = base {
                    live.own
                        .store(frames.saturating_sub(base), Ordering::Relaxed);
                    let _ = progress.try_send(Progress::Frames {
                        scene: scene.clone(),
                        frames: live.frames(),
                    });
                }
                return;
            }
            Progress::PartialMovie {
                index,
                piece: Some(piece),
                ..
            } => live.offer(*index, first, piece.clone(), &pieces),
            Progress::AwaitingPieces { .. } => {
                *live.waited.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now());
                waits.send_replace(true);
            }
            _ => {}
        }
        let _ = progress.try_send(p);
    }
}

/// A second name for a cached piece, for the live stream (which removes
/// what it packaged), after our reader checked it.
fn link_for_live(shelf: &Shelf, key: &str, dir: &Path, n: usize) -> Option<PathBuf> {
    let entry = shelf.check(key, None).ok()?;
    std::fs::create_dir_all(dir).ok()?;
    let link = dir.join(format!("{n}.mp4"));
    let _ = std::fs::remove_file(&link);
    std::fs::hard_link(entry, &link).ok()?;
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(plays: Vec<f64>) -> ScenePlan {
        ScenePlan {
            duration: plays.iter().sum(),
            plays,
            clock: vec![],
            entropy: vec![],
            wall: std::time::Duration::ZERO,
        }
    }

    fn code(r: Result<Vec<(ChunkRange, f64)>, Notice>) -> String {
        r.err().map(|n| n.code).unwrap_or_default()
    }

    #[test]
    fn a_long_plan_is_cut_into_balanced_chunks_up_to_the_workers() {
        let long = plan(vec![1.0; 24]);
        let chunks = chunks_of(&long, 2, 20.0).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], (ChunkRange { first: 0, last: 11 }, 12.0));
        // More workers, but each chunk at least half the minimum: 24 s / 10.
        assert_eq!(chunks_of(&long, 50, 20.0).unwrap().len(), 2);
        assert_eq!(chunks_of(&long, 50, 4.0).unwrap().len(), 12);
    }

    #[test]
    fn what_keeps_a_plan_whole_is_said() {
        assert_eq!(code(chunks_of(&plan(vec![1.0; 5]), 4, 20.0)), "short");
        assert_eq!(code(chunks_of(&plan(vec![30.0]), 4, 20.0)), "one-animation");
        let clock = ScenePlan {
            clock: vec![7],
            ..plan(vec![1.0; 40])
        };
        let reason = chunks_of(&clock, 4, 20.0).err().unwrap();
        assert_eq!(reason.code, "wall-clock");
        assert!(reason.message.contains("line 7"), "{}", reason.message);
        let entropy = ScenePlan {
            entropy: vec![3],
            ..plan(vec![1.0; 40])
        };
        assert_eq!(code(chunks_of(&entropy, 4, 20.0)), "entropy");
    }

    /// Pieces as files in `dir`, named by what they are.
    fn pieces(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| {
                let path = dir.join(n);
                std::fs::write(&path, n).unwrap();
                path
            })
            .collect()
    }

    fn names(rx: &mut mpsc::UnboundedReceiver<PathBuf>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_joins_pieces_go_live_after_every_other_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let live = LiveGate::default();
        // The join draws plays 4.. while chunks 0 (plays 0-1) and 1 (2-3) draw.
        let own = pieces(dir.path(), &["j4", "j5"]);
        for (i, piece) in own.into_iter().enumerate() {
            live.offer(4 + i as u32, 4, piece, &tx);
        }
        live.chunk_done(pieces(dir.path(), &["c0", "c1"]), 2, false, &tx);
        assert_eq!(names(&mut rx), ["c0", "c1"], "held until the last chunk");
        live.chunk_done(pieces(dir.path(), &["c2", "c3"]), 4, true, &tx);
        assert_eq!(names(&mut rx), ["c2", "c3", "j4", "j5"]);
        // Its own reports of the chunks' plays, after the wait: live already.
        let again = pieces(dir.path(), &["r0", "r3"]);
        live.offer(0, 4, again[0].clone(), &tx);
        live.offer(3, 4, again[1].clone(), &tx);
        live.offer(6, 4, pieces(dir.path(), &["j6"]).remove(0), &tx);
        live.finish(&tx);
        assert_eq!(names(&mut rx), ["j6"]);
        assert!(again.iter().all(|p| !p.exists()), "second names removed");
        assert_eq!(live.lock().sent, 4);
    }

    #[test]
    fn pieces_of_a_chunk_that_never_went_live_are_sent_in_order_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let live = LiveGate::default();
        live.chunk_done(pieces(dir.path(), &["c0", "c1"]), 2, false, &tx);
        live.offer(4, 4, pieces(dir.path(), &["j4"]).remove(0), &tx);
        // Chunk 1 was canceled: the join took plays 2-3 from the cache.
        let reported = pieces(dir.path(), &["r0", "r3", "r2"]);
        live.offer(0, 4, reported[0].clone(), &tx);
        live.offer(3, 4, reported[1].clone(), &tx);
        live.offer(2, 4, reported[2].clone(), &tx);
        assert_eq!(names(&mut rx), ["c0", "c1"]);
        live.finish(&tx);
        assert_eq!(names(&mut rx), ["r2", "r3", "j4"]);
        assert!(!reported[0].exists(), "play 0 was live already");
    }
}
