//! Warm sandboxes: fresh sandboxes with the engine already imported, started
//! before a job arrives so that a job pays for its render and not for
//! `import manim`.
//!
//! A warm sandbox has run no user code, and serves exactly one job; the next
//! job gets another. The pool keeps up to `size` per engine, refills after
//! each take, and lets sandboxes that wait longer than `idle_timeout` go, so
//! an idle server returns to its minimal memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::limits::Limits;
use crate::render::{Inspection, Inspector, RenderError, Renderer, Warm};
use crate::spec::Engine;

#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Warm sandboxes kept per engine; 0 turns the pool off.
    pub size: usize,
    pub idle_timeout: Duration,
    /// The limits warm sandboxes are started with (jobs with others start cold).
    pub limits: Limits,
    /// Engines warmed at start, before any job asked for them.
    pub prewarm: Vec<Engine>,
}

pub struct Pool {
    renderer: Arc<Renderer>,
    cfg: PoolConfig,
    ready: Mutex<Vec<Warm>>,
    starting: Mutex<HashMap<Engine, usize>>,
    /// A started inspection sandbox, so that checking a submission does not
    /// wait for a sandbox and Python to start.
    inspector: Mutex<Option<Inspector>>,
    inspector_starting: AtomicBool,
    closed: AtomicBool,
}

impl Pool {
    pub fn new(renderer: Arc<Renderer>, cfg: PoolConfig) -> Arc<Pool> {
        Arc::new(Pool {
            renderer,
            cfg,
            ready: Mutex::new(Vec::new()),
            starting: Mutex::new(HashMap::new()),
            inspector: Mutex::new(None),
            inspector_starting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// Warms the configured engines and lets idle sandboxes go, until closed.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        for engine in self.cfg.prewarm.clone() {
            self.refill(engine);
        }
        self.refill_inspector();
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let tick = (pool.cfg.idle_timeout / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(5));
            while !pool.closed.load(Ordering::SeqCst) {
                tokio::time::sleep(tick).await;
                pool.let_idle_go().await;
            }
        })
    }

    /// A warm sandbox for `engine` and `limits`, if one is ready. Taking one
    /// starts its replacement.
    pub fn take(self: &Arc<Self>, engine: Engine, limits: &Limits) -> Option<Warm> {
        if self.cfg.size == 0 {
            return None;
        }
        let warm = {
            let mut ready = self.ready.lock().expect("pool lock");
            // The most recently started: the least likely to time out.
            let i = ready.iter().rposition(|w| w.fits(engine, limits));
            i.map(|i| ready.remove(i))
        };
        self.refill(engine);
        warm
    }

    /// Inspects `code` (see `Renderer::inspect_project_with`) in the ready
    /// inspector, or in one started now when there is none, and only then
    /// starts the next: with the next one starting beside it, a submission
    /// took 19 ms instead of 8 on two cores (`manimd bench --only projects`,
    /// BENCHMARKS.md run L), most of it the inspection.
    pub async fn inspect(
        self: &Arc<Self>,
        code: &str,
        modules: &[&str],
    ) -> Result<Inspection, RenderError> {
        let ready = match self.cfg.size {
            0 => None,
            _ => self.inspector.lock().expect("pool lock").take(),
        };
        let inspection = async {
            let inspector = match ready {
                Some(inspector) => inspector,
                None => self.renderer.start_inspector().await?,
            };
            self.renderer
                .inspect_project_with(inspector, code, modules)
                .await
        }
        .await;
        self.refill_inspector();
        inspection
    }

    fn refill_inspector(self: &Arc<Self>) {
        if self.cfg.size == 0
            || self.closed.load(Ordering::SeqCst)
            || self.inspector.lock().expect("pool lock").is_some()
        {
            return;
        }
        if self.inspector_starting.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let result = pool.renderer.start_inspector().await;
            match result {
                Ok(i) if !pool.closed.load(Ordering::SeqCst) => {
                    *pool.inspector.lock().expect("pool lock") = Some(i)
                }
                Ok(i) => pool.renderer.discard_inspector(i).await,
                Err(err) => tracing::warn!(%err, "cannot start an inspector"),
            }
            pool.inspector_starting.store(false, Ordering::SeqCst);
        });
    }

    /// Warm sandboxes ready now.
    pub fn ready(&self) -> usize {
        self.ready.lock().expect("pool lock").len()
    }

    /// Starts sandboxes until `engine` has `size` ready or starting.
    fn refill(self: &Arc<Self>, engine: Engine) {
        if self.cfg.size == 0 || self.closed.load(Ordering::SeqCst) {
            return;
        }
        let have = self
            .ready
            .lock()
            .expect("pool lock")
            .iter()
            .filter(|w| w.engine == engine)
            .count();
        let missing = {
            let mut starting = self.starting.lock().expect("pool lock");
            let n = starting.entry(engine).or_default();
            let missing = self.cfg.size.saturating_sub(have + *n);
            *n += missing;
            missing
        };
        for _ in 0..missing {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                let result = pool.renderer.start_warm(engine, &pool.cfg.limits).await;
                match result {
                    Ok(warm) if !pool.closed.load(Ordering::SeqCst) => {
                        pool.ready.lock().expect("pool lock").push(warm)
                    }
                    Ok(warm) => pool.renderer.discard(warm).await,
                    Err(err) => tracing::warn!(%engine, %err, "cannot start a warm sandbox"),
                }
                // Only now: `close` waits for this count, so a sandbox that
                // started after it is gone (not on its way out) when it ends.
                *pool
                    .starting
                    .lock()
                    .expect("pool lock")
                    .entry(engine)
                    .or_default() -= 1;
            });
        }
    }

    async fn let_idle_go(&self) {
        let idle: Vec<Warm> = {
            let mut ready = self.ready.lock().expect("pool lock");
            let (old, keep): (Vec<Warm>, Vec<Warm>) = ready
                .drain(..)
                .partition(|w| w.age() >= self.cfg.idle_timeout);
            *ready = keep;
            old
        };
        for warm in idle {
            tracing::debug!(engine = %warm.engine, "warm sandbox idle past its timeout");
            self.renderer.discard(warm).await;
        }
        let idle = {
            let mut slot = self.inspector.lock().expect("pool lock");
            if slot
                .as_ref()
                .is_some_and(|i| i.age() >= self.cfg.idle_timeout)
            {
                slot.take()
            } else {
                None
            }
        };
        if let Some(i) = idle {
            self.renderer.discard_inspector(i).await;
        }
    }

    /// Stops warming and ends every warm sandbox, waiting for those still
    /// starting.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self
            .starting
            .lock()
            .expect("pool lock")
            .values()
            .any(|n| *n > 0)
            || self.inspector_starting.load(Ordering::SeqCst)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all: Vec<Warm> = self.ready.lock().expect("pool lock").drain(..).collect();
        for warm in all {
            self.renderer.discard(warm).await;
        }
        // The inspection sandbox too: dropped instead, its group would be
        // removed by a task the ending runtime never runs.
        let inspector = self.inspector.lock().expect("pool lock").take();
        if let Some(i) = inspector {
            self.renderer.discard_inspector(i).await;
        }
    }
}
