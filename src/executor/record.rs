//! Recording a run's outcome: publishing the files of a render, building
//! its `JobResult`, and finishing the job with a fenced write (so a stale
//! worker's outcome is dropped); or, for a shutdown, giving the job back to
//! the queue. Also the two ways a job ends without rendering: a cache hit
//! found when it is claimed, and the outcome of the identical job it
//! followed.

use crate::control::Stop;
use crate::job_error::{ErrorCode, JobError};
use crate::jobs::{Job, JobId, JobResult, JobStatus, NarrationResult};
use crate::metrics::Outcome;
use crate::render::{RenderError, Rendered};
use crate::sandbox::Stopped;
use crate::spec::Format;

use super::Executor;

/// How a run ends, as it is stored: its status, error or result, and the
/// render's wall time for the metrics.
struct Ending {
    status: JobStatus,
    error: Option<JobError>,
    result: Option<JobResult>,
    secs: f64,
}

impl Ending {
    fn failed(error: JobError, secs: f64) -> Ending {
        Ending {
            status: JobStatus::Failed,
            error: Some(error),
            result: None,
            secs,
        }
    }
}

impl Executor {
    /// Records a render's outcome: a job stopped for shutdown goes back to
    /// the queue; any other ends, fenced by its lease.
    pub(super) async fn record(
        &self,
        job: &Job,
        attempt: u32,
        outcome: Result<Rendered, RenderError>,
        reason: Option<Stop>,
        warm_start: bool,
        split: super::split::Split,
    ) {
        let ending = match outcome {
            Ok(r) => {
                // A run whose job went to a newer attempt (its lease ran out
                // unrenewed) uploads nothing: that attempt renders it.
                let held =
                    self.parts
                        .store
                        .heartbeat(&job.id, &self.owner, attempt, self.cfg.lease);
                if let Ok(false) = held.await {
                    tracing::warn!("lease lost before publishing: this render is dropped");
                    return;
                }
                match self.publish(job, attempt, r, warm_start, split).await {
                    Ok(ending) => ending,
                    Err(err) => return self.publish_failed(&job.id, attempt, err).await,
                }
            }
            Err(RenderError::Stopped(Stopped::Canceled)) if reason == Some(Stop::Shutdown) => {
                return self.release(&job.id, attempt).await;
            }
            Err(RenderError::Stopped(Stopped::Canceled)) => Ending {
                status: JobStatus::Canceled,
                error: Some(JobError::new(ErrorCode::Canceled, "the job was canceled")),
                result: None,
                secs: 0.0,
            },
            Err(e) => {
                if e.is_internal() {
                    tracing::error!(err = %e, "render failed inside manimd");
                } else {
                    tracing::info!(code = %e.code(), "render failed");
                }
                Ending::failed(e.to_error(), 0.0)
            }
        };
        self.finish(&job.id, attempt, ending).await
    }

    /// Publishes a render's files under the attempt: the job succeeds with
    /// them; if they cannot be stored, the storage's error.
    async fn publish(
        &self,
        job: &Job,
        attempt: u32,
        r: Rendered,
        warm_start: bool,
        split: super::split::Split,
    ) -> Result<Ending, crate::storage::StorageError> {
        let secs = r.wall.as_secs_f64();
        let ext = r
            .output
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("bin");
        let output_name = format!("output.{ext}");
        let mut files = vec![(r.output.as_path(), output_name.as_str())];
        if let Some(t) = &r.thumbnail {
            files.push((t.as_path(), "thumbnail.png"));
        }
        if let Some(n) = &r.narration {
            files.push((n.subtitles.as_path(), crate::narration::SUBTITLES_FILE));
        }
        self.parts.storage.publish(&job.id, attempt, &files).await?;
        Ok(Ending {
            status: JobStatus::Succeeded,
            error: None,
            result: Some(JobResult {
                chunks: split.chunks,
                split: split.reason,
                plan_secs: split.plan_secs,
                stitch_secs: split.stitch_secs,
                prefix_secs: split.prefix_secs,
                ..result_of(job, attempt, &r, warm_start)
            }),
            secs,
        })
    }

    /// The render's files could not be stored (the bucket failed or could
    /// not be reached): the scene is not at fault, so the job goes back to
    /// the queue with this attempt counted, to be rendered again by any
    /// node; out of attempts it fails as `storage-unavailable`.
    async fn publish_failed(&self, id: &JobId, attempt: u32, err: crate::storage::StorageError) {
        if attempt < self.cfg.max_attempts {
            tracing::warn!(%err, attempt, "cannot store the render's files; the job is queued again");
            match self.parts.store.requeue(id, &self.owner, attempt).await {
                Ok(true) => self.parts.control.wake(),
                Ok(false) => tracing::warn!("lease lost before the job could be queued again"),
                Err(err) => tracing::error!(%err, "cannot queue the job again"),
            }
            return;
        }
        tracing::error!(%err, attempt, "cannot store the render's files; out of attempts");
        let error = JobError::new(
            ErrorCode::StorageUnavailable,
            format!("the render's files could not be stored in {attempt} attempts (the file storage failed)"),
        );
        self.finish(id, attempt, Ending::failed(error, 0.0)).await
    }

