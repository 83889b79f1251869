//! Keeping leases: the heartbeat that holds a run's lease (and stops the run
//! when the lease is lost or a cancel is recorded by any node), and the
//! reaper that re-queues the jobs of workers that died elsewhere. Both are
//! plain functions of the store, so they run (and are tested) without a
//! sandbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Executor;
use crate::control::{Control, Stop, Stopper};
use crate::jobs::{JobId, Store};

impl Executor {
    /// Keeps the lease of a run alive in a task of its own.
    pub(super) fn spawn_heartbeat(
        &self,
        id: JobId,
        attempt: u32,
        stop: Stopper,
    ) -> tokio::task::JoinHandle<()> {
        let lease = Lease {
            store: self.parts.store.clone(),
            owner: self.owner.clone(),
            id,
            attempt,
            lease: self.cfg.lease,
        };
        tokio::spawn(heartbeat(lease, stop))
    }

    /// Re-queues jobs whose lease expired (a worker that died elsewhere).
    pub(super) async fn reaper_loop(self: Arc<Self>) {
        let (lease, max_attempts) = (self.cfg.lease, self.cfg.max_attempts);
        reap(
            self.parts.store.clone(),
            Arc::clone(&self.parts.control),
            lease,
            max_attempts,
        )
        .await
    }
}

/// One run's lease: the job, who holds it, at which attempt, for how long.
pub(super) struct Lease {
    pub store: Store,
    pub owner: String,
    pub id: JobId,
    pub attempt: u32,
    pub lease: Duration,
}

/// Renews the lease every third of its length, so two renewals can fail
/// before it expires. Stops the run when the lease is lost (and ends: the
/// job is no longer this run's), or when a cancel was recorded (by any
/// node). Runs until aborted otherwise.
pub(super) async fn heartbeat(l: Lease, stop: Stopper) {
    loop {
        tokio::time::sleep(l.lease / 3).await;
        match l.store.heartbeat(&l.id, &l.owner, l.attempt, l.lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(id = %l.id, "lease lost; stopping the render");
                stop.stop(Stop::Canceled);
                return;
            }
            Err(err) => tracing::error!(%err, "heartbeat failed"),
        }
        if let Ok(Some(job)) = l.store.get(&l.id).await {
            if job.cancel_requested {
                stop.stop(Stop::Canceled);
            }
        }
    }
}

/// Every `lease`, re-queues the jobs whose lease expired (failing those out
/// of attempts), releases the followers of leaders that ended without them,
/// and wakes the workers for them; ends when the node stops.
///
/// Only once the store has answered for a whole lease, though: while it
/// could not be reached (PostgreSQL restarting), the live workers could not
/// renew their leases either, and reaping them as soon as it is back would
/// run their jobs twice. It is asked every third of a lease, so any outage
/// long enough to expire a lease is seen.
pub(super) async fn reap(store: Store, control: Arc<Control>, lease: Duration, max_attempts: u32) {
    let mut stopping = control.stopping();
    let mut uptime = Uptime::default();
    let mut last_reap = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lease / 3) => {}
            _ = stopping.changed() => return,
        }
        let up = tokio::time::timeout(lease / 3, store.ping()).await;
        if !uptime.observe(matches!(up, Ok(Ok(()))), Instant::now(), lease)
            || last_reap.elapsed() < lease
        {
            continue;
        }
        last_reap = Instant::now();
        reap_once(&store, &control, max_attempts).await;
    }
}

/// How long the store has answered without a break.
#[derive(Default)]
struct Uptime {
    /// When it answered first after its last failure; `None` while down.
    since: Option<Instant>,
}

impl Uptime {
    /// Records whether the store answered at `now`; true once it has done
    /// so for a whole `lease` without a break.
    fn observe(&mut self, up: bool, now: Instant, lease: Duration) -> bool {
        if !up {
            self.since = None;
            return false;
        }
        now.duration_since(*self.since.get_or_insert(now)) >= lease
    }
}

async fn reap_once(store: &Store, control: &Control, max_attempts: u32) {
    match store.reap_leases(false, max_attempts).await {
        Ok((requeued, failed)) if !requeued.is_empty() || !failed.is_empty() => {
            tracing::warn!(?requeued, ?failed, "reaped expired leases");
            control.wake();
        }
        Ok(_) => {}
        Err(err) => tracing::error!(%err, "cannot reap leases"),
    }
    match store.unfollow_ended().await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(
                jobs = n,
                "released the followers of jobs that ended without them"
            );
            control.wake();
        }
        Err(err) => tracing::error!(%err, "cannot release orphaned followers"),
    }
    match store.reap_chunks(max_attempts).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(chunks = n, "re-queued the chunks of workers that died");
            control.wake();
        }
        Err(err) => tracing::error!(%err, "cannot reap chunk leases"),
    }
}

#[cfg(test)]
mod tests {
    //! On a real SQLite store with a short real lease: tokio's paused clock
    //! fights sqlx's pool (the runtime, idle while SQLite's worker thread
    //! answers, jumps the clock to the pool's acquire timeout), so nothing
    //! here pauses time. Nothing asserts a duration either: `HANG` only
    //! bounds a wait that ends on a condition.

