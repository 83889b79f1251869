//! Render jobs: their states, progress and results, and the durable store.

mod generations;
mod keys;
mod store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job_error::JobError;
use crate::protocol::Notice;
use crate::protocol::Progress;
use crate::spec::{Format, RenderSpec};

pub use keys::Keys;
pub use store::{
    Chunk, ChunkEnding, ChunkStatus, Claimed, ClaimedWebhook, Dialect, NewJob, Page, Store,
    StoreError, WebhookAttempt,
};

/// A job's id: a UUIDv7 as 32 lowercase hex digits (time-ordered).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    pub fn new() -> JobId {
        JobId(uuid::Uuid::now_v7().simple().to_string())
    }

    /// Parses strictly: anything but 32 lowercase hex digits is refused, so
    /// no user string ever reaches a path or a query as an id.
    pub fn parse(s: &str) -> Option<JobId> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| JobId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        JobId::new()
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

/// Where a running job is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    /// The scene being rendered.
    pub scene: Option<String>,
    pub scene_index: Option<u32>,
    pub scene_count: Option<u32>,
    /// The animation (a `play` or `wait` call) being rendered, 0-based.
    pub animation_index: Option<u32>,
    pub animation: Option<String>,
    /// Frames written so far in the current scene.
    pub frames: u64,
    /// Animations whose video pieces are finished, over all scenes.
    pub animations_done: u32,
}

impl JobProgress {
    pub fn apply(&mut self, p: &Progress) {
        match p {
            Progress::Ready { .. } => {}
            Progress::SceneStarted {
                scene,
                index,
                count,
            } => {
                self.scene = Some(scene.clone());
                self.scene_index = Some(*index);
                self.scene_count = Some(*count);
                self.animation_index = None;
                self.animation = None;
                self.frames = 0;
            }
            Progress::Animation { index, name, .. } => {
                self.animation_index = Some(*index);
                self.animation = Some(name.clone());
            }
            Progress::Frames { frames, .. } => self.frames = *frames,
            Progress::PartialMovie { .. } => self.animations_done += 1,
            Progress::SceneFinished { .. } | Progress::AwaitingPieces { .. } => {}
        }
    }
}

/// What a finished job delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    /// Seconds of video (0 for a still).
    pub duration: f64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
    pub frames: Option<u64>,
    pub codec: Option<String>,
    /// Size of the delivered file.
    pub bytes: u64,
    pub content_type: String,
    pub format: Format,
    /// True when the delivery is a PNG of the last frame.
    pub still: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
    pub engine_version: String,
    /// Wall-clock seconds of the sandboxed render.
    pub render_secs: f64,
    /// Seconds the engine itself took, from receiving the job to its result
    /// (no sandbox start, no engine import).
    #[serde(default)]
    pub engine_secs: Option<f64>,
    /// Peak resident memory of the render's largest process.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// The attempt whose files are served.
    pub attempt: u32,
    pub has_thumbnail: bool,
    /// The render ran in a warm sandbox (the engine was already imported).
    #[serde(default)]
    pub warm_start: bool,
    /// Served from the result cache: an identical request had been rendered.
    #[serde(default)]
    pub cache_hit: bool,
    /// The spoken lines of a narrated render.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narration: Option<NarrationResult>,
    /// Every animation, in order: its name, the author's line, its start
    /// and end in the video, and whether it came from the animation cache.
    #[serde(default)]
    pub animations: Vec<crate::render::AnimationInfo>,
    /// The seed the scene ran with: the request's, or the default (every
    /// render is seeded, so that it is the same wherever it runs).
    #[serde(default)]
    pub seed: Option<u32>,
    /// The chunks a split render was drawn in, in order (empty when it was
    /// not split; then `split` says why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkInfo>,
    /// Why the render was not split, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Notice>,
    /// Seconds of the quick pass that planned the split, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_secs: Option<f64>,
    /// A split render: seconds from the join's start to its own first
    /// animation, the other chunks' animations simulated meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_secs: Option<f64>,
    /// A split render: seconds from the moment the last chunk's pieces
    /// were all there (or the join's own drawing ended, if later) to the
    /// finished video: the stitch, the sound's mix and the thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stitch_secs: Option<f64>,
}

/// One chunk of a split render.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChunkInfo {
    pub index: u32,
    /// The first and last animation it drew (indices of `animations`).
    pub first_animation: u32,
    pub last_animation: u32,
    /// Seconds of video it holds.
    pub seconds: f64,
    /// The worker (lease owner) that drew it.
    pub node: String,
    /// Seconds its sandbox ran. The last chunk is drawn by the job's own
    /// render, which then awaits the others' pieces and stitches the
    /// video: its seconds end where its own animations were drawn.
    pub render_secs: f64,
}

/// What a narrated render said, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NarrationResult {
    /// Each `narrate()` line: seconds from the video's start, and its text.
    pub cues: Vec<crate::narration::Cue>,
    /// The WebVTT subtitles: `/v1/renders/{id}/subtitles`.
    pub subtitles_url: String,
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub status: JobStatus,
    pub spec: RenderSpec,
    /// Identifies identical requests (see `cache::key`).
    pub cache_key: Option<String>,
    /// The identical job this one waits for, instead of rendering itself.
    pub follows: Option<JobId>,
    /// The API key (its fingerprint) that submitted it, when keys are in use.
    pub owner: Option<String>,
    /// Where the job's record is POSTed when it ends.
    pub webhook_url: Option<String>,
    pub attempts: u32,
    pub cancel_requested: bool,
    pub progress: JobProgress,
    /// The typed error, as sent to clients (`code`, `message`, ...).
    pub error: Option<JobError>,
    pub result: Option<JobResult>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// A generation job's record (prompt, attempts, cost); `None` for a render.
    pub generation: Option<crate::generate::Generation>,
    /// The delivery of its webhook, when it has one (the outbox's row).
    pub webhook: Option<WebhookDelivery>,
}

/// Where a job's webhook delivery stands, as the outbox keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Attempts made so far.
    pub attempts: u32,
    /// The receiver's HTTP status at the last attempt, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due; `None` before the first (it follows
    /// the job's end) and once delivered or given up.
    pub next_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    /// Set when the last allowed attempt failed.
    pub gave_up_ms: Option<i64>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_parsed_strictly() {
        let id = JobId::new();
        assert_eq!(JobId::parse(id.as_str()), Some(id));
        for bad in [
            "",
            "../etc/passwd",
            "%2e%2e",
            "0123456789abcdef0123456789ABCDEF",
            "0123456789abcdef0123456789abcde\0",
            &"a".repeat(10_000),
        ] {
            assert_eq!(JobId::parse(bad), None, "{bad:?}");
        }
    }
}
