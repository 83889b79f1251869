//! The webhook outbox's side of the store: a row per job that has a
//! `webhook_url`, written with the job, claimed under a lease once the job
//! has ended, and updated after each attempt (fenced by the lease owner).
//! Delivery lives in `webhooks`; this is only what survives a restart.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{Dialect, Store, StoreError};
use crate::jobs::{now_ms, Job, JobId, WebhookDelivery};

/// How one attempt ended, as the outbox records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookAttempt {
    /// The receiver answered 2xx with this status.
    Delivered { status: u16 },
    /// It did not: the receiver's status if it answered, why, and when to
    /// try next (`None`: no attempts are left).
    Failed {
        status: Option<u16>,
        error: String,
        retry_at_ms: Option<i64>,
    },
}

/// A delivery this node now holds the lease of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedWebhook {
    pub job_id: JobId,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// The statuses of an ended job, for the outbox's queries.
const ENDED: &str = "('succeeded', 'failed', 'canceled')";

impl Store {
    /// Leases to `owner` up to `limit` deliveries that are due: their job
    /// has ended, they are neither delivered nor given up, their next
    /// attempt's time has come and no live lease holds them.
    pub async fn claim_webhooks(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedWebhook>, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(&format!(
            "SELECT d.job_id, d.attempts FROM webhook_deliveries d JOIN jobs j ON j.id = d.job_id \
             WHERE d.delivered_ms IS NULL AND d.gave_up_ms IS NULL AND j.status IN {ENDED} \
             AND (d.next_ms IS NULL OR d.next_ms <= $1) \
             AND (d.lease_expires_ms IS NULL OR d.lease_expires_ms < $2) \
             ORDER BY j.finished_ms LIMIT $3"
        ))
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for r in &rows {
            let Some(job_id) = JobId::parse(&r.try_get::<String, _>("job_id")?) else {
                continue;
            };
            let attempts = r.try_get::<i64, _>("attempts")?;
            // Fenced by the attempts read: a node that saw the row before
            // another one's attempt was recorded cannot take it again.
            let done = sqlx::query(
                "UPDATE webhook_deliveries SET lease_owner = $1, lease_expires_ms = $2 \
                 WHERE job_id = $3 AND attempts = $4 AND delivered_ms IS NULL AND gave_up_ms IS NULL \
                 AND (lease_expires_ms IS NULL OR lease_expires_ms < $5)",
            )
            .bind(owner)
            .bind(now + lease.as_millis() as i64)
            .bind(job_id.as_str())
            .bind(attempts)
            .bind(now)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                claimed.push(ClaimedWebhook {
                    job_id,
                    attempts: attempts as u32,
                });
            }
        }
        Ok(claimed)
    }

    /// Records an attempt of a delivery `owner` holds, and lets the lease
    /// go; false when the lease was no longer its own.
    pub async fn record_webhook(
        &self,
        id: &JobId,
        owner: &str,
        attempt: &WebhookAttempt,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let (status, error, delivered, next, gave_up) = match attempt {
            WebhookAttempt::Delivered { status } => (Some(*status), None, Some(now), None, None),
            WebhookAttempt::Failed {
                status,
                error,
                retry_at_ms,
            } => (
                *status,
                Some(error.as_str()),
                None,
                *retry_at_ms,
                retry_at_ms.is_none().then_some(now),
            ),
        };
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $1, last_error = $2, \
             delivered_ms = $3, next_ms = $4, gave_up_ms = $5, lease_owner = NULL, lease_expires_ms = NULL \
             WHERE job_id = $6 AND lease_owner = $7 AND delivered_ms IS NULL AND gave_up_ms IS NULL",
        )
        .bind(status.map(i64::from))
        .bind(error)
        .bind(delivered)
        .bind(next)
        .bind(gave_up)
        .bind(id.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Lets every delivery lease go: at start on SQLite, whose one process
    /// is the only holder, so a restart need not wait for them to expire.
    pub async fn release_webhooks(&self) -> Result<u64, StoreError> {
        if self.dialect != Dialect::Sqlite {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_ms = NULL \
             WHERE lease_owner IS NOT NULL",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Fills in `job.webhook` from the outbox, for a job that has a URL.
    pub(super) async fn attach_webhook(&self, job: &mut Job) -> Result<(), StoreError> {
        if job.webhook_url.is_none() {
            return Ok(());
        }
        let row = sqlx::query(
            "SELECT attempts, last_status, last_error, next_ms, delivered_ms, gave_up_ms \
             FROM webhook_deliveries WHERE job_id = $1",
        )
        .bind(job.id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        job.webhook = row.as_ref().map(delivery).transpose()?;
        Ok(())
    }

    /// Removes a job's outbox row (with the job itself).
    pub(super) async fn delete_webhook(&self, id: &JobId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE job_id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn delivery(r: &AnyRow) -> Result<WebhookDelivery, StoreError> {
    let status: Option<i64> = r.try_get("last_status")?;
    Ok(WebhookDelivery {
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: r.try_get("last_error")?,
        next_ms: r.try_get("next_ms")?,
        delivered_ms: r.try_get("delivered_ms")?,
        gave_up_ms: r.try_get("gave_up_ms")?,
    })
}
