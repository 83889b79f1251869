//! The HTTP API's wire types: what clients send and what they get back.
//! Handlers, the CLI's `submit` and the tests share these.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::generate::{Attempt, Generation};
use crate::job_error::JobError;
use crate::jobs::{Job, JobId, JobProgress, JobResult, JobStatus, WebhookDelivery};
use crate::project::{Digest, FileMap};
use crate::render::{AnimationInfo, Preview};
use crate::spec::{Encoding, Engine, Format, Parallel, Quality};

/// `POST /v1/renders`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The scene file's Python source. Leave it out when sending `files`.
    #[serde(default)]
    pub code: String,
    /// A project: the files beside the scene file by relative path, each
    /// the file's UTF-8 text or `sha256:<64 hex>` for an uploaded blob
    /// (`PUT /v1/blobs/{digest}`). The scene file is `main`, inline text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub files: Option<FileMap>,
    /// With `files`: the scene file's path among them (`scene.py`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    /// With `files`: `sha256:<64 hex>` of an uploaded manifest, a JSON
    /// object from paths to blob references naming the project's other
    /// files, so that a project of many files is named by one digest.
    /// No path may be both in `files` and in the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub manifest: Option<Digest>,
    /// One scene to render. Give `scene` or `scenes`, or neither when the file has one scene.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    /// Scenes to render and stitch, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenes: Option<Vec<String>>,
    /// Detected from the imports when not given; `manim` when neither is imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// Default `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Default `mp4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Overrides the quality's frame rate (1-120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// Seeds Python's and NumPy's random generators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// `final` (default: x264's default preset) or `preview` (its fastest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narration: Option<bool>,
    /// `false`: render every animation, and keep none, instead of reusing
    /// the caller's cached animations (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// `"auto"` (default): a long render is split at animation boundaries
    /// over the free workers of the cluster and stitched without
    /// re-encoding; a number: at most that many chunks; `1`: never split.
    /// The video is the same either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<Parallel>,
    /// POSTed the job's record when it ends, signed (`X-Manimd-Signature`:
    /// `sha256=` HMAC-SHA256 of `"{X-Manimd-Timestamp}.{body}"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

/// `POST /v1/previews`: frames of one scene without a video, answered at once.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The scene file's Python source. Leave it out when sending `files`.
    #[serde(default)]
    pub code: String,
    /// A project, as in a render request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub files: Option<FileMap>,
    /// With `files`: the scene file's path among them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    /// With `files`: a manifest naming the project's other files, as in a
    /// render request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub manifest: Option<Digest>,
    /// The scene to preview; may be left out when the file has one scene.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    /// Detected from the imports when not given; `manim` when neither is imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// Default `low`: the frames' size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Overrides the quality's frame rate (1-120): the times frames fall on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// Seeds Python's and NumPy's random generators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// `storyboard` (the last frame of every animation) or `still` (one
    /// frame, with `at` or `animation`).
    pub kind: PreviewMode,
    /// A still at this many seconds into the scene (past the end: its last frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<f64>,
    /// A still at the end of this animation (0 is the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animation: Option<u32>,
}

/// What a preview draws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PreviewMode {
    #[default]
    Storyboard,
    Still,
}

/// A preview's answer: the scene's animations and the frames, whose PNGs
/// are kept for a short time.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreviewView {
    pub id: String,
    /// Every animation of the scene, as a render's `result.animations`.
    pub animations: Vec<AnimationInfo>,
    pub frames: Vec<PreviewFrameView>,
    /// The sandbox's time.
    pub wall_secs: f64,
}

/// One frame of a preview.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PreviewFrameView {
    /// The animation it ends (storyboard) or falls in (still).
    pub animation: u32,
    /// Seconds into the scene.
    pub time: f64,
    /// `GET` it for the PNG: `/v1/previews/{id}/frames/{n}.png`.
    pub url: String,
}

impl PreviewView {
    pub fn new(id: &JobId, preview: &Preview) -> PreviewView {
        PreviewView {
            id: id.to_string(),
            animations: preview.animations.clone(),
            frames: preview
                .frames
                .iter()
                .enumerate()
                .map(|(n, f)| PreviewFrameView {
                    animation: f.animation,
                    time: f.time,
                    url: format!("/v1/previews/{id}/frames/{n}.png"),
                })
                .collect(),
            wall_secs: preview.wall.as_secs_f64(),
        }
    }
}

/// `POST /v1/generations`: a scene made from a prompt, rendered like any job.
/// (`Debug` is written out to leave the key out.)
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    /// What the animation should show.
    pub prompt: String,
    /// Default `manim` (Manim Community).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// Default `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Default `mp4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// A spoken line per storyboard step (`narrate(...)` calls in the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narration: Option<bool>,
    /// Tries at working code, repairs included: default 3, at most 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The model provider's key for this request only: held in memory while
    /// the job runs, never stored, logged or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// `POST /generate`: the replaced system's synchronous generation call.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyGenerateRequest {
    pub prompt: String,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub quality: Option<Quality>,
    #[serde(default)]
    pub format: Option<Format>,
}

