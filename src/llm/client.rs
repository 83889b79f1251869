//! The OpenAI-compatible chat-completions client: a streamed answer (SSE
//! `data:` lines ending with `[DONE]`) or a plain JSON one, retries on 429
//! and 5xx honouring `Retry-After` within a bound, and token usage.

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::{LlmConfig, LlmError};
use crate::secret::Secret;
use crate::sse;

/// One chat message.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message {
            role: "system",
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: "user",
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message {
            role: "assistant",
            content: content.into(),
        }
    }
}

/// A model's answer and what it cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The provider reported no usage: the counts are estimates (4 bytes a token).
    pub estimated: bool,
}

pub struct Provider {
    http: reqwest::Client,
    cfg: LlmConfig,
}

/// How one HTTP exchange ended, before retries are decided.
enum Try {
    Done(Completion),
    /// 429 or 5xx: worth another try after the wait the server asked for.
    Retry {
        status: u16,
        after: Option<Duration>,
    },
    /// The server refused the streaming request itself (400/422): ask again plainly.
    NoStreaming,
}

impl Provider {
    pub fn new(cfg: LlmConfig) -> Provider {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            // Redirects could carry the Authorization header elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with rustls");
        Provider { http, cfg }
    }

    pub fn config(&self) -> &LlmConfig {
        &self.cfg
    }

    /// Asks the model; `on_delta` sees the answer's text as it streams in.
    /// `key` overrides the configured key.
    pub async fn chat(
        &self,
        key: Option<&Secret>,
        messages: &[Message],
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        let base = self
            .cfg
            .base_url
            .as_deref()
            .ok_or(LlmError::NotConfigured)?;
        let url = format!("{base}/chat/completions");
        let key = key.or(self.cfg.api_key.as_ref());
        let mut stream = self.cfg.stream;
        let mut retries = 0;
        loop {
            let attempt = tokio::time::timeout(
                self.cfg.timeout,
                self.exchange(&url, key, messages, stream, on_delta),
            )
            .await
            .map_err(|_| LlmError::Timeout(self.cfg.timeout.as_secs()))??;
            match attempt {
                Try::Done(mut c) => {
                    if c.prompt_tokens == 0 && c.completion_tokens == 0 {
                        c.estimated = true;
                        let sent: usize = messages.iter().map(|m| m.content.len()).sum();
                        c.prompt_tokens = sent.div_ceil(4) as u64;
                        c.completion_tokens = c.text.len().div_ceil(4) as u64;
                    }
                    return Ok(c);
                }
                Try::NoStreaming if stream => stream = false,
                Try::NoStreaming => {
                    return Err(LlmError::BadResponse("the request was refused".into()))
                }
                Try::Retry { status, after } => {
                    if retries >= self.cfg.retries {
                        return Err(if status == 429 {
                            LlmError::RateLimited(retries)
                        } else {
                            LlmError::Unavailable { status, retries }
                        });
                    }
                    let backoff = Duration::from_millis(500 << retries.min(6));
                    let wait = after.unwrap_or(backoff).min(self.cfg.max_retry_wait);
                    tracing::info!(
                        status,
                        wait_ms = wait.as_millis() as u64,
                        "model provider busy; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
            }
        }
    }

    async fn exchange(
        &self,
        url: &str,
        key: Option<&Secret>,
        messages: &[Message],
        stream: bool,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Try, LlmError> {
        let mut body = json!({
            "model": self.cfg.model,
            "messages": messages,
            "temperature": 0.2,
            "stream": stream,
        });
        if stream {
            body["stream_options"] = json!({ "include_usage": true });
        }
        let mut req = self.http.post(url).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key.expose());
        }
        let resp = req.send().await.map_err(unreachable_err)?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => {
                log_provider_text(status, resp, key).await;
                return Err(LlmError::Unauthorized(status));
            }
            429 | 500..=599 => {
                let after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, self.cfg.max_retry_wait));
                log_provider_text(status, resp, key).await;
                return Ok(Try::Retry { status, after });
            }
            400 | 422 if stream => return Ok(Try::NoStreaming),
            _ => {
                log_provider_text(status, resp, key).await;
                return Err(LlmError::BadResponse(format!(
                    "unexpected HTTP status {status}"
                )));
            }
        }
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_sse {
            read_stream(resp.bytes_stream(), status, key, on_delta)
                .await
                .map(Try::Done)
        } else {
            // A server that ignores `stream` answers with one JSON object.
            let bytes = read_capped(resp.bytes_stream(), 4 * MAX_ANSWER_BYTES)
                .await?
                .ok_or_else(|| bad("the answer is longer than 4 MiB"))?;
            let c = parse_plain(&bytes)?;
            on_delta(&c.text);
            Ok(Try::Done(c))
        }
    }
}

