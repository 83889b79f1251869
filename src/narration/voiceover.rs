//! manim-voiceover's speech, made on the host.
//!
//! A voiceover's text comes cut at its `<bookmark mark="X"/>` marks (the
//! worker cuts it with the plugin's own pattern). Each piece is spoken on
//! its own and the pieces are joined into one WAV, so a mark's time is the
//! pieces before it summed: exact, whatever the voice. The worker finds the
//! clips under `/cache/voiceover` (the area's view, read-only) and gives the
//! plugin's tracker word boundaries at the marks.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Cue, NarrationError, Tts, TtsError, MAX_LINES, MAX_LINE_CHARS};
use crate::protocol::{VoiceClip, VoiceText};

/// The directory's name in the area's view.
pub const VIEW_DIR: &str = "voiceover";

/// Most pieces one text may be cut into.
pub const MAX_PIECES: usize = 100;

/// The voiceovers' speech: one WAV per distinct text.
#[derive(Clone, Debug, Default)]
pub struct Voiceovers {
    clips: BTreeMap<String, (PathBuf, Vec<f64>)>,
}

/// A voiceover as the worker reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct Voiced {
    /// The scene's place among the rendered scenes.
    pub scene_index: u32,
    /// Seconds from the start of that scene.
    pub start: f64,
    pub end: f64,
    /// The subtitle: the text without its marks.
    pub text: String,
    /// Each bookmark's seconds from the voiceover's start.
    pub marks: BTreeMap<String, f64>,
}

impl Voiceovers {
    /// Speaks every text not spoken yet into `dir`, piece by piece.
    pub async fn speak(
        &mut self,
        tts: &Tts,
        texts: Vec<VoiceText>,
        dir: &Path,
    ) -> Result<(), NarrationError> {
        fs::create_dir_all(dir)?;
        for VoiceText { text, pieces } in texts {
            if self.clips.contains_key(&text) {
                continue;
            }
            // The pieces come from the sandbox too: together no longer
            // than a line may be.
            let piece_chars: usize = pieces.iter().map(|p| p.chars().count()).sum();
            if text.chars().count() > MAX_LINE_CHARS
                || piece_chars > MAX_LINE_CHARS
                || pieces.len() > MAX_PIECES
            {
                return Err(NarrationError::LineTooLong);
            }
            if self.clips.len() >= MAX_LINES {
                return Err(NarrationError::TooManyLines);
            }
            let n = self.clips.len();
            let mut parts = Vec::with_capacity(pieces.len());
            let mut secs = Vec::with_capacity(pieces.len());
            for (i, piece) in pieces.iter().enumerate() {
                if piece.trim().is_empty() {
                    // Two marks side by side, or one at an end: no sound.
                    secs.push(0.0);
                    continue;
                }
                let path = dir.join(format!("{n}-{i}.wav"));
                secs.push(tts.speak(piece.trim(), &path).await?);
                parts.push(fs::read(&path)?);
                let _ = fs::remove_file(&path);
            }
            let path = dir.join(format!("{n}.wav"));
            fs::write(&path, join_wavs(&parts)?)?;
            self.clips.insert(text, (path, secs));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// Each text's clip, as the worker finds it in the view.
    pub fn for_worker(&self) -> BTreeMap<String, VoiceClip> {
        self.clips
            .iter()
            .map(|(text, (path, secs))| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let clip = VoiceClip {
                    path: name.into_owned(),
                    pieces: secs.clone(),
                };
                (text.clone(), clip)
            })
            .collect()
    }

    /// Copies the clips into `view/voiceover`, readable by the sandbox.
    pub fn lay_out(&self, view: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = view.join(VIEW_DIR);
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        for (path, _) in self.clips.values() {
            let to = dir.join(path.file_name().unwrap_or_default());
            fs::copy(path, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644))?;
        }
        Ok(())
    }
}

/// The voiceovers in the stitched video: scene `i` starts where the scenes
/// before it end.
pub fn place(voiced: &[Voiced], scene_durations: &[f64]) -> Vec<Voiced> {
    voiced
        .iter()
        .map(|v| {
            let index = (v.scene_index as usize).min(scene_durations.len());
            let offset: f64 = scene_durations[..index].iter().sum();
            Voiced {
                start: offset + v.start.max(0.0),
                end: offset + v.end.max(v.start.max(0.0)),
                ..v.clone()
            }
        })
        .collect()
}

/// The subtitles of placed voiceovers. Like narration's lines, one said to
/// start after the video's end (the times come from the sandbox) is left out.
pub fn cues(placed: &[Voiced], video_secs: f64) -> Vec<Cue> {
    placed
        .iter()
        .filter(|v| v.start.is_finite() && v.end.is_finite() && v.start <= video_secs)
        .map(|v| Cue {
            start: v.start,
            end: v.end.min(video_secs),
            text: v.text.clone(),
        })
        .collect()
}

