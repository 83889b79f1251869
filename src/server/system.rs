//! Health, capabilities, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;

use super::error::ApiError;
use super::AppState;
use crate::api::{Capabilities, Health};

/// Liveness and load: memory, workers, queue.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
pub async fn health(State(svc): State<AppState>) -> Result<Json<Health>, ApiError> {
    Ok(Json(svc.health().await?))
}

/// Engines and their versions, quality presets, formats, limits, TeX.
#[utoipa::path(get, path = "/v1/capabilities", tag = "system", responses((status = 200, body = Capabilities)))]
pub async fn capabilities(State(svc): State<AppState>) -> Json<Capabilities> {
    Json(svc.capabilities())
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "text/plain; version=0.0.4", content_type = "text/plain")))]
pub async fn metrics(State(svc): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        svc.metrics_text().await,
    )
}

#[derive(OpenApi)]
#[openapi(
    info(title = "manimd", description = "Render Manim scenes to video; every scene runs in a sandbox."),
    paths(
        super::renders::submit,
        super::renders::list,
        super::renders::get,
        super::renders::delete,
        super::renders::events,
        super::renders::video,
        super::renders::thumbnail,
        super::renders::live_playlist,
        super::renders::live_file,
        super::renders::legacy_render,
        health,
        capabilities,
        metrics,
        openapi,
    ),
    tags(
        (name = "renders", description = "Render jobs"),
        (name = "compatibility", description = "Calls kept for the replaced system's clients"),
        (name = "system", description = "Health and introspection"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
