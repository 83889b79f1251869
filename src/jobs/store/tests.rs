//! The store's behaviour on a real SQLite file: leases, fencing, reaping
//! and followers.

use super::*;
use crate::job_error::ErrorCode;
use crate::project::{Digest, FileRef};
use crate::spec::{Encoding, Engine, Format, Quality};

fn spec() -> RenderSpec {
    RenderSpec {
        parallel: Default::default(),
        project: None,
        code: "x".into(),
        scenes: vec![],
        engine: Engine::Manim,
        quality: Quality::Low,
        format: Format::Mp4,
        fps: None,
        seed: None,
        encoding: Encoding::Final,
        narration: false,
        cache: true,
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

/// A store in a fresh SQLite file, with the folder that holds it.
async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("jobs.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn an_inserted_job_is_the_row_read_back() {
    let (_dir, store) = sqlite().await;
    let project = crate::project::Project {
        main: "scene.py".into(),
        files: [
            ("helpers.py".to_owned(), FileRef::Text("X = 1\n".into())),
            ("img/a.png".to_owned(), FileRef::Blob(Digest::of(b"png"))),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let with_project = RenderSpec {
        project: Some(project),
        seed: Some(7),
        ..spec()
    };
    let (leader, id) = (JobId::new(), JobId::new());
    store
        .insert(&new_job(&leader, &with_project))
        .await
        .unwrap();
    let new = NewJob {
        follows: Some(&leader),
        owner: Some("key-1"),
        webhook_url: Some("http://example.test/hook"),
        ..new_job(&id, &with_project)
    };
    let inserted = store.insert(&new).await.unwrap();
    assert_eq!(Some(inserted), store.get(&id).await.unwrap());
    let (plain_id, plain_spec) = (JobId::new(), spec());
    let plain = store
        .insert(&new_job(&plain_id, &plain_spec))
        .await
        .unwrap();
    assert_eq!(Some(plain.clone()), store.get(&plain.id).await.unwrap());
}

#[tokio::test]
async fn interrupted_jobs_run_again_then_fail_after_their_attempts() {
    let (_dir, store) = sqlite().await;
    let (id, spec) = (JobId::new(), spec());
    store.insert(&new_job(&id, &spec)).await.unwrap();
    let lease = Duration::from_secs(30);

    let first = store.claim("a", lease).await.unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    // A process that started while the job was running reaps its lease.
    let (requeued, failed) = store.reap_leases(true, 2).await.unwrap();
    assert_eq!((requeued.len(), failed.len()), (1, 0));
    // The stale worker's writes no longer count.
    assert!(!store
        .finish(&id, "a", 1, JobStatus::Succeeded, None, None)
        .await
        .unwrap());
    assert!(!store.heartbeat(&id, "a", 1, lease).await.unwrap());

    let second = store.claim("b", lease).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    let (requeued, failed) = store.reap_leases(true, 2).await.unwrap();
    assert_eq!((requeued.len(), failed.len()), (0, 1));
    let job = store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code, ErrorCode::Interrupted);
    assert!(store.claim("c", lease).await.unwrap().is_none());
}

#[tokio::test]
async fn followers_are_not_claimed_until_released() {
    let (_dir, store) = sqlite().await;
    let spec = spec();
    let (leader, follower) = (JobId::new(), JobId::new());
    store.insert(&new_job(&leader, &spec)).await.unwrap();
    let mut f = new_job(&follower, &spec);
    f.follows = Some(&leader);
    store.insert(&f).await.unwrap();
    assert_eq!(store.in_flight("k").await.unwrap(), Some(leader.clone()));
    let lease = Duration::from_secs(30);
    assert_eq!(
        store.claim("a", lease).await.unwrap().unwrap().job.id,
        leader
    );
    assert!(
        store.claim("a", lease).await.unwrap().is_none(),
        "the follower waits"
    );
    assert_eq!(
        store.followers(&leader).await.unwrap(),
        vec![follower.clone()]
    );
    store.unfollow(Some(&leader)).await.unwrap();
    assert_eq!(
        store.claim("a", lease).await.unwrap().unwrap().job.id,
        follower
    );
}

#[tokio::test]
async fn followers_of_a_leader_that_ended_without_them_are_released() {
    let (_dir, store) = sqlite().await;
    let (leader, follower, waiting) = (JobId::new(), JobId::new(), JobId::new());
    let spec = spec();
    store.insert(&new_job(&leader, &spec)).await.unwrap();
    for id in [&follower, &waiting] {
        let mut f = new_job(id, &spec);
        f.follows = Some(&leader);
        store.insert(&f).await.unwrap();
    }
    let lease = Duration::from_secs(30);
    let claimed = store.claim("a", lease).await.unwrap().unwrap();
    // While the leader runs, its followers wait.
    assert_eq!(store.unfollow_ended().await.unwrap(), 0);
    // It ends, and its node dies before handing out the outcome.
    assert!(store
        .finish(
            &leader,
            "a",
            claimed.attempt,
            JobStatus::Succeeded,
            None,
            None
        )
        .await
        .unwrap());
    assert_eq!(store.unfollow_ended().await.unwrap(), 2);
    let next = store.claim("b", lease).await.unwrap().unwrap();
    assert!(next.job.id == follower || next.job.id == waiting);
    // A late hand-out no longer ends a job that a worker claimed.
    assert!(!store
        .finish_follower(&next.job.id, JobStatus::Succeeded, None, None)
        .await
        .unwrap());
}
