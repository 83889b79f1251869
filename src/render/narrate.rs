//! Narration around a render: the speech spoken before it (the lines an
//! inspection finds, so the scene can wait for them), and after it the
//! lines computed at run time, their places in the video, the subtitles and
//! the mux pass that puts the speech into the video in a fresh sandbox.

use std::future::Future;
use std::path::Path;

use crate::limits::Limits;
use crate::narration::voiceover::Voiceovers;
use crate::narration::{self, Cue, NarrationError, Speech, Spoken};
use crate::protocol::VoiceText;
use crate::protocol::{WorkerEvent, WorkerJob};
use crate::sandbox::{self, Stopped};
use crate::spec::RenderSpec;

use super::error::outcome;
use super::{Narrated, RenderError, Renderer};

/// A narrated render's lines: spoken before it, and as the worker reported
/// them during it.
pub(super) struct Lines {
    pub speech: Speech,
    pub spoken: Vec<Spoken>,
    /// The voiceovers' subtitles, placed already.
    pub voiced: Vec<Cue>,
    /// Each rendered scene's duration, in order.
    pub scene_durations: Vec<f64>,
    /// The stitched video's duration.
    pub video_secs: f64,
}

/// What is spoken before a render.
#[derive(Clone, Debug, Default)]
pub(super) struct Prepared {
    /// With narration: its lines known before the render.
    pub speech: Option<Speech>,
    /// For a scene that uses manim-voiceover: its texts' speech.
    pub voice: Option<Voiceovers>,
}

/// Whether the scene (or a module of its project) may use manim-voiceover:
/// then its texts are spoken before the render. Any other scene that does
/// still renders, at the cost of one more pass (see `Renderer::render_in`).
fn uses_voiceover(spec: &RenderSpec) -> bool {
    let mentions = |code: &str| code.contains("manim_voiceover");
    mentions(&spec.code)
        || spec.project.as_ref().is_some_and(|p| {
            p.files.values().any(|f| match f {
                crate::project::FileRef::Text(text) => mentions(text),
                crate::project::FileRef::Blob(_) => false,
            })
        })
}

fn voice_dir(dest_dir: &Path) -> std::path::PathBuf {
    dest_dir.join("voiceover")
}

/// Writes the subtitles: narration's lines and the voiceovers', in order.
pub(super) fn subtitles(
    mut cues: Vec<Cue>,
    voiced: Vec<Cue>,
    dest_dir: &Path,
) -> Result<Narrated, RenderError> {
    cues.extend(voiced);
    cues.sort_by(|a, b| a.start.total_cmp(&b.start));
    let subtitles = dest_dir.join(narration::SUBTITLES_FILE);
    std::fs::write(&subtitles, narration::vtt::write(&cues)).map_err(NarrationError::Io)?;
    Ok(Narrated { cues, subtitles })
}

/// The stop a speech step gets from `cancel` or the render's wall clock:
/// speech is bounded like the render itself.
async fn bounded<T>(
    work: impl Future<Output = Result<T, RenderError>>,
    limits: &Limits,
    cancel: impl Future<Output = ()>,
) -> Result<T, RenderError> {
    tokio::select! {
        r = work => r,
        () = cancel => Err(RenderError::Stopped(Stopped::Canceled)),
        () = tokio::time::sleep(limits.wall()) => Err(RenderError::Stopped(Stopped::Timeout { limit_secs: limits.wall_secs })),
    }
}

impl Renderer {
    /// Speaks what is known before the render, bounded by its wall clock
    /// like the render itself: with narration, the lines an inspection
    /// finds (the scene will wait for each as long as its speech lasts);
    /// for a scene that uses manim-voiceover, its literal texts.
    pub(super) async fn prepare_speech(
        &self,
        spec: &RenderSpec,
        limits: &Limits,
        dest_dir: &Path,
        cancel: impl Future<Output = ()>,
    ) -> Result<Prepared, RenderError> {
        let voiced = uses_voiceover(spec);
        if !spec.narration && !voiced {
            return Ok(Prepared::default());
        }
        let prepare = async {
            let found = self.inspect(&spec.code).await?;
            let mut prepared = Prepared::default();
            if spec.narration {
                let mut speech = Speech::default();
                speech
                    .speak(&self.tts, found.narrations, &dest_dir.join("speech"))
                    .await?;
                prepared.speech = Some(speech);
            }
            if voiced {
                let mut voice = Voiceovers::default();
                voice
                    .speak(&self.tts, found.voiceovers, &voice_dir(dest_dir))
                    .await?;
                prepared.voice = Some(voice);
            }
            Ok(prepared)
        };
        bounded(prepare, limits, cancel).await
    }

