//! Why a render did not produce a video: [`RenderError`], the code each
//! error shows clients, and whose fault it is. The worker's own error lines
//! become typed errors here, so that the trust rules (what a scene may claim
//! once its code runs) live in one place, and so does [`outcome`], the
//! one reading of how a worker pass ended.

use crate::job_error::{ErrorCode, ErrorKind, JobError};
use crate::narration::NarrationError;
use crate::protocol::{UserError, ENGINE_MISMATCH};
use crate::runtime::RuntimeError;
use crate::sandbox::area::CollectError;
use crate::sandbox::{Finished, SandboxError, Stopped};

/// Why a render did not produce a video.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The scene's own fault: syntax, missing scene, exception, TeX.
    #[error("{}", .0.message)]
    User(Box<UserError>),
    /// Stopped by a limit, or canceled.
    #[error(transparent)]
    Stopped(Stopped),
    #[error("the render exited (code {exit_code:?}) without a result; last output:\n{stderr}")]
    Crashed {
        exit_code: Option<i32>,
        stderr: String,
    },
    #[error("the render's output cannot be used: {0}")]
    Output(#[from] CollectError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Narration(#[from] NarrationError),
    /// The sandbox ended before the scene's code ran: the installation's
    /// fault (an engine that does not import, bubblewrap that cannot start),
    /// never the scene's.
    #[error("the {stage} sandbox failed before any scene code ran (exit code {exit_code:?}); last output:\n{stderr}")]
    Broken {
        stage: &'static str,
        exit_code: Option<i32>,
        stderr: String,
    },
    /// The installed engine is not the pinned version the worker patches, or
    /// lacks a target it patches: the installation's fault, found by the
    /// worker before any user code ran. The message names what differs.
    #[error("the installed engine does not fit the worker: {0}")]
    EngineMismatch(String),
    /// A project's blob is gone from this node's blob store (collected, or
    /// never brought from the bucket).
    #[error(
        "{file:?} refers to the blob {digest}, which this server does not have (upload it again)"
    )]
    MissingBlob {
        file: String,
        digest: crate::project::Digest,
    },
    /// A project's manifest is gone from this node's blob store, or cannot
    /// be read by this node's project limits.
    #[error(transparent)]
    Manifest(crate::project::ProjectError),
    /// The blob store cannot be read: the installation's fault.
    #[error("the blob store cannot be read: {0}")]
    Blobs(std::io::Error),
}

/// An error line of a worker that has started running user code: the scene
/// can print protocol lines too, so from then on an `engine-mismatch` (which
/// the worker only reports before) is not trusted, and is the scene's.
pub(super) fn after_user_code(mut error: UserError) -> UserError {
    if error.code == ENGINE_MISMATCH {
        error.code = ErrorCode::WorkerError.as_str().into();
    }
    error
}

/// A worker-reported code, restricted to the ones a worker may report (see
/// `protocol::USER_ERROR_CODES`); anything else is `worker-error`.
pub(super) fn user_code(e: &UserError) -> ErrorCode {
    ErrorCode::parse(&e.code)
        .filter(|c| c.kind() == ErrorKind::Unprocessable)
        .unwrap_or(ErrorCode::WorkerError)
}

impl RenderError {
    /// The stable, kebab-case code clients match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            RenderError::User(e) => user_code(e),
            RenderError::Stopped(s) => s.code(),
            RenderError::Crashed { .. } => ErrorCode::Crashed,
            RenderError::Output(_) => ErrorCode::BadOutput,
            RenderError::Broken { .. } | RenderError::Sandbox(_) | RenderError::Runtime(_) => {
                ErrorCode::Internal
            }
            RenderError::Narration(e) => e.code(),
            RenderError::EngineMismatch(_) => ErrorCode::EngineMismatch,
            RenderError::MissingBlob { .. } => ErrorCode::MissingBlob,
            RenderError::Manifest(e) => e.code(),
            RenderError::Blobs(_) => ErrorCode::Internal,
        }
    }

    /// An error the worker reported. `engine-mismatch` is the installation's
    /// fault; anything else is the scene's.
    pub(super) fn from_worker(error: UserError) -> RenderError {
        if error.code == ENGINE_MISMATCH {
            RenderError::EngineMismatch(error.message)
        } else {
            RenderError::User(Box::new(error))
        }
    }

    /// Whether the service, not the scene, is at fault.
    pub fn is_internal(&self) -> bool {
        self.code().kind() != ErrorKind::Unprocessable
    }

    /// The error as API clients see it: `code`, `message` and the fields of
    /// its kind. An error that is not the scene's says only its code; the
    /// details (paths, the sandbox's output) go to the log.
    pub fn to_error(&self) -> JobError {
        let code = self.code();
        let details = match self {
            RenderError::User(e) => serde_json::to_value(e).unwrap_or_default(),
            RenderError::Stopped(s) => serde_json::to_value(s).unwrap_or_default(),
            RenderError::Crashed { exit_code, stderr } => {
                serde_json::json!({ "exit_code": exit_code, "log": stderr })
            }
            RenderError::MissingBlob { file, digest } => {
                serde_json::json!({ "file": file, "digest": digest })
            }
            RenderError::Manifest(e) => return e.to_error(),
            // Ours: the code, and nothing of the host.
            _ if code.kind() == ErrorKind::Internal => {
                return JobError::new(code, crate::job_error::INTERNAL_MESSAGE)
            }
            // The provider's answer may name its endpoint; clients get the code.
            RenderError::Narration(e) if !e.is_user() => {
                return JobError::new(
                    code,
                    "text to speech failed; the server log has the details",
                )
            }
            _ => serde_json::Value::Null,
        };
        let mut error = JobError::new(code, self.to_string());
        if let serde_json::Value::Object(mut map) = details {
            map.remove("code");
            map.remove("message");
            error.details = map;
        }
        error
    }

    /// The author's line the error points at, if any.
    pub fn line(&self) -> Option<u32> {
        match self {
            RenderError::User(e) => e.line,
            _ => None,
        }
    }
}

