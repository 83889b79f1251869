//! The store's part for generation jobs: their record (`Generation`) in the
//! `generations` table next to the job. Placeholders are numbered (`$1`) in
//! order of first appearance, as SQLite and PostgreSQL both accept them.

use super::store::{Store, StoreError};
use super::{now_ms, Job, JobId};
use crate::generate::Generation;
use crate::spec::RenderSpec;

impl Store {
    /// Stores a generation job and its record together. It has no cache
    /// key: a generation is never answered from the cache. With `claim`
    /// (lease owner, lease), it is stored already running, attempt 1, under
    /// that lease: for a job that must run where it was submitted.
    pub async fn insert_generation(
        &self,
        id: &JobId,
        spec: &RenderSpec,
        owner: Option<&str>,
        generation: &Generation,
        claim: Option<(&str, std::time::Duration)>,
    ) -> Result<Job, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let (status, attempts, lease_owner, lease_expires, started) = match claim {
            Some((holder, lease)) => (
                "running",
                1i64,
                Some(holder),
                Some(now + lease.as_millis() as i64),
                Some(now),
            ),
            None => ("queued", 0, None, None, None),
        };
        sqlx::query(
            "INSERT INTO jobs (id, status, spec, owner, created_ms, attempts, lease_owner, lease_expires_ms, started_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.as_str())
        .bind(status)
        .bind(serde_json::to_string(spec).expect("serializable"))
        .bind(owner)
        .bind(now)
        .bind(attempts)
        .bind(lease_owner)
        .bind(lease_expires)
        .bind(started)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO generations (job_id, prompt, record, updated_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.as_str())
        .bind(&generation.prompt)
        .bind(serde_json::to_string(generation).expect("serializable"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted job vanished".into()))
    }

    /// A job's generation record; `None` for an ordinary render.
    pub async fn generation(&self, id: &JobId) -> Result<Option<Generation>, StoreError> {
        let record: Option<String> =
            sqlx::query_scalar("SELECT record FROM generations WHERE job_id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        record
            .map(|r| serde_json::from_str(&r).map_err(|_| StoreError::Corrupt("generation".into())))
            .transpose()
    }

    /// Saves the record of a running generation and the code of its latest
    /// attempt into the spec; fenced like every write after the claim.
    pub async fn save_generation(
        &self,
        id: &JobId,
        owner: &str,
        attempt: u32,
        generation: &Generation,
        spec: &RenderSpec,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET spec = $1 WHERE id = $2 AND status = 'running' AND lease_owner = $3 AND attempts = $4",
        )
        .bind(serde_json::to_string(spec).expect("serializable"))
        .bind(id.as_str())
        .bind(owner)
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("UPDATE generations SET record = $1, updated_ms = $2 WHERE job_id = $3")
            .bind(serde_json::to_string(generation).expect("serializable"))
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes a job's generation record (with the job itself).
    pub async fn delete_generation(&self, id: &JobId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM generations WHERE job_id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Fills in `job.generation` from its record, if it has one.
    pub async fn attach_generation(&self, job: &mut Job) -> Result<(), StoreError> {
        job.generation = self.generation(&job.id).await?;
        Ok(())
    }
}
