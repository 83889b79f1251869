//! Keys that requests brought, held in memory only for as long as their
//! job runs: never stored, never logged, never handed to a sandbox.

use std::collections::HashMap;
use std::sync::Mutex;

use super::JobId;
use crate::secret::Secret;

#[derive(Default)]
pub struct Keys {
    by_job: Mutex<HashMap<JobId, Secret>>,
}

impl Keys {
    pub fn insert(&self, id: &JobId, key: Secret) {
        self.by_job
            .lock()
            .expect("keys lock")
            .insert(id.clone(), key);
    }

    pub fn get(&self, id: &JobId) -> Option<Secret> {
        self.by_job.lock().expect("keys lock").get(id).cloned()
    }

    /// Forgets a job's key once the job has ended.
    pub fn remove(&self, id: &JobId) {
        self.by_job.lock().expect("keys lock").remove(id);
    }
}
