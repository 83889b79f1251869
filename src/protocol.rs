//! The worker protocol: one job as JSON on the worker's stdin, events as JSON
//! lines on its stdout (see `python/manimd_worker/protocol.py`).
//!
//! Everything parsed here comes from inside the sandbox and is as untrusted as
//! the scene: it may describe this job's progress and its errors, but it never
//! decides a path or the job's final status on its own.

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use crate::spec::{Encoding, Engine, Format, SceneName};

/// What the worker is asked to do.
#[derive(Debug, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum WorkerJob<'a> {
    /// Parse only: syntax, engine imports, scene classes. Runs no user code.
    Inspect {
        code: &'a str,
        /// A project's other Python files: where the engine is imported
        /// when the scene file imports it through one of them (3b1b's
        /// `from manim_imports_ext import *`).
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        modules: &'a [&'a str],
    },
    /// Run the file and render scenes.
    Render {
        code: &'a str,
        engine: Engine,
        scenes: &'a [SceneName],
        width: u32,
        height: u32,
        fps: u32,
        format: Format,
        seed: Option<u32>,
        encoding: Encoding,
        /// With narration: each `narrate` text known before the render and
        /// its speech's seconds, so the scene can wait for it. Absent:
        /// `narrate` does nothing.
        #[serde(skip_serializing_if = "Option::is_none")]
        speech: Option<&'a std::collections::BTreeMap<String, f64>>,
        /// Look plays up in the owner's animation cache (bound at `/cache`)
        /// and report each rendered piece's key.
        cache: bool,
        /// The hash of the engine's locked environment: part of every
        /// animation's key (`runtime::environment`).
        environment: &'a str,
        /// Draw only these plays of the one scene (a chunk of a split
        /// render): the plays before are simulated, the scene stops after.
        #[serde(skip_serializing_if = "Option::is_none")]
        chunk: Option<ChunkRange>,
        /// A split render's join: the plays before this index that the
        /// cache lacks are other workers' chunks. They are simulated, and
        /// their pieces awaited in `/cache` before the stitch.
        #[serde(skip_serializing_if = "Option::is_none")]
        awaits_before: Option<u32>,
        /// A project's scene file, relative to `/project` (laid out by the
        /// host); absent: a single file, the code alone.
        #[serde(skip_serializing_if = "Option::is_none")]
        main: Option<&'a str>,
        /// manim-voiceover's speech, made on the host: each text (as the
        /// plugin normalizes it) with its clip under `/cache/voiceover`.
        #[serde(skip_serializing_if = "Option::is_none")]
        voiceover: Option<&'a std::collections::BTreeMap<String, VoiceClip>>,
    },
    /// Run one scene with every play simulated (nothing drawn) to learn its
    /// plays' lengths and whether it reads the wall clock or fresh entropy:
    /// the plan of a split render.
    Plan {
        code: &'a str,
        engine: Engine,
        scenes: &'a [SceneName],
        width: u32,
        height: u32,
        fps: u32,
        seed: Option<u32>,
        /// As a render's: narration's waits are plays too.
        #[serde(skip_serializing_if = "Option::is_none")]
        speech: Option<&'a std::collections::BTreeMap<String, f64>>,
    },
    /// Run one scene with every play simulated (no video) and save the
    /// frames `preview` asks for as PNG under `out/frames`.
    Preview {
        code: &'a str,
        engine: Engine,
        scenes: &'a [SceneName],
        width: u32,
        height: u32,
        fps: u32,
        seed: Option<u32>,
        preview: &'a PreviewKind,
        /// As a render's: the project's scene file under `/project`.
        #[serde(skip_serializing_if = "Option::is_none")]
        main: Option<&'a str>,
    },
    /// Mix narration clips at their times and mux them into a video
    /// (the video stream copied). Runs no user code.
    Mux {
        video: &'a str,
        format: Format,
        clips: &'a [MuxClip],
    },
}

/// The plays one chunk of a split render draws, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRange {
    pub first: u32,
    pub last: u32,
}

