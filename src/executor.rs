//! Runs queued jobs: a bounded pool of workers that claim jobs from the
//! store, hold a lease with a heartbeat while they render, and record the
//! outcome with fenced writes. Cancellation and graceful shutdown reach a
//! running render through its stop signal.

mod generation;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::api::JobView;
use crate::components::Components;
use crate::components::Llm;
use crate::control::{Control, Run, Slot, Stop, Stopper};
use crate::events::{Hub, JobEvent};
use crate::job_error::{ErrorCode, JobError};
use crate::jobs::{Claimed, Job, JobId, JobProgress, JobResult, JobStatus, Store};
use crate::limits::Limits;
use crate::metrics::{Metrics, Outcome};
use crate::pool::Pool;
use crate::protocol::Progress;
use crate::render::{RenderError, Renderer};
use crate::sandbox::Stopped;
use crate::storage::Storage;
use crate::webhooks::Webhooks;

#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    pub workers: usize,
    pub lease: Duration,
    pub max_attempts: u32,
    pub limits: Limits,
    /// Scratch space for renders in progress (same filesystem as storage).
    pub work_dir: PathBuf,
}

pub struct Executor {
    cfg: ExecutorConfig,
    store: Store,
    renderer: Arc<Renderer>,
    pool: Arc<Pool>,
    webhooks: Arc<Webhooks>,
    hub: Arc<Hub>,
    storage: Storage,
    metrics: Arc<Metrics>,
    llm: Arc<Llm>,
    /// This node's runs, and the wake and cancel signals that reach them.
    control: Arc<Control>,
    /// This process's lease owner name.
    owner: String,
}

