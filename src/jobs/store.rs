//! The durable job store: one set of SQL statements that both the embedded
//! SQLite and PostgreSQL run, through sqlx's `Any` driver. Placeholders are
//! `$1, $2, ...` numbered in order of first use, which both databases read
//! the same way. Every state change after the claim is fenced by the lease
//! owner and the attempt number, so a stale worker cannot overwrite a newer
//! run.

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor as _, Row};

use super::{now_ms, Job, JobId, JobProgress, JobResult, JobStatus};
use crate::job_error::{ErrorCode, JobError};
use crate::spec::RenderSpec;

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

const COLUMNS: &str =
    "id, status, spec, cache_key, follows, owner, webhook_url, attempts, cancel_requested, progress, error, result, created_ms, started_ms, finished_ms";

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
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.get(new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted job vanished".into()))
    }

    /// Stores a job that is already done: a cache hit.
    pub async fn insert_done(
        &self,
        new: &NewJob<'_>,
        result: &JobResult,
    ) -> Result<Job, StoreError> {
        let now = now_ms();
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
        .execute(&self.pool)
        .await?;
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
        Ok(rows
            .iter()
            .filter_map(|r| JobId::parse(r.get::<String, _>(0).as_str()))
            .collect())
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

    pub async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut job) = row.map(|r| from_row(&r)).transpose()? else {
            return Ok(None);
        };
        self.attach_generation(&mut job).await?;
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
        }
        let next_cursor = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last().map(|j| format!("{}.{}", j.created_ms, j.id))
        } else {
            None
        };
        Ok(Page { jobs, next_cursor })
    }

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

    /// Cancels a queued job at once, or asks for a running one to be stopped.
    /// Returns the job's status before the call, or `None` if there is no such job.
    pub async fn cancel(&self, id: &JobId) -> Result<Option<JobStatus>, StoreError> {
        let Some(job) = self.get(id).await? else {
            return Ok(None);
        };
        match job.status {
            JobStatus::Queued => {
                sqlx::query("UPDATE jobs SET status = 'canceled', finished_ms = $1 WHERE id = $2 AND status = 'queued'")
                    .bind(now_ms())
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await?;
            }
            JobStatus::Running => {
                sqlx::query(
                    "UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'",
                )
                .bind(id.as_str())
                .execute(&self.pool)
                .await?;
            }
            _ => {}
        }
        Ok(Some(job.status))
    }

    pub async fn delete(&self, id: &JobId) -> Result<bool, StoreError> {
        self.delete_generation(id).await?;
        let done = sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
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
        let ids = |rows: Vec<AnyRow>| -> Vec<JobId> {
            rows.iter()
                .filter_map(|r| JobId::parse(r.get::<String, _>(0).as_str()))
                .collect()
        };
        Ok((ids(requeued), ids(failed)))
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
        Ok(rows
            .iter()
            .filter_map(|r| JobId::parse(r.get::<String, _>(0).as_str()))
            .collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn from_row(r: &AnyRow) -> Result<Job, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_owned());
    let id: String = r.try_get("id")?;
    let status: String = r.try_get("status")?;
    let spec: String = r.try_get("spec")?;
    let json = |col: &str| -> Result<Option<String>, StoreError> {
        Ok(r.try_get::<Option<String>, _>(col)?)
    };
    Ok(Job {
        id: JobId::parse(&id).ok_or_else(|| corrupt("id"))?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        spec: serde_json::from_str(&spec).map_err(|_| corrupt("spec"))?,
        cache_key: r.try_get("cache_key")?,
        follows: r
            .try_get::<Option<String>, _>("follows")?
            .as_deref()
            .and_then(JobId::parse),
        webhook_url: r.try_get("webhook_url")?,
        owner: r.try_get("owner")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
        progress: json("progress")?
            .map(|s| serde_json::from_str(&s).map_err(|_| corrupt("progress")))
            .transpose()?
            .unwrap_or_default(),
        error: json("error")?
            .map(|s| serde_json::from_str(&s).map_err(|_| corrupt("error")))
            .transpose()?,
        result: json("result")?
            .map(|s| serde_json::from_str(&s).map_err(|_| corrupt("result")))
            .transpose()?,
        created_ms: r.try_get("created_ms")?,
        started_ms: r.try_get("started_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        generation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Encoding, Engine, Format, Quality};

    fn spec() -> RenderSpec {
        RenderSpec {
            code: "x".into(),
            scenes: vec![],
            engine: Engine::Manim,
            quality: Quality::Low,
            format: Format::Mp4,
            fps: None,
            seed: None,
            encoding: Encoding::Final,
            narration: false,
        }
    }

    fn new_job<'a>(id: &'a JobId, spec: &'a RenderSpec) -> NewJob<'a> {
        NewJob {
            id,
            spec,
            cache_key: "k",
            follows: None,
            owner: None,
            webhook_url: None,
        }
    }

    #[tokio::test]
    async fn interrupted_jobs_run_again_then_fail_after_their_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("jobs.db"))
            .await
            .unwrap();
        let (id, spec) = (JobId::new(), spec());
        store.insert(&new_job(&id, &spec)).await.unwrap();
        let lease = Duration::from_secs(30);

        let first = store.claim("a", lease).await.unwrap().unwrap();
        assert_eq!(first.attempt, 1);
        // A process that started while the job was running reaps its lease.
        let (requeued, failed) = store.reap_leases(true, 2).await.unwrap();
        assert_eq!((requeued.len(), failed.len()), (1, 0));
        // The stale worker's writes no longer count.
        assert!(!store
            .finish(&id, "a", 1, JobStatus::Succeeded, None, None)
            .await
            .unwrap());
        assert!(!store.heartbeat(&id, "a", 1, lease).await.unwrap());

        let second = store.claim("b", lease).await.unwrap().unwrap();
        assert_eq!(second.attempt, 2);
        let (requeued, failed) = store.reap_leases(true, 2).await.unwrap();
        assert_eq!((requeued.len(), failed.len()), (0, 1));
        let job = store.get(&id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert_eq!(job.error.unwrap().code, ErrorCode::Interrupted);
        assert!(store.claim("c", lease).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn followers_are_not_claimed_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("jobs.db"))
            .await
            .unwrap();
        let spec = spec();
        let (leader, follower) = (JobId::new(), JobId::new());
        store.insert(&new_job(&leader, &spec)).await.unwrap();
        let mut f = new_job(&follower, &spec);
        f.follows = Some(&leader);
        store.insert(&f).await.unwrap();
        assert_eq!(store.in_flight("k").await.unwrap(), Some(leader.clone()));
        let lease = Duration::from_secs(30);
        assert_eq!(
            store.claim("a", lease).await.unwrap().unwrap().job.id,
            leader
        );
        assert!(
            store.claim("a", lease).await.unwrap().is_none(),
            "the follower waits"
        );
        assert_eq!(
            store.followers(&leader).await.unwrap(),
            vec![follower.clone()]
        );
        store.unfollow(Some(&leader)).await.unwrap();
        assert_eq!(
            store.claim("a", lease).await.unwrap().unwrap().job.id,
            follower
        );
    }
}
