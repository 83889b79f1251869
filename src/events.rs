//! Fan-out of job events to whoever follows a job (SSE clients, `POST /render`).
//!
//! One broadcast channel per job with followers; events for jobs nobody
//! follows cost a map lookup. A follower subscribes before it reads the
//! job's current state, so it cannot miss a change in between.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

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

/// An event on its way to every node's hub (see `bus`).
#[derive(Debug)]
pub struct Relayed {
    pub id: JobId,
    pub event: JobEvent,
    /// The job's last event: its channel closes after it.
    pub finish: bool,
}

#[derive(Default)]
pub struct Hub {
    channels: Mutex<HashMap<JobId, broadcast::Sender<JobEvent>>>,
    /// With several nodes, events go out through the database's
    /// notifications and come back to each node's `deliver`, so a client
    /// sees a job's events on whichever node it is connected to.
    relay: OnceLock<mpsc::UnboundedSender<Relayed>>,
}

impl Hub {
    pub fn subscribe(&self, id: &JobId) -> broadcast::Receiver<JobEvent> {
        let mut map = self.channels.lock().expect("hub lock");
        map.entry(id.clone())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    /// From now on, events go to `relay` instead of straight to followers.
    pub fn set_relay(&self, relay: mpsc::UnboundedSender<Relayed>) {
        let _ = self.relay.set(relay);
    }

    /// Sends a job's last event and forgets its channel.
    pub fn finish(&self, id: &JobId, event: JobEvent) {
        self.send(id, event, true);
    }

    pub fn publish(&self, id: &JobId, event: JobEvent) {
        self.send(id, event, false);
    }

    fn send(&self, id: &JobId, event: JobEvent, finish: bool) {
        match self.relay.get() {
            Some(relay) => {
                let _ = relay.send(Relayed {
                    id: id.clone(),
                    event,
                    finish,
                });
            }
            None => self.deliver(id, event, finish),
        }
    }

    /// Hands an event to this node's followers of the job.
    pub fn deliver(&self, id: &JobId, event: JobEvent, finish: bool) {
        let mut map = self.channels.lock().expect("hub lock");
        if finish {
            if let Some(tx) = map.remove(id) {
                let _ = tx.send(event);
            }
            return;
        }
        if let Some(tx) = map.get(id) {
            if tx.send(event).is_err() {
                // Nobody listens any more.
                map.remove(id);
            }
        }
    }
}