impl std::fmt::Debug for GenerationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationRequest")
            .field("prompt", &self.prompt)
            .field("engine", &self.engine)
            .field("quality", &self.quality)
            .field("format", &self.format)
            .field("narration", &self.narration)
            .field("max_attempts", &self.max_attempts)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl std::fmt::Debug for LegacyGenerateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyGenerateRequest")
            .field("prompt", &self.prompt)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("quality", &self.quality)
            .field("format", &self.format)
            .finish()
    }
}

/// `POST /v1/code/generations`: checked code, no render.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CodeGeneration {
    pub code: String,
    pub engine: Engine,
    pub storyboard: String,
    /// Every try, the last one the code returned.
    pub attempts: Vec<Attempt>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// `POST /render`: the replaced system's synchronous call.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyRenderRequest {
    #[serde(default)]
    pub code: String,
    /// A project, as in `POST /v1/renders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub files: Option<FileMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    /// A manifest, as in `POST /v1/renders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub manifest: Option<Digest>,
    #[serde(default)]
    pub scene_name: Option<String>,
    #[serde(default)]
    pub quality: Option<Quality>,
    #[serde(default)]
    pub format: Option<Format>,
}

/// `POST /v1/blobs/missing`: which of these blobs the caller has not uploaded.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MissingBlobsRequest {
    /// `sha256:<64 hex>` each; at most as many as a project has files.
    #[schema(value_type = Vec<String>)]
    pub digests: Vec<Digest>,
}

/// The answer of `POST /v1/blobs/missing`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct MissingBlobs {
    /// The digests asked about that this caller has not uploaded, in order.
    #[schema(value_type = Vec<String>)]
    pub missing: Vec<Digest>,
}

/// The answer of `PUT /v1/blobs/{digest}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BlobView {
    /// `sha256:<64 hex>`.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// `true` when these bytes were new (`201`), `false` when the caller
    /// had them already (`200`).
    pub created: bool,
}

/// Where a job's resources are.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: String,
    pub events: String,
    pub video: String,
    pub thumbnail: String,
    /// The live HLS playlist, growing while the job runs (video only).
    pub live: String,
    /// WebVTT subtitles of a narrated render, once it has succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitles: Option<String>,
}

/// Seconds a job spent waiting and rendering.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Timings {
    pub queued_secs: Option<f64>,
    pub render_secs: Option<f64>,
}

/// A render job as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub status: JobStatus,
    pub engine: Engine,
    pub quality: Quality,
    pub format: Format,
    pub fps: u32,
    pub seed: Option<u32>,
    pub encoding: Encoding,
    /// Scenes asked for; empty means the file's only scene.
    pub scenes: Vec<String>,
    /// Attempts started so far (a restart mid-render re-queues the job).
    pub attempts: u32,
    /// RFC 3339 timestamps.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub timings: Timings,
    pub progress: JobProgress,
    /// The typed error of a failed or canceled job: `code`, `message`, and
    /// `line`/`column` etc. where they apply.
    #[schema(value_type = Option<Object>)]
    pub error: Option<JobError>,
    pub result: Option<JobResult>,
    pub links: Links,
    /// `render`, or `generation` for a job made from a prompt.
    #[serde(default = "render_kind")]
    pub kind: String,
    /// A generation's prompt, storyboard and attempts (code, typed error,
    /// tokens, render seconds) with their totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
    /// The delivery of the job's `webhook_url`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
}

/// Where a job's webhook delivery stands. Deliveries are kept in the job
/// store, so they survive a restart and are retried by whichever node runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    /// `pending` (the job has not ended, or an attempt is due),
    /// `delivered` (the receiver answered 2xx) or `failed` (every attempt failed).
    pub state: WebhookState,
    /// Attempts made so far.
    pub attempts: u32,
    /// The receiver's HTTP status at the last attempt, when it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (RFC 3339), after a failed one.
    pub next_attempt_at: Option<String>,
    /// When the receiver took it (RFC 3339).
    pub delivered_at: Option<String>,
}

/// See `WebhookView::state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookState {
    Pending,
    Delivered,
    Failed,
}

impl From<&WebhookDelivery> for WebhookView {
    fn from(d: &WebhookDelivery) -> WebhookView {
        let state = match (d.delivered_ms, d.gave_up_ms) {
            (Some(_), _) => WebhookState::Delivered,
            (None, Some(_)) => WebhookState::Failed,
            (None, None) => WebhookState::Pending,
        };
        WebhookView {
            state,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            next_attempt_at: d.next_ms.map(rfc3339),
            delivered_at: d.delivered_ms.map(rfc3339),
        }
    }
}

