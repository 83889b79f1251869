//! The durable job store: one set of SQL statements that both the embedded
//! SQLite and PostgreSQL run, through sqlx's `Any` driver. Placeholders are
//! `$1, $2, ...` numbered in order of first use, which both databases read
//! the same way. Every state change after the claim is fenced by the lease
//! owner and the attempt number, so a stale worker cannot overwrite a newer
//! run.
//!
//! This module owns the store itself (opening, the dialect, signals) and a
//! job's record (insert, read, list, count, delete); `queue` owns the lease
//! and its fenced writes, `cache` the cached results and followers,
//! `outbox` the webhook deliveries, `rows` the row mapping.

mod cache;
mod chunks;
mod outbox;
mod queue;
mod rows;

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor as _, Row as _};

use self::rows::{from_row, ids, COLUMNS};
use super::{now_ms, Job, JobId, JobProgress, JobStatus, WebhookDelivery};
use crate::spec::RenderSpec;
pub use chunks::{Chunk, ChunkEnding, ChunkStatus};
pub use outbox::{ClaimedWebhook, WebhookAttempt};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("job store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job store holds a malformed record: {0}")]
    Corrupt(String),
    #[error("job store: {0}")]
    Config(String),
}

/// A page of a listing, newest first.
pub struct Page {
    pub jobs: Vec<Job>,
    /// Pass back as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// What a new job is stored with.
pub struct NewJob<'a> {
    pub id: &'a JobId,
    pub spec: &'a RenderSpec,
    pub cache_key: &'a str,
    /// The identical job in flight that this one waits for.
    pub follows: Option<&'a JobId>,
    pub owner: Option<&'a str>,
    pub webhook_url: Option<&'a str>,
}

/// A job this worker now holds the lease of, at `attempt`.
pub struct Claimed {
    pub job: Job,
    pub attempt: u32,
}

/// Which database a store runs on: the SQL is shared, a few clauses are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pub(super) pool: AnyPool,
    dialect: Dialect,
    /// The connection URL, kept for listeners that need their own connection
    /// (PostgreSQL's LISTEN). Never logged: it may hold a password.
    url: String,
}

