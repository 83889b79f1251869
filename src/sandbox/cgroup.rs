//! Per-job control groups: the memory (without swap) and process caps, the
//! out-of-memory verdict, and killing everything a job started.
//!
//! Both hierarchies are supported: cgroup v2 (most production hosts) and v1
//! with separate `memory` and `pids` controllers (older hosts, and ours).
//!
//! Where job groups go is a [`Placement`]. On v2 manimd works inside its own
//! group when that group is delegated to it (systemd's `Delegate=yes`, or the
//! root of a container's cgroup namespace): its processes move to the leaf
//! `<own>/supervisor` (a group with controllers enabled for its children may
//! hold no process), `<own>` enables the controllers, and job groups live in
//! `<own>/jobs`, so the unit's or container's limits bound every render and
//! stopping the unit reaches them. Elsewhere (v1, the host's root cgroup, an
//! undelegated group) they live in `manimd` at the hierarchy's root, and
//! `--cgroup-parent` puts them anywhere. [`Placement::release`] undoes it all
//! on a graceful stop.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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

impl CgroupError {
    /// A group or file that is not there (a parent removed meanwhile).
    fn is_not_found(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
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

    /// The mount of each controller tree (one on v2).
    fn bases(&self) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2 { root } => vec![root.clone()],
            Hierarchy::V1 { memory, pids, cpu } => {
                let mut bases = vec![memory.clone(), pids.clone()];
                bases.extend(cpu.iter().cloned());
                bases
            }
        }
    }

    /// The directories of a group named `rel` (one per controller tree).
    fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        self.bases().iter().map(|b| b.join(rel)).collect()
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

/// The group that job groups go in when manimd works at the hierarchy's root.
pub const ROOT_PARENT: &str = "manimd";
/// In a delegated group: the leaf that manimd's own processes move to.
pub const SUPERVISOR_LEAF: &str = "supervisor";
/// In a delegated group: the parent of the job groups.
pub const JOBS_GROUP: &str = "jobs";
/// Controllers that every job group needs (`cpu` is enabled where offered).
const REQUIRED: [&str; 2] = ["memory", "pids"];

/// Why job groups are where they are, for `doctor` and the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Inside this process's own v2 group, delegated to it; `own` is
    /// relative to the mount ("" at the root of a cgroup namespace).
    Delegated { own: String },
    /// Where `--cgroup-parent` says.
    Configured,
    /// At the hierarchy's root, in [`ROOT_PARENT`]; `why` says why not in
    /// a delegated group.
    RootLevel { why: String },
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scheme::Delegated { own } => write!(
                f,
                "delegated: inside its own group /{own} (manimd itself in /{})",
                join(own, SUPERVISOR_LEAF)
            ),
            Scheme::Configured => write!(f, "set by --cgroup-parent"),
            Scheme::RootLevel { why } => write!(f, "root-level fallback: {why}"),
        }
    }
}

/// Where this process's job groups live, and what setting that up changed
/// (so that a graceful stop can undo it).
#[derive(Debug)]
pub struct Placement {
    pub hierarchy: Hierarchy,
    /// The job groups' parent, relative to the mount (to each controller's
    /// mount on v1).
    pub parent: String,
    pub scheme: Scheme,
    /// A v2 group (relative to the mount) whose processes move to its
    /// supervisor leaf before it enables controllers for its children.
    leaf_of: Option<String>,
    /// What [`Placement::prepare`] changed, for [`Placement::release`].
    changes: Mutex<Changes>,
}

#[derive(Debug, Default)]
struct Changes {
    /// Groups made, in the order they were made.
    created: Vec<PathBuf>,
    /// Controllers enabled in `leaf_of` after it was emptied.
    enabled_in_own: Vec<String>,
    /// Whether processes were moved to the supervisor leaf.
    moved: bool,
}