/// The longest answer taken; a scene file is a few KiB, and an endless
/// stream must not fill the server's memory before the timeout.
pub(crate) const MAX_ANSWER_BYTES: usize = 1 << 20;

fn bad(msg: impl Into<String>) -> LlmError {
    LlmError::BadResponse(msg.into())
}

/// The wait a `Retry-After` header asks for, in seconds (an HTTP date is
/// not understood), at most `max`; None for a negative, infinite or NaN one.
fn retry_after(value: &str, max: Duration) -> Option<Duration> {
    let secs = value.trim().parse::<f64>().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    // Clamped first: a huge finite value overflows a Duration.
    Some(Duration::from_secs_f64(secs.min(max.as_secs_f64())))
}

fn unreachable_err(e: reqwest::Error) -> LlmError {
    // reqwest's message names the URL, never the headers.
    LlmError::Unreachable(e.without_url().to_string())
}

/// A body read up to `cap` bytes; None once it runs past them, without
/// reading the rest (an endless body must not fill the memory).
async fn read_capped<S, B>(mut body: S, cap: usize) -> Result<Option<Vec<u8>>, LlmError>
where
    S: futures::Stream<Item = Result<B, reqwest::Error>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(chunk.map_err(unreachable_err)?.as_ref());
        if out.len() > cap {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

/// How much of a provider's own error text reaches the log.
const PROVIDER_TEXT_CHARS: usize = 200;

/// The provider's own words, for the operator's log only: they often echo
/// the key, masked or not, so they never reach a job's error. Cut short,
/// with the key itself blanked out should it be there.
fn provider_text(text: &str, key: Option<&Secret>) -> String {
    let text = match key {
        Some(k) => text.replace(k.expose(), "***"),
        None => text.to_owned(),
    };
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(PROVIDER_TEXT_CHARS)
        .collect();
    if text.chars().count() > PROVIDER_TEXT_CHARS {
        out.push('…');
    }
    out
}

/// Logs the start of an error answer's body at warn level.
async fn log_provider_text(status: u16, resp: reqwest::Response, key: Option<&Secret>) {
    // The start is enough, and only briefly waited for: a slow error body
    // must not turn a retry into a timeout.
    let mut body = resp.bytes_stream();
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(chunk)) = body.next().await {
            bytes.extend_from_slice(&chunk);
            if bytes.len() >= 16 * 1024 {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&bytes);
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.into_owned());
    tracing::warn!(
        status,
        provider_message = %provider_text(&message, key),
        "the model provider answered with an error"
    );
}

/// Usage of an answer (`usage.prompt_tokens`, `usage.completion_tokens`).
fn usage(v: &Value) -> Option<(u64, u64)> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    Some((
        u["prompt_tokens"].as_u64().unwrap_or(0),
        u["completion_tokens"].as_u64().unwrap_or(0),
    ))
}

/// A non-streamed answer: `choices[0].message.content`.
pub(crate) fn parse_plain(bytes: &[u8]) -> Result<Completion, LlmError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|_| bad("the answer is not JSON"))?;
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| bad("the answer has no choices[0].message.content"))?
        .to_owned();
    let (prompt_tokens, completion_tokens) = usage(&v).unwrap_or((0, 0));
    Ok(Completion {
        text,
        prompt_tokens,
        completion_tokens,
        estimated: false,
    })
}

