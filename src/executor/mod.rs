//! Runs queued jobs: a bounded pool of workers that claim jobs from the
//! store, hold a lease with a heartbeat while they render, and record the
//! outcome with fenced writes. Cancellation and graceful shutdown reach a
//! running render through its stop signal (`control` owns the runs).
//!
//! This module owns the executor and a run's course: claim, run, render,
//! publish the job's state. `lease` keeps leases (heartbeat, reaper),
//! `progress` and `live` are a render's side tasks, `record` stores the
//! outcome, `generation` runs a generation job.

mod generation;
mod lease;
mod live;
mod progress;
mod record;
mod split;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::api::JobView;
use crate::components::Components;
use crate::control::{Run, Slot};
use crate::events::JobEvent;
use crate::jobs::{Claimed, Job, JobId};
use crate::limits::Limits;
use crate::protocol::Progress;
use crate::render::RenderError;

#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    pub workers: usize,
    pub lease: Duration,
    pub max_attempts: u32,
    pub limits: Limits,
    /// Scratch space for renders in progress (same filesystem as storage).
    pub work_dir: PathBuf,
    /// A render is split over several workers when its planned video is at
    /// least this many seconds long (see `split`)...
    pub chunk_min_secs: f64,
    /// ... and of this quality or above.
    pub chunk_min_quality: crate::spec::Quality,
}

pub struct Executor {
    cfg: ExecutorConfig,
    /// The parts it shares with the service (store, renderer, pool, hub,
    /// storage, webhooks, metrics, the model and this node's `Control`).
    parts: Components,
    /// This process's lease owner name.
    owner: String,
    /// Counts the chunks that ended here, so that a split job's runner
    /// notices one of its chunks ending at once rather than at its next
    /// look (chunks drawn on other nodes are still found by looking).
    chunk_ends: tokio::sync::watch::Sender<u64>,
}

impl Executor {
    pub fn new(cfg: ExecutorConfig, parts: Components) -> Arc<Executor> {
        Arc::new(Executor {
            cfg,
            parts,
            owner: format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple()),
            chunk_ends: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Starts the workers and the lease reaper.
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = (0..self.cfg.workers)
            .map(|_| tokio::spawn(Arc::clone(self).worker_loop()))
            .collect();
        tasks.push(tokio::spawn(Arc::clone(self).reaper_loop()));
        tasks.push(tokio::spawn(Arc::clone(self).presence_loop()));
        tasks
    }

    /// Says, while the node runs, how many workers it has: how far a render
    /// can be split counts them over all nodes. The row goes when it stops.
    async fn presence_loop(self: Arc<Self>) {
        let mut stopping = self.parts.control.stopping();
        let slots = self.cfg.workers as u32;
        loop {
            if slots > 0 {
                if let Err(err) = self.parts.store.register_worker(&self.owner, slots).await {
                    tracing::warn!(%err, "cannot record this node's workers");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.lease / 3) => {}
                _ = stopping.changed() => break,
            }
        }
        let _ = self.parts.store.unregister_worker(&self.owner).await;
    }

    /// The lease owner name of this process.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn lease(&self) -> Duration {
        self.cfg.lease
    }

    /// Runs a job that this process claimed outside the worker loops (see
    /// `Service::generate`), with the same lease, heartbeat and cancel.
    /// `slot` was taken before the claim; `permit` is held until the job ends.
    pub fn run_here(
        self: &Arc<Self>,
        claimed: Claimed,
        slot: Slot,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let me = Arc::clone(self);
        let span = tracing::info_span!("job", id = %claimed.job.id, attempt = claimed.attempt);
        tokio::spawn(
            async move {
                me.run(claimed, slot).await;
                drop(permit);
            }
            .instrument(span),
        );
    }

    pub fn workers(&self) -> usize {
        self.cfg.workers
    }

    /// Warm sandboxes ready for a job.
    pub fn warm(&self) -> usize {
        self.parts.pool.ready()
    }

    /// Jobs running in this process.
    pub fn busy(&self) -> usize {
        self.parts.control.running()
    }

    /// Stops claiming, lets running jobs finish within `grace`, then stops
    /// the rest and puts them back in the queue.
    pub async fn shutdown(&self, grace: Duration) {
        self.parts.control.stop_all(grace).await;
    }

