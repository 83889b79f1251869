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
    hooks.event(GenEvent::Stage {
        stage: Stage::Planning,
        attempt: 0,
    });
    let plan = match ask(
        provider,
        key,
        &prompt::storyboard(&task.prompt, task.narration),
        hooks,
        None,
    )
    .await
    {
        Ok(Some(c)) => c,
        Ok(None) => return Outcome::Stopped,
        Err(e) => return Outcome::Llm(e),
    };
    let storyboard = plan.text.trim().to_owned();
    generation.storyboard = Some(storyboard.clone());
    generation.plan_prompt_tokens = plan.prompt_tokens;
    generation.plan_completion_tokens = plan.completion_tokens;
    generation.sum();
    hooks.save(generation).await;

    let mut last: Option<(String, JobError)> = None;
    for number in 1..=task.max_attempts {
        let (stage, messages) = match &last {
            None => (
                Stage::Writing,
                prompt::code(task.engine, task.narration, &task.prompt, &storyboard),
            ),
            Some((code, error)) => (
                Stage::Repairing,
                prompt::repair(
                    task.engine,
                    task.narration,
                    &task.prompt,
                    &storyboard,
                    code,
                    error,
                ),
            ),
        };
        hooks.event(GenEvent::Stage {
            stage,
            attempt: number,
        });
        let answer = match ask(provider, key, &messages, hooks, Some(number)).await {
            Ok(Some(c)) => c,
            Ok(None) => return Outcome::Stopped,
            Err(e) => return Outcome::Llm(e),
        };
        let code = prompt::strip_fences(&answer.text);
        let mut attempt = Attempt {
            number,
            code: code.clone(),
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
            tokens_estimated: answer.estimated,
            ..Attempt::default()
        };
        hooks.event(GenEvent::Stage {
            stage: Stage::Checking,
            attempt: number,
        });
        let checked = match check_source(&code, task.engine) {
            Ok(()) => hooks.inspect(&code).await,
            Err(e) => Err(e),
        };
        match checked {
            Err(error) => {
                attempt.error = Some(error);
                attempt.failed_in = Some("check".into());
            }
            Ok(()) => {
                hooks.event(GenEvent::Stage {
                    stage: Stage::Rendering,
                    attempt: number,
                });
                match hooks.render(&code).await {
                    None => {}
                    Some(Rendered::Ok { secs }) => attempt.render_secs = Some(secs),
                    Some(Rendered::Failed { error, secs }) => {
                        attempt.render_secs = Some(secs);
                        attempt.error = Some(error);
                        attempt.failed_in = Some("render".into());
                    }
                    Some(Rendered::Stopped) => return Outcome::Stopped,
                }
            }
        }
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
