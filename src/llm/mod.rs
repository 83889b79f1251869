//! Language-model providers over the OpenAI-compatible chat-completions
//! protocol: configuration and presets, the streaming client, typed errors.

mod client;

use std::time::Duration;

pub use client::{Completion, Message, Provider};

use crate::job_error::{ErrorCode, JobError};
use crate::secret::Secret;

/// Seconds one model call may take by default, streaming included.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Further tries after a 429 or 5xx, by default.
pub const DEFAULT_RETRIES: u32 = 2;

/// Named presets: base URL and a default model for each.
pub const PRESETS: &[(&str, &str, &str)] = &[
    (
        "groq",
        "https://api.groq.com/openai/v1",
        "llama-3.3-70b-versatile",
    ),
    ("openai", "https://api.openai.com/v1", "gpt-4o-mini"),
    (
        "openrouter",
        "https://openrouter.ai/api/v1",
        "openai/gpt-4o-mini",
    ),
    ("ollama", "http://127.0.0.1:11434/v1", "qwen2.5-coder:7b"),
    ("llamacpp", "http://127.0.0.1:8080/v1", "default"),
    (
        "vllm",
        "http://127.0.0.1:8000/v1",
        "Qwen/Qwen2.5-Coder-7B-Instruct",
    ),
];

/// The preset the replaced system's `/generate` called with its caller's
/// key: manimd's `/generate` does the same when no provider is configured.
pub const LEGACY_PRESET: &str = "groq";

/// Which provider a generation's model calls go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The server's own (`MANIMD_LLM_*`).
    Configured,
    /// The replaced system's (`LEGACY_PRESET`), for a legacy `/generate`
    /// that brings its own key to a server without a provider.
    Legacy,
}

/// Where the model is and how long it may take.
#[derive(Clone, Debug)]
pub struct LlmConfig {
    /// The chat-completions base URL (`…/v1`); `None`: no provider configured.
    pub base_url: Option<String>,
    pub model: String,
    /// The server's own key; a request may bring its own instead.
    pub api_key: Option<Secret>,
    /// One model call, from the request to the last streamed token.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Further tries after a 429 or 5xx.
    pub retries: u32,
    /// The longest wait between tries, whatever `Retry-After` says.
    pub max_retry_wait: Duration,
    /// Ask for a streamed answer (falls back to a plain one when refused).
    pub stream: bool,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: None,
            model: String::new(),
            api_key: None,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            connect_timeout: Duration::from_secs(10),
            retries: DEFAULT_RETRIES,
            max_retry_wait: Duration::from_secs(10),
            stream: true,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown LLM provider {0:?}; presets: groq, openai, openrouter, ollama, llamacpp, vllm")]
pub struct UnknownPreset(pub String);

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

impl LlmConfig {
    /// Builds the configuration from a preset name and explicit settings;
    /// an explicit base URL or model wins over the preset's.
    pub fn resolve(
        provider: Option<&str>,
        base_url: Option<&str>,
        model: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<LlmConfig, UnknownPreset> {
        let preset = match nonempty(provider) {
            Some(name) => Some(
                PRESETS
                    .iter()
                    .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
                    .ok_or_else(|| UnknownPreset(name.to_owned()))?,
            ),
            None => None,
        };
        let base_url = nonempty(base_url)
            .map(|u| u.trim_end_matches('/').to_owned())
            .or_else(|| preset.map(|p| p.1.to_owned()));
        let model = nonempty(model)
            .map(str::to_owned)
            .or_else(|| preset.map(|p| p.2.to_owned()))
            .unwrap_or_else(|| "default".into());
        Ok(LlmConfig {
            base_url,
            model,
            api_key: api_key.and_then(Secret::new),
            ..LlmConfig::default()
        })
    }

    /// The replaced system's provider (`LEGACY_PRESET`), without a key:
    /// only callers' own keys go there, never the server's.
    pub fn legacy() -> LlmConfig {
        LlmConfig::resolve(Some(LEGACY_PRESET), None, None, None).expect("a known preset")
    }

    /// Whether generation works without a key in the request.
    pub fn is_configured(&self) -> bool {
        self.base_url.is_some()
    }
}

/// How to set a provider up, for the `llm-not-configured` error.
pub const HOW_TO_CONFIGURE: &str = "no language model is configured: set MANIMD_LLM_PROVIDER to a preset \
(groq, openai, openrouter, ollama, llamacpp, vllm) or MANIMD_LLM_BASE_URL to an OpenAI-compatible /v1 URL, \
with MANIMD_LLM_MODEL and MANIMD_LLM_API_KEY as the provider needs; or send `api_key` with the request \
when a base URL is set";

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{}", HOW_TO_CONFIGURE)]
    NotConfigured,
    #[error("the model provider refused the API key (HTTP {0})")]
    Unauthorized(u16),
    #[error("the model provider is rate limiting this key (HTTP 429), also after {0} retries")]
    RateLimited(u32),
    #[error("the model provider is unavailable (HTTP {status}), also after {retries} retries")]
    Unavailable { status: u16, retries: u32 },
    #[error("the model provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("the model did not answer within {0} seconds")]
    Timeout(u64),
    #[error("the model provider's answer is malformed: {0}")]
    BadResponse(String),
    #[error("this job's API key was held in memory only and is gone (the server restarted); submit the generation again")]
    KeyLost,
}

impl LlmError {
    /// The stable, kebab-case code clients match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            LlmError::NotConfigured => ErrorCode::LlmNotConfigured,
            LlmError::Unauthorized(_) => ErrorCode::LlmUnauthorized,
            LlmError::RateLimited(_) => ErrorCode::LlmRateLimited,
            LlmError::Unavailable { .. } | LlmError::Unreachable(_) => ErrorCode::LlmUnavailable,
            LlmError::Timeout(_) => ErrorCode::LlmTimeout,
            LlmError::BadResponse(_) => ErrorCode::LlmBadResponse,
            LlmError::KeyLost => ErrorCode::LlmKeyLost,
        }
    }

    pub fn to_error(&self) -> JobError {
        JobError::new(self.code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fill_in_and_explicit_settings_win() {
        let c = LlmConfig::resolve(Some("groq"), None, None, Some("k")).unwrap();
        assert_eq!(
            c.base_url.as_deref(),
            Some("https://api.groq.com/openai/v1")
        );
        assert!(!c.model.is_empty());
        let c =
            LlmConfig::resolve(Some("ollama"), Some("http://x:1/v1/"), Some("m"), None).unwrap();
        assert_eq!(c.base_url.as_deref(), Some("http://x:1/v1"));
        assert_eq!(c.model, "m");
        assert!(c.api_key.is_none());
        assert!(!LlmConfig::resolve(None, None, None, Some("k"))
            .unwrap()
            .is_configured());
        assert_eq!(
            LlmConfig::resolve(Some("nope"), None, None, None).unwrap_err(),
            UnknownPreset("nope".into())
        );
    }

    #[test]
    fn the_legacy_provider_is_groq_without_a_key_of_its_own() {
        let c = LlmConfig::legacy();
        assert_eq!(
            c.base_url.as_deref(),
            Some("https://api.groq.com/openai/v1")
        );
        assert_eq!(c.model, "llama-3.3-70b-versatile");
        assert!(c.api_key.is_none());
    }
}
