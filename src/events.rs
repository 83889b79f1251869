//! Fan-out of job events to whoever follows a job (SSE clients, `POST /render`).
//!
//! One broadcast channel per job with followers; events for jobs nobody
//! follows cost a map lookup. A follower subscribes before it reads the
//! job's current state, so it cannot miss a change in between.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::generate::GenEvent;
use crate::jobs::JobId;
use crate::render::Progress;

/// What followers of a job receive.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum JobEvent {
    /// The job's state changed; carries the job as the API shows it.
    Status(serde_json::Value),
    /// A progress step of the running render.
    Progress(Progress),
    /// A generation's stage, streamed code, or finished attempt.
    Generation(GenEvent),
}

impl JobEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Status(_) => "status",
            JobEvent::Progress(_) => "progress",
            JobEvent::Generation(e) => e.name(),
        }
    }
}

/// Buffered events per follower before it is considered lagging.
const CAPACITY: usize = 256;

#[derive(Default)]
pub struct Hub {
    channels: Mutex<HashMap<JobId, broadcast::Sender<JobEvent>>>,
}

impl Hub {
    pub fn subscribe(&self, id: &JobId) -> broadcast::Receiver<JobEvent> {
        let mut map = self.channels.lock().expect("hub lock");
        map.entry(id.clone())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    /// Sends a job's last event and forgets its channel.
    pub fn finish(&self, id: &JobId, event: JobEvent) {
        self.publish(id, event);
        self.channels.lock().expect("hub lock").remove(id);
    }

    pub fn publish(&self, id: &JobId, event: JobEvent) {
        let mut map = self.channels.lock().expect("hub lock");
        if let Some(tx) = map.get(id) {
            if tx.send(event).is_err() {
                // Nobody listens any more.
                map.remove(id);
            }
        }
    }
}