impl Executor {
    pub fn new(cfg: ExecutorConfig, parts: Components) -> Arc<Executor> {
        let Components {
            store,
            renderer,
            pool,
            webhooks,
            hub,
            storage,
            metrics,
            llm,
            control,
        } = parts;
        Arc::new(Executor {
            cfg,
            store,
            renderer,
            pool,
            webhooks,
            hub,
            storage,
            metrics,
            llm,
            control,
            owner: format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple()),
        })
    }

    /// Starts the workers and the lease reaper.
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = (0..self.cfg.workers)
            .map(|_| tokio::spawn(Arc::clone(self).worker_loop()))
            .collect();
        tasks.push(tokio::spawn(Arc::clone(self).reaper_loop()));
        tasks
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
        self.pool.ready()
    }

    /// Jobs running in this process.
    pub fn busy(&self) -> usize {
        self.control.running()
    }

    /// Stops claiming, lets running jobs finish within `grace`, then stops
    /// the rest and puts them back in the queue.
    pub async fn shutdown(&self, grace: Duration) {
        self.control.stop_all(grace).await;
    }

    async fn worker_loop(self: Arc<Self>) {
        let mut stopping = self.control.stopping();
        // The slot is taken before the claim: a graceful stop waits for a
        // job from the moment it can be claimed (see `control`).
        while let Some(slot) = self.control.slot() {
            match self.store.claim(&self.owner, self.cfg.lease).await {
                Ok(Some(claimed)) => {
                    let span =
                        tracing::info_span!("job", id = %claimed.job.id, attempt = claimed.attempt);
                    self.run(claimed, slot).instrument(span).await
                }
                Ok(None) => {
                    drop(slot);
                    tokio::select! {
                        _ = self.control.woken() => {}
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

    /// Re-queues jobs whose lease expired (a worker that died elsewhere).
    async fn reaper_loop(self: Arc<Self>) {
        let mut stopping = self.control.stopping();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.lease) => {}
                _ = stopping.changed() => return,
            }
            match self.store.reap_leases(false, self.cfg.max_attempts).await {
                Ok((requeued, failed)) if !requeued.is_empty() || !failed.is_empty() => {
                    tracing::warn!(?requeued, ?failed, "reaped expired leases");
                    self.control.wake();
                }
                Ok(_) => {}
                Err(err) => tracing::error!(%err, "cannot reap leases"),
            }
        }
    }

    fn publish_status(&self, job: &Job) {
        let view = serde_json::to_value(JobView::from(job)).unwrap_or_default();
        self.hub.publish(&job.id, JobEvent::Status(view));
    }

    /// Publishes the job's state after a run; a finished job's channel closes.
    async fn publish_current(&self, id: &JobId) {
        if let Ok(Some(job)) = self.store.get(id).await {
            let view = serde_json::to_value(JobView::from(&job)).unwrap_or_default();
            if job.status.is_terminal() {
                self.webhooks.job_ended(&job);
                self.hub.finish(id, JobEvent::Status(view));
            } else {
                self.hub.publish(id, JobEvent::Status(view));
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

    /// Renders a plain render job and records the outcome.
    async fn render(&self, job: &Job, attempt: u32, run: &Run) {
        let id = job.id.clone();
        tracing::info!(engine = %job.spec.engine, "render started");
        let (progress_tx, progress_rx) = mpsc::channel::<Progress>(256);
        let progress_task = self.spawn_progress(id.clone(), attempt, progress_rx);
        let (pieces_tx, pieces_rx) = mpsc::unbounded_channel::<std::path::PathBuf>();
        let live_task = self.spawn_live(id.clone(), attempt, pieces_rx);

        let scratch = self.cfg.work_dir.join(format!("{id}-{attempt}"));
        // Progress is lossy by nature: a flood is dropped, not queued.
        // Finished pieces are not: each is a segment of the live stream.
        let progress = move |p: Progress| {
            if let Progress::PartialMovie {
                piece: Some(piece), ..
            } = &p
            {
                let _ = pieces_tx.send(piece.clone());
            }
            let _ = progress_tx.try_send(p);
        };
        let (outcome, warm_start) = self
            .render_in(&job.spec, &scratch, progress, run.stopped())
            .await;
        let _ = progress_task.await;
        // The live stream is complete (EXT-X-ENDLIST) before the job ends.
        let _ = live_task.await;
        self.record(job, attempt, outcome, run.reason(), warm_start)
            .await;
        let _ = std::fs::remove_dir_all(&scratch);
    }

    /// Renders `spec` in a warm sandbox when one is ready, else in a fresh
    /// one, in the scratch directory `scratch`; says whether it was warm.
    async fn render_in(
        &self,
        spec: &crate::spec::RenderSpec,
        scratch: &std::path::Path,
        progress: impl FnMut(Progress),
        stop: impl std::future::Future<Output = ()>,
    ) -> (Result<crate::render::Rendered, RenderError>, bool) {
        if let Err(err) = std::fs::create_dir_all(scratch) {
            let err = crate::sandbox::SandboxError::Area(scratch.to_owned(), err);
            return (Err(RenderError::Sandbox(err)), false);
        }
        match self.pool.take(spec.engine, &self.cfg.limits) {
            Some(warm) => {
                let outcome = self
                    .renderer
                    .render_warm(warm, spec, scratch, progress, stop)
                    .await;
                (outcome, true)
            }
            None => {
                let outcome = self
                    .renderer
                    .render(spec, &self.cfg.limits, scratch, progress, stop)
                    .await;
                (outcome, false)
            }
        }
    }

    async fn record(
        &self,
        job: &Job,
        attempt: u32,
        outcome: Result<crate::render::Rendered, RenderError>,
        reason: Option<Stop>,
        warm_start: bool,
    ) {
        let id = &job.id;
        let (status, error, result, secs) = match outcome {
            Ok(r) => {
                let ext = r
                    .output
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("bin")
                    .to_owned();
                let output_name = format!("output.{ext}");
                let mut files = vec![(r.output.as_path(), output_name.as_str())];
                if let Some(t) = &r.thumbnail {
                    files.push((t.as_path(), "thumbnail.png"));
                }
                if let Some(n) = &r.narration {
                    files.push((n.subtitles.as_path(), crate::narration::SUBTITLES_FILE));
                }
                if let Err(err) = self.storage.publish(id, attempt, &files).await {
                    tracing::error!(%err, "cannot publish the render");
                    let e = JobError::internal();
                    (JobStatus::Failed, Some(e), None, r.wall.as_secs_f64())
                } else {
                    let format = if r.media.still {
                        crate::spec::Format::Png
                    } else {
                        job.spec.format
                    };
                    let result = JobResult {
                        duration: r.media.duration,
                        width: r.media.width,
                        height: r.media.height,
                        fps: r.media.fps,
                        frames: r.media.frames,
                        codec: r.media.codec.clone(),
                        bytes: r.bytes,
                        content_type: format.content_type().to_owned(),
                        format,
                        still: r.media.still,
                        notice: r.media.notice.clone(),
                        engine_version: r.engine_version.clone(),
                        render_secs: r.wall.as_secs_f64(),
                        engine_secs: r.job_secs,
                        peak_rss_bytes: r.worker_max_rss_bytes,
                        attempt,
                        has_thumbnail: r.thumbnail.is_some(),
                        warm_start,
                        cache_hit: false,
                        narration: r.narration.as_ref().map(|n| crate::jobs::NarrationResult {
                            cues: n.cues.clone(),
                            subtitles_url: format!("/v1/renders/{id}/subtitles"),
                        }),
                    };
                    (
                        JobStatus::Succeeded,
                        None,
                        Some(result),
                        r.wall.as_secs_f64(),
                    )
                }
            }
            Err(RenderError::Stopped(Stopped::Canceled)) if reason == Some(Stop::Shutdown) => {
                match self.store.release(id, &self.owner, attempt).await {
                    Ok(true) => {
                        tracing::info!("render stopped for shutdown; the job is queued again")
                    }
                    Ok(false) => tracing::warn!("lease lost before the job could be released"),
                    Err(err) => tracing::error!(%err, "cannot release the job"),
                }
                return;
            }
            Err(RenderError::Stopped(Stopped::Canceled)) => {
                let e = JobError::new(ErrorCode::Canceled, "the job was canceled");
                (JobStatus::Canceled, Some(e), None, 0.0)
            }
            Err(e) => {
                if e.is_internal() {
                    tracing::error!(err = %e, "render failed inside manimd");
                } else {
                    tracing::info!(code = %e.code(), "render failed");
                }
                (JobStatus::Failed, Some(e.to_error()), None, 0.0)
            }
        };
        match self
            .store
            .finish(
                id,
                &self.owner,
                attempt,
                status,
                error.as_ref(),
                result.as_ref(),
            )
            .await
        {
            Ok(true) => {
                self.complete_followers(id, status, error.as_ref()).await;
                let outcome = match status {
                    JobStatus::Succeeded => Outcome::Succeeded,
                    JobStatus::Canceled => Outcome::Canceled,
                    _ => Outcome::Failed,
                };
                self.metrics.job_finished(outcome, secs);
                tracing::info!(status = status.as_str(), secs, "render ended");
            }
            Ok(false) => {
                tracing::warn!("lease lost: a newer attempt owns the job; this outcome is dropped")
            }
            Err(err) => tracing::error!(%err, "cannot record the outcome"),
        }
    }

    /// An identical job finished while this one waited in the queue: take its
    /// result, without a sandbox.
    async fn finish_from_cache(&self, job: &Job, attempt: u32) -> bool {
        let Some(key) = &job.cache_key else {
            return false;
        };
        let Ok(Some(source)) = self.store.cached(key).await else {
            return false;
        };
        let Ok(result) = crate::cache::share(&self.storage, &source, &job.id).await else {
            return false;
        };
        if let Ok(true) = self
            .store
            .finish(
                &job.id,
                &self.owner,
                attempt,
                JobStatus::Succeeded,
                None,
                Some(&result),
            )
            .await
        {
            self.metrics.cache_hit();
            tracing::info!(source = %source.id, "served from the cache");
        }
        self.publish_current(&job.id).await;
        true
    }

    /// Hands a finished job's outcome to the identical jobs that waited for it.
    async fn complete_followers(
        &self,
        leader: &JobId,
        status: JobStatus,
        error: Option<&JobError>,
    ) {
        let followers = match self.store.followers(leader).await {
            Ok(f) => f,
            Err(err) => return tracing::error!(%err, "cannot list followers"),
        };
        if followers.is_empty() {
            return;
        }
        let source = match status {
            JobStatus::Succeeded => self.store.get(leader).await.ok().flatten(),
            JobStatus::Failed => None,
            _ => {
                // Canceled: the followers did not ask for that; they render.
                let _ = self.store.unfollow(Some(leader)).await;
                self.control.wake();
                return;
            }
        };
        for id in followers {
            let done = match &source {
                Some(source) => match crate::cache::share(&self.storage, source, &id).await {
                    Ok(result) => {
                        self.store
                            .finish_follower(&id, JobStatus::Succeeded, None, Some(&result))
                            .await
                    }
                    Err(err) => {
                        tracing::error!(%err, "cannot share a result with a follower");
                        continue;
                    }
                },
                None => {
                    self.store
                        .finish_follower(&id, JobStatus::Failed, error, None)
                        .await
                }
            };
            if let Ok(true) = done {
                self.metrics.cache_hit();
            }
            self.publish_current(&id).await;
        }
    }

    /// Keeps the lease alive; stops the render when the lease is lost or a
    /// cancel was recorded (by any node).
    fn spawn_heartbeat(
        &self,
        id: JobId,
        attempt: u32,
        stop: Stopper,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let owner = self.owner.clone();
        let lease = self.cfg.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match store.heartbeat(&id, &owner, attempt, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%id, "lease lost; stopping the render");
                        stop.stop(Stop::Canceled);
                        return;
                    }
                    Err(err) => tracing::error!(%err, "heartbeat failed"),
                }
                if let Ok(Some(job)) = store.get(&id).await {
                    if job.cancel_requested {
                        stop.stop(Stop::Canceled);
                    }
                }
            }
        })
    }

    /// Packages each finished piece into the job's live HLS stream, and
    /// ends the stream when the render ends.
    fn spawn_live(
        &self,
        id: JobId,
        attempt: u32,
        mut rx: mpsc::UnboundedReceiver<std::path::PathBuf>,
    ) -> tokio::task::JoinHandle<()> {
        let storage = self.storage.clone();
        let dir = storage.live_dir(&id, attempt);
        tokio::spawn(async move {
            let mut live = match crate::hls::Live::new(dir, crate::hls::TARGET_SECS, "live/") {
                Ok(live) => live,
                Err(err) => return tracing::error!(%err, "cannot start the live stream"),
            };
            let mut broken = false;
            while let Some(piece) = rx.recv().await {
                if broken {
                    let _ = tokio::fs::remove_file(&piece).await;
                    continue;
                }
                let result = tokio::task::spawn_blocking(move || {
                    let before = live.segment_count();
                    let added = std::fs::read(&piece)
                        .map_err(crate::hls::HlsError::from)
                        .and_then(|d| live.add_piece(&d))
                        .map(|_| live.changed_since(before));
                    let _ = std::fs::remove_file(&piece);
                    (live, added)
                })
                .await;
                match result {
                    Ok((l, added)) => {
                        live = l;
                        match added {
                            Ok(changed) => {
                                // Other nodes serve the stream from the
                                // store; a failed upload only delays it.
                                if let Err(err) = storage.push_live(&id, attempt, &changed).await {
                                    tracing::warn!(%err, "cannot upload the live stream");
                                }
                            }
                            Err(err) => {
                                // A piece the packager cannot take ends live
                                // playback for this job; the final video is unaffected.
                                tracing::warn!(%err, "live stream stopped");
                                broken = true;
                            }
                        }
                    }
                    Err(_) => return,
                }
            }
            let ended = tokio::task::spawn_blocking(move || live.end())
                .await
                .unwrap_or(Ok(()));
            match ended {
                Ok(()) => {
                    let playlist = ["live.m3u8".to_owned()];
                    if let Err(err) = storage.push_live(&id, attempt, &playlist).await {
                        tracing::warn!(%err, "cannot upload the live stream");
                    }
                    storage.end_live(&id, attempt).await;
                }
                Err(err) => tracing::warn!(%err, "cannot end the live stream"),
            }
        })
    }

    /// Applies progress to the job, fans it out at once, and saves it at
    /// most twice a second.
    fn spawn_progress(
        &self,
        id: JobId,
        attempt: u32,
        mut rx: mpsc::Receiver<Progress>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let hub = Arc::clone(&self.hub);
        let owner = self.owner.clone();
        tokio::spawn(async move {
            let mut progress = JobProgress::default();
            let mut saved = Instant::now();
            let mut dirty = false;
            while let Some(p) = rx.recv().await {
                progress.apply(&p);
                hub.publish(&id, JobEvent::Progress(p));
                dirty = true;
                if saved.elapsed() >= Duration::from_millis(500) {
                    let _ = store.save_progress(&id, &owner, attempt, &progress).await;
                    saved = Instant::now();
                    dirty = false;
                }
            }
            if dirty {
                let _ = store.save_progress(&id, &owner, attempt, &progress).await;
            }
        })
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "manimd".into())
}
