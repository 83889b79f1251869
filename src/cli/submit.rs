//! `manimd submit`: send a file to a server, follow its progress, download
//! the result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::ProgressBar;

use super::{report, SubmitArgs};
use manimd::api::{JobView, RenderRequest};
use manimd::client::{Client, ClientError};
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
    let format = args.format.unwrap_or(Format::Mp4);
    let client = Client::new(&args.server, args.api_key.as_deref()).map_err(fail)?;
    // The scene's folder is its project: only the blobs the server lacks go.
    let folder = crate::folder::scan(&args.file, &Default::default()).map_err(fail)?;
    let mut req = RenderRequest {
        code: code.clone(),
        scenes: (!args.scenes.is_empty()).then(|| args.scenes.clone()),
        engine: args.engine,
        quality: Some(args.quality),
        format: Some(format),
        fps: args.fps,
        seed: args.seed,
        encoding: Some(args.encoding),
        narration: args.narration.then_some(true),
        parallel: args.parallel,
        ..Default::default()
    };
    let sub = folder.as_ref().map(|f| f.request(&code, &mut req));
    // Only the blobs the server lacks go, and only when it says so.
    let mut sent = (0, 0u64);
    let job = crate::folder::send(&client, &req, sub.as_ref(), |path, size| {
        eprintln!("uploaded {path} ({size} bytes)");
        sent = (sent.0 + 1, sent.1 + size);
    })
    .await;
    let blobs = sub
        .as_ref()
        .map_or(0, |s| s.blobs.len() + usize::from(s.manifest.is_some()));
    if blobs > 0 {
        eprintln!(
            "project: {} blobs (the manifest among them), {} uploaded ({} bytes), {} already on the server",
            blobs,
            sent.0,
            sent.1,
            blobs - sent.0
        );
    }
    let job = match job {
        Ok(job) => job,
        Err(ClientError::Api { status, error }) => {
            print_api_error(&serde_json::json!({ "error": error }), &args.file, &code);
            // A request the server cannot take (not the scene's fault) is 2.
            return Err(if (400..500).contains(&status) && status != 422 {
                2
            } else {
                1
            });
        }
        Err(e) => return Err(fail(format!("{}: {e}", client.base()))),
    };
    let bar = super::render::progress_bar(args.quiet);
    bar.set_message(format!("queued as {}", job.id));
    let fin = follow(&client, &job.id, &bar).await;
    bar.finish_and_clear();
    let fin = fin.map_err(|e| fail(went_away(&client, &job.id, &e)))?;
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
            client
                .download(&fin.links.video, &out)
                .await
                .map_err(|e| fail(went_away(&client, &fin.id, &e.to_string())))?;
            if let Some(n) = &result.notice {
                eprintln!("note[{}]: {}", n.code, n.message);
            }
            if !args.quiet && !result.chunks.is_empty() {
                let nodes: std::collections::BTreeSet<&str> =
                    result.chunks.iter().map(|c| c.node.as_str()).collect();
                eprintln!(
                    "split into {} chunks over {} worker(s)",
                    result.chunks.len(),
                    nodes.len()
                );
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

/// What to say when the server stops answering while a job is followed:
/// the job itself is stored and goes on (or is re-queued) on the server.
fn went_away(client: &Client, id: &str, err: &str) -> String {
    let base = client.base();
    format!(
        "lost the server at {base} while following job {id} ({err}). The job is kept \
         there and runs again if the server restarts; see it at {base}/v1/renders/{id} \
         (its events at /events, the video at /video)"
    )
}

/// Follows the job's event stream until its final state.
async fn follow(client: &Client, id: &str, bar: &ProgressBar) -> Result<JobView, String> {
    let mut events = client.events(id).await.map_err(|e| e.to_string())?;
    while let Some(event) = events.next().await {
        let sse::Event { event, data, .. } = event.map_err(|e| e.to_string())?;
        if event == "status" {
            if let Ok(view) = serde_json::from_str::<JobView>(&data) {
                bar.set_message(view.status.as_str());
                if view.status.is_terminal() {
                    return Ok(view);
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
    Err("the event stream ended before the job did".to_string())
}
