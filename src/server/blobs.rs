//! `/v1/blobs`: a project's files uploaded once by digest, and which of a
//! list the caller lacks. Thin handlers over `Service`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;
use crate::api::{BlobView, ErrorBody, MissingBlobs, MissingBlobsRequest};
use crate::blobs::Stored;
use crate::project::Digest;

/// Upload a blob: the raw bytes, named by their SHA-256.
#[utoipa::path(put, path = "/v1/blobs/{digest}", tag = "blobs",
    params(("digest" = String, Path, description = "`sha256:` and 64 lowercase hex digits: the bytes' SHA-256")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Stored", body = BlobView),
        (status = 200, description = "This key had it already; the body was not read", body = BlobView),
        (status = 400, description = "invalid-request (not a digest), digest-mismatch (the bytes hash to another digest)", body = ErrorBody),
        (status = 413, description = "file-too-large (past the per-file cap), blob-quota-exceeded (past `--blob-quota-mib`)", body = ErrorBody),
    ))]
pub async fn put(
    State(svc): State<AppState>,
    caller: Caller,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let digest: Digest =
        digest
            .parse()
            .map_err(|e: crate::project::InvalidDigest| ApiError::BadRequest {
                field: Some("digest".into()),
                message: e.to_string(),
            })?;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let stored = svc
        .put_blob(caller.owner(), &digest, length, body.into_data_stream())
        .await?;
    let status = match stored {
        Stored::Created => StatusCode::CREATED,
        Stored::Known => StatusCode::OK,
    };
    let view = BlobView {
        digest,
        created: stored == Stored::Created,
    };
    Ok((status, Json(view)).into_response())
}

/// Which of these blobs this key has not uploaded.
#[utoipa::path(post, path = "/v1/blobs/missing", request_body = MissingBlobsRequest, tag = "blobs",
    responses(
        (status = 200, body = MissingBlobs),
        (status = 400, description = "A malformed digest, or more than 10,000", body = ErrorBody),
    ))]
pub async fn missing(
    State(svc): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<MissingBlobsRequest>,
) -> Result<Json<MissingBlobs>, ApiError> {
    let missing = svc.missing_blobs(caller.owner(), &req.digests).await?;
    Ok(Json(MissingBlobs { missing }))
}
