//! Health, capabilities, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;

use super::error::ApiError;
use super::AppState;
use crate::api::{Capabilities, Health};
use crate::runtime::StudioAsset;

/// The studio's Content-Security-Policy: our own origin only, and no inline
/// script or style (the page's script and styles are files served below).
/// hls.js runs its demuxer in a blob worker and feeds the player blob URLs.
const STUDIO_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     media-src 'self' blob:; img-src 'self' blob: data:; worker-src 'self' blob:; \
     connect-src 'self'; frame-ancestors 'none'";

/// The studio's page, script and styles change with the binary, at fixed
/// paths: a browser asks again each time, so a new page never meets an old
/// script. So do the setup's editor bundle and engine names, which change
/// with the checkout and the engines. hls.js changes only with its pinned
/// version: kept an hour.
const STUDIO_CACHE: &str = "no-cache";
const HLS_JS_CACHE: &str = "public, max-age=3600";

/// The web studio: one page, built into the binary.
pub async fn studio() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, STUDIO_CACHE),
            (header::CONTENT_SECURITY_POLICY, STUDIO_CSP),
        ],
        include_str!("../../web/studio.html"),
    )
}

/// The studio's script, built into the binary.
pub async fn studio_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, STUDIO_CACHE),
        ],
        include_str!("../../web/studio.js"),
    )
}

/// The studio's files panel (a project's files, kept in the browser),
/// built into the binary.
pub async fn files_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, STUDIO_CACHE),
        ],
        include_str!("../../web/files.js"),
    )
}

/// The studio's styles, built into the binary.
pub async fn studio_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, STUDIO_CACHE),
        ],
        include_str!("../../web/studio.css"),
    )
}

/// hls.js, installed from npm by the setup and served from here, so the
/// page fetches nothing from elsewhere.
pub async fn hls_js(State(svc): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    studio_asset(&svc, StudioAsset::HlsJs, JS, HLS_JS_CACHE).await
}

/// The editor: CodeMirror and `web/editor/`, bundled by the setup.
pub async fn editor_js(State(svc): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    studio_asset(&svc, StudioAsset::Editor, JS, STUDIO_CACHE).await
}

/// What each installed engine exports, for the editor's completion (made by
/// the setup from the engines themselves).
pub async fn engine_names(State(svc): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    studio_asset(&svc, StudioAsset::EngineNames, JSON, STUDIO_CACHE).await
}

const JS: &str = "text/javascript; charset=utf-8";
const JSON: &str = "application/json";

/// A file of the studio that the setup installs under the runtime: `404`
/// when it is missing (`manimd doctor` names it).
async fn studio_asset(
    svc: &AppState,
    asset: StudioAsset,
    content_type: &'static str,
    cache: &'static str,
) -> Result<impl IntoResponse, ApiError> {
    let path = svc.parts.renderer.runtime().studio_asset(asset);
    let body = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    ))
}

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
    info(title = "manimd", description = "Render Manim scenes to video; every scene runs in a sandbox. \
        Renders, previews, generations and job lookups are also MCP tools (render, preview, generate, get_job, capabilities) at `/mcp`, \
        over Streamable HTTP and behind the same API keys: a JSON-RPC endpoint, not a REST route, so it has no path here."),
    paths(
        super::renders::submit,
        super::renders::list,
        super::renders::get,
        super::renders::delete,
        super::renders::events,
        super::renders::video,
        super::renders::thumbnail,
        super::renders::subtitles,
        super::renders::live_playlist,
        super::renders::live_file,
        super::renders::legacy_render,
        super::previews::create,
        super::previews::frame,
        super::blobs::put,
        super::blobs::missing,
        super::generations::submit,
        super::generations::code,
        super::generations::legacy_generate,
        health,
        capabilities,
        metrics,
        openapi,
    ),
    // The data of the event stream's events, which no path's body names.
    components(schemas(crate::protocol::Progress, crate::generate::GenEvent)),
    tags(
        (name = "renders", description = "Render jobs"),
        (name = "blobs", description = "A project's files, uploaded once by digest"),
        (name = "previews", description = "A scene's storyboard or one still, drawn without a video"),
        (name = "generations", description = "Scenes generated from a prompt by a language model"),
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
