//! Generation operations: queue a generation job, or make checked code
//! synchronously. Keys that requests bring go to memory only (`llm::Keys`).

use super::error::invalid;
use super::validate::check_narration;
use super::{Service, ServiceError};
use crate::api::{CodeGeneration, GenerationRequest};
use crate::generate::{self, GenEvent, Generation, Hooks, Outcome, Rendered, Task};
use crate::job_error::JobError;
use crate::jobs::{Claimed, Job, JobId};
use crate::llm::{LlmError, Route};
use crate::secret::Secret;
use crate::spec::{Engine, Format, Quality, RenderSpec};

/// A request's settings, checked.
struct Checked {
    task: Task,
    key: Option<Secret>,
    /// The provider its model calls go to.
    route: Route,
}

impl Service {
    /// `legacy`: the replaced system's `/generate`, whose callers' own keys
    /// go to its provider when this server has none (`Llm::route`).
    fn check_generation(
        &self,
        req: &GenerationRequest,
        legacy: bool,
    ) -> Result<Checked, ServiceError> {
        let prompt = req.prompt.trim();
        if prompt.is_empty() {
            return Err(invalid("prompt", "prompt is empty"));
        }
        if prompt.chars().count() > generate::MAX_PROMPT_CHARS {
            return Err(invalid(
                "prompt",
                format!(
                    "prompt is longer than {} characters",
                    generate::MAX_PROMPT_CHARS
                ),
            ));
        }
        if prompt.contains('\0') {
            return Err(invalid("prompt", "prompt contains a NUL byte"));
        }
        let max_attempts = req.max_attempts.unwrap_or(generate::DEFAULT_ATTEMPTS);
        if !(1..=generate::MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(invalid(
                "max_attempts",
                format!(
                    "max_attempts must be between 1 and {}",
                    generate::MAX_ATTEMPTS
                ),
            ));
        }
        check_narration(
            req.narration.unwrap_or(false),
            req.format.unwrap_or(Format::Mp4),
        )?;
        let key = req.api_key.clone().and_then(Secret::new);
        let route = self.parts.llm.route(legacy, key.is_some());
        // A key alone does not say where the model is: a base URL must be
        // configured (the legacy call's route has the replaced system's).
        if !self.parts.llm.provider(route).config().is_configured() {
            return Err(LlmError::NotConfigured.into());
        }
        Ok(Checked {
            task: Task {
                prompt: prompt.to_owned(),
                engine: req.engine.unwrap_or(Engine::Manim),
                narration: req.narration.unwrap_or(false),
                max_attempts,
            },
            key,
            route,
        })
    }

    /// Stores a queued generation job; the executor runs its pipeline.
    pub async fn generate(
        &self,
        req: GenerationRequest,
        owner: Option<&str>,
    ) -> Result<Job, ServiceError> {
        self.queue_generation(req, owner, false).await
    }

    /// `generate` for the replaced system's `/generate`: a request that
    /// brings its own key to a server without a provider goes to the
    /// replaced system's provider (Groq) with that key, as it did there.
    pub async fn legacy_generate(
        &self,
        req: GenerationRequest,
        owner: Option<&str>,
    ) -> Result<Job, ServiceError> {
        self.queue_generation(req, owner, true).await
    }

    async fn queue_generation(
        &self,
        req: GenerationRequest,
        owner: Option<&str>,
        legacy: bool,
    ) -> Result<Job, ServiceError> {
        if self.is_draining() {
            return Err(ServiceError::ShuttingDown);
        }
        let Checked { task, key, route } = self.check_generation(&req, legacy)?;
        self.check_capacity(owner).await?;
        let spec = RenderSpec {
            code: String::new(),
            scenes: vec![],
            engine: task.engine,
            quality: req.quality.unwrap_or(Quality::Low),
            format: req.format.unwrap_or(Format::Mp4),
            fps: None,
            seed: None,
            encoding: Default::default(),
            narration: task.narration,
            cache: true,
            parallel: Default::default(),
            project: None,
        };
        let generation = Generation::new(
            task.prompt,
            task.max_attempts,
            task.narration,
            key.is_some(),
        );
        let id = JobId::new();
        // A request's key lives only in this process's memory. On a shared
        // store, any node's worker could claim the job and would not have the
        // key, so such a job is stored already claimed by this node and runs
        // here (even on an API node without workers). Its lease works as
        // usual: if this node dies, the job goes back to the queue and ends
        // with `llm-key-lost` on whichever worker claims it.
        let here = key.is_some() && self.parts.store.is_shared();
        let slot = if here {
            let permit = self.local_generation_slot()?;
            // Taken before the claim, like a worker's: a graceful stop waits
            // for this job from its insertion on.
            let slot = self
                .parts
                .control
                .slot()
                .ok_or(ServiceError::ShuttingDown)?;
            Some((slot, permit))
        } else {
            None
        };
        // The key is in place before the job exists, so no worker can claim
        // the job without it.
        if let Some(key) = key {
            self.parts.llm.keys.insert(&id, key, route);
        }
        let claim = here.then(|| (self.executor.owner(), self.executor.lease()));
        let job = match self
            .parts
            .store
            .insert_generation(&id, &spec, owner, &generation, claim)
            .await
        {
            Ok(job) => job,
            Err(e) => {
                self.parts.llm.keys.remove(&id);
                return Err(e.into());
            }
        };
        if let Some((slot, permit)) = slot {
            self.executor.run_here(
                Claimed {
                    job: job.clone(),
                    attempt: 1,
                },
                slot,
                permit,
            );
        } else {
            self.parts.control.wake();
        }
        Ok(job)
    }

    /// Plans, writes and checks code (repairing what the checks find),
    /// without rendering it.
    pub async fn generate_code(
        &self,
        req: GenerationRequest,
    ) -> Result<CodeGeneration, ServiceError> {
        if self.is_draining() {
            return Err(ServiceError::ShuttingDown);
        }
        let Checked { task, key, route } = self.check_generation(&req, false)?;
        let _slot = self.local_generation_slot()?;
        let mut generation = Generation::new(
            task.prompt.clone(),
            task.max_attempts,
            task.narration,
            key.is_some(),
        );
        let hooks = CheckOnly { svc: self };
        match generate::run(
            self.parts.llm.provider(route),
            key.as_ref(),
            &task,
            &mut generation,
            &hooks,
        )
        .await
        {
            Outcome::Done { code, .. } => Ok(CodeGeneration {
                code,
                engine: task.engine,
                storyboard: generation.storyboard.clone().unwrap_or_default(),
                prompt_tokens: generation.totals.prompt_tokens,
                completion_tokens: generation.totals.completion_tokens,
                attempts: generation.attempts,
            }),
            Outcome::Exhausted(error) => Err(ServiceError::GenerationFailed(error)),
            Outcome::Llm(e) => Err(e.into()),
            Outcome::Stopped => Err(ServiceError::ShuttingDown),
        }
    }
}

/// Hooks of the code-only call: sandboxed parse, no render, no record.
struct CheckOnly<'a> {
    svc: &'a Service,
}

impl Hooks for CheckOnly<'_> {
    fn event(&self, _event: GenEvent) {}

    async fn save(&self, _generation: &Generation) {}

    async fn inspect(&self, code: &str) -> Result<(), JobError> {
        generate::inspect_one_scene(&self.svc.parts.pool, code).await
    }

    async fn render(&self, _code: &str) -> Option<Rendered> {
        None
    }

    async fn stopped(&self) {
        std::future::pending().await
    }
}
