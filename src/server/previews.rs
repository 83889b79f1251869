//! `/v1/previews`: thin handlers over `Service::preview` and its frames.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;
use crate::api::{ErrorBody, PreviewRequest, PreviewView};
use crate::jobs::JobId;

/// Preview a scene: its storyboard or one still, answered when drawn.
#[utoipa::path(post, path = "/v1/previews", request_body = PreviewRequest, tag = "previews",
    responses(
        (status = 200, description = "The scene's animations and the frames' URLs (kept 10 minutes)", body = PreviewView),
        (status = 400, description = "Malformed request (names the field: `at` or `animation` for a still)", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 422, description = "The scene cannot be drawn: syntax-error, scene-error (with its line), no-such-animation, timeout, ...", body = ErrorBody),
        (status = 429, description = "rate-limited or previews-busy; see Retry-After", body = ErrorBody),
        (status = 500, description = "internal or engine-mismatch: the installation's fault; no details in the body", body = ErrorBody),
        (status = 503, description = "Shutting down; see Retry-After", body = ErrorBody),
    ))]
pub async fn create(
    State(svc): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PreviewRequest>,
) -> Result<Json<PreviewView>, ApiError> {
    let (id, preview) = svc.preview(req, caller.owner()).await?;
    Ok(Json(PreviewView::new(&id, &preview)))
}

/// A preview's frame as PNG; only its owner gets it, for 10 minutes.
#[utoipa::path(get, path = "/v1/previews/{id}/frames/{name}", tag = "previews",
    params(("id" = String, Path, description = "32 hex digits"), ("name" = String, Path, description = "N.png, N from 0")),
    responses((status = 200, description = "image/png", content_type = "image/png"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn frame(
    State(svc): State<AppState>,
    caller: Caller,
    Path((raw_id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = JobId::parse(&raw_id).ok_or(ApiError::InvalidId)?;
    let n = frame_number(&name).ok_or(ApiError::NotFound)?;
    let png = svc.preview_frame(&id, n, caller.owner()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            // Never changes; private: it is one owner's.
            (header::CACHE_CONTROL, "private, max-age=600, immutable"),
        ],
        png,
    )
        .into_response())
}

/// `N.png` with N a plain decimal number.
fn frame_number(name: &str) -> Option<usize> {
    let digits = name.strip_suffix(".png")?;
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::frame_number;

    #[test]
    fn frame_names_are_plain_numbers_with_png() {
        assert_eq!(frame_number("0.png"), Some(0));
        assert_eq!(frame_number("12.png"), Some(12));
        for bad in [
            "",
            ".png",
            "1",
            "-1.png",
            "+1.png",
            "1.PNG",
            "1.png.png",
            "99999.png",
        ] {
            assert_eq!(frame_number(bad), None, "{bad}");
        }
    }
}
