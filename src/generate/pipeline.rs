//! The generation loop: plan, write, check, render, repair. What runs the
//! checks and the render, and where events and records go, is the caller's
//! (`Hooks`): the executor renders in a sandbox and saves to the store; the
//! code-only call checks and returns.

use super::{check_source, prompt, Attempt, GenEvent, Generation, Stage, Task};
use crate::job_error::{ErrorCode, JobError};
use crate::llm::{Completion, LlmError, Message, Provider};
use crate::secret::Secret;

/// What the caller provides.
// The futures are only awaited by concrete callers, which see their Send-ness.
#[allow(async_fn_in_trait)]
pub trait Hooks: Sync {
    fn event(&self, event: GenEvent);
    /// The record changed (the plan, an attempt): keep it.
    async fn save(&self, generation: &Generation);
    /// Parses the code in a sandbox; the typed error if it does not parse or
    /// defines no scene.
    async fn inspect(&self, code: &str) -> Result<(), JobError>;
    /// Renders the code; `None` when this run makes code only.
    async fn render(&self, code: &str) -> Option<Rendered>;
    /// Resolves when the job is to stop (canceled, shutting down).
    async fn stopped(&self);
}

/// How a render ended, as the pipeline needs to know it.
pub enum Rendered {
    Ok {
        secs: f64,
    },
    Failed {
        error: JobError,
        secs: f64,
    },
    /// Canceled or stopped for shutdown: no repair, the job ends here.
    Stopped,
}

pub enum Outcome {
    /// This attempt's code passed (and rendered, when rendering).
    Done {
        attempt: u32,
        code: String,
    },
    /// Every attempt failed; the job's error, with the last typed error.
    Exhausted(JobError),
    Stopped,
    Llm(LlmError),
}

/// Runs the pipeline, keeping `generation` up to date.
pub async fn run(
    provider: &Provider,
    key: Option<&Secret>,
    task: &Task,
    generation: &mut Generation,
    hooks: &impl Hooks,
) -> Outcome {
    let run = Run {
        provider,
        key,
        task,
        hooks,
    };
    let storyboard = match run.plan(generation).await {
        Ok(storyboard) => storyboard,
        Err(outcome) => return outcome,
    };
    let mut last: Option<(String, JobError)> = None;
    for number in 1..=task.max_attempts {
        let attempt = match run.attempt(number, &storyboard, last.as_ref()).await {
            Ok(attempt) => attempt,
            Err(outcome) => return outcome,
        };
        let code = attempt.code.clone();
        let error = attempt.error.clone();
        generation.attempts.push(attempt.clone());
        generation.sum();
        hooks.save(generation).await;
        hooks.event(GenEvent::Attempt(Box::new(attempt)));
        match error {
            None => {
                return Outcome::Done {
                    attempt: number,
                    code,
                }
            }
            Some(e) => last = Some((code, e)),
        }
    }
    match last {
        Some((_, last_error)) => Outcome::Exhausted(exhausted(task.max_attempts, last_error)),
        // No attempt at all (none allowed): nothing was tried.
        None => Outcome::Exhausted(JobError::new(
            ErrorCode::GenerationFailed,
            "no attempt was allowed",
        )),
    }
}

/// One run's fixed parts; an `Err` of its steps is how the run ends early
/// (stopped, or the model failed).
struct Run<'a, H> {
    provider: &'a Provider,
    key: Option<&'a Secret>,
    task: &'a Task,
    hooks: &'a H,
}