impl Placement {
    /// Decides where job groups go, changing nothing: `configured` (the
    /// `--cgroup-parent`) wins; else on v2 this process's own group when it
    /// is delegated to it; else [`ROOT_PARENT`] at the hierarchy's root.
    pub fn resolve(mount: &Path, configured: Option<&str>) -> Result<Placement, CgroupError> {
        let hierarchy = Hierarchy::detect(mount)?;
        let own = match &hierarchy {
            Hierarchy::V2 { root } => own_group(&read_self_cgroup())
                .filter(|own| root.join(own).join("cgroup.type").exists()),
            Hierarchy::V1 { .. } => None,
        };
        let (parent, scheme, leaf_of) = match (configured, &hierarchy) {
            (Some(parent), _) => {
                let parent = parent.trim_matches('/').to_owned();
                // A parent inside our own (non-root) group needs the leaf too.
                let leaf_of = own.filter(|o| o.is_empty() || parent.starts_with(&format!("{o}/")));
                (parent, Scheme::Configured, leaf_of)
            }
            (None, Hierarchy::V1 { .. }) => (
                ROOT_PARENT.to_owned(),
                Scheme::RootLevel {
                    why: "cgroup v1".into(),
                },
                None,
            ),
            (None, Hierarchy::V2 { root }) => match own.as_deref().map(|o| delegated(root, o)) {
                Some(Ok(())) => {
                    let own = own.expect("checked");
                    (
                        join(&own, JOBS_GROUP),
                        Scheme::Delegated { own: own.clone() },
                        Some(own),
                    )
                }
                Some(Err(why)) => (ROOT_PARENT.to_owned(), Scheme::RootLevel { why }, None),
                None => (
                    ROOT_PARENT.to_owned(),
                    Scheme::RootLevel {
                        why: "this process runs in the root cgroup".into(),
                    },
                    None,
                ),
            },
        };
        Ok(Placement {
            hierarchy,
            parent,
            scheme,
            leaf_of,
            changes: Mutex::default(),
        })
    }

    /// One line for `doctor` and the logs.
    pub fn describe(&self) -> String {
        format!(
            "v{}, job groups under /{} ({})",
            self.hierarchy.version(),
            self.parent,
            self.scheme
        )
    }

    /// Makes the job groups' parent with the memory and pids controllers
    /// (and cpu where offered) enabled down to it. Idempotent.
    pub fn prepare(&self) -> Result<(), CgroupError> {
        let mut changes = self.changes.lock().expect("cgroup lock");
        if let (Some(own), Hierarchy::V2 { root }) = (&self.leaf_of, &self.hierarchy) {
            // No internal processes: a group that enables controllers for
            // its children may hold none itself, so ours go to a leaf.
            let own_dir = root.join(own);
            let leaf = own_dir.join(SUPERVISOR_LEAF);
            make_dirs(root, &join(own, SUPERVISOR_LEAF), &mut changes.created)?;
            move_all(&own_dir, &leaf)?;
            changes.moved = true;
        }
        for base in self.hierarchy.bases() {
            make_dirs(&base, &self.parent, &mut changes.created)?;
        }
        if let Hierarchy::V2 { root } = &self.hierarchy {
            // v2 hands controllers down one level at a time: every level
            // from where we may write down to the parent enables them. In a
            // delegated group that starts at the group; levels above it
            // belong to systemd (or the container's host) and are only read.
            let start = match &self.scheme {
                Scheme::Delegated { own } => own.clone(),
                _ => String::new(),
            };
            for level in levels(&start, &self.parent) {
                let dir = root.join(&level);
                let mut enabled = enable(&dir, &REQUIRED)?;
                if offers(&dir, "cpu") {
                    // Without it renders run, but `--cpus` cannot apply.
                    enabled.extend(enable(&dir, &["cpu"]).unwrap_or_default());
                }
                if self.leaf_of.as_deref() == Some(level.as_str()) {
                    changes.enabled_in_own.extend(enabled);
                }
            }
        }
        Ok(())
    }

