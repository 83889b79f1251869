//! Scale-out: the job store on a real PostgreSQL, and nodes that share it.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::pg::Postgres;
use manimd::jobs::{JobId, JobStatus, NewJob, Store};
use manimd::spec::{Encoding, Engine, Format, Quality, RenderSpec};

fn spec(code: &str) -> RenderSpec {
    RenderSpec {
        code: code.into(),
        scenes: vec![],
        engine: Engine::Manim,
        quality: Quality::Low,
        format: Format::Mp4,
        fps: None,
        seed: None,
        encoding: Encoding::Final,
    }
}

fn new_job<'a>(id: &'a JobId, spec: &'a RenderSpec) -> NewJob<'a> {
    NewJob {
        id,
        spec,
        cache_key: "k",
        follows: None,
        owner: None,
        webhook_url: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_gives_each_job_to_one_claimer_and_fences_stale_workers() {
    let pg = Postgres::start();
    // Two nodes, each with its own pool; both migrate at start.
    let (a, b) = tokio::join!(Store::open(&pg.url), Store::open(&pg.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let s = spec("x");
    let mut ids = Vec::new();
    for _ in 0..40 {
        let id = JobId::new();
        a.insert(&new_job(&id, &s)).await.unwrap();
        ids.push(id);
    }
    let lease = Duration::from_secs(30);
    // Eight claimers race over both nodes' connections.
    let claimed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        let claimed = Arc::clone(&claimed);
        tasks.push(tokio::spawn(async move {
            while let Some(c) = store.claim(&format!("w{n}"), lease).await.unwrap() {
                claimed.lock().unwrap().push(c.job.id);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let unique: HashSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), 40, "every job claimed once: {claimed:?}");
    assert_eq!(unique.len(), 40);
    assert_eq!(b.count(JobStatus::Running).await.unwrap(), 40);

    // A lease that expires is reaped by any node; the old holder's writes
    // no longer count and the next claim is attempt 2.
    let id = &ids[0];
    let job = b.get(id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 1);
    let (requeued, failed) = b.reap_leases(true, 3).await.unwrap();
    assert_eq!((requeued.len(), failed.len()), (40, 0));
    let holder = a.claim("late", lease).await.unwrap().unwrap();
    assert_eq!(holder.attempt, 2);
    assert!(!a
        .finish(&holder.job.id, "w0", 1, JobStatus::Succeeded, None, None)
        .await
        .unwrap());
    assert!(b
        .finish(&holder.job.id, "late", 2, JobStatus::Succeeded, None, None)
        .await
        .unwrap());
    assert_eq!(
        a.get(&holder.job.id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );

    // Listing and paging run the same SQL on both databases.
    let page = a.list(None, None, 25, None).await.unwrap();
    assert_eq!(page.jobs.len(), 25);
    assert!(page.next_cursor.is_some());
    a.close().await;
    b.close().await;
}
