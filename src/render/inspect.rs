//! Inspection: parsing a file in a small sandbox for its engine, scenes and
//! narration literals, running none of its code. The pool keeps a started
//! [`Inspector`] so that checking a submission does not wait for Python.

use std::time::Duration;

use serde::Serialize;

use crate::limits::Limits;
use crate::protocol::{SceneInfo, WorkerEvent, WorkerJob};
use crate::sandbox;
use crate::spec::Engine;

use super::error::outcome;
use super::{RenderError, Renderer};

/// Static facts about a file, found without running it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspection {
    /// The engine its imports name, if any.
    pub engine: Option<Engine>,
    pub scenes: Vec<SceneInfo>,
    /// String literals passed to `narrate(...)`.
    pub narrations: Vec<String>,
    /// String literals given as a manim-voiceover text, with their pieces.
    #[serde(skip)]
    pub voiceovers: Vec<crate::protocol::VoiceText>,
}

/// A sandbox started for an inspection, waiting for the code.
pub struct Inspector(sandbox::Started);

impl Inspector {
    pub fn age(&self) -> Duration {
        self.0.age()
    }
}

/// Limits for inspection, which only parses.
fn inspect_limits() -> Limits {
    Limits {
        wall_secs: 20,
        memory_mib: 512,
        pids: 16,
        output_mib: 16,
        files: 100,
        file_size_mib: 16,
        ..Limits::default()
    }
}

impl Renderer {
    /// Parses the file in a sandbox: syntax errors, the engine it imports,
    /// its scenes. Runs none of its code.
    pub async fn inspect(&self, code: &str) -> Result<Inspection, RenderError> {
        let inspector = self.start_inspector().await?;
        self.inspect_project_with(inspector, code, &[]).await
    }

    /// Starts a sandbox for an inspection, ready for its code: the pool
    /// keeps one so that checking a submission does not wait for Python.
    pub async fn start_inspector(&self) -> Result<Inspector, RenderError> {
        let engine = self.any_engine();
        self.runtime.check(engine)?;
        let started = self
            .sandbox
            .start(
                &sandbox::new_id(),
                &self.command(engine, false),
                &inspect_limits(),
            )
            .await?;
        Ok(Inspector(started))
    }

    /// Inspects `code` in a started inspector. For a project's scene file
    /// that imports no engine itself, the engine is the first one `modules`
    /// (the project's other Python files) import.
    pub async fn inspect_project_with(
        &self,
        inspector: Inspector,
        code: &str,
        modules: &[&str],
    ) -> Result<Inspection, RenderError> {
        let stdin =
            serde_json::to_vec(&WorkerJob::Inspect { code, modules }).expect("serializable");
        let mut found = None;
        let mut error = None;
        let mut finished = self
            .sandbox
            .finish(
                inspector.0,
                stdin,
                &inspect_limits(),
                |line, _| match WorkerEvent::parse(line) {
                    Some(WorkerEvent::Inspected {
                        engine,
                        scenes,
                        narrations,
                        voiceovers,
                    }) => {
                        found = Some(Inspection {
                            engine,
                            scenes,
                            narrations,
                            voiceovers,
                        })
                    }
                    Some(WorkerEvent::Error(e)) => error = Some(e),
                    _ => {}
                },
                std::future::pending(),
            )
            .await?;
        // An inspection parses and runs nothing of the scene's.
        outcome(&mut finished, found, error, "inspection", false)
    }

    /// Ends an inspector that will not be used.
    pub async fn discard_inspector(&self, inspector: Inspector) {
        self.sandbox.discard(inspector.0).await;
    }
}
