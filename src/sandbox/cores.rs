//! Whole cores for renders with a CPU limit (`--cpus N`, N whole).
//!
//! A quota alone lets a render's threads (Python, the encoder's) wander
//! over every core in bursts and then wait out the rest of each period,
//! sharing caches with the other renders and the warm pool. Where the
//! limit is whole cores and enough are free, a running job is also kept on
//! cores of its own, as a static CPU manager gives a container exclusive
//! cores. Measured on the 2-core machine (`manimd bench --only chunked`,
//! BENCHMARKS.md run J against run I): the long scene at `high` with one
//! CPU took 24.3 s pinned against 25.7 s before (0.94x).
//!
//! Affinity is placement, not a limit: the quota stays the limit, and a
//! scene that widens its own affinity gains nothing beyond it.

use std::sync::{Arc, Mutex};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The cores this process may use that no running job holds.
#[derive(Debug)]
pub struct Cores {
    free: Mutex<Vec<usize>>,
}

/// Cores held by one running job, given back when dropped.
#[derive(Debug)]
pub struct Lease {
    cores: Vec<usize>,
    from: Arc<Cores>,
}

impl Cores {
    /// The cores this process is allowed to run on.
    pub fn of_this_process() -> Arc<Cores> {
        let set = sched_getaffinity(Pid::from_raw(0)).unwrap_or_else(|_| CpuSet::new());
        let all = (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false));
        Cores::of(all.collect())
    }

    pub fn of(cores: Vec<usize>) -> Arc<Cores> {
        Arc::new(Cores {
            free: Mutex::new(cores),
        })
    }

    /// `n` free cores, or none when fewer are free (the job then runs
    /// under its quota alone).
    pub fn lease(self: &Arc<Self>, n: usize) -> Option<Lease> {
        let mut free = self.free.lock().expect("cores lock");
        if n == 0 || free.len() < n {
            return None;
        }
        // The lowest first: a lone job lands on the same cores each time.
        free.sort_unstable();
        let cores = free.drain(..n).collect();
        Some(Lease {
            cores,
            from: Arc::clone(self),
        })
    }

    /// Cores free now.
    pub fn free(&self) -> usize {
        self.free.lock().expect("cores lock").len()
    }
}

impl Lease {
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// Keeps every thread of `pids` on the leased cores; new threads and
    /// children inherit it. Best effort: a task that has just exited is
    /// skipped.
    pub fn pin(&self, pids: &[i32]) {
        let mut set = CpuSet::new();
        for &c in &self.cores {
            let _ = set.set(c);
        }
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for tid in tasks
                .flatten()
                .filter_map(|t| t.file_name().to_str()?.parse().ok())
            {
                let _ = sched_setaffinity(Pid::from_raw(tid), &set);
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut free = self.from.free.lock().expect("cores lock");
        free.append(&mut self.cores);
    }
}

/// Whole cores in a CPU limit of `millis` thousandths, if it is whole.
pub fn whole(millis: Option<u64>) -> Option<usize> {
    millis
        .filter(|m| *m > 0 && m % 1000 == 0)
        .map(|m| (m / 1000) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_leased_whole_and_come_back() {
        let cores = Cores::of(vec![0, 1, 2]);
        let a = cores.lease(2).unwrap();
        assert_eq!(a.cores(), &[0, 1]);
        assert!(cores.lease(2).is_none(), "one core left");
        let b = cores.lease(1).unwrap();
        assert_eq!(b.cores(), &[2]);
        drop(a);
        assert_eq!(cores.free(), 2);
        assert_eq!(cores.lease(2).unwrap().cores(), &[0, 1]);
        assert!(cores.lease(0).is_none());
    }

    #[test]
    fn only_whole_limits_are_pinned() {
        assert_eq!(whole(Some(1000)), Some(1));
        assert_eq!(whole(Some(3000)), Some(3));
        assert_eq!(whole(Some(1500)), None);
        assert_eq!(whole(None), None);
    }
}