/// Collects a streamed answer from its SSE lines: each `data:` line is one
/// chunk of the answer (the OpenAI-compatible protocol sends each on a line
/// of its own), so lines are read one by one rather than as events.
pub(crate) struct StreamParser {
    lines: sse::Lines,
    pub(crate) completion: Completion,
    pub(crate) done: bool,
    /// The HTTP status of the streamed answer, named in its errors.
    status: u16,
    /// Blanked out of the provider's text before it is logged.
    key: Option<Secret>,
}

impl Default for StreamParser {
    fn default() -> Self {
        StreamParser::new(0, None)
    }
}

impl StreamParser {
    fn new(status: u16, key: Option<&Secret>) -> StreamParser {
        StreamParser {
            // A line that never ends is bounded too.
            lines: sse::Lines::new(2 * MAX_ANSWER_BYTES),
            completion: Completion::default(),
            done: false,
            status,
            key: key.cloned(),
        }
    }

    /// Feeds bytes; returns the new text, in order.
    pub(crate) fn feed(&mut self, chunk: impl AsRef<[u8]>) -> Result<Vec<String>, LlmError> {
        let lines = self.lines.feed(chunk.as_ref()).map_err(stream_err)?;
        self.take(lines)
    }

    /// The stream ended: a last `data:` line without its newline still counts.
    pub(crate) fn finish(&mut self) -> Result<Vec<String>, LlmError> {
        let last = self.lines.finish().map_err(stream_err)?;
        self.take(last.into_iter().collect())
    }

    fn take(&mut self, lines: Vec<sse::Line>) -> Result<Vec<String>, LlmError> {
        let mut deltas = Vec::new();
        for line in lines {
            let sse::Line::Field { name, value } = line else {
                continue;
            };
            if name != "data" {
                continue; // `event:` and the like
            }
            let data = value.trim();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let v: Value =
                serde_json::from_str(data).map_err(|_| bad("a streamed chunk is not JSON"))?;
            if let Some(err) = v.get("error") {
                // The provider's text may echo the key: it goes to the log only.
                let text = err["message"].as_str().unwrap_or("");
                tracing::warn!(
                    status = self.status,
                    provider_message = %provider_text(text, self.key.as_ref()),
                    "the model provider reported an error mid-stream"
                );
                // A numeric code (OpenRouter's, an HTTP status) says nothing secret.
                let code = match err["code"].as_u64() {
                    Some(code) => format!(", code {code}"),
                    None => String::new(),
                };
                return Err(bad(format!(
                    "the model provider reported an error mid-stream (HTTP {}{code})",
                    self.status
                )));
            }
            if let Some((p, c)) = usage(&v) {
                self.completion.prompt_tokens = p;
                self.completion.completion_tokens = c;
            }
            if let Some(text) = v["choices"][0]["delta"]["content"].as_str() {
                if !text.is_empty() {
                    if self.completion.text.len() + text.len() > MAX_ANSWER_BYTES {
                        return Err(bad("the answer is longer than 1 MiB"));
                    }
                    self.completion.text.push_str(text);
                    deltas.push(text.to_owned());
                }
            }
        }
        Ok(deltas)
    }
}

fn stream_err(e: sse::SseError) -> LlmError {
    match e {
        sse::SseError::TooLong(_) => bad("a streamed line is longer than 2 MiB"),
        sse::SseError::NotUtf8 => bad("the stream is not UTF-8"),
    }
}

