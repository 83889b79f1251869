//! A typed client of manimd's own HTTP API, for the tools that talk to a
//! server (`manimd submit`, `generate`, `mcp`, `bench`, `load`) and the tests: one
//! place that knows the paths, the bearer key, the error body and how a
//! job's event stream is read.

use std::path::Path;

use futures::StreamExt;
use serde::Serialize;

use crate::api::{ErrorBody, ErrorDetail, JobView, PreviewView};
use crate::sse;

/// The longest line of an event stream read here: an event holds at most a
/// job's record, a generation's code included.
const MAX_EVENT_LINE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with its typed error body.
    #[error("[{}] {}", .error.code, .error.message)]
    Api { status: u16, error: ErrorDetail },
    /// An answer the API does not give (a proxy's page, a cut body).
    #[error("unexpected answer (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
    /// The server could not be reached, or the connection broke.
    #[error("{0}")]
    Transport(String),
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Transport(e.without_url().to_string())
    }
}

/// A server, reached at `base` (`http://host:port`), with an API key when
/// the server needs one.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str, api_key: Option<&str>) -> Result<Client, ClientError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = api_key.filter(|k| !k.is_empty()) {
            let value = format!("Bearer {key}")
                .parse()
                .map_err(|_| ClientError::Transport("the API key is not a valid header".into()))?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .default_headers(headers)
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /health`, as JSON: the tools read a few of its numbers.
    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        let r = self.http.get(self.url("/health")).send().await?;
        json(r).await
    }

    /// `GET /v1/capabilities`.
    pub async fn capabilities(&self) -> Result<crate::api::Capabilities, ClientError> {
        let r = self.http.get(self.url("/v1/capabilities")).send().await?;
        json(r).await
    }

    /// `POST /v1/renders`: the job, queued (or already done from the cache).
    pub async fn submit(&self, request: &impl Serialize) -> Result<JobView, ClientError> {
        let r = self
            .http
            .post(self.url("/v1/renders"))
            .json(request)
            .send()
            .await?;
        json(r).await
    }

    /// `POST /v1/renders` with a body as it is, malformed or not: the status
    /// and the job when there is one (the load test's hostile requests).
    pub async fn submit_raw(&self, body: Vec<u8>) -> Result<(u16, Option<JobView>), ClientError> {
        let r = self
            .http
            .post(self.url("/v1/renders"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        if status != 202 {
            return Ok((status, None));
        }
        Ok((status, Some(json(r).await?)))
    }

    /// `POST /v1/blobs/missing`: which of `digests` this key has not uploaded.
    pub async fn missing_blobs(
        &self,
        digests: &[crate::project::Digest],
    ) -> Result<Vec<crate::project::Digest>, ClientError> {
        let r = self
            .http
            .post(self.url("/v1/blobs/missing"))
            .json(&crate::api::MissingBlobsRequest {
                digests: digests.to_vec(),
            })
            .send()
            .await?;
        Ok(json::<crate::api::MissingBlobs>(r).await?.missing)
    }

    /// `PUT /v1/blobs/{digest}` with the file at `path`, streamed; whether
    /// the server had it already.
    pub async fn put_blob(
        &self,
        digest: &crate::project::Digest,
        path: &Path,
    ) -> Result<crate::api::BlobView, ClientError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Transport(format!("{}: {e}", path.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| ClientError::Transport(format!("{}: {e}", path.display())))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        self.put_blob_body(digest, len, body).await
    }

    /// `PUT /v1/blobs/{digest}` of bytes in memory (a manifest).
    pub async fn put_blob_bytes(
        &self,
        digest: &crate::project::Digest,
        bytes: Vec<u8>,
    ) -> Result<crate::api::BlobView, ClientError> {
        self.put_blob_body(digest, bytes.len() as u64, bytes.into())
            .await
    }

    async fn put_blob_body(
        &self,
        digest: &crate::project::Digest,
        len: u64,
        body: reqwest::Body,
    ) -> Result<crate::api::BlobView, ClientError> {
        let r = self
            .http
            .put(self.url(&format!("/v1/blobs/{digest}")))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await?;
        json(r).await
    }

    /// `POST /v1/generations`: a generation job, queued.
    pub async fn generate(&self, request: &impl Serialize) -> Result<JobView, ClientError> {
        let r = self
            .http
            .post(self.url("/v1/generations"))
            .json(request)
            .send()
            .await?;
        json(r).await
    }

    /// `POST /v1/previews`: a storyboard or a still, answered at once.
    pub async fn preview(&self, request: &impl Serialize) -> Result<PreviewView, ClientError> {
        let r = self
            .http
            .post(self.url("/v1/previews"))
            .json(request)
            .send()
            .await?;
        json(r).await
    }

    /// `GET /v1/renders/{id}`.
    pub async fn job(&self, id: &str) -> Result<JobView, ClientError> {
        let r = self
            .http
            .get(self.url(&format!("/v1/renders/{id}")))
            .send()
            .await?;
        json(r).await
    }

    /// `GET /v1/renders/{id}/live.m3u8`: the live playlist, `None` until the
    /// job has one.
    pub async fn live_playlist(&self, id: &str) -> Result<Option<String>, ClientError> {
        let r = self
            .http
            .get(self.url(&format!("/v1/renders/{id}/live.m3u8")))
            .send()
            .await?;
        if matches!(r.status().as_u16(), 404 | 409) {
            return Ok(None);
        }
        Ok(Some(checked(r).await?.text().await?))
    }

    /// `GET /v1/renders/{id}/events`: the job's events as they come.
    pub async fn events(&self, id: &str) -> Result<Events, ClientError> {
        let r = self
            .http
            .get(self.url(&format!("/v1/renders/{id}/events")))
            .send()
            .await?;
        Ok(Events::new(checked(r).await?))
    }

    /// Fetches a link the server gave (`links.video`, a path or a URL) into
    /// `dest`; returns its size.
    pub async fn download(&self, link: &str, dest: &Path) -> Result<u64, ClientError> {
        let bytes = self.bytes(link).await?;
        tokio::fs::write(dest, &bytes)
            .await
            .map_err(|e| ClientError::Transport(format!("cannot write {}: {e}", dest.display())))?;
        Ok(bytes.len() as u64)
    }

    /// The body of a link the server gave (a preview's frame, a video), in
    /// memory.
    pub async fn bytes(&self, link: &str) -> Result<Vec<u8>, ClientError> {
        let url = if link.starts_with('/') {
            self.url(link)
        } else {
            link.to_owned()
        };
        Ok(checked(self.http.get(url).send().await?)
            .await?
            .bytes()
            .await?
            .to_vec())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A success, or the server's typed error.
async fn checked(r: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = r.status().as_u16();
    if r.status().is_success() {
        return Ok(r);
    }
    let body = r.text().await.unwrap_or_default();
    Err(match serde_json::from_str::<ErrorBody>(&body) {
        Ok(ErrorBody { error }) => ClientError::Api { status, error },
        Err(_) => ClientError::Unexpected {
            status,
            body: body.chars().take(500).collect(),
        },
    })
}

async fn json<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> Result<T, ClientError> {
    let r = checked(r).await?;
    let status = r.status().as_u16();
    let body = r.bytes().await?;
    serde_json::from_slice(&body).map_err(|_| ClientError::Unexpected {
        status,
        body: String::from_utf8_lossy(&body).chars().take(500).collect(),
    })
}

/// A job's event stream, one event at a time.
pub struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: sse::Decoder,
    ready: std::collections::VecDeque<sse::Event>,
}

impl Events {
    fn new(r: reqwest::Response) -> Events {
        Events {
            body: r.bytes_stream().boxed(),
            decoder: sse::Decoder::new(MAX_EVENT_LINE),
            ready: Default::default(),
        }
    }

    /// The next event; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Result<sse::Event, ClientError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            let chunk = match self.body.next().await? {
                Ok(chunk) => chunk,
                Err(e) => return Some(Err(e.into())),
            };
            match self.decoder.feed(&chunk) {
                Ok(events) => self.ready.extend(events),
                Err(e) => return Some(Err(ClientError::Transport(e.to_string()))),
            }
        }
    }
}
