//! The render service's operations, independent of HTTP: submit, look up,
//! list, cancel or delete, wait, fetch files, generate. Handlers call one
//! of these and map the result; nothing here knows about status codes.
//!
//! This module holds the service itself (its parts and its draining flag);
//! each kind of operation has its own file: `submit` (with the request's
//! pure checks in `validate`), `lookup`, `files`, `generations`,
//! `previews`, `status`, and their one error type in `error`.

mod blobs;
mod error;
mod files;
mod generations;
mod lookup;
mod previews;
mod status;
mod submit;
mod validate;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::api::Compat;
use crate::components::Components;
use crate::executor::Executor;
use crate::limits::Limits;
use crate::storage::ServeMode;

pub use error::ServiceError;
pub use files::Delivery;
pub use previews::{Previews, PREVIEW_KEEP, PREVIEW_WALL_SECS};

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub queue_capacity: u64,
    /// Queued and running jobs allowed per API key.
    pub max_jobs_per_owner: u64,
    pub limits: Limits,
    pub max_body_bytes: u64,
    /// Whether finished files are streamed or redirected to the store.
    pub storage_serve: ServeMode,
    /// Answer `/health` as a replaced system did (`None`: as manimd).
    pub compat: Option<Compat>,
    /// Where previews' frames are kept for a while (emptied at start).
    pub preview_dir: std::path::PathBuf,
    /// How big a project may be.
    pub project_limits: crate::project::ProjectLimits,
}

pub struct Service {
    pub cfg: ServiceConfig,
    /// The parts it shares with the executor (store, renderer, pool, hub,
    /// storage, webhooks, metrics, the model and this node's `Control`).
    pub parts: Components,
    pub executor: Arc<Executor>,
    pub started: Instant,
    draining: AtomicBool,
    /// Bounds the generations that run here rather than in a worker loop.
    pub(crate) local_generations: Arc<tokio::sync::Semaphore>,
    local_generations_max: usize,
    /// This node's previews and their frames.
    previews: Previews,
}

impl Service {
    pub fn new(cfg: ServiceConfig, parts: Components, executor: Arc<Executor>) -> Service {
        // Mostly waiting on the model; each may also start a sandbox.
        let local_generations_max = executor.workers().max(1) * 2;
        // Like generations: a few per worker, each holding one sandbox.
        let previews = Previews::new(cfg.preview_dir.clone(), executor.workers().max(1) * 2);
        Service {
            previews,
            cfg,
            parts,
            executor,
            started: Instant::now(),
            draining: AtomicBool::new(false),
            local_generations: Arc::new(tokio::sync::Semaphore::new(local_generations_max)),
            local_generations_max,
        }
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A slot for a generation that runs in this process, or `GenerationsBusy`.
    pub(crate) fn local_generation_slot(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ServiceError> {
        Arc::clone(&self.local_generations)
            .try_acquire_owned()
            .map_err(|_| ServiceError::GenerationsBusy {
                max: self.local_generations_max,
            })
    }
}