/// How a worker pass (inspect, render, mux) ended, given the answer and
/// the error line it sent. In order: a stop the supervisor knows the
/// reason of; the answer, trusted only with a clean exit; the error the
/// worker reported; else a crash. The crash is the installation's
/// (`Broken` in `stage`) until the scene's code has run, and the scene's
/// after. The stop is taken out of `finished`; the rest stays for the
/// caller to collect from.
pub(super) fn outcome<T>(
    finished: &mut Finished,
    answer: Option<T>,
    error: Option<UserError>,
    stage: &'static str,
    scene_ran: bool,
) -> Result<T, RenderError> {
    if let Some(stopped) = finished.stopped.take() {
        return Err(RenderError::Stopped(stopped));
    }
    match (answer, error) {
        (Some(answer), _) if finished.exit_code == Some(0) => Ok(answer),
        (_, Some(error)) => Err(RenderError::from_worker(error)),
        _ if !scene_ran => Err(RenderError::Broken {
            stage,
            exit_code: finished.exit_code,
            stderr: finished.stderr.last_lines(20),
        }),
        _ => Err(RenderError::Crashed {
            exit_code: finished.exit_code,
            stderr: finished.stderr.last_lines(20),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::WorkerEvent;

    fn worker_error(code: &str) -> UserError {
        let line = format!(
            r#"{{"event":"error","code":"{code}","message":"manim 0.23.0 is installed, but the worker is written for 0.22.0"}}"#
        );
        match WorkerEvent::parse(line.as_bytes()) {
            Some(WorkerEvent::Error(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_engine_mismatch_is_the_installations_fault() {
        let e = RenderError::from_worker(worker_error(ENGINE_MISMATCH));
        assert!(matches!(e, RenderError::EngineMismatch(_)), "{e:?}");
        assert_eq!(e.code(), "engine-mismatch");
        assert!(e.is_internal());
        assert!(e.to_string().contains("written for 0.22.0"), "{e}");
        // Clients get the code of an internal error (a 500), never the
        // scene's 422, and nothing of what differs.
        let shown = e.to_error();
        assert_eq!(shown.code, ErrorCode::EngineMismatch);
        assert!(!shown.message.contains("0.22.0"));
        assert!(shown.details.is_empty());
        assert_eq!(e.line(), None);
    }

    #[test]
    fn the_scenes_errors_stay_the_scenes() {
        let e = RenderError::from_worker(worker_error("scene-error"));
        assert!(matches!(e, RenderError::User(_)));
        assert!(!e.is_internal());
        assert_eq!(e.to_error().code, ErrorCode::SceneError);
    }

    #[test]
    fn a_mismatch_said_after_user_code_ran_is_not_trusted() {
        let e = RenderError::from_worker(after_user_code(worker_error(ENGINE_MISMATCH)));
        assert_eq!(e.code(), "worker-error");
        assert!(!e.is_internal());
        let e = after_user_code(worker_error("latex-error"));
        assert_eq!(e.code, "latex-error");
    }

    #[test]
    fn a_crash_before_the_scene_ran_is_internal_and_shows_no_log() {
        let e = RenderError::Broken {
            stage: "render",
            exit_code: Some(1),
            stderr: "bwrap: Can't find source path /tmp/x/runtime: Permission denied".into(),
        };
        assert!(e.is_internal());
        let shown = e.to_error();
        assert_eq!(shown.code, ErrorCode::Internal);
        assert!(shown.details.is_empty() && !shown.message.contains("bwrap"));
        let crash = RenderError::Crashed {
            exit_code: Some(139),
            stderr: "Segmentation fault".into(),
        };
        assert!(!crash.is_internal());
        assert_eq!(crash.to_error().code, ErrorCode::Crashed);
    }
}
