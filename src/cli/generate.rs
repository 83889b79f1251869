//! `manimd generate`: send a prompt to a server, show the generation's
//! stages and attempts as they happen, download the video.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;

use super::GenerateArgs;
use manimd::api::{GenerationRequest, JobView};
use manimd::job_error::{ErrorCode, JobError};
use manimd::jobs::JobStatus;
use manimd::spec::Format;
use manimd::sse;

pub async fn run(args: GenerateArgs) -> ExitCode {
    match generate(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn fail(msg: impl std::fmt::Display) -> u8 {
    eprintln!("error: {msg}");
    1
}

/// `error[code]: message (line N)`.
fn describe(err: &serde_json::Value) -> String {
    let mut s = format!(
        "[{}] {}",
        err["code"].as_str().unwrap_or("error"),
        err["message"].as_str().unwrap_or("")
    );
    if let Some(line) = err["line"].as_u64() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}

async fn generate(args: GenerateArgs) -> Result<(), u8> {
    let server = args.server.trim_end_matches('/').to_owned();
    let format = args.format.unwrap_or(Format::Mp4);
    let req = GenerationRequest {
        prompt: args.prompt.clone(),
        engine: args.engine,
        quality: Some(args.quality),
        format: Some(format),
        narration: args.narration.then_some(true),
        max_attempts: args.max_attempts,
        api_key: None,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &args.api_key {
        let value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).map_err(fail)?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .map_err(fail)?;
    let resp = client
        .post(format!("{server}/v1/generations"))
        .json(&req)
        .send()
        .await
        .map_err(|e| fail(format!("cannot reach {server}: {e}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(fail)?;
    if !status.is_success() {
        eprintln!("error{}", describe(&body["error"]));
        return Err(if status.is_client_error() { 2 } else { 1 });
    }
    let job: JobView = serde_json::from_value(body).map_err(fail)?;
    let say = |line: String| {
        if !args.quiet {
            eprintln!("{line}");
        }
    };
    say(format!("queued as {}", job.id));
    let fin = follow(&client, &server, &job.id, &args, &say)
        .await
        .map_err(fail)?;
    match fin.status {
        JobStatus::Succeeded => {
            let result = fin
                .result
                .as_ref()
                .ok_or_else(|| fail("the server reported no result"))?;
            let out = args.output.clone().unwrap_or_else(|| {
                PathBuf::from(format!("generation.{}", result.format.extension()))
            });
            let bytes = client
                .get(format!("{server}{}", fin.links.video))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(fail)?
                .bytes()
                .await
                .map_err(fail)?;
            std::fs::write(&out, &bytes)
                .map_err(|e| fail(format!("cannot write {}: {e}", out.display())))?;
            if let Some(g) = &fin.generation {
                say(format!(
                    "done in {} attempt(s): {} prompt + {} completion tokens, {:.1} s rendering",
                    g.attempts.len(),
                    g.totals.prompt_tokens,
                    g.totals.completion_tokens,
                    g.totals.render_secs
                ));
            }
            println!("{}", out.display());
            Ok(())
        }
        _ => {
            let err = fin
                .error
                .clone()
                .unwrap_or_else(|| JobError::new(ErrorCode::Canceled, "the job was canceled"));
            eprintln!(
                "error{}",
                describe(&serde_json::to_value(&err).unwrap_or_default())
            );
            Err(1)
        }
    }
}

/// Follows the job's events, printing stages and attempts, until it ends.
async fn follow(
    client: &reqwest::Client,
    server: &str,
    id: &str,
    args: &GenerateArgs,
    say: &impl Fn(String),
) -> Result<JobView, String> {
    let resp = client
        .get(format!("{server}/v1/renders/{id}/events"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?;
    let mut stream = resp.bytes_stream();
    let mut sse = sse::Decoder::new(super::MAX_EVENT_LINE);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        for event in sse.feed(&chunk).map_err(|e| e.to_string())? {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&event.data) else {
                continue;
            };
            match event.event.as_str() {
                "status" => {
                    if let Ok(view) = serde_json::from_value::<JobView>(v) {
                        if view.status.is_terminal() {
                            return Ok(view);
                        }
                    }
                }
                "stage" => {
                    let stage = v["stage"].as_str().unwrap_or("");
                    match v["attempt"].as_u64() {
                        Some(n) if n > 0 => say(format!("attempt {n}: {stage}")),
                        _ => say(stage.to_owned()),
                    }
                }
                "delta" if args.show_code && !args.quiet => {
                    eprint!("{}", v["text"].as_str().unwrap_or(""));
                }
                "attempt" => {
                    let n = v["number"].as_u64().unwrap_or(0);
                    if v["error"].is_object() {
                        say(format!(
                            "attempt {n} failed in {}: {}",
                            v["failed_in"].as_str().unwrap_or("?"),
                            describe(&v["error"])
                        ));
                    } else {
                        say(format!("attempt {n} succeeded"));
                    }
                }
                _ => {}
            }
        }
    }
    Err("the event stream ended before the job did".into())
}
