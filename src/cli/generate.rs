//! `manimd generate`: send a prompt to a server, show the generation's
//! stages and attempts as they happen, download the video.

use std::path::PathBuf;
use std::process::ExitCode;

use super::GenerateArgs;
use manimd::api::{GenerationRequest, JobView};
use manimd::client::{Client, ClientError};
use manimd::job_error::{ErrorCode, JobError};
use manimd::jobs::JobStatus;
use manimd::spec::Format;

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
    let client = Client::new(&args.server, args.api_key.as_deref()).map_err(fail)?;
    let job = match client.generate(&req).await {
        Ok(job) => job,
        Err(ClientError::Api { status, error }) => {
            eprintln!(
                "error{}",
                describe(&serde_json::to_value(&error).unwrap_or_default())
            );
            return Err(if (400..500).contains(&status) { 2 } else { 1 });
        }
        Err(e) => return Err(fail(format!("{}: {e}", client.base()))),
    };
    let say = |line: String| {
        if !args.quiet {
            eprintln!("{line}");
        }
    };
    say(format!("queued as {}", job.id));
    let fin = follow(&client, &job.id, &args, &say).await.map_err(fail)?;
    match fin.status {
        JobStatus::Succeeded => {
            let result = fin
                .result
                .as_ref()
                .ok_or_else(|| fail("the server reported no result"))?;
            let out = args.output.clone().unwrap_or_else(|| {
                PathBuf::from(format!("generation.{}", result.format.extension()))
            });
            client
                .download(&fin.links.video, &out)
                .await
                .map_err(fail)?;
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
    client: &Client,
    id: &str,
    args: &GenerateArgs,
    say: &impl Fn(String),
) -> Result<JobView, String> {
    let mut events = client.events(id).await.map_err(|e| e.to_string())?;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| e.to_string())?;
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
    Err("the event stream ended before the job did".into())
}
