//! The chunks of split renders, and the workers alive to take them. A chunk
//! is queued, claimed, leased and heartbeated like a job, with every write
//! after the claim fenced by its lease owner and attempt; it belongs to one
//! attempt of its job, whose runner waits for it. Chunks stay out of the
//! job listings and counts: to a client, a split render is one job.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Dialect, Store, StoreError};
use crate::jobs::{now_ms, JobId};
use crate::protocol::ChunkRange;

/// Where a chunk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkStatus {
    Queued,
    Running,
    Done,
    Failed,
    Canceled,
}

impl ChunkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkStatus::Queued => "queued",
            ChunkStatus::Running => "running",
            ChunkStatus::Done => "done",
            ChunkStatus::Failed => "failed",
            ChunkStatus::Canceled => "canceled",
        }
    }

    fn parse(s: &str) -> Option<ChunkStatus> {
        Some(match s {
            "queued" => ChunkStatus::Queued,
            "running" => ChunkStatus::Running,
            "done" => ChunkStatus::Done,
            "failed" => ChunkStatus::Failed,
            "canceled" => ChunkStatus::Canceled,
            _ => return None,
        })
    }

    pub fn is_over(self) -> bool {
        matches!(
            self,
            ChunkStatus::Done | ChunkStatus::Failed | ChunkStatus::Canceled
        )
    }
}

/// One chunk's record.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub id: String,
    pub job_id: JobId,
    pub job_attempt: u32,
    pub index: u32,
    pub range: ChunkRange,
    /// Planned seconds of video.
    pub seconds: f64,
    pub status: ChunkStatus,
    pub attempts: u32,
    /// Frames drawn so far (saved as the chunk runs), or in all when done.
    pub frames: u64,
    /// When done: the cache keys of its pieces, by play.
    pub keys: Vec<(u32, String)>,
    /// The lease owner that drew it.
    pub node: Option<String>,
    pub render_secs: Option<f64>,
    /// When failed: the typed error's code.
    pub error: Option<String>,
}

const COLUMNS: &str = "id, job_id, job_attempt, idx, first_play, last_play, seconds, status, \
     attempts, frames, keys, node, render_secs, error";

fn from_row(r: &AnyRow) -> Result<Chunk, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("chunk {what}"));
    let int = |col: &str| -> Result<u32, StoreError> {
        let v: i64 = r.try_get(col)?;
        u32::try_from(v).map_err(|_| corrupt(col))
    };
    let job_id: String = r.try_get("job_id")?;
    let status: String = r.try_get("status")?;
    let keys: Option<String> = r.try_get("keys")?;
    let frames: i64 = r.try_get("frames")?;
    Ok(Chunk {
        id: r.try_get("id")?,
        job_id: JobId::parse(&job_id).ok_or_else(|| corrupt("job"))?,
        job_attempt: int("job_attempt")?,
        index: int("idx")?,
        range: ChunkRange {
            first: int("first_play")?,
            last: int("last_play")?,
        },
        seconds: r.try_get("seconds")?,
        status: ChunkStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        attempts: int("attempts")?,
        frames: u64::try_from(frames).map_err(|_| corrupt("frames"))?,
        keys: match keys {
            Some(k) => serde_json::from_str(&k).map_err(|_| corrupt("keys"))?,
            None => Vec::new(),
        },
        node: r.try_get("node")?,
        render_secs: r.try_get("render_secs")?,
        error: r.try_get("error")?,
    })
}

/// How a chunk run ended, as it is stored.
pub struct ChunkEnding<'a> {
    pub status: ChunkStatus,
    pub frames: u64,
    pub keys: &'a [(u32, String)],
    pub render_secs: f64,
    pub error: Option<&'a str>,
}