    /// Gives a job stopped for shutdown back to the queue, without counting
    /// the attempt.
    async fn release(&self, id: &JobId, attempt: u32) {
        match self.parts.store.release(id, &self.owner, attempt).await {
            Ok(true) => tracing::info!("render stopped for shutdown; the job is queued again"),
            Ok(false) => tracing::warn!("lease lost before the job could be released"),
            Err(err) => tracing::error!(%err, "cannot release the job"),
        }
    }

    /// Ends the job (fenced); if this run still held it, its followers get
    /// the outcome and the metrics count it.
    async fn finish(&self, id: &JobId, attempt: u32, e: Ending) {
        let (status, error) = (e.status, e.error.as_ref());
        let store = &self.parts.store;
        let done =
            retried(|| store.finish(id, &self.owner, attempt, status, error, e.result.as_ref()))
                .await;
        match done {
            Ok(true) => {
                self.complete_followers(id, status, error).await;
                self.parts.metrics.job_finished(metric_of(status), e.secs);
                tracing::info!(status = status.as_str(), secs = e.secs, "render ended");
            }
            Ok(false) => {
                tracing::warn!("lease lost: a newer attempt owns the job; this outcome is dropped")
            }
            Err(err) => tracing::error!(%err, "cannot record the outcome"),
        }
    }

    /// Ends the job as failed with `error` (fenced).
    pub(super) async fn fail(&self, id: &JobId, attempt: u32, error: JobError) {
        let failed = JobStatus::Failed;
        let store = &self.parts.store;
        match retried(|| store.finish(id, &self.owner, attempt, failed, Some(&error), None)).await {
            Ok(true) => self.parts.metrics.job_finished(Outcome::Failed, 0.0),
            Ok(false) => tracing::warn!("lease lost: this outcome is dropped"),
            Err(err) => tracing::error!(%err, "cannot record the outcome"),
        }
    }

    /// An identical job finished while this one waited in the queue: take its
    /// result, without a sandbox.
    pub(super) async fn finish_from_cache(&self, job: &Job, attempt: u32) -> bool {
        let Some(key) = &job.cache_key else {
            return false;
        };
        let Ok(Some(source)) = self.parts.store.cached(key).await else {
            return false;
        };
        let Ok(result) = crate::cache::share(&self.parts.storage, &source, &job.id).await else {
            return false;
        };
        let succeeded = JobStatus::Succeeded;
        if let Ok(true) = self
            .parts
            .store
            .finish(
                &job.id,
                &self.owner,
                attempt,
                succeeded,
                None,
                Some(&result),
            )
            .await
        {
            self.parts.metrics.cache_hit();
            tracing::info!(source = %source.id, "served from the cache");
        }
        self.publish_current(&job.id).await;
        true
    }

    /// Hands a finished job's outcome to the identical jobs that waited for it.
    async fn complete_followers(
        &self,
        leader: &JobId,
        status: JobStatus,
        error: Option<&JobError>,
    ) {
        let followers = match self.parts.store.followers(leader).await {
            Ok(f) => f,
            Err(err) => return tracing::error!(%err, "cannot list followers"),
        };
        if followers.is_empty() {
            return;
        }
        let source = match status {
            JobStatus::Succeeded => self.parts.store.get(leader).await.ok().flatten(),
            JobStatus::Failed => None,
            _ => {
                // Canceled: the followers did not ask for that; they render.
                let _ = self.parts.store.unfollow(Some(leader)).await;
                self.parts.control.wake();
                return;
            }
        };
        for id in followers {
            let done = match &source {
                Some(source) => match crate::cache::share(&self.parts.storage, source, &id).await {
                    Ok(result) => {
                        self.parts
                            .store
                            .finish_follower(&id, JobStatus::Succeeded, None, Some(&result))
                            .await
                    }
                    Err(err) => {
                        tracing::error!(%err, "cannot share a result with a follower");
                        continue;
                    }
                },
                None => {
                    self.parts
                        .store
                        .finish_follower(&id, JobStatus::Failed, error, None)
                        .await
                }
            };
            if let Ok(true) = done {
                self.parts.metrics.cache_hit();
            }
            self.publish_current(&id).await;
        }
    }
}

/// How long an outcome waits for the store to come back before it is
/// dropped (and the job, its lease expired, runs again).
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(120);

