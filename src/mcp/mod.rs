//! The MCP server: the tools an assistant calls (`render`, `preview`,
//! `generate`, `get_job`, `capabilities`), written once over a `Backend`.
//! Two transports serve them: `manimd mcp` on stdio, whose backend is the
//! HTTP API through `client::Client` (`remote`), and `/mcp` on `serve`
//! (Streamable HTTP), whose backend is the service in-process
//! (`server::mcp`). The protocol itself is the official SDK's (`rmcp`).
//!
//! A failure the caller can act on (a scene's error with its line, a full
//! queue, an unknown job) is a tool result with `isError: true` whose text
//! starts with `[code]` and the line, never a protocol error: the assistant
//! reads it and fixes the scene. Protocol errors are kept for what the
//! protocol itself got wrong (an unknown tool, arguments of the wrong shape).

mod remote;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Extensions,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{
    Capabilities, ErrorDetail, GenerationRequest, JobView, PreviewRequest, PreviewView,
    RenderRequest,
};

pub use remote::{serve_stdio, Remote};

/// How long `wait` waits by default, and at most.
const DEFAULT_WAIT_SECS: u64 = 120;
const MAX_WAIT_SECS: u64 = 600;

/// What the tools need from a manimd server. `call` is what the transport
/// knows of this tool call (over HTTP, the request's parts, and so the
/// caller's key); a backend that speaks for one fixed caller ignores it.
/// Errors are the API's own error body: its `code`, `message` and `line`.
pub trait Backend: Send + Sync + 'static {
    fn capabilities(
        &self,
        call: &Extensions,
    ) -> impl Future<Output = Result<Capabilities, ErrorDetail>> + Send;
    fn submit(
        &self,
        call: &Extensions,
        req: RenderRequest,
    ) -> impl Future<Output = Result<JobView, ErrorDetail>> + Send;
    fn generate(
        &self,
        call: &Extensions,
        req: GenerationRequest,
    ) -> impl Future<Output = Result<JobView, ErrorDetail>> + Send;
    fn job(
        &self,
        call: &Extensions,
        id: &str,
    ) -> impl Future<Output = Result<JobView, ErrorDetail>> + Send;
    /// The job once it has ended, or as it is after `timeout`.
    fn wait(
        &self,
        call: &Extensions,
        id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<JobView, ErrorDetail>> + Send;
    fn preview(
        &self,
        call: &Extensions,
        req: PreviewRequest,
    ) -> impl Future<Output = Result<PreviewView, ErrorDetail>> + Send;
    /// The PNG of frame `n` of a preview this call's caller made.
    fn frame(
        &self,
        call: &Extensions,
        preview: &PreviewView,
        n: usize,
    ) -> impl Future<Output = Result<Vec<u8>, ErrorDetail>> + Send;
    /// Where the API's links (`/v1/renders/{id}/video`) resolve, when known.
    fn base_url(&self, call: &Extensions) -> Option<String>;
}

/// The tool set over a backend: an `rmcp` server handler.
pub struct Tools<B> {
    backend: Arc<B>,
}

impl<B> Clone for Tools<B> {
    fn clone(&self) -> Self {
        Tools {
            backend: Arc::clone(&self.backend),
        }
    }
}

