//! `manimd serve`: the HTTP service on its embedded defaults (SQLite and
//! local files under the data dir).

use std::process::ExitCode;

use super::ServeArgs;
use crate::config::Config;
use crate::server::{self, ServeOptions};

pub async fn run(config: &Config, args: ServeArgs) -> ExitCode {
    let mut config = config.clone();
    if let Some(secs) = args.timeout {
        config.limits.wall_secs = secs;
    }
    if let Some(mib) = args.memory {
        config.limits.set_memory_mib(mib);
    }
    let config = &config;
    let mut opts = ServeOptions::default();
    if let Some(n) = args.workers {
        opts.workers = n.max(1);
    }
    opts.queue_capacity = args.queue_capacity;
    opts.max_attempts = args.max_attempts.max(1);
    opts.retention = std::time::Duration::from_secs(args.retention_hours * 3600);
    opts.grace = std::time::Duration::from_secs(args.grace_secs);
    opts.max_body_bytes = args.max_body_bytes;
    opts.warm_pool = args.warm_pool.unwrap_or(opts.workers);
    opts.warm_idle = std::time::Duration::from_secs(args.warm_idle_secs);
    opts.rate_limit_per_minute = args.rate_limit_per_minute;
    opts.max_jobs_per_key = args.max_jobs_per_key;
    opts.webhooks.secret = args.webhook_secret.clone().filter(|s| !s.is_empty());
    opts.webhooks.allow_private = args.webhook_allow_private;
    opts.api_keys = args
        .api_keys
        .iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(path) = &args.api_keys_file {
        match std::fs::read_to_string(path) {
            Ok(text) => opts.api_keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            ),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    opts.llm = match crate::llm::LlmConfig::resolve(
        args.llm_provider.as_deref(),
        args.llm_base_url.as_deref(),
        args.llm_model.as_deref(),
        args.llm_api_key.as_deref(),
    ) {
        Ok(llm) => crate::llm::LlmConfig {
            timeout: std::time::Duration::from_secs(args.llm_timeout_secs.max(1)),
            retries: args.llm_retries,
            stream: !args.llm_no_stream,
            ..llm
        },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        Some(url) => tracing::info!(base_url = %url, model = %opts.llm.model, "generation enabled"),
        None => tracing::info!("generation off: no language model configured (MANIMD_LLM_PROVIDER or MANIMD_LLM_BASE_URL)"),
    }
    let server = server::start(config, opts, &listener).await?;
    tracing::info!(%local, data_dir = %config.data_dir.display(), workers = opts.workers, "manimd serving");
    // Scripts and tests read the address from this line (the port may be 0).
    println!("manimd listening on http://{local}");
    server.serve(listener, opts, shutdown_signal()).await;
    Ok(())
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
