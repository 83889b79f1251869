//! The one place where errors become HTTP responses: every error becomes a
//! `JobError` (a stable code, a message, the fields of its kind), and the
//! code's kind alone picks the status, in `status`. A 5xx body never carries
//! paths, stderr or other internals: those are logged here instead. The
//! replaced system's calls answer the same, with its clients' `detail`
//! string beside the error (`LegacyError`).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ErrorBody, ErrorDetail, LegacyErrorBody};
use crate::job_error::{ErrorCode, ErrorKind, JobError};
use crate::render::RenderError;
use crate::service::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    /// Malformed request: the field at fault, if one is.
    BadRequest {
        field: Option<String>,
        message: String,
    },
    PayloadTooLarge {
        limit: u64,
    },
    InvalidId,
    NotFound,
    /// No API key, or one that is not configured.
    Unauthorized,
    /// The key's request rate is used up.
    RateLimited {
        retry_after_secs: u64,
    },
    MethodNotAllowed,
    RangeNotSatisfiable {
        size: u64,
    },
    /// A job that ended without a video, for the synchronous `/render`.
    JobFailed(JobError),
    Internal(String),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

/// An error of the replaced system's calls (`/render`, `/generate`): the
/// same status and error, and beside it the `detail` string that its
/// clients decode (`APIError { detail }`).
#[derive(Debug)]
pub struct LegacyError(pub ApiError);

impl From<ApiError> for LegacyError {
    fn from(e: ApiError) -> Self {
        LegacyError(e)
    }
}

impl From<ServiceError> for LegacyError {
    fn from(e: ServiceError) -> Self {
        LegacyError(ApiError::Service(e))
    }
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        ApiError::Service(ServiceError::Render(e))
    }
}

/// The status of every kind of error.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
        // The model's or the speech service's fault, not the caller's: its
        // 401 is our 502.
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The error as clients see it, and how long they should wait before
    /// trying again when that helps.
    fn into_error(self) -> (JobError, Option<u64>) {
        let error = match self {
            ApiError::Service(e) => {
                match (e.code().kind(), &e) {
                    (ErrorKind::Internal, _) => tracing::error!(err = %e, "internal error"),
                    (_, ServiceError::Storage(err)) => tracing::error!(%err, "storage error"),
                    _ => {}
                }
                return (e.to_error(), e.retry_after());
            }
            ApiError::RateLimited { retry_after_secs } => {
                let message = "too many requests for this API key; see Retry-After";
                let e = JobError::new(ErrorCode::RateLimited, message);
                return (e, Some(retry_after_secs));
            }
            ApiError::BadRequest { field, message } => {
                let e = JobError::new(ErrorCode::InvalidRequest, message);
                match field {
                    Some(field) => e.with("field", field),
                    None => e,
                }
            }
            ApiError::PayloadTooLarge { limit } => JobError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than {limit} bytes"),
            ),
            ApiError::InvalidId => JobError::new(
                ErrorCode::InvalidId,
                "a render id is 32 lowercase hexadecimal digits",
            ),
            ApiError::NotFound => JobError::new(ErrorCode::NotFound, "no such resource"),
            ApiError::Unauthorized => JobError::new(
                ErrorCode::Unauthorized,
                "this server needs an API key: send Authorization: Bearer <key>",
            ),
            ApiError::MethodNotAllowed => JobError::new(
                ErrorCode::MethodNotAllowed,
                "this resource does not support that method",
            ),
            ApiError::RangeNotSatisfiable { size } => JobError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the file has {size} bytes"),
            )
            .with("size", size),
            ApiError::JobFailed(e) => e,
            ApiError::Internal(msg) => {
                tracing::error!(%msg, "internal error");
                JobError::internal()
            }
        };
        (error, None)
    }
}

/// The body's form of an error: `field`, `line` and `column` by name, the
/// rest of the details beside them.
fn detail(error: JobError) -> ErrorDetail {
    let JobError {
        code,
        message,
        mut details,
    } = error;
    let mut take_u32 = |k: &str| {
        details
            .remove(k)
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok())
    };
    let (line, column) = (take_u32("line"), take_u32("column"));
    let field = match details.remove("field") {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    ErrorDetail {
        code: code.as_str().to_owned(),
        message,
        field,
        line,
        column,
        details,
    }
}

