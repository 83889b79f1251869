//! The HTTP server: router, middleware, the accept loop with its limits,
//! and the start-up and shutdown sequence of the whole service.

mod auth;
mod blobs;
mod error;
mod extract;
mod generations;
mod mcp;
mod media;
mod previews;
mod renders;
mod system;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Request};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::api::Compat;
use crate::bus;
use crate::components::Components;
use crate::components::Llm;
use crate::config::Config;
use crate::control::Control;
use crate::events::Hub;
use crate::executor::{Executor, ExecutorConfig};
use crate::jobs::Store;
use crate::llm::LlmConfig;
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolConfig};
use crate::render::Renderer;
use crate::secret::Secret;
use crate::service::{Service, ServiceConfig};
use crate::spec::Engine;
use crate::storage::{ServeMode, Storage};
use crate::webhooks::{WebhookConfig, Webhooks};

pub use auth::{fingerprint, Auth};
pub use error::ApiError;
pub use system::ApiDoc;

pub type AppState = Arc<Service>;

/// The defaults of `serve` and `worker`, written once: `ServeOptions::default`
/// and the command line's flags both read them.
pub mod defaults {
    pub const QUEUE_CAPACITY: u64 = 100;
    pub const MAX_ATTEMPTS: u32 = 3;
    pub const LEASE_SECS: u64 = 30;
    pub const RETENTION_HOURS: u64 = 7 * 24;
    pub const GRACE_SECS: u64 = 30;
    pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
    pub const WARM_IDLE_SECS: u64 = 300;
    pub const RATE_LIMIT_PER_MINUTE: u32 = 120;
    pub const MAX_JOBS_PER_KEY: u64 = 10;
    pub const ADDR: &str = "127.0.0.1:8080";
    pub const CHUNK_MIN_SECS: f64 = 20.0;
}

/// Options of the service beyond `Config`: its capacity and HTTP limits.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Concurrent renders.
    pub workers: usize,
    /// Queued jobs accepted before `429`.
    pub queue_capacity: u64,
    pub max_attempts: u32,
    pub lease: Duration,
    /// Finished jobs and their files are deleted after this.
    pub retention: Duration,
    /// How long running renders may take to finish on SIGTERM.
    pub grace: Duration,
    pub max_body_bytes: u64,
    /// Warm sandboxes kept per engine (0: off).
    pub warm_pool: usize,
    /// A warm sandbox unused this long is let go.
    pub warm_idle: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// API keys; empty: no authentication (and loopback only, see `serve`).
    pub api_keys: Vec<Secret>,
    /// Requests per minute per key.
    pub rate_limit_per_minute: u32,
    /// Queued and running jobs per key.
    pub max_jobs_per_key: u64,
    pub webhooks: WebhookConfig,
    /// `postgres://...` to share jobs with other nodes; `None`: SQLite in
    /// the data dir.
    pub database: Option<String>,
    /// Where finished files live: a path, `file:///path` or
    /// `s3://bucket[/prefix]?endpoint=…&region=…` (see `Storage::open`);
    /// `None`: `<data_dir>/videos`.
    pub storage: Option<String>,
    /// Stream finished files from the store, or redirect to presigned URLs.
    pub storage_serve: ServeMode,
    /// The language model behind `/v1/generations` (none by default).
    pub llm: LlmConfig,
    /// Where the replaced system's `/generate` sends a caller's own key
    /// when `llm` is not configured: the Groq preset, as that system did
    /// (`LlmConfig::legacy`).
    pub legacy_llm: LlmConfig,
    /// Answer `/health` as a replaced system did (`--compat`).
    pub compat: Option<Compat>,
    /// Split renders of at least this many seconds of video...
    pub chunk_min_secs: f64,
    /// Each owner's uploaded blobs together (`--blob-quota-mib`).
    pub blob_quota_mib: u64,
    /// How big a project may be (`--max-project-files`, `--max-project-mib`,
    /// `--max-file-mib`).
    pub project_limits: crate::project::ProjectLimits,
    /// ... at this quality or above.
    pub chunk_min_quality: crate::spec::Quality,
}

