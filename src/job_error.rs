//! The error a job ends with, as clients see it: a stable kebab-case
//! `ErrorCode`, a message, and the fields of its kind (`line`, `column`,
//! `available`, ...). It is stored with the job, sent in events and
//! webhooks, and answered by the API, always in the same flat JSON form:
//! `{"code", "message", ...details}`.
//!
//! Each code has an `ErrorKind`, and the kind alone decides the HTTP status
//! (`server/error.rs`), so a new code cannot fall through to a wrong one.

use serde::{Deserialize, Serialize};

/// What kind of failure a code is; the HTTP status follows from it, in one
/// table (`server/error.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed (400).
    Invalid,
    /// No API key, or an unknown one (401).
    Unauthorized,
    /// No such thing (404).
    NotFound,
    /// The resource does not take that method (405).
    MethodNotAllowed,
    /// Not in a state to answer that yet (409).
    Conflict,
    /// The request body is over the limit (413).
    TooLarge,
    /// The byte range is outside the file (416).
    RangeNotSatisfiable,
    /// The scene (or the generated code) cannot render: the author's fault (422).
    Unprocessable,
    /// Full, or rate-limited: come back later (429).
    Busy,
    /// A dependency is missing or down: not the caller's fault (503).
    Unavailable,
    /// A provider we called failed (502).
    Upstream,
    /// A provider we called did not answer in time (504).
    Timeout,
    /// Our installation is at fault; the details are in the log (500).
    Internal,
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal => $kind:ident,)*) => {
        /// Every code an error can carry: a job's, and the API's own.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            pub fn kind(self) -> ErrorKind {
                match self {
                    $(ErrorCode::$variant => ErrorKind::$kind,)*
                }
            }

            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    // The scene's faults, reported by the worker with the author's lines.
    SyntaxError = "syntax-error" => Unprocessable,
    NoScene = "no-scene" => Unprocessable,
    SceneNotFound = "scene-not-found" => Unprocessable,
    SceneError = "scene-error" => Unprocessable,
    LatexError = "latex-error" => Unprocessable,
    EncodeError = "encode-error" => Unprocessable,
    OutputTooLarge = "output-too-large" => Unprocessable,
    NarrationTooLong = "narration-too-long" => Unprocessable,
    /// A manim-voiceover text was still new after the last speaking round
    /// (it depends on the speech's own durations).
    VoiceoverUnprepared = "voiceover-unprepared" => Unprocessable,
    /// A preview asked for an animation past the scene's last.
    NoSuchAnimation = "no-such-animation" => Unprocessable,
    /// The worker said something outside the protocol's codes.
    WorkerError = "worker-error" => Unprocessable,
    // Limits the sandbox enforced.
    Timeout = "timeout" => Unprocessable,
    OutOfMemory = "out-of-memory" => Unprocessable,
    ProcessLimit = "process-limit" => Unprocessable,
    Killed = "killed" => Unprocessable,
    Crashed = "crashed" => Unprocessable,
    BadOutput = "bad-output" => Unprocessable,
    Canceled = "canceled" => Unprocessable,
    /// The server stopped during every allowed attempt.
    Interrupted = "interrupted" => Unprocessable,
    // Generation: the static checks' findings and the pipeline's end.
    ForbiddenImport = "forbidden-import" => Unprocessable,
    WrongEngine = "wrong-engine" => Unprocessable,
    WrongEngineApi = "wrong-engine-api" => Unprocessable,
    SeveralScenes = "several-scenes" => Unprocessable,
    GenerationFailed = "generation-failed" => Unprocessable,
    // Projects: files beside the scene file.
    /// A blob the project refers to is not among the owner's uploads.
    MissingBlob = "missing-blob" => Unprocessable,
    // Providers we call.
    LlmNotConfigured = "llm-not-configured" => Unavailable,
    LlmUnavailable = "llm-unavailable" => Unavailable,
    LlmKeyLost = "llm-key-lost" => Unavailable,
    LlmUnauthorized = "llm-unauthorized" => Upstream,
    LlmBadResponse = "llm-bad-response" => Upstream,
    LlmRateLimited = "llm-rate-limited" => Busy,
    LlmTimeout = "llm-timeout" => Timeout,
    TtsFailed = "tts-failed" => Upstream,
    // The API's own answers.
    InvalidRequest = "invalid-request" => Invalid,
    InvalidId = "invalid-id" => Invalid,
    Unauthorized = "unauthorized" => Unauthorized,
    NotFound = "not-found" => NotFound,
    /// Subtitles exist only for narrated renders that succeeded.
    NoSubtitles = "no-subtitles" => NotFound,
    MethodNotAllowed = "method-not-allowed" => MethodNotAllowed,
    /// The job has no such file (yet).
    NotReady = "not-ready" => Conflict,
    PayloadTooLarge = "payload-too-large" => TooLarge,
    /// A project path that is absolute, has `..`, NUL, control characters
    /// or backslashes, or a blob reference that is not `sha256:<hex>`.
    InvalidPath = "invalid-path" => Invalid,
    /// A request's `manifest` is not a JSON object from project paths to
    /// blob references, or breaks a project's rules (the reason says).
    InvalidManifest = "invalid-manifest" => Invalid,
    /// Two project paths that are the same after normalisation, or a file
    /// where another path needs a folder.
    DuplicatePath = "duplicate-path" => Invalid,
    /// An uploaded blob's bytes do not have the digest it was sent under.
    DigestMismatch = "digest-mismatch" => Invalid,
    TooManyFiles = "too-many-files" => TooLarge,
    FileTooLarge = "file-too-large" => TooLarge,
    ProjectTooLarge = "project-too-large" => TooLarge,
    /// The owner's blobs would pass `--blob-quota-mib`.
    BlobQuotaExceeded = "blob-quota-exceeded" => TooLarge,
    RangeNotSatisfiable = "range-not-satisfiable" => RangeNotSatisfiable,
    QueueFull = "queue-full" => Busy,
    RateLimited = "rate-limited" => Busy,
    QuotaExceeded = "quota-exceeded" => Busy,
    GenerationsBusy = "generations-busy" => Busy,
    /// Previews that run while their callers wait are at this node's cap.
    PreviewsBusy = "previews-busy" => Busy,
    ShuttingDown = "shutting-down" => Unavailable,
    StorageUnavailable = "storage-unavailable" => Unavailable,
    // Our own faults.
    /// The installed engine is not the one the worker was written for.
    EngineMismatch = "engine-mismatch" => Internal,
    Internal = "internal" => Internal,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets tests and logs compare a code with its text.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A code this version does not know (a row written by a newer one) reads