    /// Creates a job group `name` with `limits`, making the parent again
    /// where another process removed it meanwhile (each process removes an
    /// empty parent when it stops; see [`Placement::release`]).
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let mut tries = 0;
        loop {
            match Cgroup::create(&self.hierarchy, &self.parent, name, limits) {
                Err(e) if e.is_not_found() && tries < 5 => {
                    tries += 1;
                    self.prepare()?;
                }
                other => return other,
            }
        }
    }

    /// Reopens an existing job group, to reap it.
    pub fn open(&self, name: &str) -> Cgroup {
        Cgroup::open(&self.hierarchy, &self.parent, name)
    }

    /// Job groups whose names start with `prefix`.
    pub fn children(&self, prefix: &str) -> Vec<String> {
        self.hierarchy.children(&self.parent, prefix)
    }

    /// Undoes [`Placement::prepare`] as far as nothing else uses it: removes
    /// the job groups' parent when empty (at the root level whoever made it:
    /// the last instance to stop removes it), then, in a delegated group,
    /// disables what it enabled and moves the processes back out of the
    /// supervisor leaf. Call it once the job groups are gone.
    pub fn release(&self) {
        let mut changes = self.changes.lock().expect("cgroup lock");
        let leaf = match (&self.leaf_of, &self.hierarchy) {
            (Some(own), Hierarchy::V2 { root }) => Some(root.join(join(own, SUPERVISOR_LEAF))),
            _ => None,
        };
        let mut removable: Vec<PathBuf> = changes
            .created
            .iter()
            .filter(|d| Some(*d) != leaf.as_ref())
            .cloned()
            .collect();
        if let Scheme::RootLevel { .. } = self.scheme {
            removable.extend(self.hierarchy.dirs(&self.parent));
        }
        // Deepest first; a parent still holding another process's job groups stays.
        removable.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        removable.dedup();
        for dir in &removable {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => return,
            }
        }
        changes.created.retain(|d| Some(d) == leaf.as_ref());
        let Some(leaf) = leaf else { return };
        let Some(own) = leaf.parent() else { return };
        if !changes.moved {
            return;
        }
        if !changes.enabled_in_own.is_empty() {
            let off: Vec<String> = changes
                .enabled_in_own
                .iter()
                .map(|c| format!("-{c}"))
                .collect();
            if fs::write(own.join("cgroup.subtree_control"), off.join(" ")).is_err() {
                return;
            }
            changes.enabled_in_own.clear();
        }
        if move_all(&leaf, own).is_ok() && fs::remove_dir(&leaf).is_ok() {
            changes.moved = false;
            changes.created.clear();
        }
    }
}

/// `a/b`, or `b` when `a` is the root ("").
fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}/{b}")
    }
}

/// `start`, then each deeper level down to `parent` (which is below it).
fn levels(start: &str, parent: &str) -> Vec<String> {
    let rest = parent
        .strip_prefix(start)
        .unwrap_or(parent)
        .trim_start_matches('/');
    let mut level = start.to_owned();
    let mut all = vec![level.clone()];
    for part in rest.split('/').filter(|p| !p.is_empty()) {
        level = join(&level, part);
        all.push(level.clone());
    }
    // The parent itself enables them for the job groups.
    all
}

fn read_self_cgroup() -> String {
    fs::read_to_string("/proc/self/cgroup").unwrap_or_default()
}

/// This process's v2 group from `/proc/self/cgroup` (its `0::/path` line),
/// relative to the mount; a process already in its supervisor leaf (moved
/// there by this process or a former one) names the group above it.
fn own_group(proc_self_cgroup: &str) -> Option<String> {
    let path = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim()
        .trim_matches('/');
    if path.split('/').any(|p| p == "..") {
        // Outside our cgroup namespace: not ours to touch.
        return None;
    }
    let own = match path.rsplit_once('/') {
        Some((above, SUPERVISOR_LEAF)) => above,
        None if path == SUPERVISOR_LEAF => "",
        _ => path,
    };
    Some(own.to_owned())
}