/// A fenced write that ends a run, tried again while the store cannot be
/// reached (PostgreSQL restarting): dropping the outcome would run the job
/// a second time. The fence makes a late try harmless: once another attempt
/// holds the job, it changes nothing.
async fn retried<F, Fut>(mut write: F) -> Result<bool, crate::jobs::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, crate::jobs::StoreError>>,
{
    let deadline = std::time::Instant::now() + STORE_RETRY;
    loop {
        match write().await {
            Err(err) if std::time::Instant::now() < deadline => {
                tracing::warn!(%err, "cannot record the outcome yet; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            done => return done,
        }
    }
}

/// The result a successful render is stored with (its files published).
/// A still is a PNG whatever format was asked for.
fn result_of(job: &Job, attempt: u32, r: &Rendered, warm_start: bool) -> JobResult {
    let format = if r.media.still {
        Format::Png
    } else {
        job.spec.format
    };
    JobResult {
        duration: r.media.duration,
        width: r.media.width,
        height: r.media.height,
        fps: r.media.fps,
        frames: r.media.frames,
        codec: r.media.codec.clone(),
        bytes: r.bytes,
        content_type: format.content_type().to_owned(),
        format,
        still: r.media.still,
        notice: r.media.notice.clone(),
        engine_version: r.engine_version.clone(),
        render_secs: r.wall.as_secs_f64(),
        engine_secs: r.job_secs,
        peak_rss_bytes: r.worker_max_rss_bytes,
        attempt,
        has_thumbnail: r.thumbnail.is_some(),
        warm_start,
        cache_hit: false,
        narration: r.narration.as_ref().map(|n| NarrationResult {
            cues: n.cues.clone(),
            subtitles_url: format!("/v1/renders/{}/subtitles", job.id),
        }),
        animations: r.animations.clone(),
        seed: Some(job.spec.seed()),
        chunks: Vec::new(),
        split: None,
        plan_secs: None,
        stitch_secs: None,
        prefix_secs: None,
    }
}

/// The metric a finished status counts as.
fn metric_of(status: JobStatus) -> Outcome {
    match status {
        JobStatus::Succeeded => Outcome::Succeeded,
        JobStatus::Canceled => Outcome::Canceled,
        _ => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::jobs::JobProgress;
    use crate::protocol::MediaInfo;
    use crate::render::Narrated;

    fn job(format: &str) -> Job {
        let spec = serde_json::from_value(serde_json::json!({
            "code": "x = 1", "scenes": [], "engine": "manim", "quality": "low",
            "format": format, "fps": null, "seed": null,
        }))
        .unwrap();
        Job {
            id: JobId::new(),
            status: JobStatus::Running,
            spec,
            cache_key: None,
            follows: None,
            owner: None,
            webhook_url: None,
            attempts: 2,
            cancel_requested: false,
            progress: JobProgress::default(),
            error: None,
            result: None,
            created_ms: 0,
            started_ms: None,
            finished_ms: None,
            generation: None,
            webhook: None,
        }
    }

    fn rendered(still: bool) -> Rendered {
        Rendered {
            media: MediaInfo {
                still,
                format: Format::Mp4,
                codec: Some("h264".into()),
                width: Some(854),
                height: Some(480),
                fps: Some(15.0),
                duration: 2.0,
                frames: Some(30),
                notice: None,
            },
            output: "out/output.mp4".into(),
            thumbnail: Some("out/thumbnail.png".into()),
            bytes: 1234,
            engine_version: "0.19.0".into(),
            wall: Duration::from_millis(1500),
            animations: Vec::new(),
            voiceovers: Vec::new(),
            peak_memory_bytes: Some(1),
            worker_max_rss_bytes: Some(2),
            job_secs: Some(1.25),
            narration: None,
        }
    }

    #[test]
    fn a_render_result_says_what_was_made_and_how() {
        let (job, r) = (job("mp4"), rendered(false));
        let result = result_of(&job, 2, &r, true);
        assert_eq!(
            (result.format, result.content_type.as_str()),
            (Format::Mp4, "video/mp4")
        );
        assert_eq!(
            (result.width, result.height, result.frames),
            (Some(854), Some(480), Some(30))
        );
        assert_eq!(
            (result.bytes, result.render_secs, result.engine_secs),
            (1234, 1.5, Some(1.25))
        );
        assert_eq!((result.attempt, result.peak_rss_bytes), (2, Some(2)));
        assert!(result.has_thumbnail && result.warm_start && !result.cache_hit);
        assert!(result.narration.is_none());
    }

    #[test]
    fn a_still_is_a_png_and_narration_points_at_its_subtitles() {
        let job = job("mp4");
        let mut r = rendered(true);
        r.narration = Some(Narrated {
            cues: vec![],
            subtitles: "out/subtitles.vtt".into(),
        });
        let result = result_of(&job, 1, &r, false);
        assert_eq!(
            (result.format, result.content_type.as_str()),
            (Format::Png, "image/png")
        );
        assert!(result.still && !result.warm_start);
        let narration = result.narration.unwrap();
        assert_eq!(
            narration.subtitles_url,
            format!("/v1/renders/{}/subtitles", job.id)
        );
    }

    #[test]
    fn finished_statuses_count_as_their_metric() {
        assert!(matches!(
            metric_of(JobStatus::Succeeded),
            Outcome::Succeeded
        ));
        assert!(matches!(metric_of(JobStatus::Canceled), Outcome::Canceled));
        assert!(matches!(metric_of(JobStatus::Failed), Outcome::Failed));
    }
}
