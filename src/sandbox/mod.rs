//! Runs one untrusted command under bubblewrap, confined by a per-job cgroup
//! and a capped, private writable area, and says how it ended.
//!
//! The sandbox has no network, no capabilities, an unprivileged uid, its own
//! pid, IPC, UTS and mount namespaces, a read-only view of only what
//! rendering needs, and an environment of allow-listed variables. The
//! supervisor enforces the wall clock, kills the whole process tree, and
//! leaves nothing behind: no process, cgroup, mount or file.

pub mod area;
pub mod capture;
pub mod cgroup;
pub mod cores;
pub mod seccomp;

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::job_error::ErrorCode;
use crate::limits::Limits;
use crate::process::{self, Confinement};
use area::Area;
use capture::Captured;
use cgroup::{Cgroup, CgroupError, Placement};

/// Longest line of a sandbox's stdout that is delivered; a longer line is
/// dropped whole, so nothing downstream parses an unbounded line.
pub const MAX_LINE: usize = 64 * 1024;

/// A fresh name for a sandbox run (its cgroup and area).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Where and as whom sandboxes run.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The bubblewrap binary.
    pub bwrap: PathBuf,
    /// The host uid and gid that sandboxed code runs as. Never 0.
    pub uid: u32,
    pub gid: u32,
    /// The cgroup mount point, normally `/sys/fs/cgroup`.
    pub cgroup_mount: PathBuf,
    /// The group under which job groups are created (`--cgroup-parent`);
    /// `None` chooses (see [`Placement::resolve`]).
    pub cgroup_parent: Option<String>,
    /// Where job areas are mounted.
    pub areas_dir: PathBuf,
    /// Prefix of this installation's job groups and areas, so that reaping
    /// leftovers never touches another instance's jobs.
    pub instance: String,
}

/// Failures to set a sandbox up: the service's fault, never the scene's.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("bubblewrap is not installed at {0} (run scripts/setup.sh)")]
    NoBwrap(PathBuf),
    #[error(
        "the sandbox must be started as root, to create cgroups and mounts and to drop to uid {0}"
    )]
    NotRoot(u32),
    #[error("the sandbox uid and gid must not be 0")]
    RootSandboxUser,
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("cannot prepare the job area {0}: {1}")]
    Area(PathBuf, io::Error),
    #[error("cannot start bubblewrap: {0}")]
    Spawn(io::Error),
}

/// Why the supervisor stopped a run, or what it found when the run failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum Stopped {
    #[error("the render ran past its wall-clock limit of {limit_secs} s")]
    Timeout { limit_secs: u64 },
    #[error("the render ran out of memory: it is limited to {limit_mib} MiB")]
    OutOfMemory { limit_mib: u64 },
    #[error("the render wrote more than it may: {limit_mib} MiB, {limit_files} files, {file_limit_mib} MiB per file")]
    OutputTooLarge {
        limit_mib: u64,
        limit_files: u64,
        file_limit_mib: u64,
    },
    #[error("the render tried to run more than {limit} processes and threads")]
    ProcessLimit { limit: u64 },
    #[error("the render was killed by signal {signal}")]
    Killed { signal: i32 },
    #[error("the render was canceled")]
    Canceled,
}

impl Stopped {
    pub fn code(&self) -> ErrorCode {
        match self {
            Stopped::Timeout { .. } => ErrorCode::Timeout,
            Stopped::OutOfMemory { .. } => ErrorCode::OutOfMemory,
            Stopped::OutputTooLarge { .. } => ErrorCode::OutputTooLarge,
            Stopped::ProcessLimit { .. } => ErrorCode::ProcessLimit,
            Stopped::Killed { .. } => ErrorCode::Killed,
            Stopped::Canceled => ErrorCode::Canceled,
        }
    }
}

/// What to run inside.
#[derive(Clone, Debug)]
pub struct Command {
    /// The program, as a path inside the sandbox.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The complete environment inside (on top of nothing).
    pub env: Vec<(String, String)>,
    /// Extra read-only binds: (host path, path inside).
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
}

