//! The queue's side of the store: claiming the oldest job under a lease,
//! keeping the lease (heartbeat, progress), ending the run (finish, release,
//! cancel) and re-queuing the runs whose lease expired. Every write after
//! the claim is fenced by the lease owner and the attempt number.

use std::time::Duration;

use super::rows::{from_row, ids, COLUMNS};
use super::{Claimed, Dialect, Store, StoreError};
use crate::job_error::{ErrorCode, JobError};
use crate::jobs::{now_ms, JobId, JobProgress, JobResult, JobStatus};

impl Store {
    /// Takes the oldest queued job and leases it to `owner`.
    pub async fn claim(&self, owner: &str, lease: Duration) -> Result<Option<Claimed>, StoreError> {
        let now = now_ms();
        // SQLite serializes writers, so the inner SELECT cannot race; on
        // PostgreSQL, concurrent claimers skip the row another one locked.
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $1, \
             lease_expires_ms = $2, started_ms = $3, progress = NULL \
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND follows IS NULL ORDER BY created_ms, id LIMIT 1{lock}) \
             RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(mut job) = row.map(|r| from_row(&r)).transpose()? else {
            return Ok(None);
        };
        self.attach_generation(&mut job).await?;
        Ok(Some(Claimed {
            attempt: job.attempts,
            job,
        }))
    }

    /// Extends a lease; false when this worker no longer holds it.
    pub async fn heartbeat(
        &self,
        id: &JobId,
        owner: &str,
        attempt: u32,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_ms = $1 WHERE id = $2 AND status = 'running' AND lease_owner = $3 AND attempts = $4",
        )
        .bind(now_ms() + lease.as_millis() as i64)
        .bind(id.as_str())
        .bind(owner)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn save_progress(
        &self,
        id: &JobId,
        owner: &str,
        attempt: u32,
        progress: &JobProgress,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET progress = $1 WHERE id = $2 AND status = 'running' AND lease_owner = $3 AND attempts = $4",
        )
        .bind(serde_json::to_string(progress).expect("serializable"))
        .bind(id.as_str())
        .bind(owner)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a run: fenced, so only the current lease holder's outcome counts.
    pub async fn finish(
        &self,
        id: &JobId,
        owner: &str,
        attempt: u32,
        status: JobStatus,
        error: Option<&JobError>,
        result: Option<&JobResult>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, error = $2, result = $3, finished_ms = $4, lease_owner = NULL, lease_expires_ms = NULL \
             WHERE id = $5 AND status = 'running' AND lease_owner = $6 AND attempts = $7",
        )
        .bind(status.as_str())
        .bind(error.map(|e| serde_json::to_string(e).expect("serializable")))
        .bind(result.map(|r| serde_json::to_string(r).expect("serializable")))
        .bind(now_ms())
        .bind(id.as_str())
        .bind(owner)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a running job back to the queue (a graceful stop), without
    /// counting the interrupted attempt.
    pub async fn release(&self, id: &JobId, owner: &str, attempt: u32) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, lease_expires_ms = NULL, \
             started_ms = NULL, progress = NULL \
             WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a running job back to the queue with its attempt counted: the
    /// run ended without a fault of the job's (its files could not be
    /// stored), and another run may succeed.
    pub async fn requeue(&self, id: &JobId, owner: &str, attempt: u32) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_ms = NULL, \
             started_ms = NULL, progress = NULL \
             WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels a queued job at once, or asks for a running one to be stopped.
    /// Returns the job's status before the call, or `None` if there is no such job.
    ///
    /// One statement, so the status it reports is the one it acted on: a
    /// job claimed, or put back in the queue by a reaper, between a read
    /// and a write could otherwise be reported canceled while its cancel
    /// was recorded nowhere (see `cancel_racing_claims_is_never_lost`).
    pub async fn cancel(&self, id: &JobId) -> Result<Option<JobStatus>, StoreError> {
        // SET expressions read the row as it was: a queued job ends here,
        // a running one keeps running with the flag its heartbeat reads.
        let after: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET cancel_requested = 1, \
             finished_ms = CASE WHEN status = 'queued' THEN $1 ELSE finished_ms END, \
             status = CASE WHEN status = 'queued' THEN 'canceled' ELSE status END \
             WHERE id = $2 AND status IN ('queued', 'running') RETURNING status",
        )
        .bind(now_ms())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match after.as_deref() {
            Some("canceled") => Ok(Some(JobStatus::Queued)),
            Some(_) => Ok(Some(JobStatus::Running)),
            // Ended or absent: neither changes back, so a read is exact.
            None => Ok(self.get(id).await?.map(|job| job.status)),
        }
    }

    /// Re-queues running jobs whose lease has expired (all of them when
    /// `everything` is set: a single node at start holds no live leases),
    /// failing with `interrupted` those that used up their attempts.
    /// Returns the ids that were re-queued and failed.
    pub async fn reap_leases(
        &self,
        everything: bool,
        max_attempts: u32,
    ) -> Result<(Vec<JobId>, Vec<JobId>), StoreError> {
        let cutoff = if everything { i64::MAX } else { now_ms() };
        let requeued = sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_ms = NULL, started_ms = NULL, progress = NULL \
             WHERE status = 'running' AND lease_expires_ms < $1 AND attempts < $2 RETURNING id",
        )
        .bind(cutoff)
        .bind(i64::from(max_attempts))
        .fetch_all(&self.pool)
        .await?;
        let error = JobError::new(
            ErrorCode::Interrupted,
            format!(
                "the render was interrupted {max_attempts} times (the server stopped while it ran)"
            ),
        );
        let error = serde_json::to_string(&error).expect("serializable");
        let failed = sqlx::query(
            "UPDATE jobs SET status = 'failed', error = $1, finished_ms = $2, lease_owner = NULL, lease_expires_ms = NULL \
             WHERE status = 'running' AND lease_expires_ms < $3 AND attempts >= $4 RETURNING id",
        )
        .bind(&error)
        .bind(now_ms())
        .bind(cutoff)
        .bind(i64::from(max_attempts))
        .fetch_all(&self.pool)
        .await?;
        Ok((ids(&requeued), ids(&failed)))
    }
}