/// A step of a running render, for progress displays and event streams
/// (the data of an SSE `progress` event, named by its `event` field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Progress {
    /// The engine is imported and the scene file is about to run.
    Ready { engine: Engine, version: String },
    SceneStarted {
        scene: String,
        index: u32,
        count: u32,
    },
    /// An animation (a `play` or `wait`) started.
    Animation {
        scene: String,
        index: u32,
        name: String,
        /// The author's line of the call, when the worker found it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
        /// Seconds into the scene.
        #[serde(default)]
        start: f64,
        /// Its piece comes from the owner's animation cache.
        #[serde(default)]
        cached: bool,
    },
    /// Frames written so far in the current scene.
    Frames { scene: String, frames: u64 },
    /// An animation's video piece is finished.
    PartialMovie {
        scene: String,
        index: u32,
        /// It came from the owner's animation cache.
        #[serde(default)]
        cached: bool,
        /// The piece, collected from the sandbox or taken from the cache
        /// (host-side, not for clients).
        #[serde(skip)]
        piece: Option<PathBuf>,
    },
    SceneFinished {
        scene: String,
        index: u32,
        plays: u32,
        duration: f64,
    },
    /// A split render: this worker's own animations are drawn, and the
    /// video waits for `count` pieces that other workers are drawing.
    AwaitingPieces { count: u32 },
}

/// What a preview draws: the end of every animation, or one frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PreviewKind {
    /// The end frame of every animation.
    Storyboard,
    /// One frame: at `at` seconds, or at the end of animation `animation`.
    Still {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        animation: Option<u32>,
    },
}

/// One clip of a narration's sound track, for the mux job
/// (`narration::mux` lays them out).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MuxClip {
    /// The WAV file, as a path inside the sandbox.
    pub path: String,
    /// Seconds from the start of the video.
    pub start: f64,
    /// Speed-up (`atempo`); 1.0 for none.
    pub tempo: f64,
}

/// A manim-voiceover text's speech, for the worker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VoiceClip {
    /// The WAV's file name under `/cache/voiceover`.
    pub path: String,
    /// Each piece's seconds: the text cut at its bookmarks, in order.
    pub pieces: Vec<f64>,
}

/// A manim-voiceover text the worker wants spoken: as the plugin
/// normalizes it, and its pieces between bookmarks (untrusted: bounded by
/// the host before it speaks them).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct VoiceText {
    pub text: String,
    pub pieces: Vec<String>,
}

/// A scene class found in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneInfo {
    pub name: String,
    pub line: u32,
}

/// One frame of the author's code in a traceback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFrame {
    pub file: String,
    pub line: u32,
    pub function: String,
    #[serde(default)]
    pub code: String,
}

/// A notice on a successful render, such as `no-animation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notice {
    pub code: String,
    pub message: String,
}

/// Facts about the delivered file, as the worker measured them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub still: bool,
    pub format: Format,
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
    pub duration: f64,
    pub frames: Option<u64>,
    #[serde(default)]
    pub notice: Option<Notice>,
}

/// The worker's final report.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct WorkerResult {
    #[serde(flatten)]
    pub media: MediaInfo,
    /// Peak RSS of the worker or its largest child, as the worker measured it.
    #[serde(default)]
    pub max_rss_bytes: Option<u64>,
    /// Seconds from the worker receiving the job to its result.
    #[serde(default)]
    pub job_secs: Option<f64>,
}

/// An error the scene's author can act on, with the author's line numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
    /// The exception's type, for `scene-error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
    /// The offending source line, for `syntax-error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Scenes that do exist, for `scene-not-found`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tex_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traceback: Vec<UserFrame>,
    /// How many animations the scene plays, for `no-such-animation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plays: Option<u32>,
    /// The project file `line` is in, when it is not the scene file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The codes a worker may report. Anything else it says is reported as
