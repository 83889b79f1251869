//! The parts of a running service that the executor and the API share.

use std::sync::Arc;

use crate::events::Hub;
use crate::jobs::Store;
use crate::llm::Llm;
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
}