impl Default for ServeOptions {
    fn default() -> Self {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        ServeOptions {
            workers,
            queue_capacity: defaults::QUEUE_CAPACITY,
            max_attempts: defaults::MAX_ATTEMPTS,
            lease: Duration::from_secs(defaults::LEASE_SECS),
            retention: Duration::from_secs(defaults::RETENTION_HOURS * 3600),
            grace: Duration::from_secs(defaults::GRACE_SECS),
            max_body_bytes: defaults::MAX_BODY_BYTES,
            warm_pool: workers,
            warm_idle: Duration::from_secs(defaults::WARM_IDLE_SECS),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            api_keys: Vec::new(),
            rate_limit_per_minute: defaults::RATE_LIMIT_PER_MINUTE,
            max_jobs_per_key: defaults::MAX_JOBS_PER_KEY,
            webhooks: WebhookConfig::default(),
            database: None,
            storage: None,
            storage_serve: ServeMode::Proxy,
            llm: LlmConfig::default(),
            legacy_llm: LlmConfig::legacy(),
            compat: None,
            chunk_min_secs: defaults::CHUNK_MIN_SECS,
            blob_quota_mib: crate::blobs::DEFAULT_QUOTA_MIB,
            project_limits: Default::default(),
            chunk_min_quality: crate::spec::Quality::High,
        }
    }
}

pub fn router(state: AppState, body_timeout: Duration, auth: Arc<Auth>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    // Every /v1 call and the compatibility call need a key when keys exist.
    let keyed = Router::new()
        .route("/v1/renders", post(renders::submit).get(renders::list))
        .route(
            "/v1/renders/{id}",
            get(renders::get).delete(renders::delete),
        )
        .route("/v1/renders/{id}/events", get(renders::events))
        .route("/v1/renders/{id}/video", get(renders::video))
        .route("/v1/renders/{id}/thumbnail", get(renders::thumbnail))
        .route("/v1/renders/{id}/subtitles", get(renders::subtitles))
        .route("/v1/renders/{id}/live.m3u8", get(renders::live_playlist))
        .route("/v1/renders/{id}/live/{name}", get(renders::live_file))
        .route("/v1/previews", post(previews::create))
        .route("/v1/previews/{id}/frames/{name}", get(previews::frame))
        .route("/v1/blobs/missing", post(blobs::missing))
        .route("/v1/blobs/{digest}", axum::routing::put(blobs::put))
        .route("/v1/capabilities", get(system::capabilities))
        .route("/render", post(renders::legacy_render))
        .route("/v1/generations", post(generations::submit))
        .route("/v1/code/generations", post(generations::code))
        .route("/generate", post(generations::legacy_generate))
        // The MCP tools over Streamable HTTP, as the key's owner.
        .route_service("/mcp", mcp::service(Arc::clone(&state), auth.enabled()))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_key,
        ));
    Router::new()
        .merge(keyed)
        .route("/", get(system::studio))
        .route("/assets/hls.min.js", get(system::hls_js))
        .route("/assets/studio.js", get(system::studio_js))
        .route("/assets/files.js", get(system::files_js))
        .route("/assets/studio.css", get(system::studio_css))
        .route("/assets/editor.js", get(system::editor_js))
        .route("/assets/engine-names.json", get(system::engine_names))
        .route("/health", get(system::health))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }).on_response(DefaultOnResponse::new().level(Level::INFO)))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// What `manimd worker --listen` serves: the node's health (as `/health`,
/// at `/healthz`) and its metrics (as `serve`'s `/metrics`), nothing else.
/// Neither says anything a key would protect, as on `serve`.
pub fn status_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(system::health))
        .route("/metrics", get(system::metrics))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// A running service.
pub struct Server {
    pub addr: SocketAddr,
    pub node: Node,
}

/// What every node runs, with or without HTTP: the store, the workers, the
/// warm pool and (on PostgreSQL) the signals between nodes.
pub struct Node {
    pub service: AppState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The webhook outbox's loop, awaited at stop: an attempt in flight is
    /// recorded before the store closes.
    outbox: Option<tokio::task::JoinHandle<()>>,
    executor: Arc<Executor>,
    pool: Arc<Pool>,
    store: Store,
    /// Its sandbox's job groups are cleaned up at stop.
    renderer: Arc<Renderer>,
    /// Held while the node runs (see `lock_data_dir`).
    _lock: std::fs::File,
}

/// Sets the service up on `config.data_dir` (see `start_node`) for `listener`.
pub async fn start(
    config: &Config,
    opts: &ServeOptions,
    listener: &TcpListener,
) -> anyhow::Result<Server> {
    Ok(Server {
        addr: listener.local_addr()?,
        node: start_node(config, opts).await?,
    })
}

