//! `/v1/generations`, `/v1/code/generations` and the synchronous
//! `/generate`: thin handlers over `Service`. A generation job lives at
//! `/v1/renders/{id}` like any render.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiJson;
use super::{renders, AppState};
use crate::api::{CodeGeneration, ErrorBody, GenerationRequest, JobView, LegacyGenerateRequest};
use crate::job_error::{ErrorCode, JobError};
use crate::jobs::JobStatus;

/// Generate a scene from a prompt and render it.
#[utoipa::path(post, path = "/v1/generations", request_body = GenerationRequest, tag = "generations",
    responses(
        (status = 202, description = "Accepted and stored; follow it at /v1/renders/{id}", body = JobView),
        (status = 400, description = "Malformed request (names the field)", body = ErrorBody),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "llm-not-configured: no model provider; or shutting down", body = ErrorBody),
    ))]
pub async fn submit(
    State(svc): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<GenerationRequest>,
) -> Result<Response, ApiError> {
    let job = svc.generate(req, caller.owner()).await?;
    let view = JobView::from(&job);
    let location = view.links.this.clone();
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// Generate checked code from a prompt, without rendering it.
#[utoipa::path(post, path = "/v1/code/generations", request_body = GenerationRequest, tag = "generations",
    responses(
        (status = 200, description = "Code that parses and uses the engine's API", body = CodeGeneration),
        (status = 400, body = ErrorBody),
        (status = 422, description = "generation-failed: no attempt passed the checks", body = ErrorBody),
        (status = 429, description = "llm-rate-limited", body = ErrorBody),
        (status = 502, description = "llm-unauthorized, llm-bad-response", body = ErrorBody),
        (status = 503, description = "llm-not-configured, llm-unavailable", body = ErrorBody),
        (status = 504, description = "llm-timeout", body = ErrorBody),
    ))]
pub async fn code(
    State(svc): State<AppState>,
    ApiJson(req): ApiJson<GenerationRequest>,
) -> Result<Json<CodeGeneration>, ApiError> {
    Ok(Json(svc.generate_code(req).await?))
}

/// The replaced system's synchronous generation: the video bytes as the response.
#[utoipa::path(post, path = "/generate", request_body = LegacyGenerateRequest, tag = "compatibility",
    responses((status = 200, description = "The video"), (status = 400, body = ErrorBody),
              (status = 422, description = "generation-failed", body = ErrorBody), (status = 429, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn legacy_generate(
    State(svc): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LegacyGenerateRequest>,
) -> Result<Response, ApiError> {
    let job = svc
        .generate(
            GenerationRequest {
                prompt: req.prompt,
                api_key: req.api_key,
                quality: req.quality,
                format: req.format,
                ..Default::default()
            },
            caller.owner(),
        )
        .await?;
    let job = svc.wait(&job.id, caller.owner()).await?;
    match job.status {
        JobStatus::Succeeded => renders::file(&svc, &job.id, false, &caller, &headers, false).await,
        _ => Err(ApiError::JobFailed(job.error.unwrap_or_else(|| {
            JobError::new(ErrorCode::Canceled, "the job was canceled")
        }))),
    }
}
