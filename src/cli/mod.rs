//! The `manimd` command line: argument definitions and dispatch.

mod doctor;
mod generate;
mod mcp;
mod preview;
mod render;
mod report;
mod serve;
mod submit;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::bench::{self as benchmark, BenchOptions};
use manimd::config::{Config, DEFAULT_DATA_DIR, DEFAULT_RUNTIME_DIR};
use manimd::server::defaults;
use manimd::spec::{Encoding, Engine, Format, Quality};

#[derive(Parser, Debug)]
#[command(
    name = "manimd",
    version,
    about = "Render Manim scenes to video, every scene in a sandbox"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Job areas, outputs and state.
    #[arg(long, global = true, env = "MANIMD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where scripts/setup.sh installed the engines.
    #[arg(long, global = true, env = "MANIMD_RUNTIME", default_value = DEFAULT_RUNTIME_DIR)]
    pub runtime_dir: PathBuf,
    /// How much of each owner's rendered animations the data dir keeps for
    /// reuse (least recently used go first).
    #[arg(long, global = true, env = "MANIMD_CACHE_QUOTA_MIB", value_name = "MIB",
          default_value_t = manimd::config::DEFAULT_CACHE_QUOTA_MIB)]
    pub cache_quota_mib: u64,
    /// The cgroup that job groups go under, relative to the cgroup mount
    /// (`/sys/fs/cgroup`). Default: on cgroup v2, `jobs` in manimd's own
    /// group when that is delegated to it (systemd's Delegate=yes, a
    /// container's cgroup namespace), else `manimd` at the root.
    #[arg(
        long,
        global = true,
        env = "MANIMD_CGROUP_PARENT",
        value_name = "GROUP"
    )]
    pub cgroup_parent: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render scenes of a file to a video, locally, in the sandbox.
    Render(RenderArgs),
    /// Draw a scene's storyboard (the end of every animation) or one still, locally, without a video.
    Preview(PreviewArgs),
    /// Run the HTTP service (SQLite and local files under --data-dir by default).
    Serve(ServeArgs),
    /// Render jobs from a shared PostgreSQL store, without serving the API
    /// (`--listen` serves its health and metrics).
    Worker(WorkerArgs),
    /// Send a file to a server, follow its progress, download the result.
    Submit(SubmitArgs),
    /// Generate a scene from a prompt on a server (its language model), show each stage, download the video.
    Generate(GenerateArgs),
    /// Serve the MCP tools (render, preview, generate, get_job, capabilities) on stdio, for AI assistants, over a server's API.
    Mcp(McpArgs),
    /// Check that renders can work on this host: one line per requirement,
    /// with how to fix what fails (exit 1 when a required one does).
    Doctor(DoctorArgs),
    /// Compare `manimd render` with the plain `manim` CLI on a fixed scene set.
    Bench(BenchArgs),
    /// Send a bounded burst of submissions, half of them hostile, and report the outcome.
    Load(LoadArgs),
    /// Print the HTTP API's OpenAPI document (what `GET /openapi.json` answers), without a server.
    Openapi,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Serve `GET /healthz` (the JSON of `serve`'s `/health`) and `GET
    /// /metrics` (the same Prometheus text as `serve`'s) on this address;
    /// port 0 picks a free one (printed at start). Off by default.
    #[arg(long, env = "MANIMD_WORKER_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The file storage `serve` would use: a bucket is checked as at
    /// `serve`'s start (a write, a read and a delete).
    #[arg(long, env = "MANIMD_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    #[arg(long, env = "MANIMD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Submissions to send (default 500; with --chaos, jobs: 200).
    #[arg(long)]
    pub count: Option<usize>,
    /// Submissions per second (default 25; with --chaos, 0.5: about what two
    /// workers render, so that the faults meet a queue that is not idle).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds to wait for accepted jobs to end (default 900; with --chaos, 3600).
    #[arg(long)]
    pub deadline_secs: Option<u64>,
    /// Start a throwaway cluster here instead (PostgreSQL, moto's S3 server,
    /// two API nodes, two workers) and kill its parts with SIGKILL as the
    /// jobs run; report every job's end and what was left behind.
    #[arg(long)]
    pub chaos: bool,
    /// With --chaos: seeds which part is killed, when, and for how long.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// With --chaos: the mean seconds between two faults.
    #[arg(long, default_value_t = 20.0)]
    pub fault_every_secs: f64,
    /// With --chaos: keep the run's directory (logs, database) even when
    /// all is well.
    #[arg(long)]
    pub keep: bool,
    #[arg(long, env = "MANIMD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// What every node takes, `serve` and `worker` alike.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The job store: `postgres://USER:PASS@HOST:PORT/DB` to share jobs with
    /// other nodes. Default: SQLite in the data dir.
    #[arg(long, env = "MANIMD_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Where finished files live: a path, file:///path, or
    /// s3://BUCKET[/prefix]?endpoint=URL&region=NAME (credentials from
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
    /// Default: <data dir>/videos.
    #[arg(long, env = "MANIMD_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// Concurrent renders. Default: one per core (`serve` may take 0: an API
    /// node that leaves rendering to `manimd worker` nodes).
    #[arg(long, env = "MANIMD_WORKERS")]
    pub workers: Option<usize>,
    /// Seconds a worker's claim on a job lasts without a heartbeat; after it,
    /// any node re-queues the job (a worker that died).
    #[arg(long, env = "MANIMD_LEASE_SECS", default_value_t = defaults::LEASE_SECS)]
    pub lease_secs: u64,
    /// Split a render over several workers when its video is at least this
    /// long (and of `--chunk-min-quality` or above): chunks are drawn at
    /// once by free workers of every node and stitched without re-encoding.
    #[arg(long, env = "MANIMD_CHUNK_MIN_SECS", default_value_t = defaults::CHUNK_MIN_SECS, value_name = "SECS")]
    pub chunk_min_secs: f64,
    /// Each API key's uploaded blobs (a project's files) together may hold
    /// this much; unused blobs are collected a day after their last use.
    #[arg(long, env = "MANIMD_BLOB_QUOTA_MIB", default_value_t = manimd::blobs::DEFAULT_QUOTA_MIB, value_name = "MIB")]
    pub blob_quota_mib: u64,
    /// The most files one project may have.
    #[arg(long, env = "MANIMD_MAX_PROJECT_FILES", default_value_t = manimd::project::DEFAULT_MAX_FILES, value_name = "N")]
    pub max_project_files: usize,
    /// The most one project may hold, all its files together.
    #[arg(long, env = "MANIMD_MAX_PROJECT_MIB", default_value_t = manimd::project::DEFAULT_MAX_PROJECT_MIB, value_name = "MIB")]
    pub max_project_mib: u64,
    /// The most one file of a project (one blob) may hold.
    #[arg(long, env = "MANIMD_MAX_FILE_MIB", default_value_t = manimd::project::DEFAULT_MAX_FILE_MIB, value_name = "MIB")]
    pub max_file_mib: u64,
    /// The lowest quality a render is split at (below it, a render is cheap
    /// enough for one worker, and is not even planned).
    #[arg(
        long,
        env = "MANIMD_CHUNK_MIN_QUALITY",
        value_enum,
        default_value = "high"
    )]
    pub chunk_min_quality: Quality,
    /// CPUs each render may use (cgroup `cpu.max` on v2, the CFS quota on
    /// v1); a whole N also keeps a running render on N free cores of its
    /// own. Unset: no CPU limit.
    #[arg(long, env = "MANIMD_CPUS", value_name = "N")]
    pub cpus: Option<f64>,
    /// Wall-clock limit of each render, in seconds (default 600).
    #[arg(long, env = "MANIMD_TIMEOUT_SECS", value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Memory limit of each render, in MiB (default 2048).
    #[arg(long, env = "MANIMD_MEMORY_MIB", value_name = "MIB")]
    pub memory: Option<u64>,
    /// Attempts per job when the server stops mid-render, before it fails with `interrupted`.
    #[arg(long, env = "MANIMD_MAX_ATTEMPTS", default_value_t = defaults::MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Finished jobs and their files are deleted after this many hours.
    #[arg(long, env = "MANIMD_RETENTION_HOURS", default_value_t = defaults::RETENTION_HOURS)]
    pub retention_hours: u64,
    /// On SIGTERM, seconds that running renders get to finish before they are re-queued.
    #[arg(long, env = "MANIMD_GRACE_SECS", default_value_t = defaults::GRACE_SECS)]
    pub grace_secs: u64,
    /// Warm sandboxes (engine imported, waiting for a job) kept per engine. Default: the worker count; 0 turns them off.
    #[arg(long, env = "MANIMD_WARM_POOL")]
    pub warm_pool: Option<usize>,
    /// Seconds a warm sandbox may wait unused before it is let go.
    #[arg(long, env = "MANIMD_WARM_IDLE_SECS", default_value_t = defaults::WARM_IDLE_SECS)]
    pub warm_idle_secs: u64,
    /// Signs webhook deliveries (HMAC-SHA256); without it, `webhook_url` is refused.
    #[arg(long, env = "MANIMD_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Let webhooks reach loopback, private and link-local addresses.
    #[arg(long, env = "MANIMD_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Attempts per webhook delivery before it is given up.
    #[arg(long, env = "MANIMD_WEBHOOK_ATTEMPTS", default_value_t = manimd::webhooks::DEFAULT_ATTEMPTS, value_name = "N")]
    pub webhook_attempts: u32,
    /// Seconds before a failed delivery's first retry; each next wait doubles (at most an hour).
    #[arg(long, env = "MANIMD_WEBHOOK_BACKOFF_SECS", default_value_t = manimd::webhooks::DEFAULT_BACKOFF_SECS, value_name = "SECS")]
    pub webhook_backoff_secs: u64,
    /// A model provider preset: groq, openai, openrouter, ollama, llamacpp, vllm.
    #[arg(long, env = "MANIMD_LLM_PROVIDER")]
    pub llm_provider: Option<String>,
    /// An OpenAI-compatible base URL (…/v1); wins over the preset's.
    #[arg(long, env = "MANIMD_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// The model; default: the preset's.
    #[arg(long, env = "MANIMD_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// The provider's API key (requests may bring their own).
    #[arg(long, env = "MANIMD_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,
    /// Seconds one model call may take, streaming included.
    #[arg(long, env = "MANIMD_LLM_TIMEOUT_SECS", default_value_t = manimd::llm::DEFAULT_TIMEOUT_SECS)]
    pub llm_timeout_secs: u64,
    /// Further tries after a 429 or 5xx from the provider (waits honour Retry-After, at most 10 s).
    #[arg(long, env = "MANIMD_LLM_RETRIES", default_value_t = manimd::llm::DEFAULT_RETRIES)]
    pub llm_retries: u32,
    /// Ask for plain (non-streamed) answers.
    #[arg(long, env = "MANIMD_LLM_NO_STREAM")]
    pub llm_no_stream: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port (printed at start).
    #[arg(long, env = "MANIMD_ADDR", default_value = defaults::ADDR)]
    pub addr: String,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Queued jobs accepted before answering 429.
    #[arg(long, env = "MANIMD_QUEUE_CAPACITY", default_value_t = defaults::QUEUE_CAPACITY)]
    pub queue_capacity: u64,
    /// Largest request body.
    #[arg(long, env = "MANIMD_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: u64,
    /// API keys, comma-separated. With keys, /v1 and /render need `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "MANIMD_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// A file of API keys, one per line (`#` starts a comment).
    #[arg(long, env = "MANIMD_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Requests per minute per API key.
    #[arg(long, env = "MANIMD_RATE_LIMIT_PER_MINUTE", default_value_t = defaults::RATE_LIMIT_PER_MINUTE)]
    pub rate_limit_per_minute: u32,
    /// Queued and running jobs per API key.
    #[arg(long, env = "MANIMD_MAX_JOBS_PER_KEY", default_value_t = defaults::MAX_JOBS_PER_KEY)]
    pub max_jobs_per_key: u64,
    /// Listen beyond loopback without API keys (anyone who reaches the port can render).
    #[arg(long, env = "MANIMD_ALLOW_REMOTE")]
    pub allow_remote: bool,
    /// How videos in object storage reach clients: streamed through this
    /// server, or a 307 to a presigned URL.
    #[arg(
        long,
        env = "MANIMD_STORAGE_SERVE",
        value_enum,
        default_value = "proxy"
    )]
    pub storage_serve: manimd::storage::ServeMode,
    /// Answer as a replaced system did, for its clients: `manim-api` makes
    /// `/health` say `ALIVE_V<version>` and `manim-video-streaming-api`.
    #[arg(long, env = "MANIMD_COMPAT", value_enum)]
    pub compat: Option<manimd::api::Compat>,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The scene file (Python).
    pub file: PathBuf,
    /// Scenes to render, stitched in order. Default: the file's only scene.
    pub scenes: Vec<String>,
    /// The server's base URL.
    #[arg(long, env = "MANIMD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    #[arg(long, short, value_enum, default_value = "low")]
    pub quality: Quality,
    #[arg(long, short, value_enum)]
    pub format: Option<Format>,
    #[arg(long)]
    pub fps: Option<u32>,
    #[arg(long)]
    pub seed: Option<u32>,
    #[arg(long, value_enum, default_value = "final")]
    pub encoding: Encoding,
    /// Speak the scene's `narrate("...")` lines into the sound track (see
    /// `GET /v1/renders/{id}/subtitles` for the WebVTT).
    #[arg(long)]
    pub narration: bool,
    /// `auto` (default): the server may split a long render over its free
    /// workers; a number: at most that many chunks (`1`: never split).
    #[arg(long, value_parser = parse_parallel)]
    pub parallel: Option<manimd::spec::Parallel>,
    /// Where to write the result. Default: the file's name with the format's extension.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
    /// The API key, when the server needs one.
    #[arg(long, env = "MANIMD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// `auto` or a number of chunks, as the API takes it.
