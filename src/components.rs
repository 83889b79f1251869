//! The parts of a running service that the executor and the API share.

use std::sync::Arc;

use crate::control::Control;
use crate::events::Hub;
use crate::jobs::{Keys, Store};
use crate::llm::{LlmConfig, Provider};
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
}

/// The configured model provider, and the keys that requests brought for
/// their own jobs (in memory only, see `jobs::Keys`).
pub struct Llm {
    pub provider: Provider,
    pub keys: Keys,
}

impl Llm {
    pub fn new(cfg: LlmConfig) -> Llm {
        Llm {
            provider: Provider::new(cfg),
            keys: Keys::default(),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.provider.config().is_configured()
    }
}
