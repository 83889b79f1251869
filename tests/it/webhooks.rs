//! The webhook outbox: the store's side on both databases (SQLite and a
//! real PostgreSQL), and a delivery that outlives its server: the receiver
//! is down while the job ends, the server restarts, the receiver comes up,
//! and the delivery arrives once, with its attempts on the job's record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use manimd::jobs::{JobId, JobStatus, NewJob, Store, WebhookAttempt};
use manimd::server::ServeOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::fixture;
use crate::common::pg::Postgres;
use crate::common::server::TestServer;

const LEASE: Duration = Duration::from_secs(60);

fn spec() -> manimd::spec::RenderSpec {
    serde_json::from_value(json!({
        "code": "x = 1", "scenes": [], "engine": "manim", "quality": "low",
        "format": "mp4", "fps": null, "seed": null,
    }))
    .unwrap()
}

/// A job with a webhook, claimed by `node` and ended.
async fn ended_job(store: &Store, webhook: Option<&str>) -> JobId {
    let (id, spec) = (JobId::new(), spec());
    let new = NewJob {
        id: &id,
        spec: &spec,
        cache_key: "k",
        follows: None,
        owner: None,
        webhook_url: webhook,
    };
    store.insert(&new).await.unwrap();
    let claimed = store.claim("node", LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.job.id, id);
    assert!(
        store
            .claim_webhooks("a", LEASE, 16)
            .await
            .unwrap()
            .is_empty(),
        "nothing to deliver while the job runs"
    );
    let ended = store
        .finish(
            &id,
            "node",
            claimed.attempt,
            JobStatus::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    assert!(ended);
    id
}

/// The outbox's course on one store: due once the job ends, held by one
/// node at a time, a failure scheduled again, a success final, and the
/// record shows each step.
async fn outbox_course(store: &Store) {
    let plain = ended_job(store, None).await;
    assert!(store.get(&plain).await.unwrap().unwrap().webhook.is_none());
    let id = ended_job(store, Some("http://receiver.example/hook")).await;
    let pending = store.get(&id).await.unwrap().unwrap().webhook.unwrap();
    assert_eq!((pending.attempts, pending.delivered_ms), (0, None));

    let claimed = store.claim_webhooks("a", LEASE, 16).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the job with a webhook");
    assert_eq!((&claimed[0].job_id, claimed[0].attempts), (&id, 0));
    assert!(
        store
            .claim_webhooks("b", LEASE, 16)
            .await
            .unwrap()
            .is_empty(),
        "a delivery held by one node is not another's"
    );
    let failed = WebhookAttempt::Failed {
        status: Some(503),
        error: "the receiver answered 503".into(),
        retry_at_ms: Some(0),
    };
    assert!(
        !store.record_webhook(&id, "b", &failed).await.unwrap(),
        "only the holder records"
    );
    assert!(store.record_webhook(&id, "a", &failed).await.unwrap());
    let after = store.get(&id).await.unwrap().unwrap().webhook.unwrap();
    assert_eq!(
        (after.attempts, after.last_status, after.next_ms),
        (1, Some(503), Some(0))
    );

    // Its retry time (long past) came: any node takes it, attempt 2.
    let claimed = store.claim_webhooks("b", LEASE, 16).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    let delivered = WebhookAttempt::Delivered { status: 204 };
    assert!(store.record_webhook(&id, "b", &delivered).await.unwrap());
    let done = store.get(&id).await.unwrap().unwrap().webhook.unwrap();
    assert_eq!((done.attempts, done.last_status), (2, Some(204)));
    assert!(done.delivered_ms.is_some() && done.next_ms.is_none());
    assert!(store
        .claim_webhooks("a", LEASE, 16)
        .await
        .unwrap()
        .is_empty());
    assert!(!store.record_webhook(&id, "b", &delivered).await.unwrap());

    // A last failure gives up; a deleted job takes its row along.
    let other = ended_job(store, Some("http://receiver.example/hook")).await;
    store.claim_webhooks("a", LEASE, 16).await.unwrap();
    let last = WebhookAttempt::Failed {
        status: None,
        error: "cannot connect to the receiver".into(),
        retry_at_ms: None,
    };
    assert!(store.record_webhook(&other, "a", &last).await.unwrap());
    let given_up = store.get(&other).await.unwrap().unwrap().webhook.unwrap();
    assert!(given_up.gave_up_ms.is_some() && given_up.last_status.is_none());
    assert!(store
        .claim_webhooks("a", LEASE, 16)
        .await
        .unwrap()
        .is_empty());
    assert!(store.delete(&other).await.unwrap());
}

#[tokio::test]
async fn the_outbox_on_sqlite_survives_reopening_and_releases_leases_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manimd.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    outbox_course(&store).await;
    // A process held a delivery when it stopped.
    let id = ended_job(&store, Some("http://receiver.example/hook")).await;
    assert_eq!(
        store.claim_webhooks("gone", LEASE, 16).await.unwrap().len(),
        1
    );
    store.close().await;

    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(store.release_webhooks().await.unwrap(), 1);
    let claimed = store.claim_webhooks("next", LEASE, 16).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job_id, id);
}

