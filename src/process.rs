//! The only module that starts processes. Children are killed when their
//! handle is dropped, run with an explicit environment, and their output is
//! drained concurrently so that no child can block on a full pipe.

use std::ffi::{CString, OsStr};
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// How a sandboxed child is placed before it execs: into its cgroups, with
/// resource limits, under the sandbox's unprivileged uid and gid.
pub struct Confinement {
    /// `cgroup.procs` files the child writes "0" to, joining the job's groups
    /// before any of its code runs.
    pub cgroup_procs: Vec<CString>,
    pub uid: u32,
    pub gid: u32,
    /// RLIMIT_FSIZE: the largest file the child may write.
    pub max_file_bytes: u64,
    /// A descriptor the child keeps across exec (close-on-exec is cleared in
    /// the child only, so concurrent spawns never inherit it).
    pub inherit_fd: Option<std::os::fd::RawFd>,
}

/// Spawns `program args` confined as described, with exactly `env` as its
/// environment and all three standard streams piped.
pub fn spawn_confined(
    program: &Path,
    args: &[std::ffi::OsString],
    env: &[(String, String)],
    confinement: Confinement,
) -> io::Result<Child> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    let Confinement {
        cgroup_procs,
        uid,
        gid,
        max_file_bytes,
        inherit_fd,
    } = confinement;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // Die with the supervisor: a SIGKILLed server leaves no render running.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("supervisor exited"));
            }
            if let Some(fd) = inherit_fd {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for path in &cgroup_procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0\n".as_ptr().cast(), 2);
                libc::close(fd);
                if written < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let fsize = libc::rlimit {
                rlim_cur: max_file_bytes,
                rlim_max: max_file_bytes,
            };
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &fsize) != 0
                || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Starts a trusted long-running program (a `manimd serve` for the
/// benchmark) with its stdout piped, killed when the handle is dropped.
pub fn spawn_service(program: &Path, args: &[&OsStr], env: &[(&str, &str)]) -> io::Result<Child> {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// A trusted program of a throwaway cluster (`manimd load --chaos`): a
/// database, an object store, a `manimd` node.
pub struct Daemon<'a> {
    pub program: &'a Path,
    pub args: &'a [&'a OsStr],
    /// Added to our environment (a node needs the bucket's credentials).
    pub env: &'a [(&'a str, &'a str)],
    /// Runs as this uid and gid (PostgreSQL refuses root).
    pub user: Option<(u32, u32)>,
    /// Where stderr goes (appended: a restart adds to the same log).
    pub log: Option<std::fs::File>,
    /// Stdout piped (a node prints its address there), else discarded.
    pub stdout: bool,
}

/// Starts a [`Daemon`] as the leader of its own process group, so that
/// `kill_group` reaches its children too (PostgreSQL's backends), as a
/// crash of its machine would; killed when the handle is dropped.
pub fn spawn_daemon(d: Daemon<'_>) -> io::Result<Child> {
    let mut cmd = Command::new(d.program);
    cmd.args(d.args)
        .envs(d.env.iter().copied())
        .stdin(Stdio::null())
        .stdout(if d.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(d.log.map_or_else(Stdio::null, Stdio::from))
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = d.user {
        cmd.uid(uid).gid(gid);
    }
    cmd.spawn()
}

/// SIGKILLs the process group that `pid` leads (see [`spawn_daemon`]).
pub fn kill_group(pid: u32) -> io::Result<()> {
    // SAFETY: a plain system call on a number; no memory is shared.
    if unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to one process: SIGKILL for a crash of that process
/// alone, SIGTERM for a graceful stop.
pub fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: as above.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a plain (unconfined, trusted) command printed and how it ended.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs a trusted tool (espeak-ng; ffprobe in tests) to completion, with a
/// plain environment plus `env`.
pub async fn run_tool(
    program: impl AsRef<OsStr>,
    args: &[&OsStr],
    cwd: &Path,
    env: &[(&str, &str)],
) -> io::Result<Output> {
    let program = program.as_ref();
    // A tool gets a plain environment and `env`, never ours: it holds keys
    // (the model's, the speech service's, the object store's).
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    format!("command {} not found", Path::new(program).display()),
                )
            } else {
                e
            }
        })?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (stdout, stderr, status) = tokio::join!(read_all(stdout), read_all(stderr), child.wait());
    Ok(Output {
        status: status?,
        stdout: stdout?,
        stderr: stderr?,
    })
}

async fn read_all(mut r: impl AsyncRead + Unpin) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).await?;
    Ok(buf)
}

/// How a measured command went: exit status, wall time and the peak RSS of
/// the largest process in its tree (as the kernel reports to `wait4`).
pub struct Measured {
    pub success: bool,
    pub wall: std::time::Duration,
    pub max_rss_bytes: u64,
    /// The end of its stderr, for error messages.
    pub stderr_tail: String,
    pub stdout: Vec<u8>,
}

/// Runs a trusted command to completion and measures it. Output goes to
/// files under `scratch` so that nothing can block on a pipe.
pub fn run_measured(
    program: &Path,
    args: &[&OsStr],
    cwd: &Path,
    scratch: &Path,
) -> io::Result<Measured> {
    use std::os::unix::process::ExitStatusExt;
    let stderr_path = scratch.join("stderr.txt");
    let stdout_path = scratch.join("stdout.txt");
    let started = std::time::Instant::now();
    let child = std::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid is valid until reaped here.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let wall = started.elapsed();
    let stderr = std::fs::read(&stderr_path).unwrap_or_default();
    let tail = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(2000)..]).into_owned();
    Ok(Measured {
        success: ExitStatus::from_raw(status).success(),
        wall,
        // ru_maxrss is in KiB on Linux.
        max_rss_bytes: usage.ru_maxrss as u64 * 1024,
        stderr_tail: tail,
        stdout: std::fs::read(&stdout_path).unwrap_or_default(),
    })
}
