//! Webhooks: when a job that carries a `webhook_url` ends, its record is
//! POSTed there, signed with HMAC-SHA256 over the timestamp and the body.
//! Deliveries go through an outbox in the job store (`outbox`): any node
//! with the secret makes each attempt and records it, retrying with
//! backoff, so a delivery survives a restart.
//!
//! No SSRF: a URL must be http(s), and every address its host resolves to
//! must be public (`address`: not loopback, private, link-local, ...)
//! unless the server is configured otherwise. The address checked is the
//! address connected to (no second lookup), and redirects are not followed.

mod address;
mod outbox;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::jobs::Job;
use crate::secret::Secret;

pub use address::is_forbidden;
pub use outbox::retry_delay;

/// Attempts per delivery: with the default backoff, the last one comes
/// about eight and a half minutes after the first.
pub const DEFAULT_ATTEMPTS: u32 = 8;
pub const DEFAULT_BACKOFF_SECS: u64 = 2;

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Signs deliveries; without it, requests with a `webhook_url` are refused.
    pub secret: Option<Secret>,
    /// Allow loopback and private addresses (for tests and private networks).
    pub allow_private: bool,
    /// Attempts per delivery before it is given up (`failed`).
    pub attempts: u32,
    /// The first retry's delay; each next one doubles it (at most an hour).
    pub backoff: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secret: None,
            allow_private: false,
            attempts: DEFAULT_ATTEMPTS,
            backoff: Duration::from_secs(DEFAULT_BACKOFF_SECS),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhooks are not configured on this server (MANIMD_WEBHOOK_SECRET)")]
    NotConfigured,
    #[error("not an http(s) URL with a host: {0}")]
    BadUrl(String),
    #[error("{0} resolves to {1}, a loopback, private or link-local address")]
    Forbidden(String, IpAddr),
    #[error("cannot resolve {0}")]
    Unresolved(String),
}

pub struct Webhooks {
    cfg: WebhookConfig,
    /// Rung when a job with a webhook ends here, so that the outbox looks
    /// at once rather than at its next poll.
    wake: tokio::sync::Notify,
}

/// Why an attempt failed: the receiver's status when it answered, and a
/// short reason the job record shows (no internals: it is the caller's).
#[derive(Debug)]
struct Failure {
    status: Option<u16>,
    reason: String,
}

/// A URL that passed the checks, with the address to connect to.
struct Target {
    url: reqwest::Url,
    host: String,
    addr: SocketAddr,
}

impl Webhooks {
    pub fn new(cfg: WebhookConfig) -> Arc<Webhooks> {
        Arc::new(Webhooks {
            cfg,
            wake: tokio::sync::Notify::new(),
        })
    }

    async fn resolve(&self, raw: &str) -> Result<Target, WebhookError> {
        if self.cfg.secret.is_none() {
            return Err(WebhookError::NotConfigured);
        }
        let url = reqwest::Url::parse(raw)
            .map_err(|_| WebhookError::BadUrl(raw.chars().take(200).collect()))?;
        let host = match (url.scheme(), url.host_str()) {
            ("http" | "https", Some(h)) if !h.is_empty() => {
                h.trim_start_matches('[').trim_end_matches(']').to_owned()
            }
            _ => return Err(WebhookError::BadUrl(raw.chars().take(200).collect())),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|_| WebhookError::Unresolved(host.clone()))?
                .collect(),
        };
        if !self.cfg.allow_private {
            if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                return Err(WebhookError::Forbidden(host, bad.ip()));
            }
        }
        let addr = *addrs
            .first()
            .ok_or_else(|| WebhookError::Unresolved(host.clone()))?;
        Ok(Target { url, host, addr })
    }

    /// Says that a job ended, wherever it ended (a run, a cache hit, a
    /// cancel): its delivery is already in the outbox, stored with the
    /// job, and this only hurries this node's outbox along. A job that ends
    /// on another node, or in no call at all (a lease reaped out of
    /// attempts), is found by the outbox's poll.
    pub fn job_ended(&self, job: &Job) {
        if job.webhook_url.is_some() && job.status.is_terminal() {
            self.wake.notify_one();
        }
    }

    /// Whether this node can sign deliveries, and so run the outbox.
    pub fn enabled(&self) -> bool {
        self.cfg.secret.is_some()
    }

    /// Checks a URL at submission.
    pub async fn check(&self, url: &str) -> Result<(), WebhookError> {
        self.resolve(url).await.map(|_| ())
    }

    /// The signature of a delivery: hex HMAC-SHA256 of `"{timestamp}.{body}"`.
    pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        crate::project::hex(&mac.finalize().into_bytes())
    }

    /// One attempt: the receiver's 2xx status, or why it failed.
    async fn try_once(&self, url: &str, event: &str, body: &[u8]) -> Result<u16, Failure> {
        let failed = |reason: String| Failure {
            status: None,
            reason,
        };
        // Resolved and checked again for each attempt; the checked address is
        // the one connected to.
        let target = self.resolve(url).await.map_err(|e| failed(e.to_string()))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&target.host, target.addr)
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let secret = self
            .cfg
            .secret
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let r = client
            .post(target.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("manimd/", env!("CARGO_PKG_VERSION")))
            .header("x-manimd-event", event)
            .header("x-manimd-timestamp", ts.to_string())
            .header(
                "x-manimd-signature",
                format!("sha256={}", Self::sign(secret, ts, body)),
            )
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| failed(transport_reason(&e)))?;
        let status = r.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(Failure {
                status: Some(status.as_u16()),
                reason: format!("the receiver answered {status}"),
            })
        }
    }
}

/// How long one attempt may take, connection and answer together.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A transport failure in a few words, without the URL or the OS's text.
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect to the receiver".into()
    } else {
        "the request failed before an answer".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = Webhooks::sign("k", 1, b"{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, Webhooks::sign("k", 2, b"{}"));
        assert_ne!(a, Webhooks::sign("k", 1, b"{ }"));
        assert_ne!(a, Webhooks::sign("j", 1, b"{}"));
    }
}
