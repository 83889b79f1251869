//! The parts of a running service that the executor and the API share.

use std::sync::Arc;

use crate::blobs::Blobs;
use crate::control::Control;
use crate::events::Hub;
use crate::jobs::{Keys, Store};
use crate::llm::{LlmConfig, Provider, Route};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::render::Renderer;
use crate::storage::Storage;
use crate::webhooks::Webhooks;

#[derive(Clone)]
pub struct Components {
    pub store: Store,
    pub renderer: Arc<Renderer>,
    pub pool: Arc<Pool>,
    pub webhooks: Arc<Webhooks>,
    pub hub: Arc<Hub>,
    pub storage: Storage,
    pub metrics: Arc<Metrics>,
    /// The model provider and the keys requests brought.
    pub llm: Arc<Llm>,
    /// This node's runs and the signals that reach them.
    pub control: Arc<Control>,
    /// Projects' uploaded files, per owner.
    pub blobs: Arc<Blobs>,
}

/// The configured model provider, the replaced system's, and the keys that
/// requests brought for their own jobs (in memory only, see `jobs::Keys`).
pub struct Llm {
    configured: Provider,
    /// Only for `Route::Legacy`: the replaced system's provider, which gets
    /// nothing but its callers' own keys.
    legacy: Provider,
    pub keys: Keys,
}

impl Llm {
    pub fn new(cfg: LlmConfig, legacy: LlmConfig) -> Llm {
        Llm {
            configured: Provider::new(cfg),
            legacy: Provider::new(legacy),
            keys: Keys::default(),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.configured.config().is_configured()
    }

    /// Where a request's model calls go: the configured provider, except
    /// for the replaced system's `/generate` (`legacy`) with the caller's
    /// own key on a server without one, which goes where the replaced
    /// system sent it. A configured provider always wins.
    pub fn route(&self, legacy: bool, own_key: bool) -> Route {
        if legacy && own_key && !self.is_configured() {
            Route::Legacy
        } else {
            Route::Configured
        }
    }

    pub fn provider(&self, route: Route) -> &Provider {
        match route {
            Route::Configured => &self.configured,
            Route::Legacy => &self.legacy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_legacy_call_with_its_own_key_and_no_provider_goes_to_groq() {
        let none = Llm::new(LlmConfig::default(), LlmConfig::legacy());
        let configured = LlmConfig {
            base_url: Some("http://127.0.0.1:9/v1".into()),
            ..LlmConfig::default()
        };
        let some = Llm::new(configured, LlmConfig::legacy());
        let table = [
            (&none, true, true, Route::Legacy),
            (&none, true, false, Route::Configured),
            (&none, false, true, Route::Configured),
            (&some, true, true, Route::Configured),
            (&some, false, true, Route::Configured),
        ];
        for (llm, legacy, own_key, want) in table {
            assert_eq!(llm.route(legacy, own_key), want, "{legacy} {own_key}");
        }
        let groq = none.provider(Route::Legacy).config();
        assert_eq!(
            groq.base_url.as_deref(),
            Some("https://api.groq.com/openai/v1")
        );
        assert!(groq.api_key.is_none(), "the server's key never goes there");
    }
}