/// `render`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderArgs {
    /// The scene file's Python source (Manim Community `from manim import *`, or ManimGL `from manimlib import *`).
    pub code: String,
    /// The Scene class to render; may be left out when the file has one scene.
    #[serde(default)]
    pub scene: Option<String>,
    /// Scenes to render and stitch together, in order (instead of `scene`).
    #[serde(default)]
    pub scenes: Option<Vec<String>>,
    /// Detected from the imports when not given.
    #[serde(default)]
    #[schemars(extend("enum" = ["manim", "manimgl"]))]
    pub engine: Option<String>,
    /// Default `low` (854x480, 15 fps).
    #[serde(default)]
    #[schemars(extend("enum" = ["low", "medium", "high", "production", "4k"]))]
    pub quality: Option<String>,
    /// Default `mp4`; `png` delivers the last frame.
    #[serde(default)]
    #[schemars(extend("enum" = ["mp4", "webm", "gif", "mov", "png"]))]
    pub format: Option<String>,
    /// Overrides the quality's frame rate (1-120).
    #[serde(default)]
    pub fps: Option<u32>,
    /// Seeds Python's and NumPy's random generators.
    #[serde(default)]
    pub seed: Option<u32>,
    /// `preview` encodes fastest; `final` (default) keeps x264's default preset.
    #[serde(default)]
    #[schemars(extend("enum" = ["preview", "final"]))]
    pub encoding: Option<String>,
    /// Speak the scene's `narrate("...")` lines into the video, with subtitles.
    #[serde(default)]
    pub narration: Option<bool>,
    /// Wait for the render to end (up to `timeout_secs`) and answer with the video's URL.
    #[serde(default)]
    pub wait: Option<bool>,
    /// How long `wait` waits, in seconds (default 120, at most 600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// `preview`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewArgs {
    /// The scene file's Python source.
    pub code: String,
    /// The Scene class; may be left out when the file has one scene.
    #[serde(default)]
    pub scene: Option<String>,
    /// `storyboard` (default): the last frame of every animation. `still`: one frame, at `at` seconds or at the end of animation `animation`.
    #[serde(default)]
    #[schemars(extend("enum" = ["storyboard", "still"]))]
    pub kind: Option<String>,
    /// For a still: the frame on screen this many seconds into the scene.
    #[serde(default)]
    pub at: Option<f64>,
    /// For a still: the last frame of this animation (0 is the first).
    #[serde(default)]
    pub animation: Option<u32>,
    /// Detected from the imports when not given.
    #[serde(default)]
    #[schemars(extend("enum" = ["manim", "manimgl"]))]
    pub engine: Option<String>,
    /// Default `low`: the frames' size.
    #[serde(default)]
    #[schemars(extend("enum" = ["low", "medium", "high", "production", "4k"]))]
    pub quality: Option<String>,
    /// Overrides the quality's frame rate (1-120).
    #[serde(default)]
    pub fps: Option<u32>,
    /// Seeds Python's and NumPy's random generators.
    #[serde(default)]
    pub seed: Option<u32>,
}

/// `generate`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateArgs {
    /// What the animation should show.
    pub prompt: String,
    /// Default `manim` (Manim Community).
    #[serde(default)]
    #[schemars(extend("enum" = ["manim", "manimgl"]))]
    pub engine: Option<String>,
    /// Default `low`.
    #[serde(default)]
    #[schemars(extend("enum" = ["low", "medium", "high", "production", "4k"]))]
    pub quality: Option<String>,
    /// Default `mp4`.
    #[serde(default)]
    #[schemars(extend("enum" = ["mp4", "webm", "gif", "mov", "png"]))]
    pub format: Option<String>,
    /// A spoken line per storyboard step.
    #[serde(default)]
    pub narration: Option<bool>,
    /// Tries at working code, repairs included: default 3, at most 5.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Wait for the job to end (up to `timeout_secs`) and answer with the video's URL and the code.
    #[serde(default)]
    pub wait: Option<bool>,
    /// How long `wait` waits, in seconds (default 120, at most 600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// `get_job`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobArgs {
    /// The job's id (32 hex digits), as `render` or `generate` gave it.
    pub id: String,
    /// Wait for the job to end (up to `timeout_secs`).
    #[serde(default)]
    pub wait: Option<bool>,
    /// How long `wait` waits, in seconds (default 120, at most 600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// `capabilities` takes nothing.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

const RENDER: &str = "Render a Manim scene to a video on the manimd server. Every scene runs in a \
    sandbox. Answers the job's id and status; with `wait`, waits for the end and answers the \
    video's URL (fetch it with the same API key, as `Authorization: Bearer`). A scene that \
    cannot render is a tool error whose text starts with the error's code and the line at fault.";
const PREVIEW: &str = "Draw frames of one scene without making a video, as PNG images: the \
    storyboard (the last frame of every animation) or one still. Every animation is simulated \
    frame by frame, so a frame is exactly the one a render shows. Fast: use it to check a \
    layout before rendering. Errors carry the code and line, like render's.";
const GENERATE: &str = "Generate a Manim scene from a prompt with the server's language model, \
    check it, render it and repair it on errors. Answers the job (follow it with get_job); with \
    `wait`, the video's URL and the final code. Works only when the server has a model \
    configured (see capabilities: `generation`).";
