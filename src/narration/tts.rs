//! Text to speech on the host: `espeak-ng` (offline) or an OpenAI-compatible
//! `/audio/speech` endpoint. Either way the result is a WAV file whose
//! duration we measure ourselves from its header.
//!
//! The text is the scene author's; it reaches espeak-ng as one argument
//! after `--` (no shell, never an option) and the HTTP endpoint as a JSON
//! string.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::secret::Secret;

/// Which text-to-speech provider speaks `narrate()` lines, and how.
///
/// It runs on the host, outside the sandbox: the API key never reaches a
/// scene, and it is a `Secret`, so no log line carries it.
#[derive(Clone, PartialEq, Eq)]
pub enum TtsConfig {
    /// `espeak-ng`, offline (`MANIMD_TTS_PROVIDER=espeak`, the default).
    Espeak {
        /// An espeak-ng voice (`MANIMD_TTS_VOICE`, default `en-us`).
        voice: String,
    },
    /// An OpenAI-compatible `POST {base_url}/audio/speech`
    /// (`MANIMD_TTS_PROVIDER=openai`).
    OpenAi {
        /// `MANIMD_TTS_BASE_URL`, default `https://api.openai.com/v1`.
        base_url: String,
        /// `MANIMD_TTS_MODEL`, default `tts-1`.
        model: String,
        /// `MANIMD_TTS_VOICE`, default `alloy`.
        voice: String,
        /// `MANIMD_TTS_API_KEY`, sent as a Bearer token.
        api_key: Option<Secret>,
    },
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig::Espeak {
            voice: DEFAULT_ESPEAK_VOICE.into(),
        }
    }
}

pub const DEFAULT_ESPEAK_VOICE: &str = "en-us";

impl std::fmt::Debug for TtsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.identity())
    }
}

impl TtsConfig {
    /// Reads `MANIMD_TTS_*`. An unknown provider is an error, not a silent
    /// fallback: a server configured for one voice must not speak in another.
    pub fn from_env() -> Result<TtsConfig, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        match var("MANIMD_TTS_PROVIDER").as_deref().unwrap_or("espeak") {
            "espeak" => Ok(TtsConfig::Espeak {
                voice: var("MANIMD_TTS_VOICE").unwrap_or_else(|| DEFAULT_ESPEAK_VOICE.into()),
            }),
            "openai" => Ok(TtsConfig::OpenAi {
                base_url: var("MANIMD_TTS_BASE_URL")
                    .unwrap_or_else(|| "https://api.openai.com/v1".into()),
                model: var("MANIMD_TTS_MODEL").unwrap_or_else(|| "tts-1".into()),
                voice: var("MANIMD_TTS_VOICE").unwrap_or_else(|| "alloy".into()),
                api_key: var("MANIMD_TTS_API_KEY").and_then(Secret::new),
            }),
            other => Err(format!(
                "MANIMD_TTS_PROVIDER={other:?}: expected \"espeak\" or \"openai\""
            )),
        }
    }

    /// What decides how a line sounds: provider, endpoint, model and voice,
    /// never the key. The result cache's key covers it.
    pub fn identity(&self) -> String {
        match self {
            TtsConfig::Espeak { voice } => format!("espeak:{voice}"),
            TtsConfig::OpenAi {
                base_url,
                model,
                voice,
                ..
            } => format!("openai:{base_url}:{model}:{voice}"),
        }
    }
}

/// Largest audio response accepted for one line: about ten minutes of
/// 24 kHz 16-bit mono, far beyond any sentence.
const MAX_AUDIO_BYTES: usize = 32 * 1024 * 1024;