/// as `internal` rather than failing the whole job's read.
impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Ok(ErrorCode::parse(&code).unwrap_or(ErrorCode::Internal))
    }
}

fn internal_code() -> ErrorCode {
    ErrorCode::Internal
}

/// The message every internal error shows; what happened is in the log.
pub const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

/// A job's error: code, message, and the fields of its kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    /// A stored error without a code (none is written so) reads as internal.
    #[serde(default = "internal_code")]
    pub code: ErrorCode,
    #[serde(default)]
    pub message: String,
    /// `line`, `column`, `available`, `traceback`, ...: flat beside `code`.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl JobError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> JobError {
        JobError {
            code,
            message: message.into(),
            details: Default::default(),
        }
    }

    /// An internal error as clients see it: no details.
    pub fn internal() -> JobError {
        JobError::new(ErrorCode::Internal, INTERNAL_MESSAGE)
    }

    /// Adds a detail field (ignored when it does not serialize).
    pub fn with(mut self, key: &str, value: impl Serialize) -> JobError {
        if let Ok(v) = serde_json::to_value(value) {
            self.details.insert(key.to_owned(), v);
        }
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.code.kind()
    }

    /// The author's line the error points at, if any.
    pub fn line(&self) -> Option<u32> {
        self.details
            .get("line")
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_kebab_case() {
        for &code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{s}"
            );
            assert_eq!(ErrorCode::parse(s), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn a_stored_error_reads_back_flat_and_unknown_codes_are_internal() {
        let stored = serde_json::json!({
            "code": "scene-error", "message": "NameError: x", "line": 4, "scene": "A"
        });
        let e: JobError = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(e.code, ErrorCode::SceneError);
        assert_eq!(e.line(), Some(4));
        assert_eq!(serde_json::to_value(&e).unwrap(), stored);
        let future: JobError =
            serde_json::from_value(serde_json::json!({"code": "from-the-future"})).unwrap();
        assert_eq!(future.kind(), ErrorKind::Internal);
    }
}
