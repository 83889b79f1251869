//! The cache's side of the store: a finished job whose result a new one
//! can take, the identical job in flight that a new one can follow, and
//! handing a leader's outcome to its followers.

use super::rows::{from_row, ids, COLUMNS};
use super::{NewJob, Store, StoreError};
use crate::job_error::JobError;
use crate::jobs::{now_ms, Job, JobId, JobResult, JobStatus};

impl Store {
    /// Stores a job that is already done: a cache hit.
    pub async fn insert_done(
        &self,
        new: &NewJob<'_>,
        result: &JobResult,
    ) -> Result<Job, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, status, spec, cache_key, owner, webhook_url, result, created_ms, started_ms, finished_ms) \
             VALUES ($1, 'succeeded', $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new.id.as_str())
        .bind(serde_json::to_string(new.spec).expect("serializable"))
        .bind(new.cache_key)
        .bind(new.owner)
        .bind(new.webhook_url)
        .bind(serde_json::to_string(result).expect("serializable"))
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        super::outbox_row(&mut tx, new).await?;
        tx.commit().await?;
        self.get(new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted job vanished".into()))
    }

    /// The newest succeeded job with this cache key.
    pub async fn cached(&self, cache_key: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE cache_key = $1 AND status = 'succeeded' \
             ORDER BY finished_ms DESC LIMIT 1"
        ))
        .bind(cache_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// A queued or running job with this key that renders itself (follows none).
    pub async fn in_flight(&self, cache_key: &str) -> Result<Option<JobId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE cache_key = $1 AND status IN ('queued', 'running') AND follows IS NULL \
             ORDER BY created_ms LIMIT 1",
        )
        .bind(cache_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.as_deref().and_then(JobId::parse))
    }

    /// Queued jobs waiting for `leader`.
    pub async fn followers(&self, leader: &JobId) -> Result<Vec<JobId>, StoreError> {
        let rows = sqlx::query("SELECT id FROM jobs WHERE follows = $1 AND status = 'queued'")
            .bind(leader.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(ids(&rows))
    }

    /// Ends a follower with its leader's outcome.
    pub async fn finish_follower(
        &self,
        id: &JobId,
        status: JobStatus,
        error: Option<&JobError>,
        result: Option<&JobResult>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, error = $2, result = $3, started_ms = $4, finished_ms = $5, follows = NULL \
             WHERE id = $6 AND status = 'queued' AND follows IS NOT NULL",
        )
        .bind(status.as_str())
        .bind(error.map(|e| serde_json::to_string(e).expect("serializable")))
        .bind(result.map(|r| serde_json::to_string(r).expect("serializable")))
        .bind(now)
        .bind(now)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Makes jobs that follow `leader` (or any job, with `None`) ordinary
    /// queued jobs again: their leader will not deliver.
    pub async fn unfollow(&self, leader: Option<&JobId>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET follows = NULL WHERE follows IS NOT NULL AND ($1 IS NULL OR follows = $2)",
        )
        .bind(leader.map(JobId::as_str))
        .bind(leader.map(JobId::as_str))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Makes ordinary queued jobs of those whose leader ended (or is gone)
    /// without handing them its outcome: the node that ended it died, or
    /// lost the store, in between. Claimed, they find the leader's result
    /// in the cache, or render. Safe against a late hand-out: it only ends
    /// a job that still follows.
    pub async fn unfollow_ended(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET follows = NULL WHERE status = 'queued' AND follows IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM jobs l WHERE l.id = jobs.follows AND l.status IN ('queued', 'running'))",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
