//! Serving finished files: ETag, conditional GET, one byte range, and
//! headers that keep browsers from treating them as anything but media.
//! The bytes come from a storage `Object` (a local file or an object in a
//! bucket), so both backends answer ranges the same way.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

use super::error::ApiError;
use crate::service::ServiceError;
use crate::storage::Object;

/// What `serve` reads of the request: its method and headers.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// A single requested byte range, resolved against the file size.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    Full,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// Parses `Range: bytes=a-b | a- | -n`. Several ranges, other units and
/// malformed values are served as the full file, as RFC 9110 allows.
pub fn parse_range(value: Option<&str>, size: u64) -> Range {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Range::Full,
        (true, false) => {
            let Ok(n) = b.parse::<u64>() else {
                return Range::Full;
            };
            if n == 0 || size == 0 {
                return Range::Unsatisfiable;
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return Range::Full;
            };
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                    _ => return Range::Full,
                }
            };
            if start >= size {
                return Range::Unsatisfiable;
            }
            (start, end)
        }
    };
    Range::Part { start, end }
}

fn etag_matches(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(v) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Answers a GET (or HEAD) for a published file. A HEAD gets the GET's
/// headers from the object's size alone: its bytes are never asked for, so
/// with a bucket a HEAD costs no GET against it.
pub async fn serve(
    object: Object,
    content_type: &str,
    etag: String,
    download_name: &str,
    cache_control: &str,
    request: &RequestHead<'_>,
) -> Result<Response, ApiError> {
    let headers = request.headers;
    let size = object.size();
    let base = |status: StatusCode| {
        Response::builder()
            .status(status)
            .header(header::ETAG, &etag)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CACHE_CONTROL, cache_control)
            .header(header::CONTENT_TYPE, content_type)
            .header(
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{download_name}\""),
            )
    };
    if etag_matches(headers.get(header::IF_NONE_MATCH), &etag) {
        return base(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::Internal(e.to_string()));
    }
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, start, len) = match range {
        Range::Full => (StatusCode::OK, 0, size),
        Range::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Range::Unsatisfiable => {
            let mut r =
                axum::response::IntoResponse::into_response(ApiError::RangeNotSatisfiable { size });
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return Ok(r);
        }
    };
    let body = if request.method == Method::HEAD {
        Body::empty()
    } else {
        let stream = object
            .read(start, len)
            .await
            .map_err(|e| ApiError::Service(ServiceError::Storage(e)))?;
        Body::from_stream(stream)
    };
    let mut builder = base(status).header(header::CONTENT_LENGTH, len);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    builder
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |v: &str| parse_range(Some(v), 1000);
        assert_eq!(p("bytes=0-99"), Range::Part { start: 0, end: 99 });
        assert_eq!(
            p("bytes=900-"),
            Range::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-100"),
            Range::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=990-5000"),
            Range::Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(p("bytes=1000-"), Range::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Range::Unsatisfiable);
        assert_eq!(p("bytes=0-1,5-6"), Range::Full);
        assert_eq!(p("items=0-1"), Range::Full);
        assert_eq!(p("bytes=x-y"), Range::Full);
        assert_eq!(p("bytes=5-1"), Range::Full);
        assert_eq!(parse_range(None, 10), Range::Full);
    }

    #[test]
    fn etags() {
        let v = HeaderValue::from_static("\"a\", W/\"b\"");
        assert!(etag_matches(Some(&v), "\"b\""));
        assert!(!etag_matches(Some(&v), "\"c\""));
        assert!(etag_matches(Some(&HeaderValue::from_static("*")), "\"c\""));
        assert!(!etag_matches(None, "\"a\""));
    }
}
