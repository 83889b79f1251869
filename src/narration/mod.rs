//! Narration: `narrate("...")` lines spoken into the video's sound track,
//! and WebVTT subtitles with one cue per line.
//!
//! The flow around one render: the inspection pass returns the string
//! literals passed to `narrate`; the host speaks each (`tts`, outside the
//! sandbox) and gives the worker their durations, so the scene can wait for
//! its speech; the worker reports where each line started (`Spoken`); the
//! host places the lines in the stitched video (`place`), speaks lines whose
//! text was computed at run time, and has a fresh sandbox mix the clips and
//! mux them into the video (`mux`), because the host never parses a scene's
//! output with ffmpeg.

pub mod mux;
pub mod tts;
pub mod voiceover;
pub mod vtt;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::job_error::ErrorCode;

pub use tts::{Tts, TtsConfig, TtsError};

/// The subtitles' file name, in a render's directory and in storage.
pub const SUBTITLES_FILE: &str = "subtitles.vtt";

/// Most lines one render may speak.
pub const MAX_LINES: usize = 200;
/// Longest line, in characters.
pub const MAX_LINE_CHARS: usize = 2000;
/// A line computed at run time is sped up to fit the time the scene gave it
/// (its estimate), but never beyond this; past it, it runs over.
pub const MAX_TEMPO: f64 = 1.5;

/// One narration line in the delivered video, in seconds from its start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// A line as the worker reported it: where it started in its scene and how
/// long the scene waited for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Spoken {
    /// The scene's place among the rendered scenes.
    pub scene_index: u32,
    /// Seconds from the start of that scene.
    pub start: f64,
    pub text: String,
    /// The speech's duration the worker was given, or its own estimate for
    /// text that was not known before the render.
    pub slot: f64,
}

/// A line placed in the video, with how much its clip is sped up.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub cue: Cue,
    /// 1.0 unless the speech is longer than its slot.
    pub tempo: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum NarrationError {
    #[error("the scene narrates more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("a narration line is longer than {MAX_LINE_CHARS} characters")]
    LineTooLong,
    #[error("text to speech failed: {0}")]
    Tts(#[from] TtsError),
    #[error("cannot prepare the narration's files: {0}")]
    Io(#[from] std::io::Error),
}

impl NarrationError {
    /// The stable code clients match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            NarrationError::TooManyLines | NarrationError::LineTooLong => {
                ErrorCode::NarrationTooLong
            }
            NarrationError::Tts(_) => ErrorCode::TtsFailed,
            NarrationError::Io(_) => ErrorCode::Internal,
        }
    }

    /// Whether the scene's author can fix it.
    pub fn is_user(&self) -> bool {
        matches!(
            self,
            NarrationError::TooManyLines | NarrationError::LineTooLong
        )
    }
}

/// Places each line in the stitched video (`video_secs` long): scene `i`
/// starts where the scenes before it end. A line ends when its speech does,
/// sped up (up to `MAX_TEMPO`) where the speech is longer than the slot the
/// scene gave it. The times come from the sandbox: a line said to start
/// after the video's end cannot be heard and is left out, so no scene can
/// have the mux pass make hours of silence.
pub fn place(
    lines: &[Spoken],
    scene_durations: &[f64],
    speech: &HashMap<String, f64>,
    video_secs: f64,
) -> Vec<Placed> {
    lines
        .iter()
        .filter_map(|line| {
            let index = (line.scene_index as usize).min(scene_durations.len());
            let offset: f64 = scene_durations[..index].iter().sum();
            let start = offset + line.start.max(0.0);
            let secs = speech.get(&line.text).copied().unwrap_or(line.slot);
            let tempo = if line.slot > 0.0 && secs > line.slot * 1.02 {
                (secs / line.slot).min(MAX_TEMPO)
            } else {
                1.0
            };
            (start.is_finite() && start <= video_secs).then(|| Placed {
                cue: Cue {
                    start,
                    end: start + secs / tempo,
                    text: line.text.clone(),
                },
                tempo,
            })
        })
        .collect()
}

/// Spoken lines on disk: one WAV per distinct text.
#[derive(Clone, Debug, Default)]
pub struct Speech {
    clips: HashMap<String, (PathBuf, f64)>,
}