fn parse_parallel(s: &str) -> Result<manimd::spec::Parallel, String> {
    let json = if s == "auto" {
        "\"auto\"".to_owned()
    } else {
        s.to_owned()
    };
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// What the animation should show.
    pub prompt: String,
    /// The server's base URL.
    #[arg(long, env = "MANIMD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    #[arg(long, short, value_enum, default_value = "low")]
    pub quality: Quality,
    #[arg(long, short, value_enum)]
    pub format: Option<Format>,
    /// Ask for a spoken line per step.
    #[arg(long)]
    pub narration: bool,
    /// Tries at working code, repairs included (1-5, default 3).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Where to write the result. Default: generation.<format>.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Print the code as the model writes it.
    #[arg(long)]
    pub show_code: bool,
    #[arg(long)]
    pub quiet: bool,
    /// The manimd server's API key, when it needs one.
    #[arg(long, env = "MANIMD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Args, Debug)]
pub struct McpArgs {
    /// The manimd server the tools call.
    #[arg(long, env = "MANIMD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Sent as `Authorization: Bearer` on every call, when the server has keys.
    #[arg(long, env = "MANIMD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Runs of each scene each way; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Only one part: `iteration`, the edit-and-look loop (animation cache,
    /// previews) beside its anchors; `chunked`, one long render on one
    /// worker against two (split), each limited to one CPU; `projects`,
    /// the bytes a resubmitted project sends and a 500-file project's
    /// submission time against a single file's.
    #[arg(long, value_enum)]
    pub only: Option<BenchPart>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchPart {
    Iteration,
    Chunked,
    Projects,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The scene file (Python).
    pub file: PathBuf,
    /// Scenes to render, stitched in the order given. Default: the file's only scene.
    pub scenes: Vec<String>,
    /// The engine; detected from the file's imports when not given.
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    #[arg(long, short, value_enum, default_value = "low")]
    pub quality: Quality,
    /// Output format; taken from the extension of -o when not given, else mp4.
    #[arg(long, short, value_enum)]
    pub format: Option<Format>,
    /// Frame rate, overriding the quality's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=manimd::spec::MAX_FPS as i64))]
    pub fps: Option<u32>,
    /// Seed for Python's and NumPy's random generators.
    #[arg(long)]
    pub seed: Option<u32>,
    /// `final` keeps x264's default preset; `preview` encodes much faster.
    #[arg(long, value_enum, default_value = "final")]
    pub encoding: Encoding,
    /// Speak the scene's `narrate("...")` lines into the audio track and
    /// write WebVTT subtitles next to the video (`.vtt`).
    #[arg(long)]
    pub narration: bool,
    /// Render every scene in the file, stitched in file order.
    #[arg(long, conflicts_with = "scenes")]
    pub all: bool,
    /// Wall-clock limit in seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Memory limit in MiB (the render's files count too).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Where to write the result. Default: the file's name with the format's extension.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Print no progress, only the result or the error.
    #[arg(long)]
    pub quiet: bool,
    /// Print the result as one JSON object on stdout (for scripts).
    #[arg(long)]
    pub json: bool,
    /// Render every animation and keep none, instead of reusing the ones
    /// cached in the data dir from earlier renders.
    #[arg(long)]
    pub no_cache: bool,
    /// Render again on every save of the file, reusing the animations that
    /// did not change, and print which ones changed; Ctrl-C ends it.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["storyboard", "at", "animation"])))]
pub struct PreviewArgs {
    /// The scene file (Python).
    pub file: PathBuf,
    /// The scene. Default: the file's only scene.
    pub scene: Option<String>,
    /// The last frame of every animation; -o is a directory that receives NN.png per animation.
    #[arg(long)]
    pub storyboard: bool,
    /// One frame at this many seconds into the scene; -o is the PNG.
    #[arg(long, value_name = "SECONDS")]
    pub at: Option<f64>,
    /// One frame at the end of animation N (0 is the first); -o is the PNG.
    #[arg(long, value_name = "N")]
    pub animation: Option<u32>,
    /// Where the frames go: a PNG for a still, a directory for a storyboard.
    #[arg(long, short)]
    pub output: PathBuf,
    /// The engine; detected from the file's imports when not given.
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// The frames' size (and the rate times fall on).
    #[arg(long, short, value_enum, default_value = "low")]
    pub quality: Quality,
    /// Frame rate, overriding the quality's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=manimd::spec::MAX_FPS as i64))]
    pub fps: Option<u32>,
    /// Seed for Python's and NumPy's random generators.
    #[arg(long)]
    pub seed: Option<u32>,
    /// Wall-clock limit in seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

impl GlobalArgs {
    pub fn config(&self) -> Config {
        let tts = manimd::narration::TtsConfig::from_env().unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        });
        Config {
            data_dir: self.data_dir.clone(),
            runtime_dir: self.runtime_dir.clone(),
            tts,
            cache_quota_mib: self.cache_quota_mib,
            cgroup_parent: self.cgroup_parent.clone(),
            ..Config::default()
        }
    }
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(
        if matches!(cli.command, Command::Serve(_) | Command::Worker(_)) {
            "info"
        } else {
            "warn"
        },
    );
    let config = cli.global.config();
    match cli.command {
        Command::Render(args) => render::run(&config, args).await,
        Command::Preview(args) => preview::run(&config, args).await,
        Command::Serve(args) => serve::run(&config, args).await,
        Command::Worker(args) => serve::worker(&config, args).await,
        Command::Submit(args) => submit::run(args).await,
        Command::Generate(args) => generate::run(args).await,
        Command::Mcp(args) => mcp::run(args).await,
        Command::Doctor(args) => doctor::run(&config, args.storage.as_deref()).await,
        Command::Bench(args) => bench(&config, args).await,
        Command::Load(args) => load(&config, args).await,
        Command::Openapi => openapi(),
    }
}

/// The document the server answers at `/openapi.json`, for generators
/// (`clients/python/generate_types.py`) that should not need a running server.
fn openapi() -> ExitCode {
    use std::io::Write;
    use utoipa::OpenApi;
    let written = serde_json::to_string_pretty(&manimd::server::ApiDoc::openapi())
        .map_err(std::io::Error::other)
        .and_then(|text| writeln!(std::io::stdout().lock(), "{text}"));
    match written {
        // A reader that stops early (`| head`) is not a failure of ours.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the OpenAPI document: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Logs go to stderr; `MANIMD_LOG` filters them, `MANIMD_LOG_FORMAT=json`
/// makes them structured.
fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MANIMD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("MANIMD_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn bench(config: &Config, args: BenchArgs) -> ExitCode {
    let opts = BenchOptions {
        runs: args.runs.max(1),
        runtime: manimd::runtime::Runtime::new(&config.runtime_dir),
        manimd: std::env::current_exe().unwrap_or_else(|_| "manimd".into()),
        data_dir: config.data_dir.join("bench"),
    };
    println!(
        "manimd bench: {} run(s) per scene, medians; machine: {}",
        opts.runs,
        benchmark::machine()
    );
    if let Some(part) = args.only {
        let table = match part {
            BenchPart::Iteration => benchmark::iteration_table(&opts).await,
            BenchPart::Chunked => benchmark::chunked_table(&opts).await,
            BenchPart::Projects => benchmark::projects_table(&opts).await,
        };
        return match table {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    println!("wall: spawn to exit; MiB: peak RSS (manim: its largest process; manimd: its own plus the sandbox's largest)");
    println!("{}", benchmark::header());
    let opts = std::sync::Arc::new(opts);
    let cli_opts = std::sync::Arc::clone(&opts);
    let rows = tokio::task::spawn_blocking(move || {
        benchmark::run(&cli_opts, |row| println!("{}", benchmark::format_row(row)))
    })
    .await;
    let rows = match rows {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match benchmark::service_table(&opts, &rows).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn load(config: &Config, args: LoadArgs) -> ExitCode {
    if args.chaos {
        return chaos(config, args).await;
    }
    let opts = crate::load::LoadOptions {
        server: args.server,
        count: args.count.unwrap_or(500),
        rate: args.rate.unwrap_or(25.0),
        api_key: args.api_key,
        deadline: std::time::Duration::from_secs(args.deadline_secs.unwrap_or(900)),
    };
    match crate::load::run(&opts).await {
        Ok(report) => {
            // Leftovers are visible when the server runs here on --data-dir.
            let sc = config.sandbox_config();
            let leftovers = sc.placement().ok().map(|p| {
                let groups = p.children(&format!("{}-", sc.instance)).len();
                let warm = report.health_after["workers"]["warm"].as_u64().unwrap_or(0) as usize;
                let mounts = std::fs::read_to_string("/proc/self/mountinfo")
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(&*sc.areas_dir.to_string_lossy()))
                    .count();
                // A ready inspector and the warm sandboxes are expected.
                (
                    groups.saturating_sub(warm + 1),
                    mounts.saturating_sub(warm + 1),
                )
            });
            crate::load::print(&report, leftovers);
            if report.lost == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn chaos(config: &Config, args: LoadArgs) -> ExitCode {
    use crate::load::chaos;
    let opts = chaos::ChaosOptions {
        count: args.count.unwrap_or(200),
        rate: args.rate.unwrap_or(0.5),
        seed: args.seed,
        fault_every: std::time::Duration::from_secs_f64(args.fault_every_secs.max(1.0)),
        deadline: std::time::Duration::from_secs(args.deadline_secs.unwrap_or(3600)),
        keep: args.keep,
        manimd: std::env::current_exe().unwrap_or_else(|_| "manimd".into()),
        runtime: config.runtime_dir.clone(),
    };
    match chaos::run(config, &opts).await {
        Ok(report) => {
            chaos::print(&report);
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