/// Reaps what a previous process on this data dir left (sandboxes, scratch
/// files), re-queues jobs that were running (all of them on SQLite, which
/// one process owns; only expired leases on PostgreSQL, which other live
/// nodes share), and starts the workers.
pub async fn start_node(config: &Config, opts: &ServeOptions) -> anyhow::Result<Node> {
    let lock = lock_data_dir(&config.data_dir)?;
    // A host that cannot render is said once, here, not in every job.
    crate::doctor::preflight(config).await?;
    let blobs = Arc::new(crate::blobs::Blobs::new(
        config.data_dir.join("blobs"),
        opts.blob_quota_mib,
        opts.project_limits,
    ));
    let renderer = Arc::new(Renderer::new(config)?.with_blobs(blobs.clone()));
    tracing::info!(cgroups = %renderer.sandbox().placement().describe(), "sandbox job groups");
    let work_dir = reap_renders(&renderer, config).await?;
    let (store, storage) = open_state(config, opts).await?;
    let pool = Pool::new(
        Arc::clone(&renderer),
        PoolConfig {
            size: opts.warm_pool,
            idle_timeout: opts.warm_idle,
            limits: config.limits.clone(),
            prewarm: vec![Engine::Manim],
        },
    );
    let mut tasks = vec![pool.spawn()];
    let parts = Components {
        store: store.clone(),
        renderer: Arc::clone(&renderer),
        pool: Arc::clone(&pool),
        webhooks: Webhooks::new(opts.webhooks.clone()),
        hub: Arc::new(Hub::default()),
        storage,
        metrics: Arc::new(Metrics::default()),
        llm: Arc::new(Llm::new(opts.llm.clone(), opts.legacy_llm.clone())),
        control: Control::new(store.clone()),
        blobs,
    };
    let executor = Executor::new(
        ExecutorConfig {
            workers: opts.workers,
            lease: opts.lease,
            max_attempts: opts.max_attempts,
            limits: config.limits.clone(),
            work_dir,
            chunk_min_secs: opts.chunk_min_secs,
            chunk_min_quality: opts.chunk_min_quality,
        },
        parts.clone(),
    );
    if store.is_shared() {
        let control = Arc::clone(&parts.control);
        tasks.extend(bus::start(store.clone(), Arc::clone(&parts.hub), control).await?);
    }
    tasks.extend(executor.start());
    // Only a node that can sign delivers; the others leave the outbox to
    // those that can.
    let outbox = parts.webhooks.enabled().then(|| {
        tokio::spawn(Arc::clone(&parts.webhooks).run_outbox(
            store.clone(),
            executor.owner().to_owned(),
            parts.control.stopping(),
        ))
    });
    let service = Arc::new(Service::new(
        ServiceConfig {
            queue_capacity: opts.queue_capacity,
            max_jobs_per_owner: opts.max_jobs_per_key,
            limits: config.limits.clone(),
            max_body_bytes: opts.max_body_bytes,
            storage_serve: opts.storage_serve,
            compat: opts.compat,
            preview_dir: config.data_dir.join("previews"),
            project_limits: opts.project_limits,
        },
        parts,
        Arc::clone(&executor),
    ));
    tasks.push(spawn_expiry(Arc::clone(&service), opts.retention));
    tasks.push(spawn_preview_sweeper(Arc::clone(&service)));
    tasks.push(spawn_blob_sweeper(Arc::clone(&service)));
    Ok(Node {
        service,
        tasks,
        outbox,
        executor,
        pool,
        store,
        renderer,
        _lock: lock,
    })
}

/// Removes the sandboxes and scratch files of renders that a previous
/// process left running; returns the (empty) scratch directory.
async fn reap_renders(renderer: &Renderer, config: &Config) -> anyhow::Result<PathBuf> {
    let reaped = renderer.sandbox().reap().await;
    if reaped.cgroups + reaped.areas > 0 {
        tracing::warn!(
            cgroups = reaped.cgroups,
            areas = reaped.areas,
            "reaped sandboxes left by a previous process"
        );
    }
    let work_dir: PathBuf = config.data_dir.join("work");
    // Scratch files of renders that were running: collected regular files
    // in our own directory, safe to remove.
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(&work_dir)?;
    Ok(work_dir)
}