/// `worker-error`: the set of codes clients see is ours, not the sandbox's.
pub const USER_ERROR_CODES: &[&str] = &[
    "syntax-error",
    "no-scene",
    "scene-not-found",
    "scene-error",
    "latex-error",
    "encode-error",
    "output-too-large",
    "no-such-animation",
    "voiceover-unprepared",
];

/// The code of the worker's report that the installed engine is not the
/// pinned version, or lacks a target the worker patches: the installation's
/// fault, never the scene's (see `RenderError::EngineMismatch`).
pub const ENGINE_MISMATCH: &str = "engine-mismatch";

/// One line of the worker's output.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum WorkerEvent {
    /// The engine is imported; the worker waits for its job.
    Warm {
        engine: Engine,
        #[serde(default)]
        import_secs: f64,
    },
    Inspected {
        engine: Option<Engine>,
        scenes: Vec<SceneInfo>,
        /// The string literals passed to `narrate(...)`, in file order.
        #[serde(default)]
        narrations: Vec<String>,
        /// The string literals given as a voiceover's text.
        #[serde(default)]
        voiceovers: Vec<VoiceText>,
    },
    Ready {
        engine: Engine,
        version: String,
        #[serde(default)]
        import_secs: f64,
    },
    SceneStarted {
        scene: String,
        index: u32,
        count: u32,
    },
    Animation {
        scene: String,
        index: u32,
        name: String,
        #[serde(default)]
        line: Option<u32>,
        #[serde(default)]
        start: f64,
        #[serde(default)]
        cached: bool,
    },
    Frames {
        scene: String,
        frames: u64,
    },
    /// A finished piece: rendered at `path`, or taken from the cache
    /// (`cached`, named by `key`). A rendered piece has a `key` when the
    /// job looks plays up in the cache.
    PartialMovie {
        scene: String,
        index: u32,
        path: String,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        cached: bool,
        #[serde(default)]
        frames: Option<u64>,
    },
    /// A preview frame saved at `path` (under `/job/out/frames`).
    PreviewFrame {
        scene: String,
        n: u32,
        animation: u32,
        time: f64,
        path: String,
    },
    /// The preview pass ended with `frames` frames.
    Previewed {
        frames: u32,
        plays: u32,
        duration: f64,
        #[serde(default)]
        job_secs: Option<f64>,
    },
    SceneFinished {
        scene: String,
        index: u32,
        plays: u32,
        duration: f64,
    },
    /// A `narrate(text)` line started `start` seconds into scene `index`;
    /// the scene waited `duration` seconds for it.
    Narration {
        scene: String,
        index: u32,
        start: f64,
        text: String,
        duration: f64,
    },
    /// A voiceover's text that was not prepared: the render stops after it.
    VoiceoverText(VoiceText),
    /// A manim-voiceover voiceover, `start` to `end` seconds into scene
    /// `index`, with its bookmarks' seconds from its start.
    Voiceover {
        index: u32,
        start: f64,
        end: f64,
        text: String,
        #[serde(default)]
        marks: std::collections::BTreeMap<String, f64>,
    },
    /// A plan's closing line: the author's lines that read the wall clock
    /// or fresh entropy (untrusted: they only keep a render whole).
    Planned {
        plays: u32,
        duration: f64,
        #[serde(default)]
        clock: Vec<u32>,
        #[serde(default)]
        entropy: Vec<u32>,
        #[serde(default)]
        job_secs: Option<f64>,
    },
    /// A join has simulated its plays and waits for `count` pieces of
    /// other workers' chunks.
    AwaitingPieces {
        count: u32,
    },
    /// A chunk's closing line: its pieces were all reported.
    ChunkDone {
        plays: u32,
        #[serde(default)]
        job_secs: Option<f64>,
    },
    Result(WorkerResult),
    Error(UserError),
}

