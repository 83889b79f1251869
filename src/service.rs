//! The render service's operations, independent of HTTP: submit, look up,
//! list, cancel or delete, wait. Handlers call one of these and map the
//! result; nothing here knows about status codes.

mod generations;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{self, JobView, RenderRequest};
use crate::cache::{self, KeyParts};
use crate::components::Components;
use crate::components::Llm;
use crate::control::Control;
use crate::events::{Hub, JobEvent};
use crate::executor::Executor;
use crate::job_error::{ErrorCode, ErrorKind, JobError};
use crate::jobs::{Job, JobId, JobStatus, NewJob, Page, Store, StoreError};
use crate::limits::Limits;
use crate::llm::LlmError;
use crate::metrics::{self, Metrics};
use crate::pool::Pool;
use crate::render::{RenderError, Renderer};
use crate::spec::{Engine, Format, Quality, RenderSpec, SceneName, MAX_FPS};
use crate::storage::{Object, ServeMode, Storage, StorageError};
use crate::webhooks::Webhooks;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; `field` names the part at fault.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The code cannot render (checked before queueing).
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("the queue is full ({capacity} jobs waiting); retry later")]
    QueueFull {
        capacity: u64,
        retry_after_secs: u64,
    },
    #[error("this API key already has {max} jobs queued or running; retry when one ends")]
    QuotaExceeded { max: u64, retry_after_secs: u64 },
    #[error("the server is shutting down; retry later")]
    ShuttingDown,
    /// Generations that run in this process (code only, or with the
    /// request's own key on a shared store) are at their cap.
    #[error("this server already runs {max} generations of its own; retry later")]
    GenerationsBusy { max: usize },
    #[error("no render with this id")]
    NotFound,
    #[error("the render has no {0} (yet)")]
    NotReady(&'static str),
    /// Subtitles exist only for narrated renders that succeeded.
    #[error("{0}")]
    NoSubtitles(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The model provider failed, or none is configured.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// No attempt at code passed its checks (`generation-failed`, with the
    /// last attempt's error).
    #[error("{}", .0.message)]
    GenerationFailed(JobError),
}

impl ServiceError {
    /// The stable code clients match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Invalid { .. } => ErrorCode::InvalidRequest,
            ServiceError::Render(e) => e.code(),
            ServiceError::QueueFull { .. } => ErrorCode::QueueFull,
            ServiceError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            ServiceError::ShuttingDown => ErrorCode::ShuttingDown,
            ServiceError::GenerationsBusy { .. } => ErrorCode::GenerationsBusy,
            ServiceError::NotFound => ErrorCode::NotFound,
            ServiceError::NotReady(_) => ErrorCode::NotReady,
            ServiceError::NoSubtitles(_) => ErrorCode::NoSubtitles,
            ServiceError::Store(_) => ErrorCode::Internal,
            ServiceError::Storage(e) => e.code(),
            ServiceError::Llm(e) => e.code(),
            ServiceError::GenerationFailed(e) => e.code,
        }
    }

    /// Seconds to wait before trying again, where waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServiceError::QueueFull {
                retry_after_secs, ..
            }
            | ServiceError::QuotaExceeded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ServiceError::ShuttingDown | ServiceError::GenerationsBusy { .. } => Some(5),
            ServiceError::Storage(StorageError::Remote(_)) => Some(5),
            _ => None,
        }
    }

    /// The error as clients see it; an internal one says nothing more.
    pub fn to_error(&self) -> JobError {
        let code = self.code();
        match self {
            ServiceError::Render(e) => e.to_error(),
            ServiceError::Llm(e) => e.to_error(),
            ServiceError::GenerationFailed(e) => e.clone(),
            _ if code.kind() == ErrorKind::Internal => JobError::internal(),
            ServiceError::Invalid { field, message } => {
                JobError::new(code, message.clone()).with("field", field)
            }
            ServiceError::Storage(StorageError::Remote(_)) => {
                JobError::new(code, "the file store cannot be reached; retry later")
            }
            ServiceError::Storage(_) => JobError::new(code, "no such file"),
            _ => JobError::new(code, self.to_string()),
        }
    }
}