    use super::*;
    use crate::jobs::{Claimed, JobStatus, NewJob};
    use crate::spec::RenderSpec;

    /// Short, so the loops turn a few times in a test; the heartbeat renews
    /// every third of it.
    const LEASE: Duration = Duration::from_millis(150);
    const HANG: Duration = Duration::from_secs(20);

    /// A store in `dir` with one job, claimed by `owner` for `lease`.
    async fn claimed(dir: &std::path::Path, owner: &str, lease: Duration) -> (Store, Claimed) {
        let store = Store::open_sqlite(&dir.join("jobs.db")).await.unwrap();
        let spec: RenderSpec = serde_json::from_value(serde_json::json!({
            "code": "x = 1", "scenes": [], "engine": "manim", "quality": "low",
            "format": "mp4", "fps": null, "seed": null,
        }))
        .unwrap();
        let id = JobId::new();
        let new = NewJob {
            id: &id,
            spec: &spec,
            cache_key: "k",
            follows: None,
            owner: None,
            webhook_url: None,
        };
        store.insert(&new).await.unwrap();
        let claimed = store.claim(owner, lease).await.unwrap().unwrap();
        (store, claimed)
    }

    fn lease_of(store: &Store, claimed: &Claimed) -> Lease {
        Lease {
            store: store.clone(),
            owner: "here".into(),
            id: claimed.job.id.clone(),
            attempt: claimed.attempt,
            lease: LEASE,
        }
    }

    #[tokio::test]
    async fn a_heartbeat_that_finds_its_lease_lost_stops_the_run_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed) = claimed(dir.path(), "here", LEASE).await;
        let control = Control::new(store.clone());
        let run = control.slot().unwrap().begin(&claimed.job);
        // Another node's reaper took the job back: the lease is gone.
        let (requeued, _) = store.reap_leases(true, 3).await.unwrap();
        assert_eq!(requeued, vec![claimed.job.id.clone()]);

        let beat = tokio::spawn(heartbeat(lease_of(&store, &claimed), run.stopper()));
        tokio::time::timeout(HANG, beat)
            .await
            .expect("the heartbeat ends by itself")
            .unwrap();
        assert_eq!(run.reason(), Some(Stop::Canceled));
        // The job is the queue's again, untouched by the stale run.
        let job = store.get(&claimed.job.id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Queued);
    }

    #[tokio::test]
    async fn a_cancel_seen_in_the_store_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed) = claimed(dir.path(), "here", LEASE).await;
        let control = Control::new(store.clone());
        let run = control.slot().unwrap().begin(&claimed.job);
        let beat = tokio::spawn(heartbeat(lease_of(&store, &claimed), run.stopper()));

        // Recorded by another node: only the store carries it here.
        let before = store.cancel(&claimed.job.id).await.unwrap();
        assert_eq!(before, Some(JobStatus::Running));
        tokio::time::timeout(HANG, run.stopped())
            .await
            .expect("the cancel reaches the run");
        assert_eq!(run.reason(), Some(Stop::Canceled));
        // The lease is still this run's: the heartbeat keeps it until the
        // run ends and aborts it.
        assert!(!beat.is_finished());
        beat.abort();
    }

    #[tokio::test]
    async fn the_reaper_requeues_an_expired_lease_wakes_a_worker_and_stops_with_the_node() {
        let dir = tempfile::tempdir().unwrap();
        // A worker that died elsewhere: its lease is already over.
        let (store, claimed) = claimed(dir.path(), "dead", Duration::ZERO).await;
        let control = Control::new(store.clone());
        let reaper = tokio::spawn(reap(store.clone(), Arc::clone(&control), LEASE, 3));

        tokio::time::timeout(HANG, control.woken())
            .await
            .expect("the reaper wakes a worker");
        let job = store.get(&claimed.job.id).await.unwrap().unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Queued, 1));

        control.stop_all(Duration::ZERO).await;
        tokio::time::timeout(HANG, reaper)
            .await
            .expect("the reaper ends with the node")
            .unwrap();
    }

    #[test]
    fn leases_are_reaped_only_after_the_store_answered_for_a_whole_lease() {
        let (mut uptime, lease) = (Uptime::default(), Duration::from_secs(5));
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert!(!uptime.observe(true, at(0), lease), "just started");
        assert!(uptime.observe(true, at(5), lease));
        // PostgreSQL restarts: leases expired meanwhile are not dead workers'.
        assert!(!uptime.observe(false, at(6), lease));
        assert!(!uptime.observe(true, at(9), lease));
        assert!(!uptime.observe(true, at(13), lease), "back for 4 s only");
        assert!(uptime.observe(true, at(14), lease));
    }

    #[tokio::test]
    async fn the_reaper_fails_a_job_out_of_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let (store, claimed) = claimed(dir.path(), "dead", Duration::ZERO).await;
        let control = Control::new(store.clone());
        let reaper = tokio::spawn(reap(store.clone(), Arc::clone(&control), LEASE, 1));

        tokio::time::timeout(HANG, control.woken()).await.unwrap();
        let job = store.get(&claimed.job.id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        let code = job.error.unwrap().code;
        assert_eq!(code, crate::job_error::ErrorCode::Interrupted);
        reaper.abort();
    }
}
