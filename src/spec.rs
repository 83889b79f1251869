//! What a render asks for: engine, quality, format, scenes. These are the wire
//! types shared by the CLI, the worker protocol and (later) the HTTP API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The Manim engine a scene is written for.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Manim Community (`from manim import *`).
    Manim,
    /// ManimGL, 3b1b's engine (`from manimlib import *`).
    Manimgl,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Manim, Engine::Manimgl];

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Manim => "manim",
            Engine::Manimgl => "manimgl",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resolution and frame-rate presets, named as Manim names them.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    /// 854×480 at 15 fps.
    Low,
    /// 1280×720 at 30 fps.
    Medium,
    /// 1920×1080 at 60 fps.
    High,
    /// 2560×1440 at 60 fps.
    Production,
    /// 3840×2160 at 60 fps.
    #[serde(rename = "4k")]
    #[value(name = "4k")]
    FourK,
}

impl Quality {
    pub const ALL: [Quality; 5] = [
        Quality::Low,
        Quality::Medium,
        Quality::High,
        Quality::Production,
        Quality::FourK,
    ];

    /// Width and height in pixels.
    pub fn resolution(self) -> (u32, u32) {
        match self {
            Quality::Low => (854, 480),
            Quality::Medium => (1280, 720),
            Quality::High => (1920, 1080),
            Quality::Production => (2560, 1440),
            Quality::FourK => (3840, 2160),
        }
    }

    pub fn fps(self) -> u32 {
        match self {
            Quality::Low => 15,
            Quality::Medium => 30,
            _ => 60,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Low => "low",
            Quality::Medium => "medium",
            Quality::High => "high",
            Quality::Production => "production",
            Quality::FourK => "4k",
        }
    }
}

/// The delivered file's format.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// H.264, yuv420p, faststart.
    Mp4,
    /// VP9.
    Webm,
    /// Animated GIF.
    Gif,
    /// H.264 in a QuickTime container.
    Mov,
    /// The last frame as a PNG image.
    Png,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Mp4,
        Format::Webm,
        Format::Gif,
        Format::Mov,
        Format::Png,
    ];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Mp4 => "mp4",
            Format::Webm => "webm",
            Format::Gif => "gif",
            Format::Mov => "mov",
            Format::Png => "png",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Mp4 => "video/mp4",
            Format::Webm => "video/webm",
            Format::Gif => "image/gif",
            Format::Mov => "video/quicktime",
            Format::Png => "image/png",
        }
    }

    /// The format of a file name's extension, if it names one.
    pub fn from_extension(ext: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.extension().eq_ignore_ascii_case(ext))
    }
}

/// How hard the encoder works: `final` keeps x264's default quality preset;
/// `preview` uses its fastest preset (bigger files, same visual target).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Preview,
    #[default]
    Final,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Preview => "preview",
            Encoding::Final => "final",
        }
    }
}

/// A scene's class name: a Python identifier, checked before it goes anywhere.
///
/// Scene names never reach a shell or a path, but checking them up front
/// turns `-o /x` or `; rm -rf /` into a clear error instead of a confusing one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SceneName(String);

/// Longer names than this are refused; no real class name comes close.
const MAX_SCENE_NAME: usize = 200;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid scene name {0:?}: a scene name is a Python class name (letters, digits and _, not starting with a digit)")]
pub struct InvalidSceneName(pub String);

impl FromStr for SceneName {
    type Err = InvalidSceneName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
        let rest_ok = chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
        if first_ok && rest_ok && s.len() <= MAX_SCENE_NAME {
            Ok(SceneName(s.to_owned()))
        } else {
            let shown: String = s.chars().take(60).collect();
            Err(InvalidSceneName(shown))
        }
    }
}

