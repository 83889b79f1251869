//! `manimd submit`: send a file to a server, follow its progress, download
//! the result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use indicatif::ProgressBar;

use super::{report, SubmitArgs};
use manimd::api::{JobView, RenderRequest};
use manimd::job_error::{ErrorCode, JobError};
use manimd::jobs::JobStatus;
use manimd::protocol::UserError;
use manimd::spec::Format;
use manimd::sse;

pub async fn run(args: SubmitArgs) -> ExitCode {
    match submit(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn fail(msg: impl std::fmt::Display) -> u8 {
    eprintln!("error: {msg}");
    1
}

/// Prints an API error as the CLI prints a local one.
fn print_api_error(body: &serde_json::Value, file: &Path, code: &str) {
    let err = body.get("error").cloned().unwrap_or_default();
    match serde_json::from_value::<UserError>(err.clone()) {
        Ok(user) => eprint!("{}", report::user_error(&user, file, code)),
        Err(_) => eprintln!("error: {err}"),
    }
}

async fn submit(args: SubmitArgs) -> Result<(), u8> {
    let code = super::render::read_scene_file(&args.file).map_err(fail)?;
    let server = args.server.trim_end_matches('/').to_owned();
    let format = args.format.unwrap_or(Format::Mp4);
    let req = RenderRequest {
        code: code.clone(),
        scenes: (!args.scenes.is_empty()).then(|| args.scenes.clone()),
        engine: args.engine,
        quality: Some(args.quality),
        format: Some(format),
        fps: args.fps,
        seed: args.seed,
        encoding: Some(args.encoding),
        narration: args.narration.then_some(true),
        ..Default::default()
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
        .post(format!("{server}/v1/renders"))
        .json(&req)
        .send()
        .await
        .map_err(|e| fail(format!("cannot reach {server}: {e}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(fail)?;
    if !status.is_success() {
        print_api_error(&body, &args.file, &code);
        return Err(if status.is_client_error() && status.as_u16() != 422 {
            2
        } else {
            1
        });
    }
    let job: JobView = serde_json::from_value(body).map_err(fail)?;
    let bar = super::render::progress_bar(args.quiet);
    bar.set_message(format!("queued as {}", job.id));
    let fin = follow(&client, &server, &job.id, &bar).await;
    bar.finish_and_clear();
    let fin = fin.map_err(fail)?;
    match fin.status {
        JobStatus::Succeeded => {
            let result = fin
                .result
                .as_ref()
                .ok_or_else(|| fail("the server reported no result"))?;
            let out = args.output.clone().unwrap_or_else(|| {
                let stem = args
                    .file
                    .file_stem()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "scene".into());
                stem.with_extension(result.format.extension())
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
            if let Some(n) = &result.notice {
                eprintln!("note[{}]: {}", n.code, n.message);
            }
            println!("{}", out.display());
            Ok(())
        }
        _ => {
            let err = fin
                .error
                .clone()
                .unwrap_or_else(|| JobError::new(ErrorCode::Canceled, "the job was canceled"));
            print_api_error(&serde_json::json!({ "error": err }), &args.file, &code);
            Err(1)
        }
    }
}

/// Follows the job's event stream until its final state.
async fn follow(
    client: &reqwest::Client,
    server: &str,
    id: &str,
    bar: &ProgressBar,
) -> Result<JobView, String> {
    let resp = client
        .get(format!("{server}/v1/renders/{id}/events"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?;
    let mut stream = resp.bytes_stream();
    let mut sse = sse::Decoder::new(super::MAX_EVENT_LINE);
    let mut last: Option<JobView> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        for sse::Event { event, data, .. } in sse.feed(&chunk).map_err(|e| e.to_string())? {
            if event == "status" {
                if let Ok(view) = serde_json::from_str::<JobView>(&data) {
                    bar.set_message(view.status.as_str());
                    let done = view.status.is_terminal();
                    last = Some(view);
                    if done {
                        return Ok(last.expect("just set"));
                    }
                }
            } else if let Ok(p) = serde_json::from_str::<serde_json::Value>(&data) {
                let scene = p["scene"].as_str().unwrap_or("");
                match p["event"].as_str() {
                    Some("animation") => bar.set_message(format!(
                        "{scene}: animation {} {}",
                        p["index"],
                        p["name"].as_str().unwrap_or("")
                    )),
                    Some("frames") => bar.set_message(format!("{scene}: {} frames", p["frames"])),
                    Some("scene-finished") => bar.set_message(format!("{scene}: done; encoding")),
                    _ => {}
                }
            }
        }
    }
    last.filter(|v| v.status.is_terminal())
        .ok_or_else(|| "the event stream ended before the job did".to_string())
}