impl WorkerEvent {
    /// Parses one line; anything that is not a well-formed event is `None`.
    /// Lines arrive bounded: the sandbox drops overlong ones whole
    /// (`sandbox::MAX_LINE`).
    pub fn parse(line: &[u8]) -> Option<WorkerEvent> {
        let mut event: WorkerEvent = serde_json::from_slice(line).ok()?;
        if let WorkerEvent::Error(err) = &mut event {
            if !USER_ERROR_CODES.contains(&err.code.as_str()) && err.code != ENGINE_MISMATCH {
                err.code = "worker-error".into();
            }
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_progress_and_errors() {
        let e = WorkerEvent::parse(br#"{"event":"animation","scene":"A","index":2,"name":"Create(Circle)","run_time":1.0}"#);
        assert_eq!(
            e,
            Some(WorkerEvent::Animation {
                scene: "A".into(),
                index: 2,
                name: "Create(Circle)".into(),
                line: None,
                start: 0.0,
                cached: false,
            })
        );
        let e = WorkerEvent::parse(br#"{"event":"error","code":"syntax-error","message":"expected ':'","line":3,"column":24}"#).unwrap();
        let WorkerEvent::Error(err) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (err.code.as_str(), err.line, err.column),
            ("syntax-error", Some(3), Some(24))
        );
    }

    #[test]
    fn parses_narration_lines_and_inspected_literals() {
        let e = WorkerEvent::parse(br#"{"event":"narration","scene":"A","index":1,"start":0.5,"text":"Hi.","duration":1.25}"#);
        assert_eq!(
            e,
            Some(WorkerEvent::Narration {
                scene: "A".into(),
                index: 1,
                start: 0.5,
                text: "Hi.".into(),
                duration: 1.25
            })
        );
        // Older workers say nothing of narration: an empty list.
        let e = WorkerEvent::parse(br#"{"event":"inspected","engine":null,"scenes":[]}"#);
        assert_eq!(
            e,
            Some(WorkerEvent::Inspected {
                engine: None,
                scenes: vec![],
                narrations: vec![],
                voiceovers: vec![]
            })
        );
    }

    #[test]
    fn foreign_codes_and_junk_are_not_trusted() {
        let e =
            WorkerEvent::parse(br#"{"event":"error","code":"timeout","message":"fake"}"#).unwrap();
        let WorkerEvent::Error(err) = e else { panic!() };
        assert_eq!(err.code, "worker-error");
        for junk in [
            &b"hello"[..],
            b"{}",
            b"{\"event\":\"nope\"}",
            b"\x1b[31m{\"event\":\"ready\"}",
            b"\xff\xfe",
        ] {
            assert_eq!(WorkerEvent::parse(junk), None);
        }
    }

    #[test]
    fn keeps_the_engine_mismatch_code() {
        let e = WorkerEvent::parse(
            br#"{"event":"error","code":"engine-mismatch","message":"m","engine":"manim","targets":[]}"#,
        )
        .unwrap();
        let WorkerEvent::Error(err) = e else { panic!() };
        assert_eq!(err.code, ENGINE_MISMATCH);
    }

    proptest::proptest! {
        /// Whatever a sandbox prints, parsing it never panics, and an error
        /// line never carries a code outside the known set.
        #[test]
        fn parsing_arbitrary_bytes_never_panics(line in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Some(WorkerEvent::Error(e)) = WorkerEvent::parse(&line) {
                proptest::prop_assert!(USER_ERROR_CODES.contains(&e.code.as_str()) || e.code == "worker-error" || e.code == ENGINE_MISMATCH);
            }
        }

        #[test]
        fn parsing_json_shaped_lines_never_panics(
            event in "[a-z-]{0,16}",
            code in "\\PC{0,24}",
            num in proptest::num::i64::ANY,
            text in "\\PC{0,64}",
        ) {
            let line = serde_json::json!({
                "event": event, "code": code, "message": text, "line": num, "scene": text,
                "index": num, "frames": num, "name": text, "scenes": [{"name": text, "line": num}],
            });
            if let Some(WorkerEvent::Error(e)) = WorkerEvent::parse(line.to_string().as_bytes()) {
                proptest::prop_assert!(USER_ERROR_CODES.contains(&e.code.as_str()) || e.code == "worker-error" || e.code == ENGINE_MISMATCH);
            }
        }
    }
}