fn render_kind() -> String {
    "render".into()
}

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> JobView {
        let base = format!("/v1/renders/{}", job.id);
        let secs = |a: i64, b: i64| (b - a) as f64 / 1000.0;
        JobView {
            id: job.id.to_string(),
            status: job.status,
            engine: job.spec.engine,
            quality: job.spec.quality,
            format: job.spec.format,
            fps: job.spec.fps(),
            seed: job.spec.seed,
            encoding: job.spec.encoding,
            scenes: job.spec.scenes.iter().map(|s| s.to_string()).collect(),
            attempts: job.attempts,
            created_at: rfc3339(job.created_ms),
            started_at: job.started_ms.map(rfc3339),
            finished_at: job.finished_ms.map(rfc3339),
            timings: Timings {
                queued_secs: job.started_ms.map(|s| secs(job.created_ms, s)),
                render_secs: job.result.as_ref().map(|r| r.render_secs),
            },
            progress: job.progress.clone(),
            error: job.error.clone(),
            result: job.result.clone(),
            kind: if job.generation.is_some() {
                "generation".into()
            } else {
                render_kind()
            },
            generation: job.generation.clone(),
            webhook: job.webhook.as_ref().map(WebhookView::from),
            links: Links {
                events: format!("{base}/events"),
                video: format!("{base}/video"),
                thumbnail: format!("{base}/thumbnail"),
                live: format!("{base}/live.m3u8"),
                subtitles: (job.spec.narration
                    || job.result.as_ref().is_some_and(|r| r.narration.is_some()))
                .then(|| format!("{base}/subtitles")),
                this: base,
            },
        }
    }
}

/// `GET /v1/renders`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub renders: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// How the API presents itself to the clients of a system it replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compat {
    /// The replaced manim-api: `/health` answers in its form, so its
    /// clients' health checks (a `status` that starts with `ALIVE`) pass.
    ManimApi,
}

/// The body of every error response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The body of the replaced system's calls' errors (`/render`,
/// `/generate`): the usual error, and `detail`, the one string its
/// clients read.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LegacyErrorBody {
    pub error: ErrorDetail,
    /// The message, after `line N: ` when the error has the author's line.
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, kebab-case: clients match on it.
    pub code: String,
    pub message: String,
    /// The request field at fault, for `invalid-request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// Further fields of the error's kind (`scene`, `available`, `traceback`, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Memory {
    pub rss_bytes: u64,
    pub vms_bytes: u64,
    /// RSS as a percentage of the machine's memory.
    pub percent: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Workers {
    pub busy: u64,
    pub idle: u64,
    /// Warm sandboxes (engine imported) waiting for a job.
    pub warm: u64,
    /// Memory used by all sandboxes now, running and warm.
    pub rss_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    pub depth: u64,
    pub capacity: u64,
}

/// `GET /health`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `draining` while the server shuts down. With `--compat
    /// manim-api`: `ALIVE_V<version>` (`ALIVE_V0_1_0`), or
    /// `DRAINING_V<version>`.
    pub status: String,
    /// `manimd`; with `--compat manim-api`, `manim-video-streaming-api`.
    pub service: String,
    pub version: String,
    pub uptime_secs: u64,
    pub memory: Memory,
    pub workers: Workers,
    pub queue: Queue,
    pub storage: StorageInfo,
    /// The job store: `sqlite` (embedded, one node) or `postgres` (shared
    /// by every node).
    pub database: String,
}

/// Where finished files are kept (never an address or a credential).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StorageInfo {
    /// `local` or `s3`.
    pub backend: String,
    /// `proxy` (streamed by this server) or `redirect` (presigned URLs).
    pub serve: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EngineInfo {
    pub name: Engine,
    pub version: String,
    pub installed: bool,
    /// How files written for it start.
    pub import: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QualityInfo {
    pub name: Quality,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FormatInfo {
    pub name: Format,
    pub content_type: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitsInfo {
    pub wall_secs: u64,
    pub memory_mib: u64,
    pub pids: u64,
    pub output_mib: u64,
    pub max_body_bytes: u64,
    pub max_fps: u32,
    pub network: bool,
    /// A project's most files, bytes in all, and bytes in one file (blob).
    #[serde(default)]
    pub max_project_files: u64,
    #[serde(default)]
    pub max_project_bytes: u64,
    #[serde(default)]
    pub max_file_bytes: u64,
}

/// `GET /v1/capabilities`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Capabilities {
    pub engines: Vec<EngineInfo>,
    pub qualities: Vec<QualityInfo>,
    pub formats: Vec<FormatInfo>,
    pub limits: LimitsInfo,
    /// Whether LaTeX (`MathTex`, `Tex`) works on this server.
    pub tex: bool,
    pub sandbox: SandboxInfo,
    /// How `"narration": true` speaks.
    pub narration: NarrationInfo,
    /// Whether `/v1/generations` works: a model provider is configured.
    pub generation: bool,
    /// The plugins scenes may import, each pinned in its engine's venv.
    #[serde(default)]
    pub plugins: Vec<PluginInfo>,
}

/// A plugin of the allow-list (README, "Plugins").
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PluginInfo {
    /// The package's name on PyPI.
    pub name: String,
    /// The pinned version.
    pub version: String,
    /// The engine it works with.
    pub engine: Engine,
    /// What a scene writes to use it.
    pub import: String,
}

/// The speech provider of narrated renders (never its key).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NarrationInfo {
    /// `espeak` or `openai`.
    pub provider: String,
    pub voice: String,
    /// The model, for `openai`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Formats with a sound track, the only ones narration works with.
    pub formats: Vec<Format>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SandboxInfo {
    pub cgroup_version: u8,
}
