//! Runs queued jobs: a bounded pool of workers that claim jobs from the
//! store, hold a lease with a heartbeat while they render, and record the
//! outcome with fenced writes. Cancellation and graceful shutdown reach a
//! running render through its stop signal.

mod generation;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument;

use crate::api::JobView;
use crate::bus;
use crate::components::Components;
use crate::events::{Hub, JobEvent};
use crate::jobs::{Claimed, Job, JobId, JobProgress, JobResult, JobStatus, Store};
use crate::limits::Limits;
use crate::llm::Llm;
use crate::metrics::{Metrics, Outcome};
use crate::pool::Pool;
use crate::render::{Progress, RenderError, Renderer};
use crate::sandbox::Stopped;
use crate::storage::Storage;
use crate::webhooks::Webhooks;

/// Why a running render is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The client canceled the job.
    Canceled,
    /// The server is shutting down: the job goes back to the queue.
    Shutdown,
}

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
    /// This process's lease owner name.
    owner: String,
    wake: Notify,
    stopping: watch::Sender<bool>,
    running: Mutex<HashMap<JobId, watch::Sender<Option<Stop>>>>,
    busy: AtomicUsize,
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
            owner: format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple()),
            wake: Notify::new(),
            stopping: watch::channel(false).0,
            running: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
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
    /// `slot` is held until the job ends.
    pub fn run_here(self: &Arc<Self>, claimed: Claimed, slot: tokio::sync::OwnedSemaphorePermit) {
        let me = Arc::clone(self);
        let span = tracing::info_span!("job", id = %claimed.job.id, attempt = claimed.attempt);
        tokio::spawn(
            async move {
                me.run(claimed).await;
                drop(slot);
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

    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// A job was queued: wake a worker now rather than at its next poll,
    /// here and on every node sharing the store.
    pub fn wake(&self) {
        self.wake_local();
        self.signal(bus::WAKE, String::new());
    }

    pub fn wake_local(&self) {
        self.wake.notify_one();
    }

    /// Stops a job whose cancel was recorded, wherever it runs; true when it
    /// runs in this process.
    pub fn cancel(&self, id: &JobId) -> bool {
        let here = self.cancel_local(id);
        if !here {
            self.signal(bus::CANCEL, id.to_string());
        }
        here
    }

    /// Stops a job running in this process; false when it runs nowhere here.
    pub fn cancel_local(&self, id: &JobId) -> bool {
        match self.running.lock().expect("running lock").get(id) {
            Some(tx) => {
                let _ = tx.send(Some(Stop::Canceled));
                true
            }
            None => false,
        }
    }

    /// Tells the other nodes (PostgreSQL only; a no-op on SQLite). Not
    /// awaited: the store already holds the state this signal hurries along.
    fn signal(&self, channel: &'static str, payload: String) {
        if !self.store.is_shared() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.notify(channel, &payload).await {
                tracing::warn!(%err, channel, "cannot signal the other nodes");
            }
        });
    }

    /// Stops claiming jobs, lets running renders finish within `grace`, then
    /// stops the rest and puts them back in the queue.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stopping.send(true);
        let deadline = Instant::now() + grace;
        while self.busy() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for tx in self.running.lock().expect("running lock").values() {
            let _ = tx.send(Some(Stop::Shutdown));
        }
        while self.busy() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn worker_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            if *stopping.borrow() {
                return;
            }
            match self.store.claim(&self.owner, self.cfg.lease).await {
                Ok(Some(claimed)) => {
                    let span =
                        tracing::info_span!("job", id = %claimed.job.id, attempt = claimed.attempt);
                    self.run(claimed).instrument(span).await
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopping.changed() => {}
                    }
                }
                Err(err) => {
                    tracing::error!(%err, "cannot claim a job");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Re-queues jobs whose lease expired (a worker that died elsewhere).
    async fn reaper_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.lease) => {}
                _ = stopping.changed() => return,
            }
            match self.store.reap_leases(false, self.cfg.max_attempts).await {
                Ok((requeued, failed)) if !requeued.is_empty() || !failed.is_empty() => {
                    tracing::warn!(?requeued, ?failed, "reaped expired leases");
                    self.wake();
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
                crate::service::notify(&self.webhooks, &job);
                self.hub.finish(id, JobEvent::Status(view));
            } else {
                self.hub.publish(id, JobEvent::Status(view));
            }
        }
    }

    async fn run(&self, claimed: Claimed) {
        let Claimed { job, attempt } = claimed;
        if let Some(generation) = job.generation.clone() {
            return self.run_generation(job, attempt, generation).await;
        }
        let id = job.id.clone();
        if self.finish_from_cache(&job, attempt).await {
            return;
        }
        self.busy.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, mut stop_rx) = watch::channel(None);
        if job.cancel_requested {
            let _ = stop_tx.send(Some(Stop::Canceled));
        }
        self.running
            .lock()
            .expect("running lock")
            .insert(id.clone(), stop_tx.clone());
        self.publish_status(&job);
        tracing::info!(engine = %job.spec.engine, "render started");

        let heartbeat = self.spawn_heartbeat(id.clone(), attempt, stop_tx);
        let (progress_tx, progress_rx) = mpsc::channel::<Progress>(256);
        let progress_task = self.spawn_progress(id.clone(), attempt, progress_rx);
        let (pieces_tx, pieces_rx) = mpsc::unbounded_channel::<std::path::PathBuf>();
        let live_task = self.spawn_live(id.clone(), attempt, pieces_rx);

        let scratch = self.cfg.work_dir.join(format!("{id}-{attempt}"));
        let mut warm_start = false;
        let outcome = match std::fs::create_dir_all(&scratch) {
            Ok(()) => {
                let stop = async {
                    let _ = stop_rx.wait_for(|s| s.is_some()).await;
                };
                // Progress is lossy by nature: a flood is dropped, not queued.
                // Finished pieces are not: each is a segment of the live stream.
                let progress = |p: Progress| {
                    if let Progress::PartialMovie {
                        piece: Some(piece), ..
                    } = &p
                    {
                        let _ = pieces_tx.send(piece.clone());
                    }
                    let _ = progress_tx.try_send(p);
                };
                match self.pool.take(job.spec.engine, &self.cfg.limits) {
                    Some(warm) => {
                        warm_start = true;
                        self.renderer
                            .render_warm(warm, &job.spec, &scratch, progress, stop)
                            .await
                    }
                    None => {
                        self.renderer
                            .render(&job.spec, &self.cfg.limits, &scratch, progress, stop)
                            .await
                    }
                }
            }
            Err(err) => Err(RenderError::Sandbox(crate::sandbox::SandboxError::Area(
                scratch.clone(),
                err,
            ))),
        };
        drop(progress_tx);
        drop(pieces_tx);
        let _ = progress_task.await;
        // The live stream is complete (EXT-X-ENDLIST) before the job ends.
        let _ = live_task.await;
        let reason = *stop_rx.borrow();
        // The lease stays alive while the files are published: an upload
        // to a bucket can outlast it.
        self.record(&job, attempt, outcome, reason, warm_start)
            .await;
        heartbeat.abort();
        let _ = std::fs::remove_dir_all(&scratch);
        self.running.lock().expect("running lock").remove(&id);
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.publish_current(&id).await;
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
                    let e = serde_json::json!({"code": "internal", "message": "internal error; the server log has the details"});
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
                let e = serde_json::json!({"code": "canceled", "message": "the job was canceled"});
                (JobStatus::Canceled, Some(e), None, 0.0)
            }
            Err(e) => {
                if e.is_internal() {
                    tracing::error!(err = %e, "render failed inside manimd");
                } else {
                    tracing::info!(code = e.code(), "render failed");
                }
                (JobStatus::Failed, Some(e.to_json()), None, 0.0)
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
        error: Option<&serde_json::Value>,
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
                self.wake();
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
        stop: watch::Sender<Option<Stop>>,
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
                        let _ = stop.send(Some(Stop::Canceled));
                        return;
                    }
                    Err(err) => tracing::error!(%err, "heartbeat failed"),
                }
                if let Ok(Some(job)) = store.get(&id).await {
                    if job.cancel_requested {
                        let _ = stop.send(Some(Stop::Canceled));
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