#[tokio::test]
async fn the_outbox_on_postgres_is_shared_by_nodes() {
    let pg = Postgres::start();
    let store = Store::open(&pg.url).await.unwrap();
    outbox_course(&store).await;
    // Another node's live lease is not released by a node that starts.
    let id = ended_job(&store, Some("http://receiver.example/hook")).await;
    assert_eq!(
        store
            .claim_webhooks("alive", LEASE, 16)
            .await
            .unwrap()
            .len(),
        1
    );
    let other = Store::open(&pg.url).await.unwrap();
    assert_eq!(other.release_webhooks().await.unwrap(), 0);
    assert!(other
        .claim_webhooks("new", LEASE, 16)
        .await
        .unwrap()
        .is_empty());
    // An expired one is anybody's.
    let dead = ended_job(&store, Some("http://receiver.example/hook")).await;
    assert_eq!(
        store
            .claim_webhooks("dead", Duration::ZERO, 16)
            .await
            .unwrap()
            .len(),
        1
    );
    // A lease ends strictly after its time: let a zero lease's instant pass
    // (claimed and asked again within one clock tick, it is still held).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = other.claim_webhooks("new", LEASE, 16).await.unwrap();
    assert_eq!(taken.iter().map(|c| &c.job_id).collect::<Vec<_>>(), [&dead]);
    assert_ne!(dead, id);
    other.close().await;
    store.close().await;
}

/// A receiver that answers 503 while `up` is false and 204 once it is
/// true, and keeps what it was sent and what it answered.
#[derive(Clone, Default)]
struct Receiver {
    up: Arc<Mutex<bool>>,
    seen: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: bytes::Bytes| {
                let me = me.clone();
                async move {
                    let status = if *me.up.lock().unwrap() {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    me.seen.lock().unwrap().push((status.as_u16(), body));
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn answers(&self) -> Vec<u16> {
        self.seen.lock().unwrap().iter().map(|(s, _)| *s).collect()
    }
}

/// Polls the job until `done` holds of its `webhook` field.
async fn wait_webhook(s: &TestServer, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let (_, job) = s.get(&format!("/v1/renders/{id}")).await;
        if done(&job["webhook"]) {
            return job["webhook"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the webhook of {id} never got there");
}

#[tokio::test]
async fn a_webhook_whose_receiver_is_down_is_delivered_once_after_a_restart() {
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let dir = tempfile::Builder::new()
        .prefix("manimd-srv-")
        .tempdir()
        .unwrap();
    let config = manimd::config::Config::for_tests(dir.path().join("data"));
    let opts = ServeOptions {
        workers: 1,
        warm_pool: 0,
        webhooks: manimd::webhooks::WebhookConfig {
            secret: manimd::secret::Secret::new("outbox-secret"),
            allow_private: true,
            attempts: 20,
            backoff: Duration::from_millis(200),
        },
        ..ServeOptions::default()
    };
    let mut s = TestServer::start_on(config.clone(), opts.clone()).await;
    let id = s
        .submit(json!({"code": fixture("ce_shapes.py"), "webhook_url": hook}))
        .await;
    assert_eq!(s.wait_for(&id, None).await["status"], "succeeded");
    let failing = wait_webhook(&s, &id, |w| w["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(failing["state"], "pending", "{failing}");
    assert_eq!(failing["last_status"], 503, "{failing}");
    s.stop().await;

    // While the server is away the receiver comes up; the restarted server
    // finds the delivery in the store.
    *receiver.up.lock().unwrap() = true;
    let s = TestServer::start_on(config, opts).await;
    let done = wait_webhook(&s, &id, |w| w["state"] == "delivered").await;
    let answers = receiver.answers();
    assert_eq!(
        answers.iter().filter(|&&a| a == 204).count(),
        1,
        "delivered once: {answers:?}"
    );
    assert_eq!(answers.last(), Some(&204), "{answers:?}");
    assert_eq!(
        done["attempts"],
        answers.len(),
        "every attempt recorded: {done}"
    );
    assert_eq!(done["last_status"], 204);
    assert!(done["delivered_at"].is_string() && done["next_attempt_at"].is_null());
    let (_, body) = receiver.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (body["id"].as_str(), body["status"].as_str()),
        (Some(id.as_str()), Some("succeeded"))
    );
    assert!(
        body.get("webhook").is_none(),
        "the body is the job as it ended"
    );
}
