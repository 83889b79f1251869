//! Fan-out of job events to whoever follows a job (SSE clients, `POST /render`).
//!
//! One broadcast channel per job with followers; events for jobs nobody
//! follows cost a map lookup. A follower subscribes before it reads the
//! job's current state, so it cannot miss a change in between.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::generate::{GenEvent, Stage};
use crate::jobs::JobId;
use crate::protocol::Progress;

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

/// Generation events kept per running job for followers that connect late.
const HISTORY: usize = 2000;

#[derive(Default)]
struct Inner {
    channels: HashMap<JobId, broadcast::Sender<JobEvent>>,
    /// A running generation's stages, code and attempts so far: a client
    /// that connects after the pipeline started still sees all of it.
    history: HashMap<JobId, Vec<JobEvent>>,
}

#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// With several nodes, events go out through the database's
    /// notifications and come back to each node's `deliver`, so a client
    /// sees a job's events on whichever node it is connected to.
    relay: OnceLock<mpsc::UnboundedSender<Relayed>>,
}

impl Hub {
    pub fn subscribe(&self, id: &JobId) -> broadcast::Receiver<JobEvent> {
        self.subscribe_with_history(id).0
    }

    /// Subscribes, and returns the events of the job's history (see
    /// `Inner::history`) that came before: together, nothing is missed or
    /// seen twice.
    pub fn subscribe_with_history(
        &self,
        id: &JobId,
    ) -> (broadcast::Receiver<JobEvent>, Vec<JobEvent>) {
        let mut inner = self.inner.lock().expect("hub lock");
        let rx = inner
            .channels
            .entry(id.clone())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe();
        (rx, inner.history.get(id).cloned().unwrap_or_default())
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

    /// Drops a job's channel and history (the job is gone): its followers
    /// see the channel close and read the job again.
    pub fn forget(&self, id: &JobId) {
        let mut inner = self.inner.lock().expect("hub lock");
        inner.channels.remove(id);
        inner.history.remove(id);
    }

    /// Hands an event to this node's followers of the job.
    pub fn deliver(&self, id: &JobId, event: JobEvent, finish: bool) {
        let mut inner = self.inner.lock().expect("hub lock");
        match &event {
            // A run starts with planning: a re-queued job starts over, and
            // so does its history.
            JobEvent::Generation(GenEvent::Stage {
                stage: Stage::Planning,
                ..
            }) => {
                inner.history.insert(id.clone(), vec![event.clone()]);
            }
            JobEvent::Generation(_) => {
                let history = inner.history.entry(id.clone()).or_default();
                if history.len() < HISTORY {
                    history.push(event.clone());
                }
            }
            JobEvent::Status(view) if finish || is_terminal(view) => {
                inner.history.remove(id);
            }
            _ => {}
        }
        if finish {
            if let Some(tx) = inner.channels.remove(id) {
                let _ = tx.send(event);
            }
            return;
        }
        if let Some(tx) = inner.channels.get(id) {
            if tx.send(event).is_err() {
                // Nobody listens any more.
                inner.channels.remove(id);
            }
        }
    }
}

/// Whether a job view (as JSON) is in a final state.
pub fn is_terminal(view: &serde_json::Value) -> bool {
    view["status"]
        .as_str()
        .and_then(crate::jobs::JobStatus::parse)
        .is_some_and(crate::jobs::JobStatus::is_terminal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(stage: Stage) -> JobEvent {
        JobEvent::Generation(GenEvent::Stage { stage, attempt: 1 })
    }

    #[test]
    fn a_late_follower_gets_the_generation_so_far_and_then_the_rest() {
        let hub = Hub::default();
        let id = JobId::new();
        hub.publish(&id, stage(Stage::Planning));
        hub.publish(
            &id,
            JobEvent::Status(serde_json::json!({"status": "running"})),
        );
        hub.publish(&id, stage(Stage::Writing));
        let (mut rx, history) = hub.subscribe_with_history(&id);
        let names: Vec<String> = history
            .iter()
            .map(|e| serde_json::to_value(e).unwrap()["stage"].to_string())
            .collect();
        assert_eq!(names, ["\"planning\"", "\"writing\""]);
        hub.publish(&id, stage(Stage::Checking));
        assert!(matches!(rx.try_recv(), Ok(JobEvent::Generation(_))));
        // The end forgets the history.
        hub.finish(
            &id,
            JobEvent::Status(serde_json::json!({"status": "succeeded"})),
        );
        assert!(hub.subscribe_with_history(&id).1.is_empty());
    }
}