const GET_JOB: &str = "A render or generation job's status, progress, result (duration, size, \
    the animations with their lines) or typed error, and the video's URL once it succeeded.";
const CAPABILITIES: &str = "What this manimd server offers: engines and their versions, quality \
    presets, formats, limits, whether LaTeX works, narration, and whether `generate` works.";

impl<B: Backend> Tools<B> {
    pub fn new(backend: B) -> Tools<B> {
        Tools {
            backend: Arc::new(backend),
        }
    }

    /// Every tool; `generate` only when the server can generate.
    fn list(&self, generation: bool) -> Vec<Tool> {
        let read_only = || ToolAnnotations::new().read_only(true).open_world(false);
        let mut tools = vec![
            Tool::new("render", RENDER, schema::<RenderArgs>())
                .annotate(ToolAnnotations::new().read_only(false).destructive(false)),
            Tool::new("preview", PREVIEW, schema::<PreviewArgs>())
                .annotate(read_only().idempotent(true)),
            Tool::new("get_job", GET_JOB, schema::<JobArgs>()).annotate(read_only()),
            Tool::new("capabilities", CAPABILITIES, schema::<NoArgs>()).annotate(read_only()),
        ];
        if generation {
            tools.push(
                Tool::new("generate", GENERATE, schema::<GenerateArgs>())
                    .annotate(ToolAnnotations::new().read_only(false).destructive(false)),
            );
        }
        tools
    }

    async fn call(&self, name: &str, args: Value, call: &Extensions) -> Outcome {
        match name {
            "render" => self.render(parse(args)?, call).await,
            "preview" => self.preview(parse(args)?, call).await,
            "generate" => self.generate(parse(args)?, call).await,
            "get_job" => self.get_job(parse(args)?, call).await,
            "capabilities" => {
                let _: NoArgs = parse(args)?;
                let caps = self.backend.capabilities(call).await?;
                Ok(Answer::json("the server's capabilities", to_value(&caps)))
            }
            _ => Err(Failure::Protocol(ErrorData::invalid_params(
                format!("no tool named {name:?}"),
                None,
            ))),
        }
    }

    async fn render(&self, args: RenderArgs, call: &Extensions) -> Outcome {
        let req: RenderRequest = request(json!({
            "code": args.code,
            "scene": args.scene,
            "scenes": args.scenes,
            "engine": args.engine,
            "quality": args.quality,
            "format": args.format,
            "fps": args.fps,
            "seed": args.seed,
            "encoding": args.encoding,
            "narration": args.narration,
        }))?;
        let job = self.backend.submit(call, req).await?;
        self.job_answer(job, args.wait, args.timeout_secs, call)
            .await
    }

    async fn generate(&self, args: GenerateArgs, call: &Extensions) -> Outcome {
        let req: GenerationRequest = request(json!({
            "prompt": args.prompt,
            "engine": args.engine,
            "quality": args.quality,
            "format": args.format,
            "narration": args.narration,
            "max_attempts": args.max_attempts,
        }))?;
        let job = self.backend.generate(call, req).await?;
        self.job_answer(job, args.wait, args.timeout_secs, call)
            .await
    }

    async fn get_job(&self, args: JobArgs, call: &Extensions) -> Outcome {
        let job = self.backend.job(call, args.id.trim()).await?;
        self.job_answer(job, args.wait, args.timeout_secs, call)
            .await
    }

    /// The job, after waiting for its end when asked. A job that failed is
    /// a tool error, with its code and line.
    async fn job_answer(
        &self,
        job: JobView,
        wait: Option<bool>,
        timeout_secs: Option<u64>,
        call: &Extensions,
    ) -> Outcome {
        let job = if wait.unwrap_or(false) && !job.status.is_terminal() {
            let secs = timeout_secs
                .unwrap_or(DEFAULT_WAIT_SECS)
                .clamp(1, MAX_WAIT_SECS);
            self.backend
                .wait(call, &job.id, Duration::from_secs(secs))
                .await?
        } else {
            job
        };
        let base = self.backend.base_url(call);
        let summary = job_summary(&job, base.as_deref());
        let mut value = json!({
            "id": job.id,
            "status": job.status,
        });
        if job.status == crate::jobs::JobStatus::Succeeded {
            value["video_url"] = json!(absolute(base.as_deref(), &job.links.video));
            value["thumbnail_url"] = json!(absolute(base.as_deref(), &job.links.thumbnail));
        }
        if let Some(code) = job.generation.as_ref().and_then(generated_code) {
            value["code"] = json!(code);
        }
        value["job"] = to_value(&job);
        if let Some(error) = &job.error {
            let detail = detail_of(error);
            return Err(Failure::Tool(Box::new(detail), Some(value)));
        }
        Ok(Answer::json(&summary, value))
    }

