//! A job's files as clients fetch them: the video or thumbnail (streamed,
//! or a presigned redirect to the object store), the subtitles of a
//! narrated render, and the live stream's playlist and segments.

use super::{Service, ServiceError};
use crate::jobs::{Job, JobId};
use crate::storage::{Object, ServeMode, StorageError};

/// How a finished file reaches the client.
pub enum Delivery {
    /// Its bytes, streamed by this server.
    Stream(Object),
    /// A presigned URL of the object store.
    Redirect(String),
}

impl Service {
    /// The video (or thumbnail) of a finished job, with its content type:
    /// a redirect to the store when configured and `may_redirect`, else
    /// the opened file.
    pub async fn file(
        &self,
        id: &JobId,
        thumbnail: bool,
        owner: Option<&str>,
        may_redirect: bool,
    ) -> Result<(Delivery, String, Job), ServiceError> {
        let job = self.get(id, owner).await?;
        let result = job
            .result
            .as_ref()
            .ok_or(ServiceError::NotReady(if thumbnail {
                "thumbnail"
            } else {
                "video"
            }))?;
        let (name, content_type) = if thumbnail {
            if !result.has_thumbnail {
                return Err(ServiceError::NotReady("thumbnail"));
            }
            ("thumbnail.png".to_owned(), "image/png".to_owned())
        } else {
            (
                format!("output.{}", result.format.extension()),
                result.content_type.clone(),
            )
        };
        let attempt = result.attempt;
        if may_redirect && self.cfg.storage_serve == ServeMode::Redirect {
            let expiry = crate::storage::PRESIGN_EXPIRY;
            if let Some(url) = self
                .parts
                .storage
                .presign(id, attempt, &name, expiry)
                .await?
            {
                return Ok((Delivery::Redirect(url), content_type, job));
            }
        }
        let object = match self.parts.storage.object(id, attempt, &name).await {
            // The record is there but its files are gone: deleted meanwhile.
            Err(StorageError::NotFound) => return Err(ServiceError::NotFound),
            other => other?,
        };
        Ok((Delivery::Stream(object), content_type, job))
    }

    /// The WebVTT subtitles of a narrated job that succeeded.
    pub async fn subtitles(
        &self,
        id: &JobId,
        owner: Option<&str>,
    ) -> Result<(Object, Job), ServiceError> {
        let job = self.get(id, owner).await?;
        // A narrated render has subtitles once it succeeded; so has any
        // render whose scene spoke with manim-voiceover.
        let Some(result) = job.result.as_ref().filter(|r| r.narration.is_some()) else {
            return Err(ServiceError::NoSubtitles(if job.spec.narration {
                "the render has not succeeded (yet), so it has no subtitles"
            } else {
                "the render was not narrated, so it has no subtitles"
            }));
        };
        let object = match self
            .parts
            .storage
            .object(id, result.attempt, crate::narration::SUBTITLES_FILE)
            .await
        {
            Err(StorageError::NotFound) => return Err(ServiceError::NotFound),
            other => other?,
        };
        Ok((object, job))
    }

    /// A file of the job's live stream (`live.m3u8`, `init.mp4`, `seg-N.m4s`)
    /// and its content type. While the job runs, the stream grows.
    pub async fn live_file(
        &self,
        id: &JobId,
        name: &str,
        owner: Option<&str>,
    ) -> Result<(Object, &'static str, Job), ServiceError> {
        if !crate::hls::is_stream_file(name) {
            return Err(ServiceError::NotFound);
        }
        let job = self.get(id, owner).await?;
        let attempt = job.result.as_ref().map_or(job.attempts, |r| r.attempt);
        let object = match self
            .parts
            .storage
            .object(id, attempt, &format!("live/{name}"))
            .await
        {
            Err(StorageError::NotFound) => return Err(ServiceError::NotReady("live stream")),
            other => other?,
        };
        let content_type = match name {
            "live.m3u8" => "application/vnd.apple.mpegurl",
            "init.mp4" => "video/mp4",
            _ => "video/iso.segment",
        };
        Ok((object, content_type, job))
    }
}