impl ApiError {
    /// The status, the body's error and the headers that go with it.
    fn answer(self) -> (StatusCode, HeaderMap, ErrorDetail) {
        let (error, retry_after) = self.into_error();
        let code = error.code;
        let mut headers = HeaderMap::new();
        if code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        (status(code.kind()), headers, detail(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, headers, error) = self.answer();
        (status, headers, Json(ErrorBody { error })).into_response()
    }
}

/// The replaced system's one string: the message, after the author's line
/// when there is one (`line 7: NameError: ...`).
fn legacy_detail(error: &ErrorDetail) -> String {
    match error.line {
        Some(line) => format!("line {line}: {}", error.message),
        None => error.message.clone(),
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        let (status, headers, error) = self.0.answer();
        let detail = legacy_detail(&error);
        (status, headers, Json(LegacyErrorBody { error, detail })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code and its status, as the README's table documents them.
    const DOCUMENTED: &[(u16, &[&str])] = &[
        (
            400,
            &[
                "invalid-request",
                "invalid-id",
                "invalid-path",
                "duplicate-path",
                "digest-mismatch",
                "invalid-manifest",
            ],
        ),
        (401, &["unauthorized"]),
        (404, &["not-found", "no-subtitles"]),
        (405, &["method-not-allowed"]),
        (409, &["not-ready"]),
        (
            413,
            &[
                "payload-too-large",
                "too-many-files",
                "file-too-large",
                "project-too-large",
                "blob-quota-exceeded",
            ],
        ),
        (416, &["range-not-satisfiable"]),
        (
            422,
            &[
                "syntax-error",
                "no-scene",
                "scene-not-found",
                "scene-error",
                "latex-error",
                "encode-error",
                "output-too-large",
                "narration-too-long",
                "voiceover-unprepared",
                "no-such-animation",
                "worker-error",
                "timeout",
                "out-of-memory",
                "process-limit",
                "killed",
                "crashed",
                "bad-output",
                "canceled",
                "interrupted",
                "forbidden-import",
                "wrong-engine",
                "wrong-engine-api",
                "several-scenes",
                "generation-failed",
                "missing-blob",
            ],
        ),
        (
            429,
            &[
                "queue-full",
                "rate-limited",
                "quota-exceeded",
                "generations-busy",
                "previews-busy",
                "llm-rate-limited",
            ],
        ),
        (500, &["internal", "engine-mismatch"]),
        (502, &["llm-unauthorized", "llm-bad-response", "tts-failed"]),
        (
            503,
            &[
                "shutting-down",
                "storage-unavailable",
                "llm-not-configured",
                "llm-unavailable",
                "llm-key-lost",
            ],
        ),
        (504, &["llm-timeout"]),
    ];

    #[test]
    fn every_code_has_its_documented_status() {
        let mut seen = 0;
        for (want, codes) in DOCUMENTED {
            for text in *codes {
                let code = ErrorCode::parse(text).unwrap_or_else(|| panic!("unknown {text}"));
                assert_eq!(status(code.kind()).as_u16(), *want, "{text}");
                seen += 1;
            }
        }
        assert_eq!(seen, ErrorCode::ALL.len(), "a code missing from the table");
    }

    async fn answer(e: ApiError) -> (u16, axum::http::HeaderMap, serde_json::Value) {
        answer_with(e).await
    }

    async fn answer_with(e: impl IntoResponse) -> (u16, axum::http::HeaderMap, serde_json::Value) {
        let r = e.into_response();
        let (parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap();
        (parts.status.as_u16(), parts.headers, body)
    }

    #[tokio::test]
    async fn an_installation_fault_is_a_500_that_shows_nothing_of_the_host() {
        let broken = RenderError::Broken {
            stage: "render",
            exit_code: Some(1),
            stderr: "bwrap: Can't find source path /var/lib/manimd/runtime/x: Permission denied"
                .into(),
        };
        let (status, _, body) = answer(broken.into()).await;
        assert_eq!(status, 500);
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "internal", "message": INTERNAL}})
        );
    }

    const INTERNAL: &str = crate::job_error::INTERNAL_MESSAGE;

    /// An exception in scene `A`, as the worker reports it.
    fn scene_error(message: &str, line: u32, exception: &str) -> RenderError {
        let user = serde_json::from_value(serde_json::json!({
            "code": "scene-error", "message": message,
            "line": line, "scene": "A", "exception": exception
        }))
        .unwrap();
        RenderError::User(Box::new(user))
    }

    #[tokio::test]
    async fn a_scene_error_keeps_its_line_and_fields() {
        let e = scene_error(
            "ZeroDivisionError: division by zero",
            5,
            "ZeroDivisionError",
        );
        let (status, _, body) = answer(e.into()).await;
        assert_eq!(status, 422);
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": "scene-error", "message": "ZeroDivisionError: division by zero",
                "line": 5, "scene": "A", "exception": "ZeroDivisionError"
            }})
        );
    }

    #[tokio::test]
    async fn busy_answers_say_when_to_come_back() {
        let full = ServiceError::QueueFull {
            capacity: 3,
            retry_after_secs: 7,
        };
        let (status, headers, body) = answer(full.into()).await;
        assert_eq!(
            (status, &headers[header::RETRY_AFTER]),
            (429, &"7".parse::<HeaderValue>().unwrap())
        );
        assert_eq!(body["error"]["code"], "queue-full");
        let (status, headers, _) = answer(ServiceError::ShuttingDown.into()).await;
        assert_eq!(
            (status, &headers[header::RETRY_AFTER]),
            (503, &"5".parse::<HeaderValue>().unwrap())
        );
        let (status, headers, body) = answer(ApiError::Unauthorized).await;
        assert_eq!(
            (status, &headers[header::WWW_AUTHENTICATE]),
            (401, &"Bearer".parse::<HeaderValue>().unwrap())
        );
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    #[tokio::test]
    async fn the_replaced_systems_calls_add_detail_with_the_line() {
        let e = scene_error("NameError: name 'x' is not defined", 7, "NameError");
        let e = LegacyError(e.into());
        let (status, _, body) = answer_with(e).await;
        assert_eq!(status, 422);
        assert_eq!(body["detail"], "line 7: NameError: name 'x' is not defined");
        assert_eq!(body["error"]["line"], 7, "the usual error stays beside it");
        let e = LegacyError(ApiError::BadRequest {
            field: Some("code".into()),
            message: "missing field `code`".into(),
        });
        let (status, _, body) = answer_with(e).await;
        assert_eq!(
            (status, &body["detail"]),
            (400, &serde_json::json!("missing field `code`"))
        );
        let (status, _, body) = answer_with(LegacyError(ApiError::Internal("x".into()))).await;
        assert_eq!(
            (status, &body["detail"]),
            (500, &serde_json::json!(INTERNAL))
        );
    }

    #[tokio::test]
    async fn a_bad_request_names_its_field() {
        let e = ApiError::BadRequest {
            field: Some("quality".into()),
            message: "unknown variant `ultra`".into(),
        };
        let (status, _, body) = answer(e).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": "invalid-request", "message": "unknown variant `ultra`", "field": "quality"
            }})
        );
    }
}