impl Store {
    /// Queues the chunks of one attempt of a job, in order.
    pub async fn insert_chunks(
        &self,
        job: &JobId,
        attempt: u32,
        ranges: &[(ChunkRange, f64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        for (index, (range, seconds)) in ranges.iter().enumerate() {
            sqlx::query(
                "INSERT INTO chunks (id, job_id, job_attempt, idx, first_play, last_play, seconds, status, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8)",
            )
            .bind(format!("{job}.{attempt}.{index}"))
            .bind(job.as_str())
            .bind(i64::from(attempt))
            .bind(index as i64)
            .bind(i64::from(range.first))
            .bind(i64::from(range.last))
            .bind(*seconds)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes the oldest queued chunk (of `job`'s attempt when given) and
    /// leases it to `owner`.
    pub async fn claim_chunk(
        &self,
        owner: &str,
        lease: Duration,
        of: Option<(&JobId, u32)>,
    ) -> Result<Option<Chunk>, StoreError> {
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let (job, attempt) = of.map(|(j, a)| (j.as_str(), i64::from(a))).unzip();
        let row = sqlx::query(&format!(
            "UPDATE chunks SET status = 'running', attempts = attempts + 1, lease_owner = $1, \
             lease_expires_ms = $2, frames = 0 \
             WHERE id = (SELECT id FROM chunks WHERE status = 'queued' \
             AND ($3 IS NULL OR (job_id = $4 AND job_attempt = $5)) \
             ORDER BY created_ms, idx LIMIT 1{lock}) \
             RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(now_ms() + lease.as_millis() as i64)
        .bind(job)
        .bind(job)
        .bind(attempt)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// Extends a chunk's lease and saves its frames; false when this run no
    /// longer holds it (lost, or canceled with its job).
    pub async fn heartbeat_chunk(
        &self,
        chunk: &Chunk,
        owner: &str,
        lease: Duration,
        frames: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE chunks SET lease_expires_ms = $1, frames = $2 \
             WHERE id = $3 AND status = 'running' AND lease_owner = $4 AND attempts = $5",
        )
        .bind(now_ms() + lease.as_millis() as i64)
        .bind(frames as i64)
        .bind(&chunk.id)
        .bind(owner)
        .bind(i64::from(chunk.attempts))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a chunk run (fenced).
    pub async fn finish_chunk(
        &self,
        chunk: &Chunk,
        owner: &str,
        e: &ChunkEnding<'_>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE chunks SET status = $1, frames = $2, keys = $3, node = $4, render_secs = $5, error = $6, \
             lease_owner = NULL, lease_expires_ms = NULL \
             WHERE id = $7 AND status = 'running' AND lease_owner = $8 AND attempts = $9",
        )
        .bind(e.status.as_str())
        .bind(e.frames as i64)
        .bind(serde_json::to_string(e.keys).expect("serializable"))
        .bind(owner)
        .bind(e.render_secs)
        .bind(e.error)
        .bind(&chunk.id)
        .bind(owner)
        .bind(i64::from(chunk.attempts))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a chunk stopped for shutdown back to the queue, without
    /// counting the interrupted attempt.
    pub async fn release_chunk(&self, chunk: &Chunk, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE chunks SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, \
             lease_expires_ms = NULL, frames = 0 \
             WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3",
        )
        .bind(&chunk.id)
        .bind(owner)
        .bind(i64::from(chunk.attempts))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels every chunk of `job` that has not ended (any attempt): a
    /// running one's next heartbeat finds it gone and stops.
    pub async fn cancel_chunks(&self, job: &JobId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE chunks SET status = 'canceled', lease_owner = NULL, lease_expires_ms = NULL \
             WHERE job_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(job.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The chunks of one attempt of a job, in order.
    pub async fn chunks_of(&self, job: &JobId, attempt: u32) -> Result<Vec<Chunk>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM chunks WHERE job_id = $1 AND job_attempt = $2 ORDER BY idx"
        ))
        .bind(job.as_str())
        .bind(i64::from(attempt))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Removes the chunk records of a job (it ended or was deleted).
    pub async fn delete_chunks(&self, job: &JobId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM chunks WHERE job_id = $1")
            .bind(job.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Re-queues running chunks whose lease expired (a worker died), and
    /// fails those out of attempts. Returns how many were re-queued.
    pub async fn reap_chunks(&self, max_attempts: u32) -> Result<u64, StoreError> {
        let now = now_ms();
        let requeued = sqlx::query(
            "UPDATE chunks SET status = 'queued', lease_owner = NULL, lease_expires_ms = NULL, frames = 0 \
             WHERE status = 'running' AND lease_expires_ms < $1 AND attempts < $2",
        )
        .bind(now)
        .bind(i64::from(max_attempts))
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE chunks SET status = 'failed', error = 'interrupted', lease_owner = NULL, lease_expires_ms = NULL \
             WHERE status = 'running' AND lease_expires_ms < $1 AND attempts >= $2",
        )
        .bind(now)
        .bind(i64::from(max_attempts))
        .execute(&self.pool)
        .await?;
        Ok(requeued.rows_affected())
    }

    /// Says that `owner` is alive with `slots` workers.
    pub async fn register_worker(&self, owner: &str, slots: u32) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workers (owner, slots, seen_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (owner) DO UPDATE SET slots = excluded.slots, seen_ms = excluded.seen_ms",
        )
        .bind(owner)
        .bind(i64::from(slots))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn unregister_worker(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM workers WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Workers of the nodes seen within `within`.
    pub async fn live_workers(&self, within: Duration) -> Result<u32, StoreError> {
        // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back.
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(slots), 0) AS BIGINT) FROM workers WHERE seen_ms > $1",
        )
        .bind(now_ms() - within.as_millis() as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}