/// Whether the v2 group `own` (not the host's root) is ours to divide:
/// the root of a cgroup namespace, or marked delegated by systemd, with
/// the needed controllers, and writable.
fn delegated(root: &Path, own: &str) -> Result<(), String> {
    let dir = root.join(own);
    let shown = format!("/{own}");
    if !REQUIRED.iter().all(|c| offers(&dir, c)) {
        return Err(format!(
            "its own group {shown} does not offer the memory and pids controllers"
        ));
    }
    let writable = [
        dir.clone(),
        dir.join("cgroup.procs"),
        dir.join("cgroup.subtree_control"),
    ]
    .iter()
    .all(|p| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok());
    if !writable {
        return Err(format!(
            "its own group {shown} is read-only (ProtectControlGroups=, or a container's read-only cgroup mount)"
        ));
    }
    if own.is_empty() || has_xattr(&dir, "trusted.delegate") || has_xattr(&dir, "user.delegate") {
        return Ok(());
    }
    Err(format!(
        "its own group {shown} is not delegated to it (systemd: Delegate=yes)"
    ))
}

/// Whether an extended attribute of `path` says "1" (systemd's markers).
fn has_xattr(path: &Path, name: &str) -> bool {
    let (Ok(path), Ok(name)) = (
        CString::new(path.as_os_str().as_bytes()),
        CString::new(name),
    ) else {
        return false;
    };
    let mut value = [0u8; 8];
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // kernel writes at most `value.len()` bytes into `value`.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    len > 0 && value[0] == b'1'
}

/// Whether a controller is available in `dir` (its `cgroup.controllers`),
/// so that `dir` can enable it for its children.
fn offers(dir: &Path, controller: &str) -> bool {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == controller)
}

/// Enables in `dir`'s children the `wanted` controllers not enabled yet
/// (writing nothing when all are: a level we may only read is left
/// alone); returns those it enabled.
fn enable(dir: &Path, wanted: &[&str]) -> Result<Vec<String>, CgroupError> {
    let control = dir.join("cgroup.subtree_control");
    let present = fs::read_to_string(&control).map_err(io_err(&control))?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| !present.split_whitespace().any(|p| p == **c))
        .map(|c| c.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let line: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    fs::write(&control, line.join(" ")).map_err(io_err(&control))?;
    Ok(missing)
}

/// Makes each missing level of `rel` under `base`, recording those made.
fn make_dirs(base: &Path, rel: &str, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let mut dir = base.to_owned();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
    }
    Ok(())
}

