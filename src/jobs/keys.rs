//! Keys that requests brought, held in memory only for as long as their
//! job runs: never stored, never logged, never handed to a sandbox.

use std::collections::HashMap;
use std::sync::Mutex;

use super::JobId;
use crate::llm::Route;
use crate::secret::Secret;

/// Each key with the provider it is for: a request's route goes only with
/// its own key, so it is lost with the key in a restart, like the key.
#[derive(Default)]
pub struct Keys {
    by_job: Mutex<HashMap<JobId, (Secret, Route)>>,
}

impl Keys {
    pub fn insert(&self, id: &JobId, key: Secret, route: Route) {
        self.by_job
            .lock()
            .expect("keys lock")
            .insert(id.clone(), (key, route));
    }

    pub fn get(&self, id: &JobId) -> Option<(Secret, Route)> {
        self.by_job.lock().expect("keys lock").get(id).cloned()
    }

    /// Forgets a job's key once the job has ended.
    pub fn remove(&self, id: &JobId) {
        self.by_job.lock().expect("keys lock").remove(id);
    }
}
