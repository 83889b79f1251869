//! `/v1/renders` and the synchronous `/render`: thin handlers over `Service`.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::auth::Caller;
use super::error::{ApiError, LegacyError};
use super::extract::{ApiJson, Id};
use super::media::{self, RequestHead};
use super::AppState;
use crate::api::{
    ErrorBody, JobList, JobView, LegacyErrorBody, LegacyRenderRequest, RenderRequest,
};
use crate::events::{is_terminal, JobEvent};
use crate::job_error::{ErrorCode, JobError};
use crate::jobs::{JobId, JobStatus};
use crate::service::Delivery;

/// Submit a render.
#[utoipa::path(post, path = "/v1/renders", request_body = RenderRequest, tag = "renders",
    responses(
        (status = 202, description = "Accepted and stored; it will run", body = JobView),
        (status = 400, description = "Malformed request (names the field); a project's invalid-path, duplicate-path (names the file) or invalid-manifest (names the digest)", body = ErrorBody),
        (status = 413, description = "Body over the limit; a project's too-many-files, file-too-large, project-too-large", body = ErrorBody),
        (status = 422, description = "The code cannot render: syntax-error, no-scene, scene-not-found; missing-blob (a blob or the manifest this key has not uploaded)", body = ErrorBody),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorBody),
        (status = 500, description = "internal or engine-mismatch: the installation's fault (a sandbox that cannot start, an engine the worker does not fit), never the scene's; no details in the body", body = ErrorBody),
        (status = 503, description = "Shutting down; see Retry-After", body = ErrorBody),
    ))]
