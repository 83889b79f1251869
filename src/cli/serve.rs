//! `manimd serve`: the HTTP service, on its embedded defaults (SQLite and
//! local files under the data dir) or on a shared store; and `manimd
//! worker`: a node that only renders.

use std::process::ExitCode;

use super::{NodeArgs, ServeArgs, WorkerArgs};
use manimd::config::Config;
use manimd::secret::Secret;
use manimd::server::{self, ServeOptions};

/// The options both roles share, from their flags. Workers need the model
/// provider too: they run the generation pipeline of the jobs they claim.
fn node_options(config: &Config, args: &NodeArgs) -> Result<(Config, ServeOptions), String> {
    let mut config = config.clone();
    if let Some(secs) = args.timeout {
        config.limits.wall_secs = secs;
    }
    if let Some(mib) = args.memory {
        config.limits.set_memory_mib(mib);
    }
    let mut opts = ServeOptions::default();
    if let Some(n) = args.workers {
        opts.workers = n;
    }
    opts.database = args.database.clone().filter(|s| !s.is_empty());
    opts.max_attempts = args.max_attempts.max(1);
    opts.lease = std::time::Duration::from_secs(args.lease_secs.max(2));
    opts.chunk_min_secs = args.chunk_min_secs.max(0.0);
    opts.blob_quota_mib = args.blob_quota_mib;
    opts.project_limits = manimd::project::ProjectLimits {
        max_files: args.max_project_files,
        max_bytes: args.max_project_mib.saturating_mul(1024 * 1024),
        max_file_bytes: args.max_file_mib.saturating_mul(1024 * 1024),
    };
    opts.chunk_min_quality = args.chunk_min_quality;
    if let Some(cpus) = args.cpus {
        if !(0.01..=1024.0).contains(&cpus) {
            return Err(format!("--cpus must be between 0.01 and 1024, not {cpus}"));
        }
        config.limits.cpu_millis = Some((cpus * 1000.0).round() as u64);
    }
    opts.retention = std::time::Duration::from_secs(args.retention_hours * 3600);
    opts.grace = std::time::Duration::from_secs(args.grace_secs);
    opts.warm_pool = args.warm_pool.unwrap_or(opts.workers);
    opts.warm_idle = std::time::Duration::from_secs(args.warm_idle_secs);
    opts.webhooks.secret = args.webhook_secret.clone().and_then(Secret::new);
    opts.webhooks.allow_private = args.webhook_allow_private;
    opts.webhooks.attempts = args.webhook_attempts.max(1);
    opts.webhooks.backoff = std::time::Duration::from_secs(args.webhook_backoff_secs.max(1));
    opts.storage = args.storage.clone().filter(|s| !s.trim().is_empty());
    let llm = manimd::llm::LlmConfig::resolve(
        args.llm_provider.as_deref(),
        args.llm_base_url.as_deref(),
        args.llm_model.as_deref(),
        args.llm_api_key.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    // The replaced system's provider (legacy `/generate`) is called alike.
    let tuned = |llm: manimd::llm::LlmConfig| manimd::llm::LlmConfig {
        timeout: std::time::Duration::from_secs(args.llm_timeout_secs.max(1)),
        retries: args.llm_retries,
        stream: !args.llm_no_stream,
        ..llm
    };
    opts.llm = tuned(llm);
    opts.legacy_llm = tuned(manimd::llm::LlmConfig::legacy());
    Ok((config, opts))
}

pub async fn run(config: &Config, args: ServeArgs) -> ExitCode {
    let (config, mut opts) = match node_options(config, &args.node) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = &config;
    if opts.workers == 0 && opts.database.is_none() {
        tracing::warn!(
            "--workers 0 with the embedded store: jobs will wait for a restart with workers"
        );
    }
    opts.queue_capacity = args.queue_capacity;
    opts.max_body_bytes = args.max_body_bytes;
    opts.rate_limit_per_minute = args.rate_limit_per_minute;
    opts.max_jobs_per_key = args.max_jobs_per_key;
    opts.storage_serve = args.storage_serve;
    opts.compat = args.compat;
    opts.api_keys = args
        .api_keys
        .iter()
        .filter_map(|k| Secret::new(k.as_str()))
        .collect();
    if let Some(path) = &args.api_keys_file {
        match std::fs::read_to_string(path) {
            Ok(text) => opts.api_keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(Secret::new),
            ),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    match serve(config, &opts, &args.addr, args.allow_remote).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: &Config,
    opts: &ServeOptions,
    addr: &str,
    allow_remote: bool,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    if opts.api_keys.is_empty() {
        if !local.ip().is_loopback() && !allow_remote {
            anyhow::bail!(
                "refusing to listen on {local} without API keys: set MANIMD_API_KEYS (or --api-keys-file), \
                 listen on 127.0.0.1, or pass --allow-remote"
            );
        }
        if local.ip().is_loopback() {
            tracing::warn!("no API keys configured: listening on loopback only");
        } else {
            tracing::warn!(%local, "no API keys configured and --allow-remote given: anyone who can reach this address can submit scenes");
        }
    } else {
        tracing::info!(
            keys = opts.api_keys.len(),
            "API keys required on /v1 and /render"
        );
    }
    match &opts.llm.base_url {
        // The base URL and model only: the key is never logged.
        Some(url) => tracing::info!(provider = %redact_url(url), model = %opts.llm.model, "generation enabled"),
        None => tracing::info!("generation off: no language model configured (MANIMD_LLM_PROVIDER or MANIMD_LLM_BASE_URL)"),
    }
    let server = server::start(config, opts, &listener).await?;
    tracing::info!(%local, data_dir = %config.data_dir.display(), workers = opts.workers, "manimd serving");
    // Scripts and tests read the address from this line (the port may be 0).
    println!("manimd listening on http://{local}");
    server.serve(listener, opts, shutdown_signal()).await;
    Ok(())
}

pub async fn worker(config: &Config, worker: WorkerArgs) -> ExitCode {
    let args = worker.node;
    let (config, mut opts) = match node_options(config, &args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !opts
        .database
        .as_deref()
        .is_some_and(manimd::jobs::Store::is_shared_url)
    {
        eprintln!(
            "error: a worker needs the PostgreSQL store it shares with `manimd serve` (SQLite belongs to one process): pass --database postgres://... (or MANIMD_DATABASE)"
        );
        return ExitCode::FAILURE;
    }
    opts.workers = opts.workers.max(1);
    opts.warm_pool = args.warm_pool.unwrap_or(opts.workers);
    // Bound before the node starts: a taken address is said at once.
    let status = match &worker.listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let node = match server::start_node(&config, &opts).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(listener) = status {
        let local = listener.local_addr().ok();
        let app = server::status_router(std::sync::Arc::clone(&node.service));
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "the status endpoint stopped");
            }
        });
        if let Some(local) = local {
            tracing::info!(%local, "worker health and metrics");
            // Scripts and tests read the address from this line.
            println!("manimd worker status on http://{local}");
        }
    }
    tracing::info!(data_dir = %config.data_dir.display(), workers = opts.workers, "manimd worker running");
    // Scripts and tests wait for this line.
    println!("manimd worker ready");
    shutdown_signal().await;
    node.stop(opts.grace).await;
    ExitCode::SUCCESS
}

/// Scheme, host, port and path of a URL: no user part or query, where a
/// credential could hide.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