    async fn preview(&self, args: PreviewArgs, call: &Extensions) -> Outcome {
        let req: PreviewRequest = request(json!({
            "code": args.code,
            "scene": args.scene,
            "kind": args.kind.unwrap_or_else(|| "storyboard".into()),
            "at": args.at,
            "animation": args.animation,
            "engine": args.engine,
            "quality": args.quality,
            "fps": args.fps,
            "seed": args.seed,
        }))?;
        let preview = self.backend.preview(call, req).await?;
        let mut lines = vec![format!(
            "{} frame(s) of {} animation(s), drawn in {:.2} s:",
            preview.frames.len(),
            preview.animations.len(),
            preview.wall_secs
        )];
        let mut content = Vec::new();
        for (n, frame) in preview.frames.iter().enumerate() {
            let animation = preview
                .animations
                .iter()
                .find(|a| a.index == frame.animation);
            lines.push(match animation {
                Some(a) => format!(
                    "frame {n}: animation #{} {}{} at {:.2} s",
                    a.index,
                    a.name,
                    a.line.map(|l| format!(" (line {l})")).unwrap_or_default(),
                    frame.time
                ),
                None => format!("frame {n}: at {:.2} s", frame.time),
            });
            let png = self.backend.frame(call, &preview, n).await?;
            content.push(ContentBlock::image(
                base64::engine::general_purpose::STANDARD.encode(png),
                "image/png",
            ));
        }
        let value = to_value(&preview);
        content.insert(0, ContentBlock::text(lines.join("\n")));
        let mut result = CallToolResult::success(content);
        result.structured_content = Some(value);
        Ok(Answer(result))
    }
}

impl<B: Backend> ServerHandler for Tools<B> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("manimd", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "manimd renders Manim scenes in a sandbox. Use `preview` to see a scene's \
                 storyboard quickly, `render` (with `wait`) for the video, `get_job` to follow \
                 a job. Errors name the code and the scene's line: fix that line and try again.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // A server that cannot answer is still listed; `generate` then waits
        // until it can say a model is configured.
        let generation = self
            .backend
            .capabilities(&context.extensions)
            .await
            .is_ok_and(|c| c.generation);
        Ok(ListToolsResult::with_all_items(self.list(generation)))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.list(true).into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        match self.call(&request.name, args, &context.extensions).await {
            Ok(Answer(result)) => Ok(result.into()),
            Err(Failure::Tool(detail, value)) => Ok(tool_error(&detail, value).into()),
            Err(Failure::Protocol(e)) => Err(e),
        }
    }
}

/// A tool's result.
struct Answer(CallToolResult);