    /// Speaks voiceover texts the render found that were not prepared.
    pub(super) async fn speak_voiceovers(
        &self,
        voice: &mut Voiceovers,
        texts: Vec<VoiceText>,
        limits: &Limits,
        dest_dir: &Path,
        cancel: impl Future<Output = ()>,
    ) -> Result<(), RenderError> {
        let speak = async { Ok(voice.speak(&self.tts, texts, &voice_dir(dest_dir)).await?) };
        bounded(speak, limits, cancel).await
    }

    /// After the render: speaks lines computed at run time, places every
    /// line in the stitched video, writes the subtitles, and has a fresh
    /// sandbox mux the speech into `output` (replaced in place). Returns the
    /// new size of `output` when it was remuxed.
    pub(super) async fn narrate(
        &self,
        spec: &RenderSpec,
        limits: &Limits,
        lines: Lines,
        output: &Path,
        dest_dir: &Path,
        cancel: impl Future<Output = ()>,
    ) -> Result<(Narrated, Option<u64>), RenderError> {
        let Lines {
            mut speech,
            spoken,
            voiced,
            scene_durations,
            video_secs,
        } = lines;
        let mut cancel = std::pin::pin!(cancel);
        let texts = spoken.iter().map(|l| l.text.clone()).collect();
        let clips_dir = dest_dir.join("speech");
        let speak = async { Ok(speech.speak(&self.tts, texts, &clips_dir).await?) };
        bounded(speak, limits, &mut cancel).await?;
        let placed = narration::place(&spoken, &scene_durations, &speech.secs(), video_secs);
        let cues: Vec<Cue> = placed.iter().map(|p| p.cue.clone()).collect();
        let narrated = subtitles(cues, voiced, dest_dir)?;
        if placed.is_empty() {
            return Ok((narrated, None));
        }
        let ext = spec.format.extension();
        let input = dest_dir.join("mux-in");
        let (video, clips) = narration::mux::prepare(&input, output, ext, &placed, &speech)
            .map_err(NarrationError::Io)?;
        let job = WorkerJob::Mux {
            video: &video,
            format: spec.format,
            clips: &clips,
        };
        let stdin = serde_json::to_vec(&job).expect("serializable");
        let bytes = self.mux(stdin, &input, ext, output, limits, cancel).await?;
        Ok((narrated, Some(bytes)))
    }

    /// The mux pass: a fresh sandbox that reads the video and the placed
    /// clips from `input` (removed after) and writes the narrated video,
    /// which replaces `output`. Returns its size.
    async fn mux(
        &self,
        stdin: Vec<u8>,
        input: &Path,
        ext: &str,
        output: &Path,
        limits: &Limits,
        cancel: impl Future<Output = ()>,
    ) -> Result<u64, RenderError> {
        let mut command = self.command(self.any_engine(), false);
        command
            .ro_binds
            .push((input.to_owned(), narration::mux::MOUNT.into()));
        let started = self
            .sandbox
            .start(&sandbox::new_id(), &command, limits)
            .await?;
        let mut done = None;
        let mut error = None;
        let mut finished = self
            .sandbox
            .finish(
                started,
                stdin,
                limits,
                |line, _| match WorkerEvent::parse(line) {
                    Some(WorkerEvent::Result(_)) => done = Some(()),
                    Some(WorkerEvent::Error(e)) => error = Some(e),
                    _ => {}
                },
                cancel,
            )
            .await?;
        let _ = std::fs::remove_dir_all(input);
        // The mux pass runs none of the scene's code.
        outcome(&mut finished, done, error, "mux", false)?;
        let bytes =
            finished
                .area
                .collect(&format!("out/output.{ext}"), output, limits.output_bytes())?;
        Ok(bytes)
    }
}