/// Opens the job store and the file storage, and takes back what the
/// previous process held in them: running jobs' leases, live streams.
async fn open_state(config: &Config, opts: &ServeOptions) -> anyhow::Result<(Store, Storage)> {
    let store = match &opts.database {
        Some(url) => Store::open(url).await?,
        None => Store::open_sqlite(&config.data_dir.join("manimd.db")).await?,
    };
    let embedded = !store.is_shared();
    let (requeued, failed) = store.reap_leases(embedded, opts.max_attempts).await?;
    if !requeued.is_empty() || !failed.is_empty() {
        tracing::warn!(
            ?requeued,
            ?failed,
            "jobs interrupted by the previous process"
        );
    }
    // Webhook deliveries the previous process was attempting: on SQLite
    // that process was the only holder, so they are due again at once.
    store.release_webhooks().await?;
    let storage = Storage::open(opts.storage.as_deref(), &config.data_dir)?;
    // A bucket that cannot be used is said once, here, not as every job's
    // failed upload.
    let checked = storage.check().await?;
    tracing::info!(storage = %checked, "file storage checked");
    // Like the scratch files: live streams of renders that were running.
    storage.reap_spool().await?;
    tracing::info!(storage = storage.kind(), serve = ?opts.storage_serve, "file storage");
    Ok((store, storage))
}

/// Deletes expired jobs now and then (hourly, or at the retention when
/// that is shorter), for as long as the node runs.
fn spawn_expiry(service: Arc<Service>, retention: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match service.expire(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "deleted expired jobs"),
                Err(err) => tracing::error!(%err, "cannot expire jobs"),
            }
            tokio::time::sleep(Duration::from_secs(3600).min(retention)).await;
        }
    })
}

/// Removes expired previews' frames every minute, for as long as the node
/// runs (a fetch of an expired one is refused before that, on access).
fn spawn_preview_sweeper(service: Arc<Service>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            service.sweep_previews();
        }
    })
}

/// Collects blobs no queued or running job names, once their grace
/// period has passed (see `blobs`), every ten minutes.
fn spawn_blob_sweeper(service: Arc<Service>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match service.sweep_blobs(crate::blobs::DEFAULT_GRACE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "collected unused blobs"),
                Err(err) => tracing::warn!(%err, "cannot collect unused blobs"),
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    })
}

/// One process per data dir: a second one would reap the first one's
/// sandboxes and scratch files at start (they share the instance name).
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("manimd.lock");
    let file = std::fs::File::create(&path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function owns; the lock lives as
    // long as the file (closed on exec, so sandboxes do not inherit it).
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(file);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        anyhow::bail!(
            "another manimd process uses the data dir {}: give each process its own --data-dir (MANIMD_DATA_DIR)",
            dir.display()
        );
    }
    Err(err.into())
}

impl Node {
    /// Stops claiming, lets running renders finish within `grace` and
    /// re-queues the rest, then closes the pool and the store.
    pub async fn stop(self, grace: Duration) {
        self.service.set_draining();
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: letting running renders finish"
        );
        self.executor.shutdown(grace).await;
        if let Some(outbox) = self.outbox {
            // It saw the stop with the executor; its attempts end within
            // their own timeout.
            let bound = crate::webhooks::ATTEMPT_TIMEOUT + Duration::from_secs(5);
            let _ = tokio::time::timeout(bound, outbox).await;
        }
        for t in self.tasks {
            t.abort();
        }
        self.pool.close().await;
        // No render runs now: nothing of the sandboxes may outlive the node.
        self.renderer.sandbox().close().await;
        self.store.close().await;
        tracing::info!("stopped");
    }
}

impl Server {
    /// Serves until `shutdown` resolves, then stops accepting, lets running
    /// renders finish within the grace period and re-queues the rest.
    pub async fn serve(
        self,
        listener: TcpListener,
        opts: &ServeOptions,
        shutdown: impl Future<Output = ()>,
    ) {
        let auth = Auth::new(&opts.api_keys, opts.rate_limit_per_minute);
        let app = router(Arc::clone(&self.node.service), opts.body_timeout, auth);
        accept_loop(listener, app, opts, shutdown).await;
        self.node.stop(opts.grace).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(opts.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Out of file descriptors, typically: back off briefly.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // At the connection cap a new connection is closed at once, so the
        // service stays responsive to the ones it has.
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(opts.header_timeout);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    // Open requests (an SSE stream, a download) get a moment to end.
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
}
