//! The node's runs and the signals that reach them: one owner for what used
//! to be four loose fields of the executor.
//!
//! A worker takes a [`Slot`] before it claims a job, and turns it into a
//! [`Run`] once the job is in hand. Both are drop guards counted in one
//! number, so a graceful stop ([`Control::stop_all`]) waits for a job from
//! the moment its claim starts, not from the moment it registers: the window
//! between the two no longer hides a job from the stop. A run that begins
//! after the stop told every run to end is told at once.
//!
//! Wake and cancel also travel to the other nodes sharing a PostgreSQL
//! store (`bus` listens for them and calls the `_local` forms here).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::jobs::{Job, JobId, Store};

/// Notification channel: a job was queued (or re-queued).
pub const WAKE: &str = "manimd_wake";
/// Notification channel: payload is a job id whose cancel was recorded.
pub const CANCEL: &str = "manimd_cancel";

/// Why a running job is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The client canceled the job, or its lease was lost.
    Canceled,
    /// The node is shutting down: the job goes back to the queue.
    Shutdown,
}

pub struct Control {
    /// Carries wake and cancel to the other nodes (on PostgreSQL).
    store: Store,
    /// Wakes an idle worker of this node when a job is queued.
    wake: Notify,
    /// Set once, when the node stops claiming.
    stopping: watch::Sender<bool>,
    runs: Mutex<Runs>,
    /// Slots alive: claims in progress plus runs. `stop_all` waits on it.
    active: watch::Sender<usize>,
}

#[derive(Default)]
struct Runs {
    /// Each run's stop signal, by job: a split render's runner and the
    /// chunks of it that run here share their job's entry.
    by_job: HashMap<JobId, Vec<watch::Sender<Option<Stop>>>>,
    /// Every run has been told to stop for shutdown; later ones are told
    /// as they begin.
    draining: bool,
}

impl Control {
    pub fn new(store: Store) -> Arc<Control> {
        Arc::new(Control {
            store,
            wake: Notify::new(),
            stopping: watch::channel(false).0,
            runs: Mutex::new(Runs::default()),
            active: watch::channel(0).0,
        })
    }

    /// A job was queued: wake a worker now rather than at its next poll,
    /// here and on every node sharing the store.
    pub fn wake(&self) {
        self.wake_local();
        self.signal(WAKE, String::new());
    }

    pub fn wake_local(&self) {
        self.wake.notify_one();
    }

    /// Resolves when `wake` is called (or was, since the last waiter).
    pub fn woken(&self) -> impl Future<Output = ()> + '_ {
        self.wake.notified()
    }

    /// Becomes true when the node stops claiming.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Stops a job whose cancel was recorded, wherever it runs; true when it
    /// runs in this process.
    pub fn cancel(&self, id: &JobId) -> bool {
        let here = self.cancel_local(id);
        if !here {
            self.signal(CANCEL, id.to_string());
        }
        here
    }

    /// Stops a job running in this process; false when it runs nowhere here.
    pub fn cancel_local(&self, id: &JobId) -> bool {
        match self.runs.lock().expect("runs lock").by_job.get(id) {
            Some(runs) => {
                runs.iter().for_each(|tx| tell(tx, Stop::Canceled));
                true
            }
            None => false,
        }
    }

    /// True once `stop_all` has told every run to stop (tests watch for it).
    #[cfg(test)]
    fn draining(&self) -> bool {
        self.runs.lock().expect("runs lock").draining
    }

    /// Runs in this process (a chunk of a split render counts as one).
    pub fn running(&self) -> usize {
        self.runs
            .lock()
            .expect("runs lock")
            .by_job
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Stops a job's runs here and on every node sharing the store, even
    /// when one runs here: a split render's chunks may run anywhere.
    pub fn cancel_everywhere(&self, id: &JobId) {
        self.cancel_local(id);
        self.signal(CANCEL, id.to_string());
    }

    /// A slot for a job about to be claimed, counted until the job's run
    /// ends; `None` once the node stops claiming.
    pub fn slot(self: &Arc<Self>) -> Option<Slot> {
        if *self.stopping.borrow() {
            return None;
        }
        self.active.send_modify(|n| *n += 1);
        Some(Slot {
            control: Arc::clone(self),
        })
    }

    /// Stops claiming, lets running jobs finish within `grace`, then tells
    /// the rest (and any that begin later) to stop for shutdown, and waits
    /// until every slot is gone.
    pub async fn stop_all(&self, grace: Duration) {
        self.stopping.send_replace(true);
        let mut active = self.active.subscribe();
        let _ = tokio::time::timeout(grace, active.wait_for(|n| *n == 0)).await;
        {
            let mut runs = self.runs.lock().expect("runs lock");
            runs.draining = true;
            for tx in runs.by_job.values().flatten() {
                tell(tx, Stop::Shutdown);
            }
        }
        let _ = active.wait_for(|n| *n == 0).await;
    }

    /// Tells the other nodes (PostgreSQL only; a no-op on SQLite). Not
    /// awaited: the store already holds the state this signal hurries along.
    fn signal(&self, channel: &'static str, payload: String) {
        if !self.store.is_shared() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.notify(channel, &payload).await {
                tracing::warn!(%err, channel, "cannot signal the other nodes");
            }
        });
    }
}