impl Answer {
    /// A line for people, then the JSON, also as structured content.
    fn json(summary: &str, value: Value) -> Answer {
        let text = format!(
            "{summary}\n{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = Some(value);
        Answer(result)
    }
}

/// Why a tool call did not succeed: the API's error (a tool error, with
/// what is known beside it) or a malformed call (a protocol error).
#[derive(Debug)]
enum Failure {
    Tool(Box<ErrorDetail>, Option<Value>),
    Protocol(ErrorData),
}

impl From<ErrorDetail> for Failure {
    fn from(e: ErrorDetail) -> Failure {
        Failure::Tool(Box::new(e), None)
    }
}

type Outcome = Result<Answer, Failure>;

/// `isError: true`, the text opening with `[code] line N: message`, so an
/// assistant sees at once what failed and where; then the error's fields.
fn tool_error(detail: &ErrorDetail, value: Option<Value>) -> CallToolResult {
    let mut text = format!("[{}] ", detail.code);
    if let Some(line) = detail.line {
        text.push_str(&format!("line {line}: "));
    }
    text.push_str(&detail.message);
    let mut body = json!({ "error": detail });
    if let Some(Value::Object(more)) = value {
        body.as_object_mut().expect("an object").extend(more);
    }
    text.push('\n');
    text.push_str(&serde_json::to_string_pretty(&body).unwrap_or_default());
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(body);
    result
}

/// A tool's arguments; the wrong shape is the caller's protocol error.
fn parse<T: DeserializeOwned>(args: Value) -> Result<T, Failure> {
    serde_json::from_value(args)
        .map_err(|e| Failure::Protocol(ErrorData::invalid_params(e.to_string(), None)))
}

/// An API request from the tool's arguments (nulls left out), checked by
/// the API's own types: a bad value is `invalid-request`, as over HTTP.
fn request<T: DeserializeOwned>(mut value: Value) -> Result<T, Failure> {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    serde_json::from_value(value).map_err(|e| {
        Failure::Tool(
            Box::new(ErrorDetail {
                code: "invalid-request".into(),
                message: e.to_string(),
                field: None,
                line: None,
                column: None,
                details: Default::default(),
            }),
            None,
        )
    })
}

/// A job's error as the API's error body shows it (`line` beside `code`).
pub fn detail_of(error: &crate::job_error::JobError) -> ErrorDetail {
    serde_json::to_value(error)
        .and_then(serde_json::from_value)
        .unwrap_or_else(|_| ErrorDetail {
            code: error.code.as_str().to_owned(),
            message: error.message.clone(),
            field: None,
            line: None,
            column: None,
            details: Default::default(),
        })
}

fn schema<T: JsonSchema + 'static>() -> Arc<rmcp::model::JsonObject> {
    rmcp::handler::server::common::schema_for_type::<T>()
}

fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn absolute(base: Option<&str>, link: &str) -> String {
    match base {
        Some(base) if link.starts_with('/') => format!("{base}{link}"),
        _ => link.to_owned(),
    }
}

/// The last attempt's code of a generation, when it has one.
fn generated_code(generation: &crate::generate::Generation) -> Option<String> {
    generation
        .attempts
        .last()
        .map(|a| a.code.clone())
        .filter(|c| !c.is_empty())
}

/// One line about a job: its id and status, and the video when done.
fn job_summary(job: &JobView, base: Option<&str>) -> String {
    let mut s = format!("job {}: {}", job.id, job.status.as_str());
    match job.status {
        crate::jobs::JobStatus::Succeeded => {
            s.push_str(&format!("; video: {}", absolute(base, &job.links.video)));
        }
        crate::jobs::JobStatus::Queued | crate::jobs::JobStatus::Running => {
            s.push_str("; call get_job (with wait) to follow it");
        }
        _ => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(code: &str, line: Option<u32>) -> ErrorDetail {
        ErrorDetail {
            code: code.into(),
            message: "NameError: name 'x' is not defined".into(),
            field: None,
            line,
            column: None,
            details: Default::default(),
        }
    }

    #[test]
    fn a_tool_error_opens_with_the_code_and_the_line() {
        let r = tool_error(&detail("scene-error", Some(6)), None);
        assert_eq!(r.is_error, Some(true));
        let text = r.content[0].as_text().unwrap().text.clone();
        assert!(
            text.starts_with("[scene-error] line 6: NameError"),
            "{text}"
        );
        let body = r.structured_content.unwrap();
        assert_eq!(body["error"]["code"], "scene-error");
        assert_eq!(body["error"]["line"], 6);
        let r = tool_error(&detail("queue-full", None), None);
        let text = r.content[0].as_text().unwrap().text.clone();
        assert!(text.starts_with("[queue-full] NameError"), "{text}");
    }

    #[test]
    fn arguments_become_the_api_request_and_bad_values_its_error() {
        let req: RenderRequest =
            request(json!({"code": "x", "quality": "4k", "scene": null})).unwrap();
        assert_eq!(req.quality, Some(crate::spec::Quality::FourK));
        assert!(req.scene.is_none());
        match request::<RenderRequest>(json!({"code": "x", "quality": "ultra"})) {
            Err(Failure::Tool(d, _)) => {
                assert_eq!(d.code, "invalid-request");
                assert!(d.message.contains("ultra"), "{}", d.message);
            }
            _ => panic!("a bad quality is the API's invalid-request"),
        }
    }
}
