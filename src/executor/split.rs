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
use crate::render::{RenderError, ScenePlan};
use crate::spec::{Engine, Format, Parallel, Quality};

/// How often the job's runner looks at its chunks, and a chunk's lease is
/// renewed with its frames.
const POLL: Duration = Duration::from_millis(250);
const CHUNK_BEAT: Duration = Duration::from_secs(1);

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
}

impl Split {
    fn not(code: &str, message: impl Into<String>) -> Split {
        Split {
            reason: Some(Notice {
                code: code.into(),
                message: message.into(),
            }),
            ..Split::default()
        }
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
            Err(err) => Err(Split::not(
                "plan-failed",
                format!("the scene could not be planned ({})", err.code()),
            )),
        };
        let split = match chunks {
            Ok(chunks) => {
                tracing::info!(chunks = chunks.len(), "render split");
                self.draw_chunks(job, attempt, run, shelf, &chunks, feed)
                    .await
            }
            Err(not) => not,
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

    /// Queues the chunks, draws those no other worker took, waits for the
    /// rest while reporting their frames and feeding their pieces to the
    /// live stream in order.
    async fn draw_chunks(
        &self,
        job: &Job,
        attempt: u32,
        run: &Run,
        shelf: &Shelf,
        planned: &[(ChunkRange, f64)],
        feed: &Feed,
    ) -> Split {
        let store = &self.parts.store;
        if let Err(err) = store.insert_chunks(&job.id, attempt, planned).await {
            tracing::error!(%err, "cannot queue the chunks");
            return Split::not("internal", "the chunks could not be queued");
        }
        self.parts.control.wake();
        let watch = tokio::spawn(watch_chunks(
            store.clone(),
            self.parts.storage.clone(),
            job.clone(),
            attempt,
            shelf.clone(),
            feed.clone(),
            self.chunk_ends.subscribe(),
        ));
        // Draw what nobody else took, until every chunk has ended: one
        // whose worker died is queued again and may be this runner's.
        let mut watch = watch;
        let watched = loop {
            if run.reason().is_some() {
                break None;
            }
            let claimed = store
                .claim_chunk(&self.owner, self.cfg.lease, Some((&job.id, attempt)))
                .await;
            match claimed {
                Ok(Some(chunk)) => {
                    let beat = ChunkBeat::new(self, &chunk, run.stopper());
                    let ending = self
                        .draw_chunk(&chunk, job, shelf, &beat.frames, run.stopped())
                        .await;
                    beat.end(self, &chunk, ending, run.reason()).await;
                    continue;
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(%err, "cannot claim a chunk"),
            }
            tokio::select! {
                w = &mut watch => break w.ok(),
                _ = run.stopped() => break None,
                _ = tokio::time::sleep(POLL) => {}
            }
        };
        watch.abort();
        let Some((chunks, live_sent)) = watched.filter(|_| run.reason().is_none()) else {
            // Stopped (canceled, shutdown, lease lost): this attempt's
            // chunks stop with it, here and on every node.
            let _ = store.cancel_chunks(&job.id).await;
            self.parts.control.cancel_everywhere(&job.id);
            return Split::default();
        };
        if let Some(failed) = chunks.iter().find(|c| c.status != ChunkStatus::Done) {
            let _ = store.cancel_chunks(&job.id).await;
            let code = failed.error.clone().unwrap_or_else(|| "canceled".into());
            return Split {
                live_sent,
                ..Split::not(
                    "chunk-failed",
                    format!(
                        "chunk {} ended {code}; its animations are drawn in one pass",
                        failed.index
                    ),
                )
            };
        }
        Split {
            chunks: chunks.iter().map(chunk_info).collect(),
            live_sent,
            ..Split::default()
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

/// The chunks a plan makes: at most `max_chunks`, each at least half of
/// `min_secs` long, balanced by duration; or why there are none.
fn chunks_of(
    plan: &ScenePlan,
    max_chunks: u32,
    min_secs: f64,
) -> Result<Vec<(ChunkRange, f64)>, Split> {
    if let Some(&line) = plan.clock.first() {
        return Err(Split::not(
            "wall-clock",
            format!("the scene reads the wall clock (line {line}), so separate workers would draw different frames"),
        ));
    }
    if let Some(&line) = plan.entropy.first() {
        return Err(Split::not(
            "entropy",
            format!("the scene draws unseeded randomness (line {line}), so separate workers would draw different frames"),
        ));
    }
    if plan.duration < min_secs {
        return Err(Split::not(
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
        return Err(Split::not(
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

/// Watches one attempt's chunks until all have ended: publishes the frames
/// drawn over all of them, and sends each done chunk's pieces to the live
/// stream once every chunk before it is done. Returns the chunks and how
/// many pieces went live.
async fn watch_chunks(
    store: Store,
    storage: crate::storage::Storage,
    job: Job,
    attempt: u32,
    shelf: Shelf,
    feed: Feed,
    mut ended_here: tokio::sync::watch::Receiver<u64>,
) -> (Vec<Chunk>, usize) {
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
            let _ = progress.try_send(Progress::Frames {
                scene: scene.clone(),
                frames,
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
        }
        while let Some(c) = chunks
            .get(live_chunks)
            .filter(|c| c.status == ChunkStatus::Done)
        {
            for (_, key) in &c.keys {
                if let Some(link) = link_for_live(&shelf, key, &live_dir, live_sent) {
                    let _ = pieces.send(link);
                    live_sent += 1;
                }
            }
            live_chunks += 1;
        }
        if !chunks.is_empty() && chunks.iter().all(|c| c.status.is_over()) {
            // The pieces' links stay: the packager may not have read the
            // last ones yet. It removes each it took; the job's scratch
            // directory goes, with the rest, once the stream has ended.
            return (chunks, live_sent);
        }
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

    fn code(r: Result<Vec<(ChunkRange, f64)>, Split>) -> String {
        r.err()
            .and_then(|s| s.reason)
            .map(|n| n.code)
            .unwrap_or_default()
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
        let split = chunks_of(&clock, 4, 20.0).err().unwrap();
        let reason = split.reason.unwrap();
        assert_eq!(reason.code, "wall-clock");
        assert!(reason.message.contains("line 7"), "{}", reason.message);
        let entropy = ScenePlan {
            entropy: vec![3],
            ..plan(vec![1.0; 40])
        };
        assert_eq!(code(chunks_of(&entropy, 4, 20.0)), "entropy");
    }
}
