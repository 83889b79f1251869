//! Runs a claimed generation job: the generation pipeline with the
//! executor's sandboxes, store and event hub behind its hooks. The lease,
//! heartbeat, cancel and shutdown work as for any render.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::Executor;
use crate::control::{Run, Stop};
use crate::events::JobEvent;
use crate::generate::{self, GenEvent, Generation, Hooks, Outcome, Rendered, Task};
use crate::job_error::JobError;
use crate::jobs::{Job, JobId};
use crate::llm::{LlmError, Route};
use crate::protocol::Progress;
use crate::render::RenderError;
use crate::sandbox::Stopped;
use crate::spec::RenderSpec;

/// The pipeline's hooks for one claimed job.
struct JobHooks<'a> {
    exec: &'a Executor,
    id: JobId,
    attempt: u32,
    /// The spec, with the code of the latest attempt.
    spec: Mutex<RenderSpec>,
    /// Whose animation cache the attempts use.
    owner: String,
    run: &'a Run,
    /// The successful render, kept for publishing; with its warm start.
    rendered: Mutex<Option<(crate::render::Rendered, bool)>>,
    /// Scratch directories of this run's renders, removed at the end.
    scratch: Mutex<Vec<PathBuf>>,
    renders: std::sync::atomic::AtomicU32,
}

impl Hooks for JobHooks<'_> {
    fn event(&self, event: GenEvent) {
        self.exec
            .parts
            .hub
            .publish(&self.id, JobEvent::Generation(event));
    }

    async fn save(&self, generation: &Generation) {
        let mut spec = self.spec.lock().expect("spec lock").clone();
        if let Some(last) = generation.attempts.last() {
            spec.code = last.code.clone();
        }
        match self
            .exec
            .parts
            .store
            .save_generation(&self.id, &self.exec.owner, self.attempt, generation, &spec)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!("lease lost while saving the generation"),
            Err(err) => tracing::error!(%err, "cannot save the generation"),
        }
    }

    async fn inspect(&self, code: &str) -> Result<(), JobError> {
        generate::inspect_one_scene(&self.exec.parts.pool, code).await
    }

    async fn render(&self, code: &str) -> Option<Rendered> {
        let spec = {
            let mut spec = self.spec.lock().expect("spec lock");
            spec.code = code.to_owned();
            spec.clone()
        };
        let n = self.renders.fetch_add(1, Ordering::Relaxed);
        let scratch = self
            .exec
            .cfg
            .work_dir
            .join(format!("{}-{}-g{n}", self.id, self.attempt));
        self.scratch
            .lock()
            .expect("scratch lock")
            .push(scratch.clone());
        let (progress_tx, progress_rx) = mpsc::channel::<Progress>(256);
        let progress_task = self
            .exec
            .spawn_progress(self.id.clone(), self.attempt, progress_rx);
        // A generation has no live stream: a failed attempt's pieces would
        // not belong in it. Pieces stay in the scratch directory.
        // Moved in, so the progress task ends when the render does.
        let progress = move |p: Progress| {
            let _ = progress_tx.try_send(p);
        };
        let started = std::time::Instant::now();
        let (outcome, warm) = self
            .exec
            .render_in(&spec, &self.owner, &scratch, progress, self.run.stopped())
            .await;
        let _ = progress_task.await;
        let secs = started.elapsed().as_secs_f64();
        Some(match outcome {
            Ok(r) => {
                let secs = r.wall.as_secs_f64();
                *self.rendered.lock().expect("rendered lock") = Some((r, warm));
                Rendered::Ok { secs }
            }
            Err(RenderError::Stopped(Stopped::Canceled)) => Rendered::Stopped,
            Err(e) => {
                if e.is_internal() {
                    tracing::error!(err = %e, "a generated scene's render failed inside manimd");
                }
                Rendered::Failed {
                    error: e.to_error(),
                    secs,
                }
            }
        })
    }

    async fn stopped(&self) {
        self.run.stopped().await
    }
}

impl Executor {
    /// Runs the generation pipeline for a claimed job and records the outcome.
    pub(super) async fn run_generation(
        &self,
        job: &Job,
        attempt: u32,
        generation: Generation,
        run: &Run,
    ) {
        let id = job.id.clone();
        tracing::info!(engine = %job.spec.engine, "generation started");
        let hooks = JobHooks {
            exec: self,
            id: id.clone(),
            attempt,
            spec: Mutex::new(job.spec.clone()),
            owner: job
                .owner
                .clone()
                .unwrap_or_else(|| crate::animcache::LOCAL_OWNER.into()),
            run,
            rendered: Mutex::new(None),
            scratch: Mutex::new(Vec::new()),
            renders: Default::default(),
        };
        let outcome = self.generate(job, generation, &hooks).await;
        let mut final_job = job.clone();
        final_job.spec = hooks.spec.lock().expect("spec lock").clone();
        let rendered = hooks.rendered.lock().expect("rendered lock").take();
        self.record_generation(&final_job, attempt, outcome, rendered, run.reason())
            .await;
        for dir in hooks.scratch.lock().expect("scratch lock").drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
        self.parts.llm.keys.remove(&id);
    }

    /// Runs the pipeline from the start with the job's key, unless the
    /// request brought a key that this process no longer has.
    async fn generate(
        &self,
        job: &Job,
        mut generation: Generation,
        hooks: &JobHooks<'_>,
    ) -> Outcome {
        // A key the request brought lives in memory only; after a restart
        // it is gone, and the server's own key is not used in its place.
        let held = self.parts.llm.keys.get(&job.id);
        if generation.own_key && held.is_none() {
            return Outcome::Llm(LlmError::KeyLost);
        }
        let (key, route) = match held {
            Some((key, route)) => (Some(key), route),
            None => (None, Route::Configured),
        };
        // A re-queued generation starts over.
        generation.reset();
        let task = Task {
            prompt: generation.prompt.clone(),
            engine: job.spec.engine,
            narration: job.spec.narration,
            max_attempts: generation.max_attempts,
        };
        let provider = self.parts.llm.provider(route);
        generate::run(provider, key.as_ref(), &task, &mut generation, hooks).await
    }

    /// Records how the pipeline ended: the working scene's render (kept by
    /// the hooks) as a render's outcome, a stop as a stopped render, and
    /// anything else as a failure.
    async fn record_generation(
        &self,
        job: &Job,
        attempt: u32,
        outcome: Outcome,
        rendered: Option<(crate::render::Rendered, bool)>,
        reason: Option<Stop>,
    ) {
        match outcome {
            Outcome::Done { attempt: n, .. } => {
                tracing::info!(attempts = n, "generated a working scene");
                match rendered {
                    Some((r, warm)) => {
                        self.record(job, attempt, Ok(r), reason, warm, Default::default())
                            .await
                    }
                    None => self.fail(&job.id, attempt, JobError::internal()).await,
                }
            }
            Outcome::Stopped => {
                let stopped = Err(RenderError::Stopped(Stopped::Canceled));
                self.record(job, attempt, stopped, reason, false, Default::default())
                    .await
            }
            Outcome::Exhausted(error) => {
                tracing::info!(code = "generation-failed", "generation failed");
                self.fail(&job.id, attempt, error).await
            }
            Outcome::Llm(e) => {
                tracing::info!(code = %e.code(), "generation failed at the model");
                self.fail(&job.id, attempt, e.to_error()).await
            }
        }
    }
}