impl<H: Hooks> Run<'_, H> {
    /// Asks for the storyboard and records it (and its cost).
    async fn plan(&self, generation: &mut Generation) -> Result<String, Outcome> {
        self.hooks.event(GenEvent::Stage {
            stage: Stage::Planning,
            attempt: 0,
        });
        let messages = prompt::storyboard(&self.task.prompt, self.task.narration);
        let plan = self.ask(&messages, None).await?;
        let storyboard = plan.text.trim().to_owned();
        generation.storyboard = Some(storyboard.clone());
        generation.plan_prompt_tokens = plan.prompt_tokens;
        generation.plan_completion_tokens = plan.completion_tokens;
        generation.sum();
        self.hooks.save(generation).await;
        Ok(storyboard)
    }

    /// Attempt `number`: code from the model (written, or a repair of the
    /// last attempt's code with its error), checked, then rendered. The
    /// attempt's record says how it went; it is not saved yet.
    async fn attempt(
        &self,
        number: u32,
        storyboard: &str,
        last: Option<&(String, JobError)>,
    ) -> Result<Attempt, Outcome> {
        let task = self.task;
        let (stage, messages) = match last {
            None => (
                Stage::Writing,
                prompt::code(task.engine, task.narration, &task.prompt, storyboard),
            ),
            Some((code, error)) => (
                Stage::Repairing,
                prompt::repair(
                    task.engine,
                    task.narration,
                    &task.prompt,
                    storyboard,
                    code,
                    error,
                ),
            ),
        };
        self.stage(stage, number);
        let answer = self.ask(&messages, Some(number)).await?;
        let mut attempt = Attempt {
            number,
            code: prompt::strip_fences(&answer.text),
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
            tokens_estimated: answer.estimated,
            ..Attempt::default()
        };
        self.check_and_render(&mut attempt).await?;
        Ok(attempt)
    }

    /// Static checks and the sandbox's parse, then the render; a failure
    /// goes into the attempt with where it happened (`check`, `render`).
    async fn check_and_render(&self, attempt: &mut Attempt) -> Result<(), Outcome> {
        let number = attempt.number;
        self.stage(Stage::Checking, number);
        let checked = match check_source(&attempt.code, self.task.engine) {
            Ok(()) => self.hooks.inspect(&attempt.code).await,
            Err(e) => Err(e),
        };
        if let Err(error) = checked {
            attempt.error = Some(error);
            attempt.failed_in = Some("check".into());
            return Ok(());
        }
        self.stage(Stage::Rendering, number);
        match self.hooks.render(&attempt.code).await {
            None => {}
            Some(Rendered::Ok { secs }) => attempt.render_secs = Some(secs),
            Some(Rendered::Failed { error, secs }) => {
                attempt.render_secs = Some(secs);
                attempt.error = Some(error);
                attempt.failed_in = Some("render".into());
            }
            Some(Rendered::Stopped) => return Err(Outcome::Stopped),
        }
        Ok(())
    }

    fn stage(&self, stage: Stage, attempt: u32) {
        self.hooks.event(GenEvent::Stage { stage, attempt });
    }

    /// A model call; a stop or the model's failure ends the run.
    async fn ask(&self, messages: &[Message], attempt: Option<u32>) -> Result<Completion, Outcome> {
        match ask(self.provider, self.key, messages, self.hooks, attempt).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(Outcome::Stopped),
            Err(e) => Err(Outcome::Llm(e)),
        }
    }
}

/// The job error after the last attempt: says what the last one met, and
/// keeps that typed error (with its line) visible.
pub fn exhausted(attempts: u32, last_error: JobError) -> JobError {
    let message = format!(
        "no working scene after {attempts} attempt(s); the last one failed with {}: {}",
        last_error.code, last_error.message
    );
    let line = last_error.line();
    let mut e = JobError::new(ErrorCode::GenerationFailed, message)
        .with("attempts", attempts)
        .with("last_error", &last_error);
    if let Some(line) = line {
        e = e.with("line", line);
    }
    e
}

/// One model call that yields to a stop; deltas are sent a line at a time
/// so that a fast stream does not flood the event channel.
async fn ask(
    provider: &Provider,
    key: Option<&Secret>,
    messages: &[Message],
    hooks: &impl Hooks,
    attempt: Option<u32>,
) -> Result<Option<Completion>, LlmError> {
    let mut pending = String::new();
    let mut on_delta = |text: &str| {
        let Some(attempt) = attempt else { return };
        pending.push_str(text);
        if let Some(nl) = pending.rfind('\n') {
            let text: String = pending.drain(..=nl).collect();
            hooks.event(GenEvent::Delta { attempt, text });
        }
    };
    let result = tokio::select! {
        r = provider.chat(key, messages, &mut on_delta) => r,
        _ = hooks.stopped() => return Ok(None),
    };
    if let (Some(attempt), false) = (attempt, pending.is_empty()) {
        hooks.event(GenEvent::Delta {
            attempt,
            text: std::mem::take(&mut pending),
        });
    }
    result.map(Some)
}
