//! The service's error: one variant per way an operation can fail, with
//! the stable code, the retry hint and the body clients see. HTTP status
//! codes are the server's (`server::error`), not this module's.

use crate::job_error::{ErrorCode, ErrorKind, JobError};
use crate::jobs::StoreError;
use crate::llm::LlmError;
use crate::render::RenderError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; `field` names the part at fault.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The code cannot render (checked before queueing).
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("the queue is full ({capacity} jobs waiting); retry later")]
    QueueFull {
        capacity: u64,
        retry_after_secs: u64,
    },
    #[error("this API key already has {max} jobs queued or running; retry when one ends")]
    QuotaExceeded { max: u64, retry_after_secs: u64 },
    #[error("the server is shutting down; retry later")]
    ShuttingDown,
    /// Generations that run in this process (code only, or with the
    /// request's own key on a shared store) are at their cap.
    #[error("this server already runs {max} generations of its own; retry later")]
    GenerationsBusy { max: usize },
    /// Previews running on this node are at their cap.
    #[error("this server already runs {max} previews; retry in a moment")]
    PreviewsBusy { max: usize },
    #[error("no render with this id")]
    NotFound,
    /// Another owner's preview, an expired one, or a frame it does not have.
    #[error("no such preview frame (previews are kept for {} minutes)", super::PREVIEW_KEEP.as_secs() / 60)]
    PreviewNotFound,
    #[error("the render has no {0} (yet)")]
    NotReady(&'static str),
    /// Subtitles exist only for narrated renders that succeeded.
    #[error("{0}")]
    NoSubtitles(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The model provider failed, or none is configured.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// No attempt at code passed its checks (`generation-failed`, with the
    /// last attempt's error).
    #[error("{}", .0.message)]
    GenerationFailed(JobError),
    /// A project's files break a rule or a limit (names the file).
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    /// An upload was refused (digest, size, quota).
    #[error(transparent)]
    Blob(#[from] crate::blobs::BlobError),
}

impl ServiceError {
    /// The stable code clients match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Invalid { .. } => ErrorCode::InvalidRequest,
            ServiceError::Render(e) => e.code(),
            ServiceError::QueueFull { .. } => ErrorCode::QueueFull,
            ServiceError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            ServiceError::ShuttingDown => ErrorCode::ShuttingDown,
            ServiceError::GenerationsBusy { .. } => ErrorCode::GenerationsBusy,
            ServiceError::PreviewsBusy { .. } => ErrorCode::PreviewsBusy,
            ServiceError::NotFound | ServiceError::PreviewNotFound => ErrorCode::NotFound,
            ServiceError::NotReady(_) => ErrorCode::NotReady,
            ServiceError::NoSubtitles(_) => ErrorCode::NoSubtitles,
            ServiceError::Store(_) => ErrorCode::Internal,
            ServiceError::Storage(e) => e.code(),
            ServiceError::Llm(e) => e.code(),
            ServiceError::GenerationFailed(e) => e.code,
            ServiceError::Project(e) => e.code(),
            ServiceError::Blob(e) => e.code(),
        }
    }

    /// Seconds to wait before trying again, where waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServiceError::QueueFull {
                retry_after_secs, ..
            }
            | ServiceError::QuotaExceeded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ServiceError::ShuttingDown | ServiceError::GenerationsBusy { .. } => Some(5),
            ServiceError::PreviewsBusy { .. } => Some(1),
            ServiceError::Storage(StorageError::Remote(_)) => Some(5),
            _ => None,
        }
    }

    /// The error as clients see it; an internal one says nothing more.
    pub fn to_error(&self) -> JobError {
        let code = self.code();
        match self {
            ServiceError::Render(e) => e.to_error(),
            ServiceError::Llm(e) => e.to_error(),
            ServiceError::GenerationFailed(e) => e.clone(),
            ServiceError::Project(e) => e.to_error(),
            ServiceError::Blob(e) => e.to_error(),
            _ if code.kind() == ErrorKind::Internal => JobError::internal(),
            ServiceError::Invalid { field, message } => {
                JobError::new(code, message.clone()).with("field", field)
            }
            ServiceError::Storage(StorageError::Remote(_)) => {
                JobError::new(code, "the file store cannot be reached; retry later")
            }
            ServiceError::Storage(_) => JobError::new(code, "no such file"),
            _ => JobError::new(code, self.to_string()),
        }
    }
}

/// A malformed request, `field` naming the part at fault.
pub(super) fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}
