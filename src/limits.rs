//! Resource limits of one render, as plain data. The sandbox enforces them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one sandboxed process tree may use. The defaults suit renders up to
/// 1080p60 of a few minutes on a 2-core machine; the README lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time, measured by the supervisor: sleeping counts too.
    pub wall_secs: u64,
    /// Memory of the whole process tree, including its files (they live in
    /// memory); swap is not allowed.
    pub memory_mib: u64,
    /// Processes and threads together.
    pub pids: u64,
    /// Total size of everything the job may write.
    pub output_mib: u64,
    /// Number of files and directories the job may create.
    pub files: u64,
    /// Largest single file.
    pub file_size_mib: u64,
    /// Bytes of stdout/stderr kept (head and tail); the rest is drained and dropped.
    pub log_bytes: usize,
    /// Always false: kept as data so that it is visible where limits are shown.
    pub network: bool,
    /// CPU time per wall second, in thousandths of a CPU (`--cpus 1.5` is
    /// 1500); `None`: no CPU limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_secs: 600,
            memory_mib: 2048,
            pids: 256,
            output_mib: 1024,
            files: 20_000,
            file_size_mib: 1024,
            log_bytes: 64 * 1024,
            network: false,
            cpu_millis: None,
        }
    }
}

impl Limits {
    /// Sets the memory limit. The job's files live in memory too, so the
    /// output limit is kept to half of it: a full disk is then reported as
    /// `output-too-large`, not as running out of memory.
    pub fn set_memory_mib(&mut self, mib: u64) {
        self.memory_mib = mib;
        self.output_mib = self.output_mib.min(mib / 2).max(1);
        self.file_size_mib = self.file_size_mib.min(self.output_mib);
    }

    pub fn wall(&self) -> Duration {
        Duration::from_secs(self.wall_secs)
    }

    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib * 1024 * 1024
    }

    pub fn output_bytes(&self) -> u64 {
        self.output_mib * 1024 * 1024
    }

    pub fn file_size_bytes(&self) -> u64 {
        self.file_size_mib * 1024 * 1024
    }
}
