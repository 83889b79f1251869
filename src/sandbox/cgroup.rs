//! Per-job control groups: the memory (without swap) and process caps, the
//! out-of-memory verdict, and killing everything a job started.
//!
//! Both hierarchies are supported: cgroup v2 (most production hosts) and v1
//! with separate `memory` and `pids` controllers (older hosts, and ours).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::limits::Limits;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no usable cgroup hierarchy under {0}: need cgroup v2 with the memory and pids controllers, or v1 with memory and pids mounted")]
    NotFound(PathBuf),
    #[error("cannot set up cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Which cgroup layout the host has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// One unified tree.
    V2 { root: PathBuf },
    /// One tree per controller; `cpu` where that controller is mounted
    /// (needed only for a CPU limit).
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
    },
}

impl Hierarchy {
    /// Looks at the cgroup mount point (normally `/sys/fs/cgroup`).
    pub fn detect(mount: &Path) -> Result<Hierarchy, CgroupError> {
        let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        let words: Vec<&str> = controllers.split_whitespace().collect();
        if words.contains(&"memory") && words.contains(&"pids") {
            return Ok(Hierarchy::V2 {
                root: mount.to_owned(),
            });
        }
        let memory = mount.join("memory");
        let pids = mount.join("pids");
        if memory.join("memory.limit_in_bytes").exists() && pids.join("cgroup.procs").exists() {
            let cpu = Some(mount.join("cpu")).filter(|c| c.join("cpu.cfs_quota_us").exists());
            return Ok(Hierarchy::V1 { memory, pids, cpu });
        }
        Err(CgroupError::NotFound(mount.to_owned()))
    }

    pub fn version(&self) -> u8 {
        match self {
            Hierarchy::V2 { .. } => 2,
            Hierarchy::V1 { .. } => 1,
        }
    }

