//! Submitting a render: the request's checks, then the cheapest way to an
//! answer first: a finished identical render (shared files, no sandbox), an
//! identical one in flight (followed), and only then a new queued job, once
//! the queue has room and the code's scenes are known to exist.

use super::error::{invalid, ServiceError};
use super::validate::{validate, Validated};
use super::Service;
use crate::api::RenderRequest;
use crate::cache::{self, KeyParts};
use crate::jobs::{Job, JobId, JobStatus, NewJob};
use crate::render::{Inspection, RenderError};
use crate::scenes;
use crate::spec::{Engine, RenderSpec, SceneName};

impl Service {
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
        let checked = validate(&req)?;
        let (code, project) = self
            .project_of(
                req.code,
                req.files.as_ref(),
                req.main.as_deref(),
                req.manifest.as_ref(),
                owner,
            )
            .await?;
        let webhook_url = req.webhook_url.as_deref();
        if let Some(url) = webhook_url {
            self.parts
                .webhooks
                .check(url)
                .await
                .map_err(|e| invalid("webhook_url", e.to_string()))?;
        }
        let key = self.cache_key(&code, project.as_ref(), &checked, owner);
        if let Some(job) = self.cached(&key, owner, webhook_url).await? {
            return Ok(job);
        }
        self.check_capacity(owner).await?;
        if let Some(job) = self.follow_in_flight(&key, owner, webhook_url).await? {
            return Ok(job);
        }
        // The project's blobs are looked up while its code is inspected:
        // a project of many files then costs little more than one file.
        let (blobs, inspection) = tokio::join!(
            self.check_blobs(&code, project.as_ref(), owner),
            self.inspect_scenes(&code, project.as_ref(), &checked.scenes),
        );
        blobs?;
        let inspection = inspection?;
        let spec = RenderSpec {
            // As requested: an empty list stays empty (the file's one
            // scene), as the cache key and the job's record say.
            scenes: checked.scenes,
            engine: checked
                .engine
                .or(inspection.engine)
                .unwrap_or(Engine::Manim),
            quality: checked.quality,
            format: checked.format,
            fps: checked.fps,
            seed: checked.seed,
            encoding: checked.encoding,
            narration: checked.narration,
            cache: checked.cache,
            parallel: checked.parallel,
            code,
            project,
        };
        let new = NewJob {
            id: &JobId::new(),
            spec: &spec,
            cache_key: &key,
            follows: None,
            owner,
            webhook_url,
        };
        let job = self.parts.store.insert(&new).await?;
        self.parts.control.wake();
        Ok(job)
    }

    /// What makes two requests the same render. The engine is the one
    /// requested (not yet detected) and narration counts with its voice.
    fn cache_key(
        &self,
        code: &str,
        project: Option<&crate::project::Project>,
        checked: &Validated,
        owner: Option<&str>,
    ) -> String {
        cache::key(&KeyParts {
            owner,
            code,
            project,
            scenes: &checked.scenes,
            engine: checked.engine,
            quality: checked.quality,
            format: checked.format,
            fps: checked.fps.unwrap_or(checked.quality.fps()),
            seed: checked.seed,
            encoding: checked.encoding,
            narration: checked
                .narration
                .then(|| self.parts.renderer.tts().config().identity()),
        })
    }

    /// Parses the code in a sandbox (a ready inspector when the pool has
    /// one) and checks that the scenes to render exist, so that a job that
    /// cannot render is refused now rather than failing in the queue.
    pub(super) async fn inspect_scenes(
        &self,
        code: &str,
        project: Option<&crate::project::Project>,
        named: &[SceneName],
    ) -> Result<Inspection, ServiceError> {
        // A project's other Python files, inline, say the engine when the
        // scene file imports it through one of them.
        let modules: Vec<&str> = project
            .into_iter()
            .flat_map(|p| p.files.iter())
            .filter(|(path, _)| path.ends_with(".py"))
            .filter_map(|(_, f)| match f {
                crate::project::FileRef::Text(text) => Some(text.as_str()),
                crate::project::FileRef::Blob(_) => None,
            })
            .take(200)
            .collect();
        let inspection = self.parts.pool.inspect(code, &modules).await?;
        scenes::choose(&inspection.scenes, named).map_err(RenderError::from)?;
        Ok(inspection)
    }

    /// An identical request was rendered: a new job that shares its files,
    /// without any sandbox.
    async fn cached(
        &self,
        key: &str,
        owner: Option<&str>,
        webhook_url: Option<&str>,
    ) -> Result<Option<Job>, ServiceError> {
        let Some(source) = self.parts.store.cached(key).await? else {
            return Ok(None);
        };
        let id = JobId::new();
        let Ok(result) = cache::share(&self.parts.storage, &source, &id).await else {
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
        let job = self.parts.store.insert_done(&new, &result).await?;
        self.parts.metrics.cache_hit();
        self.parts.webhooks.job_ended(&job);
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
        let Some(leader) = self.parts.store.in_flight(key).await? else {
            return Ok(None);
        };
        let Some(leader_job) = self.parts.store.get(&leader).await? else {
            return Ok(None);
        };
        let job = self
            .parts
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
            self.parts.store.unfollow(Some(&leader)).await?;
            self.parts.control.wake();
        }
        Ok(Some(job))
    }

    /// Room for one more job: the owner's quota, then the queue's capacity.
    pub(super) async fn check_capacity(&self, owner: Option<&str>) -> Result<(), ServiceError> {
        if let Some(owner) = owner {
            let active = self.parts.store.active(owner).await?;
            if active >= self.cfg.max_jobs_per_owner {
                return Err(ServiceError::QuotaExceeded {
                    max: self.cfg.max_jobs_per_owner,
                    retry_after_secs: 5,
                });
            }
        }
        let depth = self.parts.store.count(JobStatus::Queued).await?;
        if depth >= self.cfg.queue_capacity {
            self.parts.metrics.rejected();
            // About how long until a slot frees: a few renders' worth per worker.
            let per_worker = depth / self.executor.workers().max(1) as u64;
            return Err(ServiceError::QueueFull {
                capacity: self.cfg.queue_capacity,
                retry_after_secs: (per_worker * 2).clamp(1, 120),
            });
        }
        Ok(())
    }
}
