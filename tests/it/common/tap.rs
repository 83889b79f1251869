//! A recording HTTP proxy in front of the S3-compatible server: it passes
//! each request on unchanged and keeps its method and path, so a test can
//! say which requests the server under test made to the bucket; and it can
//! answer some of them with an error instead, as a failing store would.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;

/// Decides whether a request (method, path) fails with a 503.
type Refuse = dyn Fn(&str, &str) -> bool + Send + Sync;

#[derive(Clone)]
pub struct Tap {
    /// `http://127.0.0.1:PORT`: use as the storage URL's endpoint.
    pub endpoint: String,
    log: Arc<Mutex<Vec<(String, String)>>>,
}

#[derive(Clone)]
struct Inner {
    upstream: String,
    client: reqwest::Client,
    log: Arc<Mutex<Vec<(String, String)>>>,
    refuse: Arc<Refuse>,
}

impl Tap {
    /// Proxies to `upstream`, refusing the requests `refuse` picks.
    pub async fn start(
        upstream: &str,
        refuse: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Tap {
        let log = Arc::new(Mutex::new(Vec::new()));
        let inner = Inner {
            upstream: upstream.to_owned(),
            client: reqwest::Client::new(),
            log: Arc::clone(&log),
            refuse: Arc::new(refuse),
        };
        let app = axum::Router::new().fallback(forward).with_state(inner);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Tap { endpoint, log }
    }

    /// Every request so far: (method, path), in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }
}

async fn forward(State(tap): State<Inner>, req: Request) -> Response {
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    tap.log
        .lock()
        .unwrap()
        .push((method.to_string(), path.clone()));
    if (tap.refuse)(method.as_str(), &path) {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Body::from("<Error><Code>ServiceUnavailable</Code></Error>"))
            .unwrap();
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let mut out = tap
        .client
        .request(method, format!("{}{path_and_query}", tap.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let answer = out.send().await.unwrap();
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "connection" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap()))
        .unwrap()
}
