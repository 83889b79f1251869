//! Request extractors whose rejections are our typed errors.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::jobs::JobId;

/// A JSON body: the size limit is checked before anything is buffered
/// (from Content-Length) and while reading; malformed JSON, wrong types and
/// unknown fields are 400s that name the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.cfg.max_body_bytes;
        let headers = req.headers();
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            if !ct.starts_with("application/json") {
                return Err(ApiError::BadRequest {
                    field: None,
                    message: format!("expected Content-Type application/json, got {ct:?}"),
                });
            }
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit as usize)
            .await
            .map_err(|_| ApiError::PayloadTooLarge { limit })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| ApiError::BadRequest {
            field: None,
            message: format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        })?;
        let de = &mut serde_json::Deserializer::from_str(text);
        let value = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ApiError::BadRequest {
                field: (path != ".").then_some(path),
                message: e.into_inner().to_string(),
            }
        })?;
        Ok(ApiJson(value))
    }
}

/// The `{id}` path segment, parsed strictly.
pub struct Id(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::InvalidId)?;
        JobId::parse(&raw).map(Id).ok_or(ApiError::InvalidId)
    }
}
