//! A scripted model provider speaking the OpenAI-compatible protocol on
//! 127.0.0.1:0: each request takes the next reply from a queue (streamed as
//! SSE when the request asks for `stream`, else one JSON object), and every
//! request's headers and body are recorded for the test to inspect.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Token counts every text reply reports.
pub const PROMPT_TOKENS: u64 = 11;
pub const COMPLETION_TOKENS: u64 = 7;

pub enum Reply {
    /// An answer, in the form the request asked for, with usage.
    Text(String),
    /// A plain JSON answer even when streaming was asked for.
    Plain(String),
    /// A streamed answer without a `usage` chunk.
    NoUsage(String),
    /// An error status, with `Retry-After` seconds if given.
    Status(u16, Option<u64>),
    /// A 200 whose body is not the protocol.
    Garbage,
    /// Answers nothing for this long (the client should time out first).
    Hang(Duration),
    /// Waits until the test opens the gate, then gives the inner reply.
    Gated(Arc<Notify>, Box<Reply>),
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub authorization: Option<String>,
    pub body: Value,
}

impl Recorded {
    /// The content of the last message.
    pub fn last_message(&self) -> String {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
}

pub struct MockLlm {
    /// The base URL to configure (`…/v1`).
    pub base_url: String,
    script: Arc<Script>,
}

impl MockLlm {
    pub async fn start(replies: Vec<Reply>) -> MockLlm {
        let script = Arc::new(Script {
            replies: Mutex::new(replies.into()),
            requests: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockLlm {
            base_url: format!("http://{addr}/v1"),
            script,
        }
    }

    pub fn push(&self, reply: Reply) {
        self.script.replies.lock().unwrap().push_back(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.script.requests.lock().unwrap().clone()
    }

    /// Replies not used yet.
    pub fn left(&self) -> usize {
        self.script.replies.lock().unwrap().len()
    }
}

async fn answer(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stream = body["stream"].as_bool().unwrap_or(false);
    script.requests.lock().unwrap().push(Recorded {
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    });
    let next = script.replies.lock().unwrap().pop_front();
    let Some(mut reply) = next else {
        return (StatusCode::IM_A_TEAPOT, "mock: no scripted reply left").into_response();
    };
    loop {
        reply = match reply {
            Reply::Gated(gate, inner) => {
                gate.notified().await;
                *inner
            }
            Reply::Hang(d) => {
                tokio::time::sleep(d).await;
                return (StatusCode::OK, "late").into_response();
            }
            Reply::Text(text) if stream => return sse(&text, true),
            Reply::NoUsage(text) => return sse(&text, false),
            Reply::Text(text) | Reply::Plain(text) => return plain(&text),
            Reply::Status(code, retry_after) => {
                let mut r = (
                    StatusCode::from_u16(code).unwrap(),
                    axum::Json(json!({"error": {"message": "scripted failure"}})),
                )
                    .into_response();
                if let Some(secs) = retry_after {
                    r.headers_mut()
                        .insert("retry-after", secs.to_string().parse().unwrap());
                }
                return r;
            }
            Reply::Garbage => {
                return ([("content-type", "application/json")], "<html>oops</html>")
                    .into_response()
            }
        };
    }
}

fn usage() -> Value {
    json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS})
}

fn plain(text: &str) -> Response {
    axum::Json(json!({
        "id": "mock", "object": "chat.completion", "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage(),
    }))
    .into_response()
}

/// The answer as a stream: a few characters per chunk, then usage and `[DONE]`.
fn sse(text: &str, with_usage: bool) -> Response {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(16) {
        let piece: String = piece.iter().collect();
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": piece}}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    if with_usage {
        let usage = json!({"choices": [], "usage": usage()});
        out.push_str(&format!("data: {usage}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], out).into_response()
}
