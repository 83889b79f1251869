//! API keys: with keys configured, every `/v1` call and the compatibility
//! calls need `Authorization: Bearer <key>`. Each key has a request rate
//! (a token bucket) and its own jobs; keys themselves are kept only as
//! fingerprints, so they never reach logs or the database.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
// Tokio's clock, so that tests can move time instead of waiting for it.
use tokio::time::Instant;

use super::error::ApiError;
use crate::secret::Secret;

/// Who is calling: the fingerprint of their key, or nobody in particular
/// when the server runs without keys.
#[derive(Clone, Debug, Default)]
pub struct Caller(pub Option<String>);

impl Caller {
    pub fn owner(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default())
    }
}

/// A key's fingerprint: what jobs record as their owner.
pub fn fingerprint(key: &str) -> String {
    crate::project::hex(&Sha256::digest(key.as_bytes())[..16])
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Auth {
    keys: HashSet<String>,
    per_minute: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Auth {
    pub fn new(keys: &[Secret], per_minute: u32) -> Arc<Auth> {
        Arc::new(Auth {
            keys: keys.iter().map(|k| fingerprint(k.expose())).collect(),
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Takes a token from the key's bucket, or says how long until one is there.
    fn take(&self, key: &str) -> Result<(), u64> {
        let rate = self.per_minute / 60.0;
        let mut buckets = self.buckets.lock().expect("bucket lock");
        let now = Instant::now();
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.per_minute,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(self.per_minute);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Middleware for the routes that need a key.
pub async fn require_key(
    State(auth): State<Arc<Auth>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if auth.enabled() {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let fp = token
            .map(fingerprint)
            .filter(|fp| auth.keys.contains(fp))
            .ok_or(ApiError::Unauthorized)?;
        auth.take(&fp)
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        req.extensions_mut().insert(Caller(Some(fp)));
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_rate_then_says_when_to_retry() {
        let auth = Auth::new(&[Secret::new("k").unwrap()], 3);
        let fp = fingerprint("k");
        assert!(auth.take(&fp).is_ok());
        assert!(auth.take(&fp).is_ok());
        assert!(auth.take(&fp).is_ok());
        let retry = auth.take(&fp).unwrap_err();
        assert!((1..=20).contains(&retry), "{retry}");
        assert!(
            auth.take(&fingerprint("other")).is_ok(),
            "buckets are per key"
        );
        assert_ne!(fingerprint("a"), fingerprint("b"));
        assert_eq!(fingerprint("a").len(), 32);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refills_at_its_rate_up_to_its_size() {
        use std::time::Duration;
        let auth = Auth::new(&[Secret::new("k").unwrap()], 60);
        let fp = fingerprint("k");
        for _ in 0..60 {
            assert!(auth.take(&fp).is_ok());
        }
        assert_eq!(auth.take(&fp), Err(1), "one a second");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(auth.take(&fp), Err(1), "half a token is none");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(auth.take(&fp), Ok(()));
        assert!(auth.take(&fp).is_err());
        // An idle hour fills the bucket to its size, not beyond.
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..60 {
            assert!(auth.take(&fp).is_ok());
        }
        assert!(auth.take(&fp).is_err());
    }
}