impl Store {
    /// Opens the database named by `url` (`postgres://...`, `sqlite:PATH`
    /// or a plain path to a SQLite file) and applies its migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if Store::is_shared_url(url) {
            return Store::open_postgres(url).await;
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        Store::open_sqlite(Path::new(path)).await
    }

    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let path = path
            .to_str()
            .ok_or_else(|| StoreError::Config("the database path is not UTF-8".into()))?;
        if path.contains(['?', '#']) {
            return Err(StoreError::Config(
                "the database path may not contain '?' or '#'".into(),
            ));
        }
        let url = format!("sqlite://{path}?mode=rwc");
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL with synchronous=FULL: a job acknowledged with 202
                    // survives a power cut, and readers never block the writer.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store {
            pool,
            dialect: Dialect::Sqlite,
            url,
        })
    }

    /// Connects to PostgreSQL and applies migrations. Several nodes share
    /// one database: the migrator's advisory lock lets one of them migrate.
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Store {
            pool,
            dialect: Dialect::Postgres,
            url: url.to_owned(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether other processes share this store (PostgreSQL), so that a
    /// lease held now may be alive elsewhere and signals go through the
    /// database. SQLite is one process's own.
    pub fn is_shared(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// Whether `url` names a store that several nodes can share.
    pub fn is_shared_url(url: &str) -> bool {
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// The URL this store connected with (may hold a password: do not log).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the database answers now (one trivial query).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Sends a PostgreSQL notification on `channel` (nothing on SQLite,
    /// where one process holds the store and signals in memory).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Stores a queued job; with `follows`, it waits for that identical job
    /// instead of being claimed.
    pub async fn insert(&self, new: &NewJob<'_>) -> Result<Job, StoreError> {
        let created_ms = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, status, spec, cache_key, follows, owner, webhook_url, created_ms) \
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7)",
        )
        .bind(new.id.as_str())
        .bind(serde_json::to_string(new.spec).expect("serializable"))
        .bind(new.cache_key)
        .bind(new.follows.map(JobId::as_str))
        .bind(new.owner)
        .bind(new.webhook_url)
        .bind(created_ms)
        .execute(&mut *tx)
        .await?;
        outbox_row(&mut tx, new).await?;
        tx.commit().await?;
        // The row as written, not read back: a project's spec is tens of
        // kilobytes that every submission would parse again.
        Ok(Job {
            id: new.id.clone(),
            status: JobStatus::Queued,
            spec: new.spec.clone(),
            cache_key: Some(new.cache_key.to_owned()),
            follows: new.follows.cloned(),
            owner: new.owner.map(str::to_owned),
            webhook_url: new.webhook_url.map(str::to_owned),
            attempts: 0,
            cancel_requested: false,
            progress: JobProgress::default(),
            error: None,
            result: None,
            created_ms,
            started_ms: None,
            finished_ms: None,
            generation: None,
            webhook: new.webhook_url.map(|_| WebhookDelivery::default()),
        })
    }

    pub async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut job) = row.map(|r| from_row(&r)).transpose()? else {
            return Ok(None);
        };
        self.attach_generation(&mut job).await?;
        self.attach_webhook(&mut job).await?;
        Ok(Some(job))
    }

    /// Newest first. The cursor is `<created_ms>.<id>` of the last job seen.
    pub async fn list(
        &self,
        owner: Option<&str>,
        status: Option<JobStatus>,
        limit: u32,
        cursor: Option<(i64, JobId)>,
    ) -> Result<Page, StoreError> {
        let (c_ms, c_id) = cursor
            .map(|(ms, id)| (ms, id.0))
            .unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs \
             WHERE ($1 IS NULL OR owner = $2) AND ($3 IS NULL OR status = $4) \
             AND (created_ms < $5 OR (created_ms = $6 AND id < $7) OR $8 = '') \
             ORDER BY created_ms DESC, id DESC LIMIT $9"
        ))
        .bind(owner)
        .bind(owner)
        .bind(status.map(|s| s.as_str()))
        .bind(status.map(|s| s.as_str()))
        .bind(c_ms)
        .bind(c_ms)
        .bind(&c_id)
        .bind(&c_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        for job in &mut jobs {
            self.attach_generation(job).await?;
            self.attach_webhook(job).await?;
        }
        let next_cursor = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last().map(|j| format!("{}.{}", j.created_ms, j.id))
        } else {
            None
        };
        Ok(Page { jobs, next_cursor })
    }

    pub async fn delete(&self, id: &JobId) -> Result<bool, StoreError> {
        self.delete_generation(id).await?;
        self.delete_chunks(id).await?;
        self.delete_webhook(id).await?;
        let done = sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Queued and running jobs of `owner`.
    pub async fn active(&self, owner: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE owner = $1 AND status IN ('queued', 'running')",
        )
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    pub async fn count(&self, status: JobStatus) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// Finished jobs that ended before `before_ms`.
    pub async fn expired(&self, before_ms: i64) -> Result<Vec<JobId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_ms < $1 LIMIT 1000",
        )
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids(&rows))
    }

    /// The owner and spec of every queued or running job: what the blob
    /// store keeps (a spec names its project's blobs).
    pub async fn active_specs(&self) -> Result<Vec<(Option<String>, RenderSpec)>, StoreError> {
        let rows =
            sqlx::query("SELECT owner, spec FROM jobs WHERE status IN ('queued', 'running')")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let owner: Option<String> = r.try_get("owner")?;
            let spec: String = r.try_get("spec")?;
            // A row this version cannot read names no blob it knows.
            if let Ok(spec) = serde_json::from_str(&spec) {
                out.push((owner, spec));
            }
        }
        Ok(out)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A new job's outbox row when it has a webhook, in the transaction that
/// stores the job: a job that ends is never without its delivery.
async fn outbox_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    new: &NewJob<'_>,
) -> Result<(), StoreError> {
    if new.webhook_url.is_some() {
        sqlx::query("INSERT INTO webhook_deliveries (job_id) VALUES ($1)")
            .bind(new.id.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