async fn read_stream<S, B>(
    mut body: S,
    status: u16,
    key: Option<&Secret>,
    on_delta: &mut (dyn FnMut(&str) + Send),
) -> Result<Completion, LlmError>
where
    S: futures::Stream<Item = Result<B, reqwest::Error>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut parser = StreamParser::new(status, key);
    // Lines are split on bytes, so a chunk that ends inside a UTF-8
    // sequence is whole again before it is decoded.
    while let Some(chunk) = body.next().await {
        for d in parser.feed(chunk.map_err(unreachable_err)?)? {
            on_delta(&d);
        }
        if parser.done {
            break;
        }
    }
    for d in parser.finish()? {
        on_delta(&d);
    }
    if !parser.done && parser.completion.text.is_empty() {
        return Err(bad("the stream ended without an answer"));
    }
    Ok(parser.completion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_split_anywhere_gives_the_text_and_usage() {
        let stream = concat!(
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"from manim\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\" import *\"}}]}\r\n\r\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in [1, 7, 50, stream.len()] {
            let mut p = StreamParser::default();
            let mut text = String::new();
            for part in stream.as_bytes().chunks(split) {
                for d in p.feed(std::str::from_utf8(part).unwrap()).unwrap() {
                    text.push_str(&d);
                }
            }
            assert_eq!(text, "from manim import *");
            assert!(p.done);
            assert_eq!(p.completion.text, text);
            assert_eq!(
                (p.completion.prompt_tokens, p.completion.completion_tokens),
                (12, 5)
            );
        }
    }

    #[test]
    fn an_endless_answer_is_cut_off() {
        let mut p = StreamParser::default();
        let chunk = format!(
            "data: {}\n",
            serde_json::json!({"choices": [{"delta": {"content": "x".repeat(64 * 1024)}}]})
        );
        let mut result = Ok(vec![]);
        for _ in 0..20 {
            result = p.feed(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(LlmError::BadResponse(_))));
        assert!(p.completion.text.len() <= MAX_ANSWER_BYTES);
    }

    #[test]
    fn malformed_answers_are_bad_responses() {
        let mut p = StreamParser::default();
        assert!(matches!(
            p.feed("data: {nope\n"),
            Err(LlmError::BadResponse(_))
        ));
        assert!(parse_plain(b"<html>").is_err());
        assert!(parse_plain(b"{\"choices\":[]}").is_err());
        let c = parse_plain(
            br#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.text.as_str(), c.prompt_tokens, c.completion_tokens),
            ("x", 3, 1)
        );
    }

    #[test]
    fn retry_after_is_bounded_and_never_panics() {
        let max = Duration::from_secs(10);
        assert_eq!(retry_after("1e30", max), Some(max));
        assert_eq!(retry_after(" 1.5 ", max), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after("0", max), Some(Duration::ZERO));
        for v in [
            "-1",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(retry_after(v, max), None, "{v}");
        }
    }

    #[tokio::test]
    async fn an_endless_plain_body_is_cut_off() {
        let endless =
            futures::stream::repeat_with(|| Ok::<_, reqwest::Error>(vec![b'x'; 64 * 1024]));
        assert_eq!(read_capped(endless, 1 << 20).await.unwrap(), None);
        let short = futures::stream::iter([Ok::<_, reqwest::Error>(b"{}".to_vec())]);
        assert_eq!(
            read_capped(short, 1 << 20).await.unwrap(),
            Some(b"{}".to_vec())
        );
    }

    #[tokio::test]
    async fn a_last_line_without_its_newline_reaches_on_delta() {
        let chunks = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"from \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"manim\"}}]}",
        ];
        let body = futures::stream::iter(chunks.map(|c| Ok::<_, reqwest::Error>(c.as_bytes())));
        let mut seen = String::new();
        let c = read_stream(body, 200, None, &mut |d| seen.push_str(d))
            .await
            .unwrap();
        assert_eq!(seen, "from manim");
        assert_eq!(c.text, "from manim");
    }

    #[test]
    fn the_providers_error_text_stays_out_of_the_error() {
        let key = Secret::new("sk-abcdef123456xyz").unwrap();
        let mut p = StreamParser::new(200, Some(&key));
        let e = p
            .feed("data: {\"error\":{\"message\":\"Incorrect API key provided: sk-ab***xyz\",\"code\":401}}\n")
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LlmError::BadResponse(_)));
        assert!(!msg.contains("sk-") && !msg.contains("Incorrect"), "{msg}");
        assert!(
            msg.contains("HTTP 200") && msg.contains("code 401"),
            "{msg}"
        );
        // The log gets the provider's words, cut short, never the key itself.
        let logged = provider_text(
            &format!("bad key {} {}", key.expose(), "x".repeat(500)),
            Some(&key),
        );
        assert!(!logged.contains(key.expose()) && logged.contains("bad key ***"));
        assert!(logged.chars().count() <= PROVIDER_TEXT_CHARS + 1);
    }
}