pub async fn submit(
    State(svc): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RenderRequest>,
) -> Result<Response, ApiError> {
    let job = svc.submit(req, caller.owner()).await?;
    let view = JobView::from(&job);
    let location = view.links.this.clone();
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only jobs in this state.
    status: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List renders, newest first.
#[utoipa::path(get, path = "/v1/renders", params(ListQuery), tag = "renders",
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(svc): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest {
        field: None,
        message: e.body_text(),
    })?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            JobStatus::parse(s).ok_or_else(|| ApiError::BadRequest {
                field: Some("status".into()),
                message: "status is one of queued, running, succeeded, failed, canceled".into(),
            })
        })
        .transpose()?;
    let page = svc
        .list(
            caller.owner(),
            status,
            q.limit.unwrap_or(20),
            q.cursor.as_deref(),
        )
        .await?;
    Ok(Json(JobList {
        renders: page.jobs.iter().map(JobView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A render's state, progress, error or result.
#[utoipa::path(get, path = "/v1/renders/{id}", tag = "renders",
    params(("id" = String, Path, description = "32 hex digits")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(svc): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(JobView::from(&svc.get(&id, caller.owner()).await?)))
}

/// Cancel a queued or running render, or delete a finished one and its files.
#[utoipa::path(delete, path = "/v1/renders/{id}", tag = "renders",
    params(("id" = String, Path, description = "32 hex digits")),
    responses(
        (status = 200, description = "Canceled (queued) or being stopped (running)", body = JobView),
        (status = 204, description = "Deleted"),
        (status = 503, description = "The file store cannot be reached; nothing was deleted", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(svc): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    Ok(match svc.cancel_or_delete(&id, caller.owner()).await? {
        Some(job) => Json(JobView::from(&job)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

fn sse_event(e: &JobEvent) -> Event {
    Event::default()
        .event(e.name())
        .json_data(e)
        .unwrap_or_else(|_| Event::default().event("error"))
}

/// Server-Sent Events: the current state first, then every state change
/// (`status`) and progress step (`progress`), ending with the final state.
#[utoipa::path(get, path = "/v1/renders/{id}/events", tag = "renders",
    params(("id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "text/event-stream: `status` (a JobView), `progress` (a Progress) and a generation's `stage`, `delta` and `attempt` (a GenEvent)", content_type = "text/event-stream"),
              (status = 404, body = ErrorBody)))]
pub async fn events(
    State(svc): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job = svc.get(&id, caller.owner()).await?;
    let (mut rx, history) = svc.parts.hub.subscribe_with_history(&id);
    // Read again after subscribing, so that no change falls in between.
    let job = svc.get(&id, caller.owner()).await.unwrap_or(job);
    let stream = async_stream::stream! {
        let current = serde_json::to_value(JobView::from(&job)).unwrap_or_default();
        yield Ok(sse_event(&JobEvent::Status(current)));
        if job.status.is_terminal() {
            return;
        }
        // A generation's stages, code and attempts so far.
        for event in &history {
            yield Ok(sse_event(event));
        }
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let last = matches!(&event, JobEvent::Status(v) if is_terminal(v));
                    yield Ok(sse_event(&event));
                    if last {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => {
                    // Missed events (a slow client) or a closed channel: the
                    // stored state is the truth.
                    let Ok(job) = svc.get(&id, None).await else { return };
                    let view = serde_json::to_value(JobView::from(&job)).unwrap_or_default();
                    yield Ok(sse_event(&JobEvent::Status(view)));
                    if job.status.is_terminal() {
                        return;
                    }
                    rx = svc.parts.hub.subscribe(&id);
                }
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub(super) async fn file(
    svc: &AppState,
    id: &JobId,
    thumbnail: bool,
    caller: &Caller,
    request: &RequestHead<'_>,
    may_redirect: bool,
) -> Result<Response, ApiError> {
    let (delivery, content_type, job) = svc
        .file(id, thumbnail, caller.owner(), may_redirect)
        .await?;
    let object = match delivery {
        Delivery::Stream(object) => object,
        Delivery::Redirect(url) => {
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, url),
                    (header::CACHE_CONTROL, "private, no-store".to_owned()),
                ],
            )
                .into_response())
        }
    };
    let result = job.result.as_ref().expect("a finished job");
    let ext = if thumbnail {
        "png"
    } else {
        result.format.extension()
    };
    let kind = if thumbnail { "thumbnail" } else { "video" };
    let etag = format!("\"{id}-{}-{kind}\"", result.attempt);
    let name = format!("manimd-{id}.{ext}");
    media::serve(
        object,
        &content_type,
        etag,
        &name,
        "private, max-age=86400",
        request,
    )
    .await
}

/// The rendered video (or PNG for stills): ETag, If-None-Match, one Range.
#[utoipa::path(get, path = "/v1/renders/{id}/video", tag = "renders",
    params(("id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "The file"), (status = 206, description = "A byte range"),
              (status = 304, description = "Not modified"),
              (status = 307, description = "With `--storage-serve redirect`: Location is a presigned URL of the object store, valid 15 minutes"),
              (status = 409, description = "Not finished", body = ErrorBody),
              (status = 416, body = ErrorBody), (status = 503, description = "The object store cannot be reached", body = ErrorBody)))]
pub async fn video(
    State(svc): State<AppState>,
    caller: Caller,
    Id(id): Id,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = RequestHead {
        method: &method,
        headers: &headers,
    };
    file(&svc, &id, false, &caller, &request, true).await
}

/// A PNG of the last frame.
#[utoipa::path(get, path = "/v1/renders/{id}/thumbnail", tag = "renders",
    params(("id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "image/png", content_type = "image/png"),
              (status = 307, description = "With `--storage-serve redirect`: Location is a presigned URL of the object store"),
              (status = 409, body = ErrorBody)))]
pub async fn thumbnail(
    State(svc): State<AppState>,
    caller: Caller,
    Id(id): Id,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = RequestHead {
        method: &method,
        headers: &headers,
    };
    file(&svc, &id, true, &caller, &request, true).await
}

/// WebVTT subtitles of a narrated render (one cue per `narrate()` line) or
/// of a scene that spoke with manim-voiceover (one cue per voiceover).
#[utoipa::path(get, path = "/v1/renders/{id}/subtitles", tag = "renders",
    params(("id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "text/vtt", content_type = "text/vtt"),
              (status = 404, description = "`no-subtitles`: neither narrated nor voiced, or not succeeded (yet)", body = ErrorBody)))]
pub async fn subtitles(
    State(svc): State<AppState>,
    caller: Caller,
    Id(id): Id,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (object, job) = svc.subtitles(&id, caller.owner()).await?;
    let attempt = job.result.as_ref().map_or(0, |r| r.attempt);
    let etag = format!("\"{id}-{attempt}-subtitles\"");
    let name = format!("manimd-{id}.vtt");
    media::serve(
        object,
        "text/vtt; charset=utf-8",
        etag,
        &name,
        "private, max-age=86400",
        &RequestHead {
            method: &method,
            headers: &headers,
        },
    )
    .await
}

/// The live HLS playlist (EVENT): grows as each animation finishes, ends
/// with `EXT-X-ENDLIST` when the job does.
#[utoipa::path(get, path = "/v1/renders/{id}/live.m3u8", tag = "renders",
    params(("id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "application/vnd.apple.mpegurl", content_type = "application/vnd.apple.mpegurl"),
              (status = 409, description = "No segment yet", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn live_playlist(
    State(svc): State<AppState>,
    caller: Caller,
    Id(id): Id,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = RequestHead {
        method: &method,
        headers: &headers,
    };
    live(&svc, &id, "live.m3u8", &caller, &request).await
}

/// A file of the live stream: `init.mp4` or `seg-N.m4s` (immutable).
#[utoipa::path(get, path = "/v1/renders/{id}/live/{name}", tag = "renders",
    params(("id" = String, Path, description = "32 hex digits"), ("name" = String, Path, description = "init.mp4 or seg-N.m4s")),
    responses((status = 200, description = "fMP4", content_type = "video/iso.segment"), (status = 404, body = ErrorBody)))]
pub async fn live_file(
    State(svc): State<AppState>,
    caller: Caller,
    axum::extract::Path((raw_id, name)): axum::extract::Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = JobId::parse(&raw_id).ok_or(ApiError::InvalidId)?;
    let request = RequestHead {
        method: &method,
        headers: &headers,
    };
    live(&svc, &id, &name, &caller, &request).await
}

async fn live(
    svc: &AppState,
    id: &JobId,
    name: &str,
    caller: &Caller,
    request: &RequestHead<'_>,
) -> Result<Response, ApiError> {
    let (object, content_type, _) = svc.live_file(id, name, caller.owner()).await?;
    // Segments never change once written; the playlist changes until the end.
    let (cache, etag) = if name == "live.m3u8" {
        ("no-cache", format!("\"{id}-live-{}\"", object.size()))
    } else {
        (
            "public, max-age=31536000, immutable",
            format!("\"{id}-{name}\""),
        )
    };
    media::serve(object, content_type, etag, name, cache, request).await
}

/// The replaced system's synchronous call: the video bytes as the response.
/// Its errors carry `detail` too, the string its clients read.
#[utoipa::path(post, path = "/render", request_body = LegacyRenderRequest, tag = "compatibility",
    responses((status = 200, description = "The video"), (status = 400, body = LegacyErrorBody), (status = 413, body = LegacyErrorBody),
              (status = 422, body = LegacyErrorBody), (status = 429, body = LegacyErrorBody),
              (status = 500, description = "internal or engine-mismatch: the installation's fault", body = LegacyErrorBody)))]
pub async fn legacy_render(
    State(svc): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<ApiJson<LegacyRenderRequest>, ApiError>,
) -> Result<Response, LegacyError> {
    let ApiJson(req) = body?;
    let job = svc
        .submit(
            RenderRequest {
                code: req.code,
                files: req.files,
                main: req.main,
                manifest: req.manifest,
                scene: req.scene_name,
                quality: req.quality,
                format: req.format,
                ..Default::default()
            },
            caller.owner(),
        )
        .await?;
    Ok(legacy_video(&svc, &job.id, &caller, &headers).await?)
}

/// The end of the replaced system's synchronous calls: waits for the job,
/// then answers its video, or its error.
pub(super) async fn legacy_video(
    svc: &AppState,
    id: &JobId,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let job = svc.wait(id, caller.owner()).await?;
    match job.status {
        // The synchronous call's clients expect the bytes in the response.
        JobStatus::Succeeded => {
            // A POST: the bytes are the answer.
            let request = RequestHead {
                method: &Method::GET,
                headers,
            };
            file(svc, &job.id, false, caller, &request, false).await
        }
        _ => Err(ApiError::JobFailed(job.error.unwrap_or_else(|| {
            JobError::new(ErrorCode::Canceled, "the job was canceled")
        }))),
    }
}
