//! Webhooks: when a job that carries a `webhook_url` ends, its record is
//! POSTed there, signed with HMAC-SHA256 over the timestamp and the body,
//! and retried with backoff.
//!
//! No SSRF: a URL must be http(s), and every address its host resolves to
//! must be public (not loopback, private, link-local, ...) unless the server
//! is configured otherwise. The address checked is the address connected to
//! (no second lookup), and redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::JobView;
use crate::jobs::{Job, JobStatus};
use crate::secret::Secret;

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Signs deliveries; without it, requests with a `webhook_url` are refused.
    pub secret: Option<Secret>,
    /// Allow loopback and private addresses (for tests and private networks).
    pub allow_private: bool,
    pub attempts: u32,
    /// The first retry's delay; each next one doubles it.
    pub backoff: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secret: None,
            allow_private: false,
            attempts: 5,
            backoff: Duration::from_secs(1),
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

/// Calls `try_once` up to `attempts` times, waiting `backoff` after the first
/// failure and twice as long after each next one; true once it succeeds.
async fn with_retries<F, Fut>(attempts: u32, backoff: Duration, mut try_once: F) -> bool
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut delay = backoff;
    for attempt in 1..=attempts {
        if try_once(attempt).await.is_ok() {
            return true;
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    false
}

/// Addresses a webhook must never reach unless explicitly allowed.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden(IpAddr::V4(v4));
            }
            // Transition prefixes reach the IPv4 address they embed.
            if embedded_v4(v6)
                .into_iter()
                .any(|v4| is_forbidden(IpAddr::V4(v4)))
            {
                return true;
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// The IPv4 addresses an IPv6 address of a transition prefix carries:
/// NAT64 (`64:ff9b::/96`, and `64:ff9b:1::/48` in its /48 and /96 forms,
/// RFC 6052), 6to4 (`2002::/16`) and Teredo (`2001::/32`: its server, and
/// its client, stored inverted).
fn embedded_v4(v6: std::net::Ipv6Addr) -> Vec<std::net::Ipv4Addr> {
    use std::net::Ipv4Addr;
    let o = v6.octets();
    let s = v6.segments();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match (s[0], s[1], s[2]) {
        (0x0064, 0xff9b, 0) if s[3..6] == [0, 0, 0] => vec![last],
        (0x0064, 0xff9b, 1) => vec![last, Ipv4Addr::new(o[6], o[7], o[9], o[10])],
        (0x2002, ..) => vec![Ipv4Addr::new(o[2], o[3], o[4], o[5])],
        (0x2001, 0, _) => vec![
            Ipv4Addr::new(o[4], o[5], o[6], o[7]),
            Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]),
        ],
        _ => Vec::new(),
    }
}

pub struct Webhooks {
    cfg: WebhookConfig,
}

/// A URL that passed the checks, with the address to connect to.
struct Target {
    url: reqwest::Url,
    host: String,
    addr: SocketAddr,
}

impl Webhooks {
    pub fn new(cfg: WebhookConfig) -> Arc<Webhooks> {
        Arc::new(Webhooks { cfg })
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

    /// Sends an ended job's record to its webhook, if it has one: wherever
    /// the job ends (a run, a cache hit, a cancel).
    pub fn job_ended(self: &Arc<Self>, job: &Job) {
        let Some(url) = &job.webhook_url else { return };
        if !job.status.is_terminal() {
            return;
        }
        let event = match job.status {
            JobStatus::Succeeded => "render.succeeded",
            JobStatus::Failed => "render.failed",
            _ => "render.canceled",
        };
        let body = serde_json::to_vec(&JobView::from(job)).unwrap_or_default();
        self.deliver(url.clone(), event, body);
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
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Delivers `body` in the background, retrying with backoff.
    pub fn deliver(self: &Arc<Self>, url: String, event: &'static str, body: Vec<u8>) {
        let hooks = Arc::clone(self);
        tokio::spawn(async move {
            let (attempts, backoff) = (hooks.cfg.attempts, hooks.cfg.backoff);
            let delivered = with_retries(attempts, backoff, |attempt| {
                let hooks = Arc::clone(&hooks);
                let (url, body) = (url.clone(), body.clone());
                async move {
                    let result = hooks.try_once(&url, event, &body).await;
                    if let Err(err) = &result {
                        tracing::warn!(attempt, %err, "webhook delivery failed");
                    }
                    result
                }
            })
            .await;
            if !delivered {
                tracing::error!(attempts, "webhook not delivered; giving up");
            }
        });
    }

    async fn try_once(&self, url: &str, event: &str, body: &[u8]) -> Result<(), String> {
        // Resolved and checked again for each attempt; the checked address is
        // the one connected to.
        let target = self.resolve(url).await.map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&target.host, target.addr)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
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
            .map_err(|e| e.without_url().to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", r.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backoff doubles after each failure and stops at the first
    /// success, or after the last attempt; time is moved, not waited for.
    #[tokio::test(start_paused = true)]
    async fn retries_back_off_doubling_until_one_succeeds() {
        let start = tokio::time::Instant::now();
        let calls = std::sync::Mutex::new(Vec::new());
        let backoff = Duration::from_secs(1);
        let delivered = with_retries(5, backoff, |attempt| {
            calls.lock().unwrap().push(start.elapsed());
            async move {
                (attempt == 3)
                    .then_some(())
                    .ok_or(format!("failed {attempt}"))
            }
        })
        .await;
        assert!(delivered);
        let secs = |s| Duration::from_secs(s);
        assert_eq!(*calls.lock().unwrap(), [secs(0), secs(1), secs(3)]);

        calls.lock().unwrap().clear();
        let start = tokio::time::Instant::now();
        let never = with_retries(4, backoff, |_| {
            calls.lock().unwrap().push(start.elapsed());
            async { Err("down".to_owned()) }
        })
        .await;
        assert!(!never);
        assert_eq!(
            *calls.lock().unwrap(),
            [secs(0), secs(1), secs(3), secs(7)],
            "no wait after the last attempt"
        );
        assert_eq!(start.elapsed(), secs(7));
    }

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            // IPv4 inside transition prefixes: NAT64, 6to4, Teredo.
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:7f00:1::",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:a00:1::1",
        ] {
            assert!(is_forbidden(bad.parse().unwrap()), "{bad}");
        }
        for ok in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(!is_forbidden(ok.parse().unwrap()), "{ok}");
        }
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = Webhooks::sign("k", 1, b"{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, Webhooks::sign("k", 2, b"{}"));
        assert_ne!(a, Webhooks::sign("k", 1, b"{ }"));
        assert_ne!(a, Webhooks::sign("j", 1, b"{}"));
    }
}
