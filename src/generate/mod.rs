//! Generation: from a prompt to a scene that renders. A storyboard from the
//! model, code for the chosen engine, static checks, a render, and repairs
//! with the typed error until it works or the attempts run out.
//!
//! The record of a generation (`Generation`) holds the prompt and every
//! attempt with its code, error and cost; it never holds a key.

mod check;
mod pipeline;
mod prompt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job_error::{ErrorCode, JobError};
use crate::scenes::{self, NoChoice};
use crate::spec::Engine;

pub use check::{check_source, context_lines};
pub use pipeline::{exhausted, run, Hooks, Outcome, Rendered};
pub use prompt::strip_fences;

/// Attempts when a request names none, and the most it may ask for.
pub const DEFAULT_ATTEMPTS: u32 = 3;
pub const MAX_ATTEMPTS: u32 = 5;
/// The longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 4000;

/// A step of the pipeline, as the event stream shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Planning,
    Writing,
    Checking,
    Rendering,
    Repairing,
}

/// One try at the code: what the model wrote, what it met, what it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    pub code: String,
    /// The typed error it met (`code`, `message`, `line`, ...); none when it worked.
    #[schema(value_type = Option<Object>)]
    pub error: Option<JobError>,
    /// `check` (static checks) or `render`: where the error came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_in: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The provider reported no usage; the counts are estimates.
    #[serde(default)]
    pub tokens_estimated: bool,
    /// Wall-clock seconds of this attempt's render, when it got that far.
    pub render_secs: Option<f64>,
}

/// Sums over the plan and all attempts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub render_secs: f64,
}

/// A generation job's record, stored next to the job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Generation {
    pub prompt: String,
    pub max_attempts: u32,
    pub narration: bool,
    /// The request brought its own key (held in memory only while the job runs).
    #[serde(default)]
    pub own_key: bool,
    pub storyboard: Option<String>,
    pub plan_prompt_tokens: u64,
    pub plan_completion_tokens: u64,
    pub attempts: Vec<Attempt>,
    pub totals: Totals,
}

impl Generation {
    pub fn new(prompt: String, max_attempts: u32, narration: bool, own_key: bool) -> Generation {
        Generation {
            prompt,
            max_attempts,
            narration,
            own_key,
            ..Generation::default()
        }
    }

    /// Recomputes `totals` from the plan and the attempts.
    pub fn sum(&mut self) {
        self.totals = Totals {
            prompt_tokens: self.plan_prompt_tokens
                + self.attempts.iter().map(|a| a.prompt_tokens).sum::<u64>(),
            completion_tokens: self.plan_completion_tokens
                + self
                    .attempts
                    .iter()
                    .map(|a| a.completion_tokens)
                    .sum::<u64>(),
            // A fold from +0.0: an empty f64 sum is -0.0.
            render_secs: self
                .attempts
                .iter()
                .filter_map(|a| a.render_secs)
                .fold(0.0, |a, b| a + b),
        };
    }

    /// Starts over: a re-queued job runs the whole pipeline again.
    pub fn reset(&mut self) {
        self.storyboard = None;
        self.plan_prompt_tokens = 0;
        self.plan_completion_tokens = 0;
        self.attempts.clear();
        self.sum();
    }
}

/// What a generation asks for, as the pipeline needs it.
#[derive(Clone, Debug)]
pub struct Task {
    pub prompt: String,
    pub engine: Engine,
    pub narration: bool,
    pub max_attempts: u32,
}

/// A step the event stream shows (SSE events `stage`, `delta`, `attempt`).
// Deserialize: the bus carries these between nodes. Untagged works because
// each variant has a field the ones before it lack (`stage`, `text`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum GenEvent {
    /// The pipeline entered a stage.
    #[schema(title = "StageEvent")]
    Stage { stage: Stage, attempt: u32 },
    /// Code as it streams from the model.
    #[schema(title = "DeltaEvent")]
    Delta { attempt: u32, text: String },
    /// An attempt ended: its record.
    Attempt(Box<Attempt>),
}

impl GenEvent {
    pub fn name(&self) -> &'static str {
        match self {
            GenEvent::Stage { .. } => "stage",
            GenEvent::Delta { .. } => "delta",
            GenEvent::Attempt(_) => "attempt",
        }
    }
}

/// Parses code in a sandbox (a ready inspector when the pool has one) and
/// wants exactly one scene; the typed error otherwise.
pub async fn inspect_one_scene(
    pool: &std::sync::Arc<crate::pool::Pool>,
    code: &str,
) -> Result<(), JobError> {
    let inspected = pool.inspect(code, &[]).await;
    let inspection = inspected.map_err(|e| {
        if e.is_internal() {
            tracing::error!(err = %e, "cannot inspect generated code");
        }
        e.to_error()
    })?;
    // Stricter than a render request: nobody names a scene here, and the
    // code must define exactly one (several is its own code, at the second
    // one's line, so that a repair knows what to remove).
    match scenes::choose(&inspection.scenes, &[]) {
        Ok(_) => Ok(()),
        Err(NoChoice::NoScene) => Err(JobError::new(
            ErrorCode::NoScene,
            "the file defines no Scene subclass; define exactly one",
        )),
        Err(NoChoice::Several { available }) => {
            let message = format!(
                "the file defines several scenes ({}); define exactly one",
                available.join(", ")
            );
            Err(JobError::new(ErrorCode::SeveralScenes, message)
                .with("line", inspection.scenes[1].line))
        }
        Err(NoChoice::Missing { .. }) => unreachable!("no scene was named"),
    }
}