    /// The directories of a group named `rel` (one per controller tree).
    fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2 { root } => vec![root.join(rel)],
            Hierarchy::V1 { memory, pids, cpu } => {
                let mut dirs = vec![memory.join(rel), pids.join(rel)];
                dirs.extend(cpu.iter().map(|c| c.join(rel)));
                dirs
            }
        }
    }

    /// Creates the parent group under which job groups live.
    pub fn prepare_parent(&self, parent: &str) -> Result<(), CgroupError> {
        for dir in self.dirs(parent) {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        if let Hierarchy::V2 { root } = self {
            // v2 hands controllers down one level at a time; a job group can
            // only have memory and pids limits if every ancestor enables them.
            let mut level = root.clone();
            for part in Path::new(parent).components() {
                let control = level.join("cgroup.subtree_control");
                fs::write(&control, "+memory +pids").map_err(io_err(&control))?;
                level.push(part);
            }
            let control = level.join("cgroup.subtree_control");
            fs::write(&control, "+memory +pids").map_err(io_err(&control))?;
            // The CPU controller only where the host offers it: without it
            // renders run, but `--cpus` cannot be applied (see `create`).
            let mut level = root.clone();
            for part in Path::new(parent).components() {
                let _ = fs::write(level.join("cgroup.subtree_control"), "+cpu");
                level.push(part);
            }
            let _ = fs::write(level.join("cgroup.subtree_control"), "+cpu");
        }
        Ok(())
    }

    /// Job groups under `parent` whose names start with `prefix`.
    pub fn children(&self, parent: &str, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .dirs(parent)
            .iter()
            .filter_map(|d| fs::read_dir(d).ok())
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// One job's group. Dropping it does not remove it: call [`Cgroup::destroy`].
#[derive(Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    dirs: Vec<PathBuf>,
    memory_mib: u64,
}

impl Cgroup {
    /// Creates `parent/name` with the job's limits.
    pub fn create(
        hierarchy: &Hierarchy,
        parent: &str,
        name: &str,
        limits: &Limits,
    ) -> Result<Cgroup, CgroupError> {
        let rel = format!("{parent}/{name}");
        let dirs = hierarchy.dirs(&rel);
        for dir in &dirs {
            fs::create_dir(dir).map_err(io_err(dir))?;
        }
        let group = Cgroup {
            hierarchy: hierarchy.clone(),
            dirs,
            memory_mib: limits.memory_mib,
        };
        let memory = limits.memory_bytes().to_string();
        let pids = limits.pids.to_string();
        let applied = match hierarchy {
            Hierarchy::V2 { .. } => {
                let d = &group.dirs[0];
                write(d, "memory.max", &memory)
                    .and_then(|_| write(d, "memory.swap.max", "0").or_else(ignore_missing))
                    .and_then(|_| write(d, "pids.max", &pids))
                    .and_then(|_| match limits.cpu_millis {
                        // A quota per 100 ms period.
                        Some(m) => write(d, "cpu.max", &format!("{} 100000", m * 100)),
                        None => Ok(()),
                    })
            }
            Hierarchy::V1 { .. } => {
                let (m, p) = (&group.dirs[0], &group.dirs[1]);
                // memsw (memory + swap) equal to the memory limit means no
                // swap; the file is absent when swap accounting is off.
                write(m, "memory.limit_in_bytes", &memory)
                    .and_then(|_| {
                        write(m, "memory.memsw.limit_in_bytes", &memory).or_else(ignore_missing)
                    })
                    .and_then(|_| write(m, "memory.swappiness", "0").or_else(ignore_missing))
                    .and_then(|_| write(p, "pids.max", &pids))
                    .and_then(|_| match (limits.cpu_millis, group.dirs.get(2)) {
                        (Some(m), Some(c)) => write(c, "cpu.cfs_period_us", "100000")
                            .and_then(|_| write(c, "cpu.cfs_quota_us", &(m * 100).to_string())),
                        (Some(_), None) => Err(CgroupError::Io {
                            path: m.clone(),
                            source: io::Error::other(
                                "a CPU limit needs the cpu controller, which is not mounted",
                            ),
                        }),
                        (None, _) => Ok(()),
                    })
            }
        };
        if let Err(err) = applied {
            group.remove_dirs();
            return Err(err);
        }
        Ok(group)
    }

    /// Reopens an existing group, to reap it.
    pub fn open(hierarchy: &Hierarchy, parent: &str, name: &str) -> Cgroup {
        Cgroup {
            hierarchy: hierarchy.clone(),
            dirs: hierarchy.dirs(&format!("{parent}/{name}")),
            memory_mib: 0,
        }
    }

    /// Files that a process writes "0" to, to join this group. Prepared
    /// ahead because the child writes them between fork and exec.
    pub fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .map(|d| {
                CString::new(d.join("cgroup.procs").as_os_str().as_bytes())
                    .expect("no NUL in cgroup path")
            })
            .collect()
    }

    pub fn memory_limit_mib(&self) -> u64 {
        self.memory_mib
    }

    /// Processes in the group (read from the controller that tracks every task).
    pub fn pids(&self) -> Vec<i32> {
        let mut all: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Whether the kernel's OOM killer acted inside this group.
    pub fn oom_killed(&self) -> bool {
        let d = &self.dirs[0];
        let (file, key) = match self.hierarchy {
            Hierarchy::V2 { .. } => ("memory.events", "oom_kill"),
            Hierarchy::V1 { .. } => ("memory.oom_control", "oom_kill"),
        };
        counter(d, file, key) > 0
    }

    /// Whether a fork or thread was refused at the pids cap.
    pub fn pids_limit_hit(&self) -> bool {
        // v1: memory, pids (, cpu); v2: one directory.
        let d = self.dirs.get(1).unwrap_or(&self.dirs[0]);
        counter(d, "pids.events", "max") > 0
    }

    /// The group's peak memory use, where the kernel records it.
    pub fn peak_memory_bytes(&self) -> Option<u64> {
        let d = &self.dirs[0];
        let file = match self.hierarchy {
            Hierarchy::V2 { .. } => "memory.peak",
            Hierarchy::V1 { .. } => "memory.max_usage_in_bytes",
        };
        fs::read_to_string(d.join(file)).ok()?.trim().parse().ok()
    }

    /// The group's memory use now (processes, page cache and its files).
    pub fn current_memory_bytes(&self) -> u64 {
        let file = match self.hierarchy {
            Hierarchy::V2 { .. } => "memory.current",
            Hierarchy::V1 { .. } => "memory.usage_in_bytes",
        };
        fs::read_to_string(self.dirs[0].join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kills every process in the group.
    pub fn kill_all(&self) {
        if let Hierarchy::V2 { .. } = self.hierarchy {
            if fs::write(self.dirs[0].join("cgroup.kill"), "1").is_ok() {
                return;
            }
        }
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Kills what is left, waits until the group is empty, and removes it.
    /// A fork loop racing the kill is outlasted: each round kills what exists.
    pub async fn destroy(self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.kill_all();
            if self.pids().is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let d = &self.dirs[0];
                return Err(CgroupError::Io {
                    path: d.clone(),
                    source: io::Error::other("processes survive SIGKILL"),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // An emptied group can still be busy for a moment while the kernel
        // finishes tearing down the last task.
        for _ in 0..100 {
            if self.remove_dirs() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let d = &self.dirs[0];
        Err(CgroupError::Io {
            path: d.clone(),
            source: io::Error::other("cannot remove the emptied group"),
        })
    }

    /// Removes the group's directories; true when none is left.
    fn remove_dirs(&self) -> bool {
        let mut all = true;
        for d in &self.dirs {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => all = false,
            }
        }
        all
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|source| CgroupError::Io { path, source })
}

fn ignore_missing(err: CgroupError) -> Result<(), CgroupError> {
    match err {
        CgroupError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound => Ok(()),
        other => Err(other),
    }
}

/// A `key value` counter from a cgroup file, 0 when absent.
fn counter(dir: &Path, file: &str, key: &str) -> u64 {
    fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_v2_by_its_controllers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        assert_eq!(
            Hierarchy::detect(dir.path()).unwrap(),
            Hierarchy::V2 {
                root: dir.path().to_owned()
            }
        );
    }

    #[test]
    fn detects_v1_and_refuses_neither() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Hierarchy::detect(dir.path()).is_err());
        fs::create_dir_all(dir.path().join("memory")).unwrap();
        fs::create_dir_all(dir.path().join("pids")).unwrap();
        fs::write(dir.path().join("memory/memory.limit_in_bytes"), "").unwrap();
        fs::write(dir.path().join("pids/cgroup.procs"), "").unwrap();
        assert_eq!(Hierarchy::detect(dir.path()).unwrap().version(), 1);
    }

    #[test]
    fn reads_counters() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(counter(dir.path(), "memory.events", "oom_kill"), 1);
        assert_eq!(counter(dir.path(), "memory.events", "absent"), 0);
        assert_eq!(counter(dir.path(), "missing", "oom_kill"), 0);
    }
}