impl Speech {
    /// Speaks every text not spoken yet into `dir`.
    pub async fn speak(
        &mut self,
        tts: &Tts,
        texts: Vec<String>,
        dir: &Path,
    ) -> Result<(), NarrationError> {
        std::fs::create_dir_all(dir)?;
        for text in texts {
            let text = text.as_str();
            if self.clips.contains_key(text) {
                continue;
            }
            if text.chars().count() > MAX_LINE_CHARS {
                return Err(NarrationError::LineTooLong);
            }
            if self.clips.len() >= MAX_LINES {
                return Err(NarrationError::TooManyLines);
            }
            let path = dir.join(format!("{}.wav", self.clips.len()));
            let secs = tts.speak(text, &path).await?;
            self.clips.insert(text.to_owned(), (path, secs));
        }
        Ok(())
    }

    /// Each text's duration, for the worker.
    pub fn durations(&self) -> BTreeMap<String, f64> {
        self.clips
            .iter()
            .map(|(t, (_, secs))| (t.clone(), (secs * 1000.0).round() / 1000.0))
            .collect()
    }

    pub fn secs(&self) -> HashMap<String, f64> {
        self.clips
            .iter()
            .map(|(t, (_, s))| (t.clone(), *s))
            .collect()
    }

    pub fn clip(&self, text: &str) -> Option<&Path> {
        self.clips.get(text).map(|(p, _)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoken(scene_index: u32, start: f64, text: &str, slot: f64) -> Spoken {
        Spoken {
            scene_index,
            start,
            text: text.into(),
            slot,
        }
    }

    #[test]
    fn lines_are_offset_by_the_scenes_before_them() {
        let speech = HashMap::from([("a".to_owned(), 1.0), ("b".to_owned(), 2.0)]);
        let placed = place(
            &[
                spoken(0, 0.0, "a", 1.0),
                spoken(0, 1.5, "b", 2.0),
                spoken(2, 0.5, "a", 1.0),
            ],
            &[4.0, 3.0, 5.0],
            &speech,
            12.0,
        );
        let cues: Vec<(f64, f64, &str)> = placed
            .iter()
            .map(|p| (p.cue.start, p.cue.end, p.cue.text.as_str()))
            .collect();
        assert_eq!(cues, [(0.0, 1.0, "a"), (1.5, 3.5, "b"), (7.5, 8.5, "a")]);
        assert!(placed.iter().all(|p| p.tempo == 1.0));
    }

    #[test]
    fn speech_longer_than_its_estimate_is_sped_up_within_bounds() {
        let speech = HashMap::from([("x".to_owned(), 2.4), ("y".to_owned(), 10.0)]);
        let placed = place(
            &[spoken(0, 1.0, "x", 2.0), spoken(0, 4.0, "y", 2.0)],
            &[8.0],
            &speech,
            8.0,
        );
        assert!((placed[0].tempo - 1.2).abs() < 1e-9);
        assert!((placed[0].cue.end - 3.0).abs() < 1e-9);
        // Five times too long: sped up as far as allowed, then it runs over.
        assert_eq!(placed[1].tempo, MAX_TEMPO);
        assert!((placed[1].cue.end - (4.0 + 10.0 / MAX_TEMPO)).abs() < 1e-9);
    }

    #[test]
    fn a_shorter_line_keeps_its_pace_and_unknown_lines_use_their_slot() {
        let speech = HashMap::from([("s".to_owned(), 0.5)]);
        let placed = place(
            &[spoken(0, 0.0, "s", 2.0), spoken(1, 0.25, "?", 1.0)],
            &[2.0],
            &speech,
            3.25,
        );
        assert_eq!(placed[0].tempo, 1.0);
        assert_eq!(placed[0].cue.end, 0.5);
        assert_eq!((placed[1].cue.start, placed[1].cue.end), (2.25, 3.25));
    }

    #[test]
    fn lines_said_to_start_after_the_video_are_left_out() {
        let speech = HashMap::from([("a".to_owned(), 1.0)]);
        let placed = place(
            &[
                spoken(0, 0.5, "a", 1.0),
                spoken(0, 1e12, "a", 1.0),
                spoken(0, f64::MAX, "a", 1.0),
                spoken(7, 2.0, "a", 1.0),
            ],
            &[2.0, f64::MAX],
            &speech,
            2.0,
        );
        let starts: Vec<f64> = placed.iter().map(|p| p.cue.start).collect();
        assert_eq!(starts, [0.5]);
    }
}