/// One WAV of `parts` played in order. The parts come from one speech
/// provider, so they share their format; a part that differs is refused.
/// No part (every piece silent): an empty WAV.
pub fn join_wavs(parts: &[Vec<u8>]) -> Result<Vec<u8>, TtsError> {
    let mut format: Option<&[u8]> = None;
    let mut data = Vec::new();
    for part in parts {
        let (fmt, samples) = pcm(part)?;
        match format {
            None => format = Some(fmt),
            Some(f) if f == fmt => {}
            Some(_) => return Err(TtsError::BadAudio("pieces of different formats")),
        }
        data.extend_from_slice(samples);
    }
    // Mono 16-bit 22,050 Hz (espeak-ng's) when there is nothing to join.
    const SILENT: [u8; 16] = [1, 0, 1, 0, 0x22, 0x56, 0, 0, 0x44, 0xac, 0, 0, 2, 0, 16, 0];
    let fmt = format.unwrap_or(&SILENT);
    let mut out = Vec::with_capacity(28 + fmt.len() + data.len());
    let riff = 4 + 8 + fmt.len() + 8 + data.len();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(riff as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(fmt);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// A PCM WAV's `fmt ` body and its samples (as `tts::wav_duration` reads
/// them: an unknown data size means the bytes that are there).
fn pcm(bytes: &[u8]) -> Result<(&[u8], &[u8]), TtsError> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(TtsError::BadAudio("not RIFF/WAVE"));
    }
    let mut pos = 12usize;
    let mut fmt = None;
    while pos + 8 <= bytes.len() {
        let size = u32_at(pos + 4).ok_or(TtsError::BadAudio("truncated"))?;
        let body = pos + 8;
        match &bytes[pos..pos + 4] {
            b"fmt " => fmt = bytes.get(body..body.saturating_add(size)),
            b"data" => {
                let fmt = fmt.ok_or(TtsError::BadAudio("no fmt chunk before data"))?;
                let there = bytes.len() - body;
                let len = if size == 0 || size > there {
                    there
                } else {
                    size
                };
                // Whole frames only (block align), so pieces join cleanly.
                let align = fmt
                    .get(12..14)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]).max(1) as usize)
                    .unwrap_or(1);
                return Ok((fmt, &bytes[body..body + len / align * align]));
            }
            _ => {}
        }
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(TtsError::BadAudio("no data chunk"))
}

#[cfg(test)]
mod tests {
    use super::super::tts::{sine_wav, wav_duration};
    use super::*;

    #[test]
    fn joined_pieces_last_as_long_as_their_sum() {
        let a = sine_wav(0.5, 22_050, 440.0);
        let b = sine_wav(1.25, 22_050, 660.0);
        let joined = join_wavs(&[a, b]).unwrap();
        assert!((wav_duration(&joined).unwrap() - 1.75).abs() < 1e-4);
        let silent = join_wavs(&[]).unwrap();
        assert_eq!(wav_duration(&silent).unwrap(), 0.0);
    }

    #[test]
    fn pieces_of_different_formats_are_refused() {
        let a = sine_wav(0.5, 22_050, 440.0);
        let b = sine_wav(0.5, 24_000, 440.0);
        assert!(join_wavs(&[a, b]).is_err());
        assert!(join_wavs(&[b"RIFF....WAVE".to_vec()]).is_err());
    }

    #[tokio::test]
    async fn pieces_longer_than_a_line_are_refused_before_any_speech() {
        let dir = tempfile::tempdir().unwrap();
        let tts = Tts::new(super::super::TtsConfig::default());
        let long = "word ".repeat(MAX_LINE_CHARS / 5 + 1);
        for (text, pieces) in [
            ("short".to_owned(), vec![long.clone()]),
            (long.clone(), vec!["short".to_owned()]),
            ("short".to_owned(), vec!["a".to_owned(); MAX_PIECES + 1]),
        ] {
            let mut v = Voiceovers::default();
            let err = v
                .speak(&tts, vec![VoiceText { text, pieces }], dir.path())
                .await
                .unwrap_err();
            assert!(matches!(err, NarrationError::LineTooLong), "{err}");
            assert!(v.is_empty());
        }
    }

    #[test]
    fn cues_follow_their_scenes() {
        let v = |scene_index, start, end| Voiced {
            scene_index,
            start,
            end,
            text: "t".into(),
            marks: BTreeMap::new(),
        };
        let placed = place(
            &[v(0, 0.5, 1.5), v(1, 0.0, 2.0), v(1, 9.0, 10.0)],
            &[3.0, 4.0],
        );
        let cues = cues(&placed, 7.0);
        let times: Vec<(f64, f64)> = cues.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(times, [(0.5, 1.5), (3.0, 5.0)]);
    }
}