/// Narration needs a format with a sound track.
fn check_narration(narration: bool, format: Format) -> Result<(), ServiceError> {
    if narration && matches!(format, Format::Gif | Format::Png) {
        return Err(invalid(
            "narration",
            format!(
                "{} has no sound track: narration needs mp4, mov or webm",
                format.extension()
            ),
        ));
    }
    Ok(())
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub queue_capacity: u64,
    /// Queued and running jobs allowed per API key.
    pub max_jobs_per_owner: u64,
    pub limits: Limits,
    pub max_body_bytes: u64,
    /// Whether finished files are streamed or redirected to the store.
    pub storage_serve: ServeMode,
}

/// How a finished file reaches the client.
pub enum Delivery {
    /// Its bytes, streamed by this server.
    Stream(Object),
    /// A presigned URL of the object store.
    Redirect(String),
}

pub struct Service {
    pub cfg: ServiceConfig,
    pub store: Store,
    pub renderer: Arc<Renderer>,
    pub pool: Arc<Pool>,
    pub executor: Arc<Executor>,
    pub webhooks: Arc<Webhooks>,
    pub hub: Arc<Hub>,
    pub storage: Storage,
    pub metrics: Arc<Metrics>,
    pub llm: Arc<Llm>,
    pub control: Arc<Control>,
    pub started: Instant,
    draining: AtomicBool,
    /// Bounds the generations that run here rather than in a worker loop.
    pub(crate) local_generations: Arc<tokio::sync::Semaphore>,
    local_generations_max: usize,
}