/// A job about to be claimed (or claimed and not yet begun). Dropping it
/// gives the count back: the claim found nothing, or the job was done
/// without a run.
pub struct Slot {
    control: Arc<Control>,
}

impl Slot {
    /// Registers the claimed job as running here, stoppable by cancel and
    /// shutdown. A job whose cancel is already recorded, or that begins
    /// after the shutdown's stop, starts stopped.
    pub fn begin(self, job: &Job) -> Run {
        let (tx, rx) = watch::channel(None);
        if job.cancel_requested {
            tell(&tx, Stop::Canceled);
        }
        {
            let mut runs = self.control.runs.lock().expect("runs lock");
            if runs.draining {
                tell(&tx, Stop::Shutdown);
            }
            runs.by_job
                .entry(job.id.clone())
                .or_default()
                .push(tx.clone());
        }
        Run {
            id: job.id.clone(),
            tx,
            rx,
            slot: self,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.control.active.send_modify(|n| *n -= 1);
    }
}

/// A job running in this process. Dropping it unregisters the job and ends
/// its slot.
pub struct Run {
    id: JobId,
    tx: watch::Sender<Option<Stop>>,
    rx: watch::Receiver<Option<Stop>>,
    /// Dropped after the job is unregistered (fields drop after `drop`).
    slot: Slot,
}

impl Run {
    /// Why the job is being stopped, if it is.
    pub fn reason(&self) -> Option<Stop> {
        *self.rx.borrow()
    }

    /// Resolves once the job is told to stop.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|s| s.is_some()).await;
        }
    }

    /// A handle that stops this job (for its heartbeat, on a lost lease or
    /// a cancel seen in the store).
    pub fn stopper(&self) -> Stopper {
        Stopper(self.tx.clone())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let mut runs = self.slot.control.runs.lock().expect("runs lock");
        if let Some(list) = runs.by_job.get_mut(&self.id) {
            list.retain(|tx| !tx.same_channel(&self.tx));
            if list.is_empty() {
                runs.by_job.remove(&self.id);
            }
        }
    }
}

/// Stops one run from another task.
#[derive(Clone)]
pub struct Stopper(watch::Sender<Option<Stop>>);

impl Stopper {
    pub fn stop(&self, reason: Stop) {
        tell(&self.0, reason);
    }
}

