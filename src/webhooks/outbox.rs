//! The delivery loop over the store's webhook outbox: every node that has
//! the secret claims the deliveries that are due (their job ended, their
//! retry time came), makes one attempt each and records it, with the next
//! attempt's time or the end. Nothing lives only in memory, so a restart,
//! or another node, picks up where a stopped one left off.
//!
//! At least once: a node that dies after the receiver took a delivery but
//! before recording it leaves a lease that expires, and the delivery is
//! made again. Receivers tell the two apart by the job's id.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Webhooks;
use crate::api::JobView;
use crate::jobs::{now_ms, ClaimedWebhook, JobStatus, Store, WebhookAttempt};

/// How long a node holds a delivery it attempts: well beyond one attempt's
/// timeout, so a live node never loses it mid-attempt.
const LEASE: Duration = Duration::from_secs(60);

/// Deliveries claimed per look.
const BATCH: u32 = 16;

/// The longest wait between two attempts, however many failed.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// The wait after the `attempt`-th failure (1-based): `backoff`, then
/// twice as long after each next one, at most `MAX_DELAY`.
pub fn retry_delay(backoff: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    backoff.saturating_mul(factor).min(MAX_DELAY)
}

impl Webhooks {
    /// Delivers what the outbox holds for as long as the node runs: looks
    /// when a job ends here (`job_ended`) and at least every `poll`, which
    /// finds jobs that ended elsewhere and retries that came due. When the
    /// node stops it claims nothing more and returns once the attempts in
    /// flight are recorded, so that none is made without its record.
    pub async fn run_outbox(
        self: Arc<Self>,
        store: Store,
        owner: String,
        mut stopping: watch::Receiver<bool>,
    ) {
        let poll = self
            .cfg
            .backoff
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut attempts = tokio::task::JoinSet::new();
        loop {
            while attempts.try_join_next().is_some() {}
            match store.claim_webhooks(&owner, LEASE, BATCH).await {
                Ok(claimed) => {
                    for delivery in claimed {
                        let (me, store, owner) = (Arc::clone(&self), store.clone(), owner.clone());
                        attempts.spawn(async move { me.attempt(&store, &owner, delivery).await });
                    }
                }
                Err(err) => tracing::warn!(%err, "cannot read the webhook outbox"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stopping.changed() => break,
            }
        }
        while attempts.join_next().await.is_some() {}
    }

    /// Makes one attempt of a claimed delivery and records how it went.
    async fn attempt(&self, store: &Store, owner: &str, claimed: ClaimedWebhook) {
        let id = &claimed.job_id;
        let job = match store.get(id).await {
            Ok(Some(job)) => job,
            // Deleted since: its outbox row went with it.
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%err, %id, "cannot read a webhook's job; the lease will lapse");
                return;
            }
        };
        let Some(url) = job.webhook_url.clone() else {
            return;
        };
        let event = match job.status {
            JobStatus::Succeeded => "render.succeeded",
            JobStatus::Failed => "render.failed",
            _ => "render.canceled",
        };
        // The record as it ended, without the delivery's own bookkeeping.
        let mut view = JobView::from(&job);
        view.webhook = None;
        let body = serde_json::to_vec(&view).unwrap_or_default();
        let number = claimed.attempts + 1;
        let outcome = match self.try_once(&url, event, &body).await {
            Ok(status) => {
                tracing::info!(%id, attempt = number, status, "webhook delivered");
                WebhookAttempt::Delivered { status }
            }
            Err(failure) => {
                let retry_at_ms = (number < self.cfg.attempts)
                    .then(|| now_ms() + retry_delay(self.cfg.backoff, number).as_millis() as i64);
                if retry_at_ms.is_some() {
                    tracing::warn!(%id, attempt = number, reason = %failure.reason, "webhook delivery failed; will retry");
                } else {
                    tracing::error!(%id, attempts = number, reason = %failure.reason, "webhook not delivered; giving up");
                }
                WebhookAttempt::Failed {
                    status: failure.status,
                    error: failure.reason,
                    retry_at_ms,
                }
            }
        };
        match store.record_webhook(id, owner, &outcome).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%id, "the webhook's lease lapsed before its attempt was recorded")
            }
            Err(err) => tracing::warn!(%err, %id, "cannot record a webhook attempt"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_up_to_an_hour() {
        let secs = Duration::from_secs;
        let table = [
            (1, secs(2)),
            (2, secs(4)),
            (3, secs(8)),
            (7, secs(128)),
            (11, secs(2048)),
            (12, MAX_DELAY),
            (40, MAX_DELAY),
            (u32::MAX, MAX_DELAY),
        ];
        for (attempt, want) in table {
            assert_eq!(
                retry_delay(secs(2), attempt),
                want,
                "after attempt {attempt}"
            );
        }
        assert_eq!(retry_delay(Duration::from_millis(200), 1).as_millis(), 200);
    }
}
