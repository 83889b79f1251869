//! A job's life after submission, as its owner sees it: look it up, list,
//! cancel or delete, wait for its end. With API keys, another key's jobs do
//! not exist (`NotFound`), whatever the operation.

use std::time::Duration;

use super::error::invalid;
use super::{Service, ServiceError};
use crate::api::JobView;
use crate::events::JobEvent;
use crate::jobs::{Job, JobId, JobStatus, Page};

impl Service {
    /// A job, as `owner` may see it: with API keys, only one's own jobs exist.
    pub async fn get(&self, id: &JobId, owner: Option<&str>) -> Result<Job, ServiceError> {
        match self.parts.store.get(id).await? {
            Some(job) if owner.is_none() || job.owner.as_deref() == owner => Ok(job),
            _ => Err(ServiceError::NotFound),
        }
    }

    pub async fn list(
        &self,
        owner: Option<&str>,
        status: Option<JobStatus>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page, ServiceError> {
        let cursor = match cursor {
            None => None,
            Some(c) => {
                let parsed = c
                    .split_once('.')
                    .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, JobId::parse(id)?)));
                Some(parsed.ok_or_else(|| invalid("cursor", "malformed cursor"))?)
            }
        };
        if !(1..=100).contains(&limit) {
            return Err(invalid("limit", "limit must be between 1 and 100"));
        }
        Ok(self.parts.store.list(owner, status, limit, cursor).await?)
    }

    /// Cancels a queued or running job; deletes a finished one and its files.
    /// Returns the job as it is afterwards (`None` once deleted).
    pub async fn cancel_or_delete(
        &self,
        id: &JobId,
        owner: Option<&str>,
    ) -> Result<Option<Job>, ServiceError> {
        self.get(id, owner).await?;
        match self.parts.store.cancel(id).await? {
            None => Err(ServiceError::NotFound),
            Some(status) if status.is_terminal() => {
                // Files first: if the store fails, the record stays and the
                // delete can be retried, rather than orphaning the files.
                self.parts.storage.delete(id).await?;
                self.parts.store.delete(id).await?;
                Ok(None)
            }
            Some(JobStatus::Running) => {
                self.parts.control.cancel(id);
                Ok(Some(self.get(id, owner).await?))
            }
            Some(_) => {
                // A canceled generation will not run: its key goes now.
                self.parts.llm.keys.remove(id);
                if let Ok(job) = self.get(id, owner).await {
                    self.parts.webhooks.job_ended(&job);
                }
                // Jobs that waited for this one render on their own now.
                if self.parts.store.unfollow(Some(id)).await? > 0 {
                    self.parts.control.wake();
                }
                let job = self.get(id, owner).await?;
                self.parts.hub.publish(
                    id,
                    JobEvent::Status(serde_json::to_value(JobView::from(&job)).unwrap_or_default()),
                );
                Ok(Some(job))
            }
        }
    }

    /// Waits until the job ends and returns it.
    pub async fn wait(&self, id: &JobId, owner: Option<&str>) -> Result<Job, ServiceError> {
        let mut rx = self.parts.hub.subscribe(id);
        loop {
            let job = self.get(id, owner).await?;
            if job.status.is_terminal() {
                return Ok(job);
            }
            // Any event is a reason to look again; a periodic look covers a
            // lagging receiver.
            let _ = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        }
    }
}