/// The first reason sticks: a job canceled before a shutdown stays
/// canceled, and one stopped for shutdown is not turned into a cancel.
fn tell(tx: &watch::Sender<Option<Stop>>, reason: Stop) {
    tx.send_if_modified(|s| s.is_none() && s.replace(reason).is_none());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobStatus, NewJob};
    use crate::spec::RenderSpec;

    const OWNER: &str = "test-node";
    const LEASE: Duration = Duration::from_secs(30);
    /// Only a bound on a hang: every wait below ends on a condition.
    const HANG: Duration = Duration::from_secs(20);

    async fn store_with_a_queued_job(dir: &std::path::Path) -> (Store, JobId) {
        let store = Store::open_sqlite(&dir.join("jobs.db")).await.unwrap();
        let id = JobId::new();
        let spec: RenderSpec = serde_json::from_value(serde_json::json!({
            "code": "x = 1", "scenes": [], "engine": "manim", "quality": "low",
            "format": "mp4", "fps": null, "seed": null,
        }))
        .unwrap();
        store
            .insert(&NewJob {
                id: &id,
                spec: &spec,
                cache_key: "k",
                follows: None,
                owner: None,
                webhook_url: None,
            })
            .await
            .unwrap();
        (store, id)
    }

    /// The race a graceful stop used to lose: a job claimed in the store but
    /// not yet registered as running. The stop must wait for it, and the job
    /// must be told to stop as it begins, so that it goes back to the queue
    /// without costing an attempt. Each step is taken in order by the test,
    /// so the window is hit every time.
    #[tokio::test]
    async fn a_stop_during_the_claim_window_waits_and_stops_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_a_queued_job(dir.path()).await;
        let control = Control::new(store.clone());

        // The worker's claim step: a slot first, then the claim.
        let slot = control.slot().expect("claiming is open");
        let claimed = store.claim(OWNER, LEASE).await.unwrap().unwrap();
        assert_eq!((claimed.job.id.clone(), claimed.attempt), (id.clone(), 1));

        // The stop arrives in the window, with no grace left.
        let stop = tokio::spawn({
            let control = Arc::clone(&control);
            async move { control.stop_all(Duration::ZERO).await }
        });
        tokio::time::timeout(HANG, async {
            while !control.draining() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the stop reaches its drain");
        assert!(control.slot().is_none(), "no claim after the stop");
        assert!(!stop.is_finished(), "the stop waits for the claimed job");

        // The job begins after the drain: it is stopped at once.
        let run = slot.begin(&claimed.job);
        assert_eq!(run.reason(), Some(Stop::Shutdown));
        tokio::time::timeout(HANG, run.stopped()).await.unwrap();

        // What the executor does with a shutdown stop: the job is queued
        // again and the attempt is not counted.
        assert!(store.release(&id, OWNER, claimed.attempt).await.unwrap());
        let job = store.get(&id).await.unwrap().unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0));

        assert!(!stop.is_finished(), "the run still holds its slot");
        drop(run);
        tokio::time::timeout(HANG, stop).await.unwrap().unwrap();
        assert_eq!(control.running(), 0);
    }

    #[tokio::test]
    async fn a_stop_lets_running_jobs_finish_within_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_a_queued_job(dir.path()).await;
        let control = Control::new(store.clone());
        let claimed = store.claim(OWNER, LEASE).await.unwrap().unwrap();
        let run = control.slot().unwrap().begin(&claimed.job);
        assert_eq!(control.running(), 1);

        let stop = tokio::spawn({
            let control = Arc::clone(&control);
            async move { control.stop_all(HANG).await }
        });
        // Within the grace, the run is not told to stop; it ends by itself.
        tokio::task::yield_now().await;
        assert_eq!(run.reason(), None);
        drop(run);
        tokio::time::timeout(HANG, stop).await.unwrap().unwrap();
        assert!(control.slot().is_none(), "a stopped node claims nothing");
    }

    #[tokio::test]
    async fn cancel_reaches_a_run_and_the_first_reason_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_a_queued_job(dir.path()).await;
        let control = Control::new(store.clone());
        let claimed = store.claim(OWNER, LEASE).await.unwrap().unwrap();
        let run = control.slot().unwrap().begin(&claimed.job);
        assert!(!control.cancel_local(&JobId::new()));
        assert!(control.cancel(&id));
        run.stopper().stop(Stop::Shutdown);
        assert_eq!(run.reason(), Some(Stop::Canceled));
        drop(run);
        assert!(!control.cancel_local(&id), "an ended run is unregistered");
    }
}
