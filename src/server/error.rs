//! The one place where errors become HTTP responses: a status, a stable
//! code and a JSON body `{"error": {"code", "message", ...}}`. A 5xx body
//! never carries paths, stderr or other internals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ErrorBody, ErrorDetail};
use crate::render::RenderError;
use crate::service::ServiceError;
use crate::storage::StorageError;

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
    JobFailed(serde_json::Value),
    Internal(String),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

fn detail(code: &str, message: impl Into<String>) -> ErrorDetail {
    ErrorDetail {
        code: code.to_owned(),
        message: message.into(),
        field: None,
        line: None,
        column: None,
        details: Default::default(),
    }
}

/// Splits a typed error's JSON into the common fields and the rest.
fn from_json(v: serde_json::Value) -> ErrorDetail {
    let mut map = match v {
        serde_json::Value::Object(map) => map,
        _ => Default::default(),
    };
    let take_str = |map: &mut serde_json::Map<_, _>, k: &str| {
        map.remove(k)
            .and_then(|v: serde_json::Value| v.as_str().map(str::to_owned))
    };
    let take_u32 = |map: &mut serde_json::Map<_, _>, k: &str| {
        map.remove(k)
            .and_then(|v: serde_json::Value| v.as_u64())
            .map(|n| n as u32)
    };
    ErrorDetail {
        code: take_str(&mut map, "code").unwrap_or_else(|| "internal".into()),
        message: take_str(&mut map, "message").unwrap_or_default(),
        field: None,
        line: take_u32(&mut map, "line"),
        column: take_u32(&mut map, "column"),
        details: map,
    }
}

/// The status of a job's typed error: the scene's faults are 422, the model
/// provider's are gateway errors (its 401 is not ours: 502, not 401).
fn render_status(code: &str) -> StatusCode {
    match code {
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        "llm-not-configured" | "llm-unavailable" | "llm-key-lost" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        // The model's or the speech service's fault, not the caller's.
        "llm-unauthorized" | "llm-bad-response" | "tts-failed" => StatusCode::BAD_GATEWAY,
        "llm-rate-limited" => StatusCode::TOO_MANY_REQUESTS,
        "llm-timeout" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut retry_after = None;
        let (status, detail) = match self {
            ApiError::BadRequest { field, message } => {
                let mut d = detail("invalid-request", message);
                d.field = field;
                (StatusCode::BAD_REQUEST, d)
            }
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                detail(
                    "payload-too-large",
                    format!("the request body is larger than {limit} bytes"),
                ),
            ),
            ApiError::InvalidId => (
                StatusCode::BAD_REQUEST,
                detail(
                    "invalid-id",
                    "a render id is 32 lowercase hexadecimal digits",
                ),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                detail("not-found", "no such resource"),
            ),
            ApiError::Unauthorized => {
                let body = ErrorBody {
                    error: detail(
                        "unauthorized",
                        "this server needs an API key: send Authorization: Bearer <key>",
                    ),
                };
                let mut r = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            ApiError::RateLimited { retry_after_secs } => {
                retry_after = Some(retry_after_secs);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    detail(
                        "rate-limited",
                        "too many requests for this API key; see Retry-After",
                    ),
                )
            }
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                detail(
                    "method-not-allowed",
                    "this resource does not support that method",
                ),
            ),
            ApiError::RangeNotSatisfiable { size } => {
                let mut d = detail(
                    "range-not-satisfiable",
                    format!("the file has {size} bytes"),
                );
                d.details.insert("size".into(), size.into());
                (StatusCode::RANGE_NOT_SATISFIABLE, d)
            }
            ApiError::JobFailed(error) => {
                let d = from_json(error);
                (render_status(&d.code), d)
            }
            ApiError::Internal(msg) => {
                tracing::error!(%msg, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    detail("internal", "internal error; the server log has the details"),
                )
            }
            ApiError::Service(e) => match e {
                ServiceError::Invalid { field, message } => {
                    let mut d = detail("invalid-request", message);
                    d.field = Some(field);
                    (StatusCode::BAD_REQUEST, d)
                }
                ServiceError::Render(e) => {
                    if e.is_internal() {
                        tracing::error!(err = %e, "internal error while checking a submission");
                    }
                    let d = from_json(e.to_json());
                    (render_status(d.code.as_str()), d)
                }
                ServiceError::QueueFull {
                    retry_after_secs, ..
                } => {
                    retry_after = Some(retry_after_secs);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        detail("queue-full", e.to_string()),
                    )
                }
                ServiceError::GenerationsBusy { .. } => {
                    retry_after = Some(5);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        detail("generations-busy", e.to_string()),
                    )
                }
                ServiceError::QuotaExceeded {
                    retry_after_secs, ..
                } => {
                    retry_after = Some(retry_after_secs);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        detail("quota-exceeded", e.to_string()),
                    )
                }
                ServiceError::ShuttingDown => {
                    retry_after = Some(5);
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        detail("shutting-down", e.to_string()),
                    )
                }
                ServiceError::NotFound => {
                    (StatusCode::NOT_FOUND, detail("not-found", e.to_string()))
                }
                ServiceError::NotReady(_) => {
                    (StatusCode::CONFLICT, detail("not-ready", e.to_string()))
                }
                ServiceError::NoSubtitles(_) => {
                    (StatusCode::NOT_FOUND, detail("no-subtitles", e.to_string()))
                }
                ServiceError::Storage(err) => {
                    tracing::error!(%err, "storage error");
                    match err {
                        StorageError::Remote(_) => {
                            retry_after = Some(5);
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                detail(err.code(), "the file store cannot be reached; retry later"),
                            )
                        }
                        StorageError::NotFound => {
                            (StatusCode::NOT_FOUND, detail("not-found", "no such file"))
                        }
                        StorageError::Url(_) | StorageError::Io(_) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            detail("internal", "internal error; the server log has the details"),
                        ),
                    }
                }
                ServiceError::Llm(e) => {
                    let d = from_json(e.to_json());
                    (render_status(&d.code), d)
                }
                ServiceError::GenerationFailed(error) => {
                    let d = from_json(error);
                    (render_status(&d.code), d)
                }
                ServiceError::Store(err) => {
                    tracing::error!(%err, "job store error");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        detail("internal", "internal error; the server log has the details"),
                    )
                }
            },
        };
        let mut response = (status, Json(ErrorBody { error: detail })).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        ApiError::Service(ServiceError::Render(e))
    }
}