/// A sandbox that is running but has not been given its input yet.
/// Pass it to [`Sandbox::finish`] or [`Sandbox::discard`]; if it is merely
/// dropped, its processes are killed and its group is removed in the background.
pub struct Started {
    name: String,
    area: Option<Area>,
    group: Option<Cgroup>,
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: capture::LineReader<tokio::process::ChildStdout>,
    stderr_task: Option<tokio::task::JoinHandle<Captured>>,
    /// When it was started, for idle timeouts.
    created: Instant,
}

impl Started {
    pub fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }

    /// The host side of the sandbox's read-only view (`Area::view`).
    pub fn view(&self) -> Option<PathBuf> {
        self.area.as_ref().map(Area::view)
    }

    /// The host side of the sandbox's read-only project (`Area::project`).
    pub fn project(&self) -> Option<PathBuf> {
        self.area.as_ref().map(Area::project)
    }

    /// Lowers (`low`) or restores the sandbox's share of the CPU
    /// (`Cgroup::set_cpu_share`). Best effort: a failure is logged, never a
    /// render's error.
    pub fn set_cpu_share(&self, low: bool) {
        if let Some(Err(err)) = self.group.as_ref().map(|g| g.set_cpu_share(low)) {
            tracing::debug!(%err, low, "cannot set a sandbox's CPU share");
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Some(group) = self.group.take() {
            group.kill_all();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = group.destroy().await;
                });
            }
        }
    }
}

/// A run that has ended, with its area still mounted for collection.
pub struct Finished {
    /// The area; dropping it unmounts and removes it.
    pub area: Area,
    /// The program's exit code (128 + N when killed by signal N).
    pub exit_code: Option<i32>,
    /// Set when the run did not exit 0 and the supervisor knows why.
    pub stopped: Option<Stopped>,
    pub stderr: Captured,
    pub peak_memory_bytes: Option<u64>,
    pub wall: Duration,
}

/// What a start-up reap removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    pub cgroups: usize,
    pub areas: usize,
}

/// Host paths that rendering reads, bound read-only when they exist.
const SYSTEM_RO: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/texmf",
    "/var/lib/texmf",
    "/var/cache/fontconfig",
];

impl SandboxConfig {
    /// Where job groups go, without changing anything.
    pub fn placement(&self) -> Result<Placement, CgroupError> {
        Placement::resolve(&self.cgroup_mount, self.cgroup_parent.as_deref())
    }

    /// This instance's job groups that exist now.
    pub fn job_groups(&self) -> Vec<String> {
        self.placement()
            .map(|p| p.children(&format!("{}-", self.instance)))
            .unwrap_or_default()
    }
}

pub struct Sandbox {
    cfg: SandboxConfig,
    /// Where job groups go (and what was set up for them).
    placement: Placement,
    /// Names of the job groups that exist now, for memory reporting.
    active: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Sandboxes started since this process began.
    started_total: std::sync::atomic::AtomicU64,
    /// Cores that running jobs with a whole-core CPU limit are kept on.
    cores: std::sync::Arc<cores::Cores>,
}

impl Sandbox {
    pub fn new(cfg: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if !cfg.bwrap.exists() {
            return Err(SandboxError::NoBwrap(cfg.bwrap));
        }
        if cfg.uid == 0 || cfg.gid == 0 {
            return Err(SandboxError::RootSandboxUser);
        }
        if !nix::unistd::geteuid().is_root() {
            return Err(SandboxError::NotRoot(cfg.uid));
        }
        let placement = cfg.placement()?;
        placement.prepare()?;
        tracing::debug!(cgroups = %placement.describe(), "job groups");
        std::fs::create_dir_all(&cfg.areas_dir)
            .map_err(|e| SandboxError::Area(cfg.areas_dir.clone(), e))?;
        Ok(Sandbox {
            cfg,
            placement,
            active: Default::default(),
            started_total: Default::default(),
            cores: cores::Cores::of_this_process(),
        })
    }

