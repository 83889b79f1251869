//! A render's progress: applied to the job, fanned out to subscribers at
//! once, and saved (fenced) at most twice a second, so a flood of frames
//! does not become a flood of writes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Executor;
use crate::events::JobEvent;
use crate::jobs::{JobId, JobProgress};
use crate::protocol::Progress;

/// The shortest time between two saves of a run's progress.
const SAVE_EVERY: Duration = Duration::from_millis(500);

impl Executor {
    /// Applies progress to the job, fans it out at once, and saves it at
    /// most twice a second, a change at most half a second after it came;
    /// the last state is saved when `rx` closes.
    pub(super) fn spawn_progress(
        &self,
        id: JobId,
        attempt: u32,
        mut rx: mpsc::Receiver<Progress>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.parts.store.clone();
        let hub = Arc::clone(&self.parts.hub);
        let owner = self.owner.clone();
        tokio::spawn(async move {
            let mut progress = JobProgress::default();
            let mut saved = Instant::now();
            let mut dirty = false;
            loop {
                // A change not saved yet is saved when its half second is
                // up, even if nothing follows it: a scene may go quiet for
                // minutes right after its first steps.
                let due = saved + SAVE_EVERY;
                tokio::select! {
                    p = rx.recv() => {
                        let Some(p) = p else { break };
                        progress.apply(&p);
                        hub.publish(&id, JobEvent::Progress(p));
                        dirty = true;
                    }
                    _ = tokio::time::sleep_until(due), if dirty => {}
                }
                if dirty && saved.elapsed() >= SAVE_EVERY {
                    let _ = store.save_progress(&id, &owner, attempt, &progress).await;
                    saved = Instant::now();
                    dirty = false;
                }
            }
            if dirty {
                let _ = store.save_progress(&id, &owner, attempt, &progress).await;
            }
        })
    }
}