/// Moves every process of the v2 group `from` to `to`, including any that
/// appear meanwhile; one that exits first is no error.
fn move_all(from: &Path, to: &Path) -> Result<(), CgroupError> {
    let target = to.join("cgroup.procs");
    for _ in 0..50 {
        let procs = from.join("cgroup.procs");
        let pids: Vec<String> = fs::read_to_string(&procs)
            .map_err(io_err(&procs))?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match fs::write(&target, &pid) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(io_err(&target)(e)),
            }
        }
    }
    Err(CgroupError::Io {
        path: from.to_owned(),
        source: io::Error::other("processes keep appearing in it"),
    })
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
        for (i, dir) in dirs.iter().enumerate() {
            if let Err(e) = fs::create_dir(dir) {
                // v1: none of the trees may keep a half-made group.
                for made in &dirs[..i] {
                    let _ = fs::remove_dir(made);
                }
                return Err(io_err(dir)(e));
            }
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

    /// Gives the group's processes the least CPU time when others want it
    /// (`low`), or the ordinary share. A warm sandbox imports its engine at
    /// the least share, so that filling the pool only takes CPU that no
    /// render wants. Where the cpu controller is absent there is nothing to
    /// set: a scheduling preference, not a limit.
    pub fn set_cpu_share(&self, low: bool) -> Result<(), CgroupError> {
        match self.hierarchy {
            // cpu.weight: 1 to 10000, 100 by default.
            Hierarchy::V2 { .. } => {
                write(&self.dirs[0], "cpu.weight", if low { "1" } else { "100" })
                    .or_else(ignore_missing)
            }
            // cpu.shares: 2 at the least, 1024 by default.
            Hierarchy::V1 { .. } => match self.dirs.get(2) {
                Some(c) => write(c, "cpu.shares", if low { "2" } else { "1024" }),
                None => Ok(()),
            },
        }
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
        // A killed task is gone within a millisecond or two: the waits
        // start there and grow to 10 ms, so a sandbox's end (an
        // inspection's answer among them) is not held a whole 10 ms.
        let mut pause = Duration::from_millis(1);
        let mut wait = || {
            let this = pause;
            pause = (pause * 2).min(Duration::from_millis(10));
            tokio::time::sleep(this)
        };
        let failed = |why: &str| CgroupError::Io {
            path: self.dirs[0].clone(),
            source: io::Error::other(why.to_owned()),
        };
        loop {
            self.kill_all();
            if self.pids().is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(failed("processes survive SIGKILL"));
            }
            wait().await;
        }
        // An emptied group can still be busy for a moment while the kernel
        // finishes tearing down the last task.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            if self.remove_dirs() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed("cannot remove the emptied group"));
            }
            wait().await;
        }
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
    fn finds_its_own_group_and_looks_past_its_supervisor_leaf() {
        let v1_hybrid = "4:memory:/x\n1:cpu:/\n0::/\n";
        assert_eq!(own_group(v1_hybrid).as_deref(), Some(""));
        let unit = "0::/system.slice/manimd.service\n";
        assert_eq!(
            own_group(unit).as_deref(),
            Some("system.slice/manimd.service")
        );
        let moved = "0::/system.slice/manimd.service/supervisor\n";
        assert_eq!(
            own_group(moved).as_deref(),
            Some("system.slice/manimd.service")
        );
        assert_eq!(own_group("0::/supervisor\n").as_deref(), Some(""));
        assert_eq!(own_group("0::/../outside\n"), None);
        assert_eq!(own_group("4:memory:/x\n"), None);
    }

    #[test]
    fn controllers_are_enabled_from_the_first_writable_level_down() {
        assert_eq!(levels("", "manimd"), ["", "manimd"]);
        assert_eq!(
            levels("a.slice/m.service", "a.slice/m.service/jobs"),
            ["a.slice/m.service", "a.slice/m.service/jobs"]
        );
        assert_eq!(levels("", "jobs"), ["", "jobs"]);
    }

    /// A v2 group as the kernel shows it to its delegatee.
    fn fake_group(dir: &Path, controllers: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        fs::write(dir.join("cgroup.type"), "domain\n").unwrap();
    }

    #[test]
    fn a_group_is_divided_only_when_delegated_with_the_controllers() {
        let root = tempfile::tempdir().unwrap();
        let unit = "system.slice/manimd.service";
        let dir = root.path().join(unit);
        fake_group(&dir, "cpu memory pids\n");
        let why = delegated(root.path(), unit).unwrap_err();
        assert!(why.contains("Delegate=yes"), "{why}");
        // systemd marks a Delegate=yes unit's group (user.delegate is the
        // one a test may set).
        let marked = CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated strings and a 1-byte value that outlive the call.
        let set = unsafe {
            libc::setxattr(
                marked.as_ptr(),
                c"user.delegate".as_ptr(),
                b"1".as_ptr().cast(),
                1,
                0,
            )
        };
        if set == 0 {
            assert_eq!(delegated(root.path(), unit), Ok(()));
        }
        // A namespace's root needs no mark, but the controllers.
        fake_group(root.path(), "cpu io\n");
        let why = delegated(root.path(), "").unwrap_err();
        assert!(why.contains("memory and pids"), "{why}");
        fs::write(root.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        assert_eq!(delegated(root.path(), ""), Ok(()));
    }

    #[test]
    fn enabling_writes_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("cgroup.subtree_control");
        fs::write(&control, "memory pids\n").unwrap();
        assert!(enable(dir.path(), &REQUIRED).unwrap().is_empty());
        assert_eq!(fs::read_to_string(&control).unwrap(), "memory pids\n");
        fs::write(&control, "pids\n").unwrap();
        assert_eq!(enable(dir.path(), &REQUIRED).unwrap(), ["memory"]);
        assert_eq!(fs::read_to_string(&control).unwrap(), "+memory");
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