    pub fn cgroup_version(&self) -> u8 {
        self.placement.hierarchy.version()
    }

    /// Where job groups go, for the logs.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Sandboxes started since this process began.
    pub fn started_total(&self) -> u64 {
        self.started_total
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Memory used by all running sandboxes now.
    pub fn memory_in_use(&self) -> u64 {
        let names: Vec<String> = self
            .active
            .lock()
            .expect("active lock")
            .iter()
            .cloned()
            .collect();
        names
            .iter()
            .map(|n| self.placement.open(n).current_memory_bytes())
            .sum()
    }

    fn name(&self, id: &str) -> String {
        format!("{}-{id}", self.cfg.instance)
    }

    /// Runs `cmd` as job `id` with `stdin` as its input. Protocol lines from
    /// its stdout go to `on_line`; `cancel` resolving stops the run.
    pub async fn run(
        &self,
        id: &str,
        cmd: &Command,
        stdin: Vec<u8>,
        limits: &Limits,
        on_line: impl FnMut(&[u8], &Area),
        cancel: impl Future<Output = ()>,
    ) -> Result<Finished, SandboxError> {
        let started = self.start(id, cmd, limits).await?;
        self.finish(started, stdin, limits, on_line, cancel).await
    }

    /// Starts `cmd` in a fresh sandbox without giving it any input yet: a
    /// warm sandbox waits this way for its job. Limits other than the wall
    /// clock apply from now; the wall clock starts in [`Sandbox::finish`].
    pub async fn start(
        &self,
        id: &str,
        cmd: &Command,
        limits: &Limits,
    ) -> Result<Started, SandboxError> {
        let name = self.name(id);
        let root = self.cfg.areas_dir.join(&name);
        let area = Area::create(root.clone(), limits, self.cfg.uid, self.cfg.gid)
            .map_err(|e| SandboxError::Area(root, e))?;
        let group = self.placement.create(&name, limits)?;
        self.active
            .lock()
            .expect("active lock")
            .insert(name.clone());
        let filter = match seccomp::pipe() {
            Ok(fd) => fd,
            Err(err) => {
                self.active.lock().expect("active lock").remove(&name);
                let _ = group.destroy().await;
                return Err(SandboxError::Spawn(err));
            }
        };
        let filter_fd = std::os::fd::AsRawFd::as_raw_fd(&filter);
        let confinement = Confinement {
            cgroup_procs: group.procs_files(),
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            max_file_bytes: limits.file_size_bytes(),
            inherit_fd: Some(filter_fd),
        };
        let args = self.bwrap_args(&area, cmd, filter_fd);
        let spawned = process::spawn_confined(&self.cfg.bwrap, &args, &[], confinement);
        // bubblewrap has its own copy now (or none: it failed to start).
        drop(filter);
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                self.active.lock().expect("active lock").remove(&name);
                let _ = group.destroy().await;
                return Err(SandboxError::Spawn(err));
            }
        };
        self.started_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_task = tokio::spawn(capture::capture(stderr, limits.log_bytes));
        Ok(Started {
            name,
            area: Some(area),
            group: Some(group),
            child,
            stdin: Some(stdin),
            stdout: capture::LineReader::new(stdout, MAX_LINE),
            stderr_task: Some(stderr_task),
            created: Instant::now(),
        })
    }

    /// Reads protocol lines of a started sandbox until `want` accepts one,
    /// for at most `timeout`. False when the sandbox ended or took too long.
    pub async fn wait_for_line(
        &self,
        started: &mut Started,
        timeout: std::time::Duration,
        mut want: impl FnMut(&[u8]) -> bool,
    ) -> bool {
        let wait = async {
            while let Some(line) = started.stdout.next_line().await {
                if want(&line) {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Gives a started sandbox its input and runs it to the end, under the
    /// wall clock, which starts now. `on_line` gets each protocol line and
    /// the area, so that finished pieces can be collected while it runs.
    pub async fn finish(
        &self,
        mut s: Started,
        input: Vec<u8>,
        limits: &Limits,
        mut on_line: impl FnMut(&[u8], &Area),
        cancel: impl Future<Output = ()>,
    ) -> Result<Finished, SandboxError> {
        let began = Instant::now();
        // Held until the job has ended (see `cores`).
        let _cores = cores::whole(limits.cpu_millis)
            .and_then(|n| self.cores.lease(n))
            .inspect(|lease| {
                if let Some(group) = &s.group {
                    lease.pin(&group.pids());
                }
            });
        let mut stdin = s.stdin.take().expect("input is given once");
        let feeder = tokio::spawn(async move {
            // A scene that exits early closes its stdin; that is not our error.
            let _ = stdin.write_all(&input).await;
        });
        enum End {
            Exited,
            TimedOut,
            Canceled,
        }
        let end = {
            let stdout = &mut s.stdout;
            let child = &mut s.child;
            let area = s.area.as_ref().expect("a live sandbox has its area");
            let run = async {
                while let Some(line) = stdout.next_line().await {
                    on_line(&line, area);
                }
                child.wait().await
            };
            tokio::select! {
                _ = run => End::Exited,
                _ = tokio::time::sleep(limits.wall()) => End::TimedOut,
                _ = cancel => End::Canceled,
            }
        };
        // Whatever happened, nothing of the job may outlive this point.
        let group = s.group.take().expect("a live sandbox has its group");
        let area = s.area.take().expect("a live sandbox has its area");
        group.kill_all();
        let _ = s.child.start_kill();
        let status = s.child.wait().await.ok();
        feeder.abort();
        let stderr = match s.stderr_task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Captured::default(),
        };
        let exit_code = status.map(exit_code);

        let stopped = match end {
            End::TimedOut => Some(Stopped::Timeout {
                limit_secs: limits.wall_secs,
            }),
            End::Canceled => Some(Stopped::Canceled),
            End::Exited if exit_code == Some(0) => None,
            End::Exited => self.attribute(&group, &area, exit_code, limits),
        };
        let peak_memory_bytes = group.peak_memory_bytes();
        self.active.lock().expect("active lock").remove(&s.name);
        group.destroy().await?;
        Ok(Finished {
            area,
            exit_code,
            stopped,
            stderr,
            peak_memory_bytes,
            wall: began.elapsed(),
        })
    }

    /// Ends a started sandbox that will not be used (an idle warm one).
    pub async fn discard(&self, mut s: Started) {
        let _ = s.child.start_kill();
        if let Some(group) = s.group.take() {
            group.kill_all();
            let _ = s.child.wait().await;
            self.active.lock().expect("active lock").remove(&s.name);
            if let Err(err) = group.destroy().await {
                tracing::warn!(%err, "cannot remove a discarded sandbox's cgroup");
            }
        }
        // The area unmounts when dropped.
    }

    /// Explains a failed exit by what the kernel recorded, most specific first.
    fn attribute(
        &self,
        group: &Cgroup,
        area: &Area,
        exit_code: Option<i32>,
        limits: &Limits,
    ) -> Option<Stopped> {
        // A fork bomb also exhausts memory, so the process cap is checked first.
        if group.pids_limit_hit() {
            return Some(Stopped::ProcessLimit { limit: limits.pids });
        }
        if group.oom_killed() {
            return Some(Stopped::OutOfMemory {
                limit_mib: group.memory_limit_mib(),
            });
        }
        if area.is_full() || exit_code == Some(128 + libc::SIGXFSZ) {
            return Some(Stopped::OutputTooLarge {
                limit_mib: limits.output_mib,
                limit_files: limits.files,
                file_limit_mib: limits.file_size_mib,
            });
        }
        match exit_code {
            Some(code) if code > 128 && code < 128 + 65 => {
                Some(Stopped::Killed { signal: code - 128 })
            }
            _ => None,
        }
    }

    fn bwrap_args(&self, area: &Area, cmd: &Command, seccomp_fd: i32) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&dyn AsRef<std::ffi::OsStr>]| {
            a.extend(parts.iter().map(|p| p.as_ref().to_owned()));
        };
        let uid = self.cfg.uid.to_string();
        let gid = self.cfg.gid.to_string();
        push(&[
            &"--unshare-all",
            &"--unshare-user",
            &"--disable-userns",
            &"--die-with-parent",
            &"--new-session",
            &"--cap-drop",
            &"ALL",
            &"--uid",
            &uid,
            &"--gid",
            &gid,
            &"--hostname",
            &"sandbox",
            &"--ro-bind",
            &"/usr",
            &"/usr",
            &"--symlink",
            &"usr/lib",
            &"/lib",
            &"--symlink",
            &"usr/bin",
            &"/bin",
            &"--symlink",
            &"usr/sbin",
            &"/sbin",
        ]);
        if Path::new("/usr/lib64").exists() {
            push(&[&"--symlink", &"usr/lib64", &"/lib64"]);
        }
        for path in SYSTEM_RO {
            push(&[&"--ro-bind-try", path, path]);
        }
        for (host, inside) in &cmd.ro_binds {
            push(&[&"--ro-bind", host, inside]);
        }
        push(&[&"--proc", &"/proc", &"--dev", &"/dev"]);
        for (dir, inside) in area::BINDS {
            let host = area.root().join(dir);
            push(&[&"--bind", &host, &inside]);
        }
        push(&[&"--ro-bind", &area.view(), &area::VIEW_MOUNT]);
        push(&[&"--ro-bind", &area.project(), &area::PROJECT_MOUNT]);
        let seccomp_fd = seccomp_fd.to_string();
        push(&[&"--seccomp", &seccomp_fd]);
        push(&[&"--chdir", &"/job"]);
        for (k, v) in &cmd.env {
            push(&[&"--setenv", k, v]);
        }
        push(&[&"--", &cmd.program]);
        for arg in &cmd.args {
            push(&[arg]);
        }
        a
    }

    /// Removes what a previous process of this instance left: job groups
    /// (killing anything still in them) and mounted areas.
    pub async fn reap(&self) -> Reaped {
        let mut reaped = Reaped::default();
        let prefix = format!("{}-", self.cfg.instance);
        for name in self.placement.children(&prefix) {
            let group = self.placement.open(&name);
            match group.destroy().await {
                Ok(()) => reaped.cgroups += 1,
                Err(err) => tracing::warn!(%name, %err, "cannot reap a job cgroup"),
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.cfg.areas_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                // A view goes with its area.
                if name.to_str().is_some_and(|n| {
                    n.starts_with(&prefix)
                        && !n.ends_with(area::VIEW_SUFFIX)
                        && !n.ends_with(area::PROJECT_SUFFIX)
                }) {
                    match Area::reap(&entry.path()) {
                        Ok(()) => reaped.areas += 1,
                        Err(err) => {
                            tracing::warn!(area = ?entry.path(), %err, "cannot reap a job area")
                        }
                    }
                }
            }
        }
        reaped
    }

    /// At a graceful stop, once no render runs: removes any job group of
    /// this instance still there (a render whose task ended before its
    /// sandbox was taken down, whose removal was left to a task that the
    /// ending runtime never runs), then the job groups' parent and, in a
    /// delegated group, the supervisor leaf ([`Placement::release`]).
    pub async fn close(&self) {
        let left = self.reap().await;
        if left.cgroups > 0 {
            tracing::debug!(cgroups = left.cgroups, "removed job groups at stop");
        }
        self.release();
    }

    /// Undoes what starting prepared for job groups (their parent, once no
    /// group is left in it), without reaping: for a sandbox whose jobs have
    /// all ended.
    pub fn release(&self) {
        self.placement.release();
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
