//! The render pass's side of the worker protocol: a [`Collector`] receives
//! each event line while the sandbox runs, passes progress on in the order
//! it came, collects finished movie pieces for live playback, and keeps
//! what the result needs afterwards (the answer or error, whether the
//! worker got as far as `ready`, the narration lines, scene durations).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::animcache::Shelf;
use crate::limits::Limits;
use crate::narration::voiceover::Voiced;
use crate::narration::{self, Spoken};
use crate::protocol::{Progress, UserError, VoiceText, WorkerEvent, WorkerResult};
use crate::sandbox::area::Area;

use super::error::after_user_code;

/// One animation of a render, as the result lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnimationInfo {
    /// Its position over all the render's scenes, from 0.
    pub index: u32,
    pub scene: String,
    /// E.g. `Transform(Circle, Square)`.
    pub name: String,
    /// The author's line of the `play` or `wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Seconds into the video.
    pub start: f64,
    pub end: f64,
    /// Its piece came from the owner's animation cache.
    pub cached: bool,
}

/// A piece this render drew, collected on the host, with the key the
/// worker gave it: a candidate for the owner's animation cache.
pub(super) struct Fresh {
    pub key: String,
    pub path: PathBuf,
    pub frames: u64,
}

/// What one render's worker said, gathered as it ran.
pub(super) struct Collector<'a, P> {
    progress: P,
    limits: &'a Limits,
    shelf: Option<&'a Shelf>,
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
    /// manim-voiceover's voiceovers, as they started.
    pub voiced: Vec<Voiced>,
    /// Voiceover texts the host did not prepare (the render stopped).
    pub unvoiced: Vec<VoiceText>,
    /// Each rendered scene's duration, in order.
    pub scene_durations: Vec<f64>,
    /// Each animation as it started: its scene's index and its record
    /// (start relative to the scene until `animations` places it).
    started: Vec<(usize, AnimationInfo)>,
    /// Pieces drawn here, for the cache once the render succeeded.
    pub fresh: Vec<Fresh>,
    /// A cached piece failed our check after the worker used it: the
    /// video may hold a bad piece, so the render must run again.
    pub spoiled: bool,
}

impl<'a, P: FnMut(Progress)> Collector<'a, P> {
    pub fn new(
        limits: &'a Limits,
        pieces_dir: PathBuf,
        shelf: Option<&'a Shelf>,
        progress: P,
    ) -> Self {
        Collector {
            progress,
            limits,
            shelf,
            pieces_dir,
            pieces: 0,
            result: None,
            error: None,
            ready: false,
            version: String::new(),
            spoken: Vec::new(),
            voiced: Vec::new(),
            unvoiced: Vec::new(),
            scene_durations: Vec::new(),
            started: Vec::new(),
            fresh: Vec::new(),
            spoiled: false,
        }
    }

    /// The animations in video time: each ends where the next of its scene
    /// starts, or where its scene ends; scenes follow each other.
    pub fn animations(&self) -> Vec<AnimationInfo> {
        let mut offsets = vec![0.0];
        for d in &self.scene_durations {
            offsets.push(offsets.last().copied().unwrap_or(0.0) + d);
        }
        let mut out: Vec<AnimationInfo> = Vec::with_capacity(self.started.len());
        for (i, (scene, info)) in self.started.iter().enumerate() {
            let offset = offsets.get(*scene).copied().unwrap_or(0.0);
            let end = match self.started.get(i + 1) {
                Some((next_scene, next)) if next_scene == scene => next.start,
                _ => self
                    .scene_durations
                    .get(*scene)
                    .copied()
                    .unwrap_or(info.start),
            };
            out.push(AnimationInfo {
                index: i as u32,
                start: round(offset + info.start),
                end: round(offset + end.max(info.start)),
                ..info.clone()
            });
        }
        out
    }

    /// One line of the worker's output; lines that are not events (the
    /// scene's own prints) are ignored.
    pub fn on_line(&mut self, line: &[u8], area: &Area) {
        if let Some(event) = WorkerEvent::parse(line) {
            self.on_event(event, area);
        }
    }

