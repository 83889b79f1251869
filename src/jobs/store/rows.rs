//! Rows to jobs: the column list every `SELECT` of a whole job names, and
//! the mapping back from a row, which refuses (as `Corrupt`) a record this
//! version cannot read rather than guessing.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::StoreError;
use crate::jobs::{Job, JobId, JobStatus};

/// The columns of a whole job; `from_row` reads them by name.
pub(super) const COLUMNS: &str =
    "id, status, spec, cache_key, follows, owner, webhook_url, attempts, cancel_requested, progress, error, result, created_ms, started_ms, finished_ms";

/// The job in `r` (without its generation record, which lives in its own
/// table).
pub(super) fn from_row(r: &AnyRow) -> Result<Job, StoreError> {
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
        webhook: None,
    })
}

/// The ids in the first column of `rows`; a malformed one is skipped.
pub(super) fn ids(rows: &[AnyRow]) -> Vec<JobId> {
    rows.iter()
        .filter_map(|r| JobId::parse(r.get::<String, _>(0).as_str()))
        .collect()
}