    async fn worker_loop(self: Arc<Self>) {
        let mut stopping = self.parts.control.stopping();
        // The slot is taken before the claim: a graceful stop waits for a
        // job from the moment it can be claimed (see `control`).
        while let Some(slot) = self.parts.control.slot() {
            // A chunk first: its job is already running and waits for it.
            match self
                .parts
                .store
                .claim_chunk(&self.owner, self.cfg.lease, None)
                .await
            {
                Ok(Some(chunk)) => {
                    let span =
                        tracing::info_span!("chunk", id = %chunk.id, attempt = chunk.attempts);
                    self.run_chunk(chunk, slot).instrument(span).await;
                    continue;
                }
                Ok(None) => {}
                Err(err) => tracing::error!(%err, "cannot claim a chunk"),
            }
            match self.parts.store.claim(&self.owner, self.cfg.lease).await {
                Ok(Some(claimed)) => {
                    let span =
                        tracing::info_span!("job", id = %claimed.job.id, attempt = claimed.attempt);
                    self.run(claimed, slot).instrument(span).await
                }
                Ok(None) => {
                    drop(slot);
                    tokio::select! {
                        _ = self.parts.control.woken() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopping.changed() => {}
                    }
                }
                Err(err) => {
                    drop(slot);
                    tracing::error!(%err, "cannot claim a job");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn publish_status(&self, job: &Job) {
        let view = serde_json::to_value(JobView::from(job)).unwrap_or_default();
        self.parts.hub.publish(&job.id, JobEvent::Status(view));
    }

    /// Publishes the job's state after a run; a finished job's channel closes.
    async fn publish_current(&self, id: &JobId) {
        if let Ok(Some(job)) = self.parts.store.get(id).await {
            let view = serde_json::to_value(JobView::from(&job)).unwrap_or_default();
            if job.status.is_terminal() {
                self.parts.webhooks.job_ended(&job);
                self.parts.hub.finish(id, JobEvent::Status(view));
            } else {
                self.parts.hub.publish(id, JobEvent::Status(view));
            }
        }
    }

    /// Runs a claimed job to its end: registered for cancel and shutdown,
    /// its lease kept alive, its outcome recorded and published.
    async fn run(&self, claimed: Claimed, slot: Slot) {
        let Claimed { job, attempt } = claimed;
        if job.generation.is_none() && self.finish_from_cache(&job, attempt).await {
            return;
        }
        let run = slot.begin(&job);
        self.publish_status(&job);
        let heartbeat = self.spawn_heartbeat(job.id.clone(), attempt, run.stopper());
        match job.generation.clone() {
            Some(generation) => self.run_generation(&job, attempt, generation, &run).await,
            None => self.render(&job, attempt, &run).await,
        }
        // Only now: recording publishes the files, and an upload to a bucket
        // can outlast a lease that nobody renews.
        heartbeat.abort();
        drop(run);
        self.publish_current(&job.id).await;
    }

    /// Renders a plain render job and records the outcome: split over the
    /// cluster's workers first when that is worth it (see `split`), then
    /// the last pass, which finds the chunks' pieces in the cache.
    async fn render(&self, job: &Job, attempt: u32, run: &Run) {
        let read;
        let job = match self.read_manifest(job).await {
            Ok(None) => job,
            Ok(Some(with_files)) => {
                read = with_files;
                &read
            }
            Err(err) => {
                let split = split::Split::default();
                return self
                    .record(job, attempt, Err(err), None, false, split)
                    .await;
            }
        };
        let id = job.id.clone();
        tracing::info!(engine = %job.spec.engine, "render started");
        let (progress_tx, progress_rx) = mpsc::channel::<Progress>(256);
        let progress_task = self.spawn_progress(id.clone(), attempt, progress_rx);
        let (pieces_tx, pieces_rx) = mpsc::unbounded_channel::<std::path::PathBuf>();
        let live_task = self.spawn_live(id.clone(), attempt, pieces_rx);

        let scratch = self.cfg.work_dir.join(format!("{id}-{attempt}"));
        // No keys: every job has the one local owner, whose cache it uses.
        let owner = job
            .owner
            .as_deref()
            .unwrap_or(crate::animcache::LOCAL_OWNER);
        let shelf = self.parts.renderer.shelf(&job.spec, Some(owner));
        let feed = split::Feed {
            progress: progress_tx.clone(),
            pieces: pieces_tx.clone(),
            live_dir: scratch.join("live-pieces"),
        };
        if let Some(shelf) = &shelf {
            // With a bucket: what other nodes drew for this owner, for the
            // split's join or the last pass. A store that cannot be reached
            // costs the reuse, not the render.
            if let Err(err) = self.parts.storage.pull_animations(shelf).await {
                tracing::warn!(%err, "cannot bring the owner's cached animations");
            }
        }
        let mut split = self
            .split(job, attempt, run, shelf.as_ref(), &scratch, &feed)
            .await;
        drop(feed);
        // The chunks' pieces that went live are the last pass's first ones.
        let mut skip_live = split.live_sent;
        // Progress is lossy by nature: a flood is dropped, not queued.
        // Finished pieces are not: each is a segment of the live stream.
        let progress = move |p: Progress| {
            if let Progress::PartialMovie {
                piece: Some(piece), ..
            } = &p
            {
                if skip_live > 0 {
                    skip_live -= 1;
                    let _ = std::fs::remove_file(piece);
                } else {
                    let _ = pieces_tx.send(piece.clone());
                }
            }
            let _ = progress_tx.try_send(p);
        };
        if let Some(project) = &job.spec.project {
            // With a bucket: the blobs another node received. One that
            // cannot be brought fails the render as `missing-blob`.
            for (_, digest) in project.blobs() {
                let owner = job.owner.as_deref();
                if let Err(err) = self
                    .parts
                    .storage
                    .pull_blob(&self.parts.blobs, owner, &digest)
                    .await
                {
                    tracing::warn!(%err, %digest, "cannot bring a project's blob");
                }
            }
        }
        let joined = split.joined.take();
        let (outcome, warm_start) = if let Some(joined) = joined {
            // The join made the video; the chunks' pieces are in it.
            drop(progress);
            *joined
        } else if run.reason().is_some() {
            // Stopped while split: no last pass (its senders go with it).
            drop(progress);
            let stopped = crate::sandbox::Stopped::Canceled;
            (Err(RenderError::Stopped(stopped)), false)
        } else {
            self.render_in(&job.spec, owner, &scratch, progress, run.stopped())
                .await
        };
        if let (Some(shelf), Ok(_)) = (&shelf, &outcome) {
            if let Err(err) = self.parts.storage.push_animations(shelf).await {
                tracing::warn!(%err, "cannot keep this render's animations in the bucket");
            }
        }
        let _ = progress_task.await;
        // The live stream is complete (EXT-X-ENDLIST) before the job ends.
        let _ = live_task.await;
        self.record(job, attempt, outcome, run.reason(), warm_start, split)
            .await;
        let _ = self.parts.store.delete_chunks(&id).await;
        let _ = std::fs::remove_dir_all(&scratch);
    }

    /// The job with its project's manifest read (brought from the bucket
    /// first when another node received it), so that every file of the
    /// project is known; `None` when it names no manifest.
    async fn read_manifest(&self, job: &Job) -> Result<Option<Job>, RenderError> {
        let Some(project) = &job.spec.project else {
            return Ok(None);
        };
        let Some(digest) = project.manifest.filter(|_| !project.is_resolved()) else {
            return Ok(None);
        };
        let owner = job.owner.as_deref();
        let blobs = &self.parts.blobs;
        if let Err(err) = self.parts.storage.pull_blob(blobs, owner, &digest).await {
            tracing::warn!(%err, %digest, "cannot bring a project's manifest");
        }
        let listed = blobs.manifest(owner, &digest).map_err(|e| match e {
            crate::blobs::BlobError::Manifest(e) => RenderError::Manifest(e),
            crate::blobs::BlobError::Io(e) => RenderError::Blobs(e),
            other => RenderError::Blobs(std::io::Error::other(other.to_string())),
        })?;
        let mut job = job.clone();
        if let Some(project) = &mut job.spec.project {
            project.listed = Some(listed);
        }
        Ok(Some(job))
    }

    /// Renders `spec` in a warm sandbox when one is ready, else in a fresh
    /// one, in the scratch directory `scratch`; says whether it was warm.
    async fn render_in(
        &self,
        spec: &crate::spec::RenderSpec,
        owner: &str,
        scratch: &std::path::Path,
        progress: impl FnMut(Progress),
        stop: impl std::future::Future<Output = ()>,
    ) -> (Result<crate::render::Rendered, RenderError>, bool) {
        if let Err(err) = std::fs::create_dir_all(scratch) {
            let err = crate::sandbox::SandboxError::Area(scratch.to_owned(), err);
            return (Err(RenderError::Sandbox(err)), false);
        }
        match self.parts.pool.take(spec.engine, &self.cfg.limits) {
            Some(warm) => {
                let outcome = self
                    .parts
                    .renderer
                    .render_warm(warm, spec, Some(owner), scratch, progress, stop)
                    .await;
                (outcome, true)
            }
            None => {
                let outcome = self
                    .parts
                    .renderer
                    .render(spec, Some(owner), &self.cfg.limits, scratch, progress, stop)
                    .await;
                (outcome, false)
            }
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "manimd".into())
}