/// How long one line may take to synthesize over HTTP.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("espeak-ng failed: {0}")]
    Espeak(String),
    #[error("the speech service answered {status}: {body}")]
    Status { status: u16, body: String },
    /// The request did not complete. The message is reqwest's, which names
    /// the URL but never the headers, so the key cannot leak through it.
    #[error("the speech service cannot be reached: {0}")]
    Network(String),
    #[error("the speech is not a usable WAV file ({0})")]
    BadAudio(&'static str),
    #[error("cannot write the speech: {0}")]
    Io(#[from] std::io::Error),
}

/// A configured speech provider.
pub struct Tts {
    config: TtsConfig,
    http: reqwest::Client,
}

impl Tts {
    pub fn new(config: TtsConfig) -> Tts {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            // The key goes only to the configured endpoint, never elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend");
        Tts { config, http }
    }

    pub fn config(&self) -> &TtsConfig {
        &self.config
    }

    /// Speaks `text` into the WAV file `dest`; returns its duration in seconds.
    pub async fn speak(&self, text: &str, dest: &Path) -> Result<f64, TtsError> {
        match &self.config {
            TtsConfig::Espeak { voice } => espeak(voice, text, dest).await?,
            TtsConfig::OpenAi {
                base_url,
                model,
                voice,
                api_key,
            } => {
                let url = format!("{}/audio/speech", base_url.trim_end_matches('/'));
                let body = serde_json::json!({
                    "model": model,
                    "voice": voice,
                    "input": text,
                    "response_format": "wav",
                });
                let mut req = self.http.post(url).json(&body);
                if let Some(key) = api_key {
                    req = req.bearer_auth(key.expose());
                }
                let audio = fetch(req).await?;
                tokio::fs::write(dest, &audio).await?;
            }
        }
        let bytes = tokio::fs::read(dest).await?;
        wav_duration(&bytes)
    }
}

async fn espeak(voice: &str, text: &str, dest: &Path) -> Result<(), TtsError> {
    let out = crate::process::run_tool(
        "espeak-ng",
        &[
            OsStr::new("-v"),
            OsStr::new(voice),
            OsStr::new("-w"),
            dest.as_os_str(),
            OsStr::new("--"),
            OsStr::new(text),
        ],
        Path::new("/"),
        &[],
    )
    .await
    .map_err(|e| TtsError::Espeak(e.to_string()))?;
    if !out.status.success() {
        let tail = String::from_utf8_lossy(&out.stderr);
        return Err(TtsError::Espeak(tail.chars().take(300).collect()));
    }
    Ok(())
}

async fn fetch(req: reqwest::RequestBuilder) -> Result<Vec<u8>, TtsError> {
    use futures::StreamExt;
    let net = |e: reqwest::Error| TtsError::Network(e.without_url().to_string());
    let resp = req.send().await.map_err(net)?;
    let status = resp.status();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(net)?);
        if body.len() > MAX_AUDIO_BYTES {
            return Err(TtsError::BadAudio("larger than 32 MiB"));
        }
    }
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(TtsError::Status {
            status: status.as_u16(),
            body: text,
        });
    }
    Ok(body)
}

/// The duration of a PCM WAV file, from its `fmt ` and `data` chunks.
///
/// Streaming encoders write an unknown `data` size (0 or 0xFFFFFFFF); the
/// bytes that are actually there count then.
pub fn wav_duration(bytes: &[u8]) -> Result<f64, TtsError> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(TtsError::BadAudio("not RIFF/WAVE"));
    }
    let mut pos = 12usize;
    let mut byte_rate = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4).ok_or(TtsError::BadAudio("truncated"))? as usize;
        let body = pos + 8;
        match id {
            b"fmt " => byte_rate = u32_at(body + 8).filter(|r| *r > 0),
            b"data" => {
                let rate = byte_rate.ok_or(TtsError::BadAudio("no fmt chunk before data"))?;
                let there = bytes.len() - body;
                let len = if size == 0 || size > there {
                    there
                } else {
                    size
                };
                return Ok(len as f64 / f64::from(rate));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(TtsError::BadAudio("no data chunk"))
}

/// A mono 16-bit PCM WAV of a sine tone: for tests and mock speech services.
pub fn sine_wav(secs: f64, rate: u32, hz: f64) -> Vec<u8> {
    let n = (secs * f64::from(rate)).round() as u32;
    let mut out = Vec::with_capacity(44 + 2 * n as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let v = (t * hz * std::f64::consts::TAU).sin() * 0.3 * f64::from(i16::MAX);
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_wav_durations() {
        let wav = sine_wav(1.5, 24_000, 440.0);
        assert!((wav_duration(&wav).unwrap() - 1.5).abs() < 1e-6);
        // A streaming header: the data size is unknown.
        let mut streamed = wav.clone();
        streamed[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!((wav_duration(&streamed).unwrap() - 1.5).abs() < 1e-6);
        streamed[40..44].copy_from_slice(&0u32.to_le_bytes());
        assert!((wav_duration(&streamed).unwrap() - 1.5).abs() < 1e-6);
    }

    #[test]
    fn refuses_what_is_not_wav() {
        for bad in [&b""[..], b"RIFF", b"RIFF\0\0\0\0WAVE", b"{\"error\":1}"] {
            assert!(wav_duration(bad).is_err(), "{bad:?}");
        }
        let mut no_fmt = sine_wav(0.1, 8000, 440.0);
        no_fmt[12..16].copy_from_slice(b"junk");
        assert!(wav_duration(&no_fmt).is_err());
    }

    #[tokio::test]
    async fn espeak_speaks_text_that_looks_like_options() {
        let dir = tempfile::tempdir().unwrap();
        let tts = Tts::new(TtsConfig::default());
        let dest = dir.path().join("a.wav");
        let secs = tts.speak("-w /etc/passwd --help", &dest).await.unwrap();
        assert!(secs > 0.5 && secs < 10.0, "{secs}");
        assert!(dest.metadata().unwrap().len() > 44);
    }
}
