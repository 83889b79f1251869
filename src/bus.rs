//! Signals between nodes that share a PostgreSQL store, over LISTEN/NOTIFY:
//! a queued job wakes idle workers anywhere, a cancel reaches the worker that
//! runs the job, and a job's events reach clients on every API node.
//!
//! Notifications are a fast path only. The durable state is in the jobs
//! table: workers also poll for queued jobs, heartbeats also read the cancel
//! flag, and an event stream also re-reads the job, so a lost notification
//! delays a signal but never loses work.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::JobView;
use crate::control::{Control, CANCEL, WAKE};
use crate::events::{Hub, JobEvent, Relayed};
use crate::generate::GenEvent;
use crate::jobs::{JobId, Store, StoreError};
use crate::protocol::Progress;

/// Payload: a `Wire` event.
pub const EVENTS: &str = "manimd_events";

/// PostgreSQL refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;

/// An event as it travels. A status change carries no job: each node reads
/// the job from the store, so the payload stays small whatever the job holds.
/// So does an event too big for a notification (an attempt with long code).
#[derive(Serialize, Deserialize)]
struct Wire {
    id: String,
    finish: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<GenEvent>,
}

/// Relays this node's events out and delivers every node's signals here.
/// Returns the relay and listener tasks.
pub async fn start(
    store: Store,
    hub: Arc<Hub>,
    control: Arc<Control>,
) -> Result<Vec<JoinHandle<()>>, StoreError> {
    let mut listener = PgListener::connect(store.url()).await?;
    listener.listen_all([WAKE, CANCEL, EVENTS]).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    hub.set_relay(tx);
    let relay = tokio::spawn(relay(store.clone(), rx));
    let listen = tokio::spawn(listen(listener, store, hub, control));
    Ok(vec![relay, listen])
}

/// Sends events in the order they were published, one task for all of them.
async fn relay(store: Store, mut rx: mpsc::UnboundedReceiver<Relayed>) {
    while let Some(Relayed { id, event, finish }) = rx.recv().await {
        let mut wire = Wire {
            id: id.to_string(),
            finish,
            progress: None,
            generation: None,
        };
        match event {
            JobEvent::Progress(p) => wire.progress = Some(p),
            JobEvent::Generation(g) => wire.generation = Some(g),
            JobEvent::Status(_) => {}
        }
        let mut payload = serde_json::to_string(&wire).expect("serializable");
        if payload.len() > MAX_PAYLOAD {
            // Followers re-read the job instead.
            (wire.progress, wire.generation) = (None, None);
            payload = serde_json::to_string(&wire).expect("serializable");
        }
        if let Err(err) = store.notify(EVENTS, &payload).await {
            tracing::warn!(%err, %id, "cannot relay a job event");
        }
    }
}

async fn listen(mut listener: PgListener, store: Store, hub: Arc<Hub>, control: Arc<Control>) {
    loop {
        // On a lost connection `recv` reconnects and listens again; what was
        // sent meanwhile is covered by polling (see the module comment).
        let note = match listener.recv().await {
            Ok(note) => note,
            Err(err) => {
                tracing::warn!(%err, "lost the notification connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match note.channel() {
            WAKE => control.wake_local(),
            CANCEL => {
                if let Some(id) = JobId::parse(note.payload()) {
                    control.cancel_local(&id);
                }
            }
            EVENTS => {
                let Ok(wire) = serde_json::from_str::<Wire>(note.payload()) else {
                    continue;
                };
                let Some(id) = JobId::parse(&wire.id) else {
                    continue;
                };
                let event = match (wire.progress, wire.generation) {
                    (Some(p), _) => JobEvent::Progress(p),
                    (None, Some(g)) => JobEvent::Generation(g),
                    (None, None) => match store.get(&id).await {
                        Ok(Some(job)) => JobEvent::Status(
                            serde_json::to_value(JobView::from(&job)).unwrap_or_default(),
                        ),
                        Ok(None) => {
                            // Deleted meanwhile: nothing more will come.
                            hub.forget(&id);
                            continue;
                        }
                        Err(err) => {
                            tracing::warn!(%err, %id, "cannot read a job for its followers");
                            continue;
                        }
                    },
                };
                hub.deliver(&id, event, wire.finish);
            }
            _ => {}
        }
    }
}
