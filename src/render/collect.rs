//! The render pass's side of the worker protocol: a [`Collector`] receives
//! each event line while the sandbox runs, passes progress on in the order
//! it came, collects finished movie pieces for live playback, and keeps
//! what the result needs afterwards (the answer or error, whether the
//! worker got as far as `ready`, the narration lines, scene durations).

use std::path::PathBuf;

use crate::limits::Limits;
use crate::narration::{self, Spoken};
use crate::protocol::{Progress, UserError, WorkerEvent, WorkerResult};
use crate::sandbox::area::Area;

use super::error::after_user_code;

/// What one render's worker said, gathered as it ran.
pub(super) struct Collector<'a, P> {
    progress: P,
    limits: &'a Limits,
    /// Where finished pieces are collected, numbered in arrival order.
    pieces_dir: PathBuf,
    pieces: u32,
    pub result: Option<WorkerResult>,
    pub error: Option<UserError>,
    /// Until the worker says `ready`, no scene code has run: a crash
    /// before it is the installation's, not the scene's.
    pub ready: bool,
    pub version: String,
    pub spoken: Vec<Spoken>,
    /// Each rendered scene's duration, in order.
    pub scene_durations: Vec<f64>,
}

impl<'a, P: FnMut(Progress)> Collector<'a, P> {
    pub fn new(limits: &'a Limits, pieces_dir: PathBuf, progress: P) -> Self {
        Collector {
            progress,
            limits,
            pieces_dir,
            pieces: 0,
            result: None,
            error: None,
            ready: false,
            version: String::new(),
            spoken: Vec::new(),
            scene_durations: Vec::new(),
        }
    }

    /// One line of the worker's output; lines that are not events (the
    /// scene's own prints) are ignored.
    pub fn on_line(&mut self, line: &[u8], area: &Area) {
        if let Some(event) = WorkerEvent::parse(line) {
            self.on_event(event, area);
        }
    }

    fn on_event(&mut self, event: WorkerEvent, area: &Area) {
        match event {
            WorkerEvent::Result(r) => self.result = Some(r),
            WorkerEvent::Error(e) if self.ready => self.error = Some(after_user_code(e)),
            WorkerEvent::Error(e) => self.error = Some(e),
            WorkerEvent::Inspected { .. } | WorkerEvent::Warm { .. } => {}
            WorkerEvent::Ready {
                engine, version, ..
            } => {
                self.ready = true;
                self.version.clone_from(&version);
                (self.progress)(Progress::Ready { engine, version });
            }
            WorkerEvent::SceneStarted {
                scene,
                index,
                count,
            } => (self.progress)(Progress::SceneStarted {
                scene,
                index,
                count,
            }),
            WorkerEvent::Animation { scene, index, name } => {
                (self.progress)(Progress::Animation { scene, index, name })
            }
            WorkerEvent::Frames { scene, frames } => {
                (self.progress)(Progress::Frames { scene, frames })
            }
            WorkerEvent::PartialMovie { scene, index, path } => {
                let piece = self.collect_piece(&path, area);
                (self.progress)(Progress::PartialMovie {
                    scene,
                    index,
                    piece,
                })
            }
            WorkerEvent::Narration {
                index,
                start,
                text,
                duration,
                ..
            } => {
                if self.spoken.len() < narration::MAX_LINES {
                    self.spoken.push(Spoken {
                        scene_index: index,
                        start,
                        text,
                        slot: duration,
                    });
                }
            }
            WorkerEvent::SceneFinished {
                scene,
                index,
                plays,
                duration,
            } => {
                // Scenes finish in order; an index out of order is ignored.
                if index as usize == self.scene_durations.len() {
                    self.scene_durations.push(duration);
                }
                (self.progress)(Progress::SceneFinished {
                    scene,
                    index,
                    plays,
                    duration,
                })
            }
        }
    }

    /// The finished piece at the worker's `path`, collected now (safely: no
    /// links, regular files only) for live playback; `None` when it cannot
    /// be, which costs only the live view.
    fn collect_piece(&mut self, path: &str, area: &Area) -> Option<PathBuf> {
        let rel = path.strip_prefix("/job/")?;
        let dest = self.pieces_dir.join(format!("{}.mp4", self.pieces));
        std::fs::create_dir_all(&self.pieces_dir).ok()?;
        area.collect(rel, &dest, self.limits.output_bytes()).ok()?;
        self.pieces += 1;
        Some(dest)
    }
}