impl<'de> Deserialize<'de> for SceneName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl SceneName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SceneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that determines a render's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenderSpec {
    /// The scene file's source.
    pub code: String,
    /// Scenes to render, in order, stitched into one video. Empty: the only scene.
    pub scenes: Vec<SceneName>,
    pub engine: Engine,
    pub quality: Quality,
    pub format: Format,
    /// Overrides the quality's frame rate.
    pub fps: Option<u32>,
    /// Seeds Python's and NumPy's random generators.
    pub seed: Option<u32>,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub narration: bool,
    /// Reuse the owner's cached animations and add this render's.
    #[serde(default = "yes")]
    pub cache: bool,
    /// How many workers may draw this render at once (see `Parallel`).
    #[serde(default)]
    pub parallel: Parallel,
    /// The files beside the scene file, when the request sent a project
    /// (`code` is then the text of `project.main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<crate::project::Project>,
}

/// The seed of a request that names none: every render is seeded, so that
/// a render is the same on every worker and every run (and can be split).
pub const DEFAULT_SEED: u32 = 0;

/// The most chunks one render is split into.
pub const MAX_CHUNKS: u32 = 64;

/// How many workers may draw one render: `auto` (as many as are worth it
/// and free, the default) or at most a number of chunks (`1`: never split).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parallel {
    #[default]
    Auto,
    AtMost(u32),
}

impl Parallel {
    /// The most chunks allowed, given how many workers could take one.
    pub fn chunks(self, workers: u32) -> u32 {
        match self {
            Parallel::Auto => workers.min(MAX_CHUNKS),
            Parallel::AtMost(n) => n.min(workers).min(MAX_CHUNKS),
        }
    }
}

impl Serialize for Parallel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Parallel::Auto => s.serialize_str("auto"),
            Parallel::AtMost(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Parallel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Word(String),
            Count(u64),
        }
        match Wire::deserialize(d)? {
            Wire::Word(w) if w == "auto" => Ok(Parallel::Auto),
            Wire::Count(n) if (1..=u64::from(MAX_CHUNKS)).contains(&n) => {
                Ok(Parallel::AtMost(n as u32))
            }
            _ => Err(serde::de::Error::custom(format!(
                "parallel is \"auto\" or a number of chunks from 1 to {MAX_CHUNKS}"
            ))),
        }
    }
}

impl utoipa::PartialSchema for Parallel {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["auto"])),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_CHUNKS)),
            )
            .description(Some(
                "`auto` (default): split a long render over the free workers; a number: at most that many chunks (`1`: never split)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Parallel {}

fn yes() -> bool {
    true
}

/// Highest frame rate accepted; above it no player shows the difference.
pub const MAX_FPS: u32 = 120;

impl RenderSpec {
    pub fn fps(&self) -> u32 {
        self.fps.unwrap_or(self.quality.fps())
    }

    /// The seed the render runs with: the request's, or `DEFAULT_SEED`.
    pub fn seed(&self) -> u32 {
        self.seed.unwrap_or(DEFAULT_SEED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_names_must_be_python_identifiers() {
        for ok in ["Intro", "_Private", "Scene2", "a"] {
            assert!(ok.parse::<SceneName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2Fast",
            "-o /x",
            "; rm -rf /",
            "../etc",
            "A B",
            "Ünïcode",
            "a\0b",
        ] {
            assert!(bad.parse::<SceneName>().is_err(), "{bad:?}");
        }
        assert!("A".repeat(201).parse::<SceneName>().is_err());
    }

    #[test]
    fn presets_match_manim() {
        assert_eq!(Quality::Low.resolution(), (854, 480));
        assert_eq!(Quality::Low.fps(), 15);
        assert_eq!(Quality::FourK.resolution(), (3840, 2160));
        assert_eq!(
            serde_json::to_string(&Quality::FourK).unwrap(),
            "\"4k\"".to_string()
        );
        assert_eq!(Format::from_extension("MP4"), Some(Format::Mp4));
        assert_eq!(Format::from_extension("avi"), None);
    }
}