    pub fn on_event(&mut self, event: WorkerEvent, area: &Area) {
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
            WorkerEvent::Animation {
                scene,
                index,
                name,
                line,
                start,
                cached,
            } => {
                if self.started.len() < MAX_ANIMATIONS {
                    self.started.push((
                        self.scene_durations.len(),
                        AnimationInfo {
                            index,
                            scene: scene.clone(),
                            name: name.clone(),
                            line,
                            start,
                            end: start,
                            cached,
                        },
                    ));
                }
                (self.progress)(Progress::Animation {
                    scene,
                    index,
                    name,
                    line,
                    start,
                    cached,
                })
            }
            WorkerEvent::Frames { scene, frames } => {
                (self.progress)(Progress::Frames { scene, frames })
            }
            WorkerEvent::PartialMovie {
                scene,
                index,
                path,
                key,
                cached,
                frames,
            } => {
                let piece = if cached {
                    self.cached_piece(key.as_deref(), frames)
                } else {
                    let piece = self.collect_piece(&path, area);
                    if let (Some(key), Some(frames), Some(piece)) = (key, frames, &piece) {
                        self.keep_fresh(key, piece, frames);
                    }
                    piece
                };
                (self.progress)(Progress::PartialMovie {
                    scene,
                    index,
                    cached,
                    piece,
                })
            }
            WorkerEvent::AwaitingPieces { count } => {
                (self.progress)(Progress::AwaitingPieces { count })
            }
            WorkerEvent::PreviewFrame { .. }
            | WorkerEvent::Previewed { .. }
            | WorkerEvent::Planned { .. }
            | WorkerEvent::ChunkDone { .. } => {}
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
            WorkerEvent::Voiceover {
                index,
                start,
                end,
                text,
                marks,
            } => {
                if self.voiced.len() < narration::MAX_LINES {
                    self.voiced.push(Voiced {
                        scene_index: index,
                        start,
                        end,
                        text,
                        marks,
                    });
                }
            }
            WorkerEvent::VoiceoverText(text) => {
                if self.unvoiced.len() < narration::MAX_LINES {
                    self.unvoiced.push(text);
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

    /// Keeps a second name for a drawn piece: live playback removes the
    /// first once it has packaged it, and the cache admits the piece only
    /// after the render succeeded.
    fn keep_fresh(&mut self, key: String, piece: &std::path::Path, frames: u64) {
        if self.shelf.is_none() || self.fresh.len() >= MAX_ANIMATIONS {
            return;
        }
        let keep = self.pieces_dir.join("keep");
        let path = keep.join(format!("{}.mp4", self.fresh.len()));
        if std::fs::create_dir_all(&keep).is_ok() && std::fs::hard_link(piece, &path).is_ok() {
            self.fresh.push(Fresh { key, path, frames });
        }
    }

    /// A piece the worker took from the cache: checked again with our
    /// reader (it is in the video now) and linked for live playback. A
    /// refused one is removed and spoils the render.
    fn cached_piece(&mut self, key: Option<&str>, frames: Option<u64>) -> Option<PathBuf> {
        let (shelf, key) = (self.shelf?, key?);
        match shelf.check(key, frames) {
            Ok(entry) => {
                let dest = self.pieces_dir.join(format!("{}.mp4", self.pieces));
                std::fs::create_dir_all(&self.pieces_dir).ok()?;
                // A second name for the entry, never a write through one:
                // whatever is at `dest` goes first.
                let _ = std::fs::remove_file(&dest);
                std::fs::hard_link(&entry, &dest).ok()?;
                self.pieces += 1;
                Some(dest)
            }
            Err(err) => {
                tracing::warn!(%key, %err, "a cached animation was refused; rendering again");
                self.spoiled = true;
                None
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

/// At most this many animations are recorded per render (the worker is
/// untrusted; a real scene has far fewer).
const MAX_ANIMATIONS: usize = 100_000;

fn round(secs: f64) -> f64 {
    (secs * 1e6).round() / 1e6
}
