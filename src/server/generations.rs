//! `/v1/generations`, `/v1/code/generations` and the synchronous
//! `/generate`: thin handlers over `Service`. A generation job lives at
//! `/v1/renders/{id}` like any render.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::error::{ApiError, LegacyError};
use super::extract::ApiJson;
use super::{renders, AppState};
use crate::api::{
    CodeGeneration, ErrorBody, GenerationRequest, JobView, LegacyErrorBody, LegacyGenerateRequest,
};

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

/// The replaced system's synchronous generation: the video bytes as the
/// response. With the caller's `api_key` and no provider configured, the
/// model is the replaced system's (the Groq preset), as it was there. Its
/// errors carry `detail` too, the string its clients read.
#[utoipa::path(post, path = "/generate", request_body = LegacyGenerateRequest, tag = "compatibility",
    responses((status = 200, description = "The video"), (status = 400, body = LegacyErrorBody),
              (status = 422, description = "generation-failed", body = LegacyErrorBody), (status = 429, body = LegacyErrorBody),
              (status = 500, description = "internal: the installation's fault", body = LegacyErrorBody),
              (status = 502, body = LegacyErrorBody), (status = 503, body = LegacyErrorBody), (status = 504, body = LegacyErrorBody)))]
pub async fn legacy_generate(
    State(svc): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<LegacyGenerateRequest>, ApiError>,
) -> Result<Response, LegacyError> {
    let ApiJson(req) = body?;
    let job = svc
        .legacy_generate(
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
    Ok(renders::legacy_video(&svc, &job.id, &caller, &headers).await?)
}