impl Service {
    pub fn new(cfg: ServiceConfig, parts: Components, executor: Arc<Executor>) -> Service {
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
        // Mostly waiting on the model; each may also start a sandbox.
        let local_generations_max = executor.workers().max(1) * 2;
        Service {
            cfg,
            store,
            renderer,
            pool,
            executor,
            webhooks,
            hub,
            storage,
            metrics,
            llm,
            control,
            started: Instant::now(),
            draining: AtomicBool::new(false),
            local_generations: Arc::new(tokio::sync::Semaphore::new(local_generations_max)),
            local_generations_max,
        }
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A slot for a generation that runs in this process, or `GenerationsBusy`.
    pub(crate) fn local_generation_slot(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ServiceError> {
        Arc::clone(&self.local_generations)
            .try_acquire_owned()
            .map_err(|_| ServiceError::GenerationsBusy {
                max: self.local_generations_max,
            })
    }

    /// Checks a request, checks its code in a sandbox (syntax, scenes), and
    /// stores it as a queued job. The job is durable when this returns.
    pub async fn submit(
        &self,
        req: RenderRequest,
        owner: Option<&str>,
    ) -> Result<Job, ServiceError> {
        if self.is_draining() {
            return Err(ServiceError::ShuttingDown);
        }
        if req.code.trim().is_empty() {
            return Err(invalid("code", "code is empty"));
        }
        if req.code.contains('\0') {
            return Err(invalid("code", "code contains a NUL byte"));
        }
        let scenes = match (req.scene, req.scenes) {
            (Some(_), Some(_)) => {
                return Err(invalid("scene", "give `scene` or `scenes`, not both"))
            }
            (Some(one), None) => vec![one],
            (None, Some(many)) => many,
            (None, None) => vec![],
        };
        let scenes = scenes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<SceneName>()
                    .map_err(|e| invalid(&format!("scenes[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(fps) = req.fps {
            if fps == 0 || fps > MAX_FPS {
                return Err(invalid(
                    "fps",
                    format!("fps must be between 1 and {MAX_FPS}"),
                ));
            }
        }
        let quality = req.quality.unwrap_or(Quality::Low);
        let format = req.format.unwrap_or(Format::Mp4);
        let encoding = req.encoding.unwrap_or_default();
        let narration = req.narration.unwrap_or(false);
        check_narration(narration, format)?;
        let webhook_url = req.webhook_url.as_deref();
        if let Some(url) = webhook_url {
            self.webhooks
                .check(url)
                .await
                .map_err(|e| invalid("webhook_url", e.to_string()))?;
        }
        let key = cache::key(&KeyParts {
            owner,
            code: &req.code,
            scenes: &scenes,
            engine: req.engine,
            quality,
            format,
            fps: req.fps.unwrap_or(quality.fps()),
            seed: req.seed,
            encoding,
            narration: narration.then(|| self.renderer.tts().config().identity()),
        });
        if let Some(job) = self.cached(&key, owner, webhook_url).await? {
            return Ok(job);
        }
        self.check_capacity(owner).await?;
        if let Some(job) = self.follow_in_flight(&key, owner, webhook_url).await? {
            return Ok(job);
        }

        let inspection = match self.pool.take_inspector() {
            Some(inspector) => self.renderer.inspect_with(inspector, &req.code).await?,
            None => self.renderer.inspect(&req.code).await?,
        };
        let known: Vec<String> = inspection.scenes.iter().map(|s| s.name.clone()).collect();
        let not_found = |message: String, scene: Option<&str>| {
            RenderError::User(Box::new(crate::protocol::UserError {
                code: "scene-not-found".into(),
                message,
                line: None,
                column: None,
                scene: scene.map(str::to_owned),
                exception: None,
                text: None,
                available: Some(known.clone()),
                tex_error: None,
                expression: None,
                traceback: vec![],
            }))
        };
        if scenes.is_empty() && known.len() > 1 {
            return Err(not_found(
                format!(
                    "the file defines several scenes ({}); name the ones to render",
                    known.join(", ")
                ),
                None,
            )
            .into());
        }
        if scenes.is_empty() && known.is_empty() {
            let e = crate::protocol::UserError {
                code: "no-scene".into(),
                message: "the file defines no Scene subclass".into(),
                line: None,
                column: None,
                scene: None,
                exception: None,
                text: None,
                available: None,
                tex_error: None,
                expression: None,
                traceback: vec![],
            };
            return Err(RenderError::User(Box::new(e)).into());
        }
        if let Some(missing) = scenes
            .iter()
            .find(|s| !known.iter().any(|k| k == s.as_str()))
        {
            return Err(not_found(
                format!(
                    "no scene named {:?}; the file defines: {}",
                    missing.as_str(),
                    known.join(", ")
                ),
                Some(missing.as_str()),
            )
            .into());
        }
        let spec = RenderSpec {
            code: req.code,
            scenes,
            engine: req.engine.or(inspection.engine).unwrap_or(Engine::Manim),
            quality,
            format,
            fps: req.fps,
            seed: req.seed,
            encoding,
            narration,
        };
        let job = self
            .store
            .insert(&NewJob {
                id: &JobId::new(),
                spec: &spec,
                cache_key: &key,
                follows: None,
                owner,
                webhook_url,
            })
            .await?;
        self.control.wake();
        Ok(job)
    }

    /// An identical request was rendered: a new job that shares its files,
    /// without any sandbox.
    async fn cached(
        &self,
        key: &str,
        owner: Option<&str>,
        webhook_url: Option<&str>,
    ) -> Result<Option<Job>, ServiceError> {
        let Some(source) = self.store.cached(key).await? else {
            return Ok(None);
        };
        let id = JobId::new();
        let Ok(result) = cache::share(&self.storage, &source, &id).await else {
            return Ok(None);
        };
        let new = NewJob {
            id: &id,
            spec: &source.spec,
            cache_key: key,
            follows: None,
            owner,
            webhook_url,
        };
        let job = self.store.insert_done(&new, &result).await?;
        self.metrics.cache_hit();
        self.webhooks.job_ended(&job);
        Ok(Some(job))
    }

    /// An identical request is queued or rendering: a new job that waits for
    /// it and gets its outcome, so both share one render.
    async fn follow_in_flight(
        &self,
        key: &str,
        owner: Option<&str>,
        webhook_url: Option<&str>,
    ) -> Result<Option<Job>, ServiceError> {
        let Some(leader) = self.store.in_flight(key).await? else {
            return Ok(None);
        };
        let Some(leader_job) = self.store.get(&leader).await? else {
            return Ok(None);
        };
        let job = self
            .store
            .insert(&NewJob {
                id: &JobId::new(),
                spec: &leader_job.spec,
                cache_key: key,
                follows: Some(&leader),
                owner,
                webhook_url,
            })
            .await?;
        // The leader may have ended in between and handed out its outcome
        // already: then this job is claimed like any other, and the claim
        // finds the cached result.
        if self
            .get(&leader, None)
            .await
            .map(|j| j.status.is_terminal())
            .unwrap_or(true)
        {
            self.store.unfollow(Some(&leader)).await?;
            self.control.wake();
        }
        Ok(Some(job))
    }

    async fn check_capacity(&self, owner: Option<&str>) -> Result<(), ServiceError> {
        if let Some(owner) = owner {
            let active = self.store.active(owner).await?;
            if active >= self.cfg.max_jobs_per_owner {
                return Err(ServiceError::QuotaExceeded {
                    max: self.cfg.max_jobs_per_owner,
                    retry_after_secs: 5,
                });
            }
        }
        let depth = self.store.count(JobStatus::Queued).await?;
        if depth >= self.cfg.queue_capacity {
            self.metrics.rejected();
            // About how long until a slot frees: a few renders' worth per worker.
            let per_worker = depth / self.executor.workers().max(1) as u64;
            return Err(ServiceError::QueueFull {
                capacity: self.cfg.queue_capacity,
                retry_after_secs: (per_worker * 2).clamp(1, 120),
            });
        }
        Ok(())
    }

    /// A job, as `owner` may see it: with API keys, only one's own jobs exist.
    pub async fn get(&self, id: &JobId, owner: Option<&str>) -> Result<Job, ServiceError> {
        match self.store.get(id).await? {
            Some(job) if owner.is_none() || job.owner.as_deref() == owner => Ok(job),
            _ => Err(ServiceError::NotFound),
        }
    }

    pub async fn list(
        &self,
        owner: Option<&str>,
        status: Option<JobStatus>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page, ServiceError> {
        let cursor = match cursor {
            None => None,
            Some(c) => {
                let parsed = c
                    .split_once('.')
                    .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, JobId::parse(id)?)));
                Some(parsed.ok_or_else(|| invalid("cursor", "malformed cursor"))?)
            }
        };
        if !(1..=100).contains(&limit) {
            return Err(invalid("limit", "limit must be between 1 and 100"));
        }
        Ok(self.store.list(owner, status, limit, cursor).await?)
    }

    /// Cancels a queued or running job; deletes a finished one and its files.
    /// Returns the job as it is afterwards (`None` once deleted).
    pub async fn cancel_or_delete(
        &self,
        id: &JobId,
        owner: Option<&str>,
    ) -> Result<Option<Job>, ServiceError> {
        self.get(id, owner).await?;
        match self.store.cancel(id).await? {
            None => Err(ServiceError::NotFound),
            Some(status) if status.is_terminal() => {
                // Files first: if the store fails, the record stays and the
                // delete can be retried, rather than orphaning the files.
                self.storage.delete(id).await?;
                self.store.delete(id).await?;
                Ok(None)
            }
            Some(JobStatus::Running) => {
                self.control.cancel(id);
                Ok(Some(self.get(id, owner).await?))
            }
            Some(_) => {
                // A canceled generation will not run: its key goes now.
                self.llm.keys.remove(id);
                if let Ok(job) = self.get(id, owner).await {
                    self.webhooks.job_ended(&job);
                }
                // Jobs that waited for this one render on their own now.
                if self.store.unfollow(Some(id)).await? > 0 {
                    self.control.wake();
                }
                let job = self.get(id, owner).await?;
                self.hub.publish(
                    id,
                    JobEvent::Status(serde_json::to_value(JobView::from(&job)).unwrap_or_default()),
                );
                Ok(Some(job))
            }
        }
    }

    /// Waits until the job ends and returns it.
    pub async fn wait(&self, id: &JobId, owner: Option<&str>) -> Result<Job, ServiceError> {
        let mut rx = self.hub.subscribe(id);
        loop {
            let job = self.get(id, owner).await?;
            if job.status.is_terminal() {
                return Ok(job);
            }
            // Any event is a reason to look again; a periodic look covers a
            // lagging receiver.
            let _ = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        }
    }

    /// The video (or thumbnail) of a finished job, with its content type:
    /// a redirect to the store when configured and `may_redirect`, else
    /// the opened file.
    pub async fn file(
        &self,
        id: &JobId,
        thumbnail: bool,
        owner: Option<&str>,
        may_redirect: bool,
    ) -> Result<(Delivery, String, Job), ServiceError> {
        let job = self.get(id, owner).await?;
        let result = job
            .result
            .as_ref()
            .ok_or(ServiceError::NotReady(if thumbnail {
                "thumbnail"
            } else {
                "video"
            }))?;
        let (name, content_type) = if thumbnail {
            if !result.has_thumbnail {
                return Err(ServiceError::NotReady("thumbnail"));
            }
            ("thumbnail.png".to_owned(), "image/png".to_owned())
        } else {
            (
                format!("output.{}", result.format.extension()),
                result.content_type.clone(),
            )
        };
        let attempt = result.attempt;
        if may_redirect && self.cfg.storage_serve == ServeMode::Redirect {
            let expiry = crate::storage::PRESIGN_EXPIRY;
            if let Some(url) = self.storage.presign(id, attempt, &name, expiry).await? {
                return Ok((Delivery::Redirect(url), content_type, job));
            }
        }
        let object = match self.storage.object(id, attempt, &name).await {
            // The record is there but its files are gone: deleted meanwhile.
            Err(StorageError::NotFound) => return Err(ServiceError::NotFound),
            other => other?,
        };
        Ok((Delivery::Stream(object), content_type, job))
    }

    /// The WebVTT subtitles of a narrated job that succeeded.
    pub async fn subtitles(
        &self,
        id: &JobId,
        owner: Option<&str>,
    ) -> Result<(Object, Job), ServiceError> {
        let job = self.get(id, owner).await?;
        if !job.spec.narration {
            return Err(ServiceError::NoSubtitles(
                "the render was not narrated, so it has no subtitles",
            ));
        }
        let Some(result) = job.result.as_ref().filter(|r| r.narration.is_some()) else {
            return Err(ServiceError::NoSubtitles(
                "the render has not succeeded (yet), so it has no subtitles",
            ));
        };
        let object = match self
            .storage
            .object(id, result.attempt, crate::narration::SUBTITLES_FILE)
            .await
        {
            Err(StorageError::NotFound) => return Err(ServiceError::NotFound),
            other => other?,
        };
        Ok((object, job))
    }

    /// A file of the job's live stream (`live.m3u8`, `init.mp4`, `seg-N.m4s`)
    /// and its content type. While the job runs, the stream grows.
    pub async fn live_file(
        &self,
        id: &JobId,
        name: &str,
        owner: Option<&str>,
    ) -> Result<(Object, &'static str, Job), ServiceError> {
        if !crate::hls::is_stream_file(name) {
            return Err(ServiceError::NotFound);
        }
        let job = self.get(id, owner).await?;
        let attempt = job.result.as_ref().map_or(job.attempts, |r| r.attempt);
        let object = match self
            .storage
            .object(id, attempt, &format!("live/{name}"))
            .await
        {
            Err(StorageError::NotFound) => return Err(ServiceError::NotReady("live stream")),
            other => other?,
        };
        let content_type = match name {
            "live.m3u8" => "application/vnd.apple.mpegurl",
            "init.mp4" => "video/mp4",
            _ => "video/iso.segment",
        };
        Ok((object, content_type, job))
    }

    pub async fn health(&self) -> Result<api::Health, ServiceError> {
        let (rss, vms) = metrics::process_memory();
        let total = metrics::total_memory().max(1);
        let busy = self.executor.busy() as u64;
        let workers = self.executor.workers() as u64;
        Ok(api::Health {
            status: if self.is_draining() {
                "draining".into()
            } else {
                "ok".into()
            },
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: self.started.elapsed().as_secs(),
            memory: api::Memory {
                rss_bytes: rss,
                vms_bytes: vms,
                percent: (rss as f64 * 10000.0 / total as f64).round() / 100.0,
            },
            workers: api::Workers {
                busy,
                idle: workers.saturating_sub(busy),
                warm: self.executor.warm() as u64,
                rss_bytes: self.renderer.sandbox().memory_in_use(),
            },
            queue: api::Queue {
                depth: self.store.count(JobStatus::Queued).await?,
                capacity: self.cfg.queue_capacity,
            },
            database: self.store.dialect().name().into(),
            storage: api::StorageInfo {
                backend: self.storage.kind().into(),
                serve: match self.cfg.storage_serve {
                    ServeMode::Proxy => "proxy".into(),
                    ServeMode::Redirect => "redirect".into(),
                },
            },
        })
    }

    pub fn capabilities(&self) -> api::Capabilities {
        let runtime = self.renderer.runtime();
        let l = &self.cfg.limits;
        api::Capabilities {
            engines: Engine::ALL
                .into_iter()
                .map(|e| api::EngineInfo {
                    name: e,
                    version: crate::runtime::engine_version(e).into(),
                    installed: runtime.is_installed(e),
                    import: match e {
                        Engine::Manim => "from manim import *".into(),
                        Engine::Manimgl => "from manimlib import *".into(),
                    },
                })
                .collect(),
            qualities: Quality::ALL
                .into_iter()
                .map(|q| {
                    let (width, height) = q.resolution();
                    api::QualityInfo {
                        name: q,
                        width,
                        height,
                        fps: q.fps(),
                    }
                })
                .collect(),
            formats: Format::ALL
                .into_iter()
                .map(|f| api::FormatInfo {
                    name: f,
                    content_type: f.content_type().into(),
                })
                .collect(),
            limits: api::LimitsInfo {
                wall_secs: l.wall_secs,
                memory_mib: l.memory_mib,
                pids: l.pids,
                output_mib: l.output_mib,
                max_body_bytes: self.cfg.max_body_bytes,
                max_fps: MAX_FPS,
                network: l.network,
            },
            tex: crate::runtime::tex_available(),
            sandbox: api::SandboxInfo {
                cgroup_version: self.renderer.sandbox().cgroup_version(),
            },
            narration: {
                use crate::narration::TtsConfig;
                let (provider, voice, model) = match self.renderer.tts().config() {
                    TtsConfig::Espeak { voice } => ("espeak", voice.clone(), None),
                    TtsConfig::OpenAi { voice, model, .. } => {
                        ("openai", voice.clone(), Some(model.clone()))
                    }
                };
                api::NarrationInfo {
                    provider: provider.into(),
                    voice,
                    model,
                    formats: vec![Format::Mp4, Format::Mov, Format::Webm],
                }
            },
            generation: self.llm.is_configured(),
        }
    }

    pub async fn metrics_text(&self) -> String {
        let depth = self.store.count(JobStatus::Queued).await.unwrap_or(0);
        let (rss, _) = metrics::process_memory();
        self.metrics.render(
            depth,
            self.executor.busy() as u64,
            rss,
            self.renderer.sandbox().started_total(),
        )
    }

    /// Deletes finished jobs (and their files) older than `retention`.
    pub async fn expire(&self, retention: Duration) -> Result<usize, ServiceError> {
        let before = crate::jobs::now_ms() - retention.as_millis() as i64;
        let ids = self.store.expired(before).await?;
        let mut deleted = 0;
        for id in &ids {
            // Files first; a job whose files cannot be deleted now is kept
            // and tried again at the next expiry run.
            if let Err(err) = self.storage.delete(id).await {
                tracing::error!(%id, %err, "cannot delete an expired job's files");
                continue;
            }
            self.store.delete(id).await?;
            deleted += 1;
        }
        Ok(deleted)
    }
}
