//! The host self-check: can renders work here? `manimd doctor` prints every
//! check with how to fix what fails; `serve` and `worker` run the required
//! ones at start ([`preflight`]) and refuse to start when one fails, so a
//! host problem is said once, at start, instead of failing every job.
//!
//! The required checks change nothing that outlives them: the cgroup and
//! tmpfs probes are created and removed at once, named like job sandboxes so
//! that a crash in between is reaped like one.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::limits::Limits;
use crate::process::run_tool;
use crate::runtime::{self, Runtime, StudioAsset};
use crate::sandbox::area::Area;
use crate::spec::Engine;

/// One check's outcome.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    /// Renders cannot work without it (`serve` refuses to start).
    pub required: bool,
    pub outcome: Result<String, Fault>,
}

/// What is wrong, and what to do about it.
#[derive(Debug)]
pub struct Fault {
    pub problem: String,
    pub fix: String,
}

fn fault(problem: impl Into<String>, fix: impl Into<String>) -> Fault {
    Fault {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Every check, required ones first.
pub async fn run(config: &Config) -> Vec<Check> {
    let mut checks = preflight_checks(config).await;
    let optional = [
        ("ffmpeg", ffmpeg().await),
        ("TeX", tex()),
        ("fonts", fonts().await),
        ("EGL (ManimGL)", egl()),
        ("espeak-ng (narration)", espeak().await),
        ("free disk", free_disk(&config.data_dir)),
        (
            "studio assets",
            studio_assets(&Runtime::new(&config.runtime_dir)),
        ),
    ];
    checks.extend(optional.into_iter().map(|(name, outcome)| Check {
        name,
        required: false,
        outcome,
    }));
    checks
}

/// The required checks, for `serve` and `worker` at start: an error that
/// names each failing one and its fix.
pub async fn preflight(config: &Config) -> anyhow::Result<()> {
    let failed: Vec<String> = preflight_checks(config)
        .await
        .into_iter()
        .filter_map(|c| match c.outcome {
            Err(f) => Some(format!("{}: {}\n  fix: {}", c.name, f.problem, f.fix)),
            Ok(_) => None,
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "renders cannot work on this host (`manimd doctor` checks it all):\n{}",
        failed.join("\n")
    )
}

async fn preflight_checks(config: &Config) -> Vec<Check> {
    let root = nix::unistd::geteuid().is_root();
    let mut checks = vec![
        Check {
            name: "root",
            required: true,
            outcome: if root {
                Ok("running as root".into())
            } else {
                Err(fault(
                    "not running as root",
                    "run manimd as root: the sandbox creates cgroups and mounts",
                ))
            },
        },
        Check {
            name: "bubblewrap",
            required: true,
            outcome: bubblewrap(&config.bwrap).await,
        },
    ];
    // The probes need root; without it they would only repeat that.
    if root {
        checks.push(Check {
            name: "cgroups",
            required: true,
            outcome: cgroups(config).await,
        });
        checks.push(Check {
            name: "job areas (tmpfs)",
            required: true,
            outcome: areas(config),
        });
        checks.push(Check {
            name: "sandbox start",
            required: true,
            outcome: sandbox_start(config).await,
        });
    }
    checks.push(Check {
        name: "sandbox user's access",
        required: true,
        outcome: access(config),
    });
    checks.push(Check {
        name: "engines",
        required: true,
        outcome: engines(&Runtime::new(&config.runtime_dir)),
    });
    checks
}

async fn bubblewrap(bwrap: &Path) -> Result<String, Fault> {
    let install = "apt-get install bubblewrap (or set the path of bwrap)";
    if !bwrap.exists() {
        return Err(fault(format!("{} is missing", bwrap.display()), install));
    }
    version_of(bwrap, "--version", install).await
}

/// Starts an empty sandbox with the namespaces and mounts of a job's
/// (`sandbox::Sandbox`): bubblewrap may be installed and cgroups and tmpfs
/// work, yet what a container forbids (masked `/proc` paths, which make the
/// kernel refuse the sandbox's own procfs; an AppArmor profile that denies
/// mounts; no user namespaces) only shows when one starts.
async fn sandbox_start(config: &Config) -> Result<String, Fault> {
    let (uid, gid) = (
        config.sandbox_uid.to_string(),
        config.sandbox_gid.to_string(),
    );
    let mut args: Vec<&str> = vec![
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        &uid,
        "--gid",
        &gid,
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/bin",
        "/bin",
    ];
    if Path::new("/usr/lib64").exists() {
        args.extend(["--symlink", "usr/lib64", "/lib64"]);
    }
    args.extend([
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--",
        "/usr/bin/true",
    ]);
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let fix = "in a container: --cap-add SYS_ADMIN, /proc unmasked (podman --security-opt \
               unmask=/proc/*, Docker --security-opt systempaths=unconfined) and, on AppArmor \
               hosts, apparmor=unconfined (README: Containers); on a host: \
               user.max_user_namespaces above 0";
    let out = run_tool(&config.bwrap, &args, Path::new("/"), &[])
        .await
        .map_err(|e| fault(format!("bubblewrap does not run: {e}"), fix))?;
    if out.status.success() {
        Ok("namespaces, a new /proc, tmpfs".into())
    } else {
        Err(fault(
            format!(
                "an empty sandbox does not start: {}",
                first_line(&out.stderr)
            ),
            fix,
        ))
    }
}

async fn cgroups(config: &Config) -> Result<String, Fault> {
    let sc = config.sandbox_config();
    let fix = "on cgroup v2, run manimd in a group delegated to it (systemd: Delegate=yes, \
               as deploy/manimd.service does; a container: a private cgroup namespace with \
               a writable /sys/fs/cgroup), or give --cgroup-parent a group it may divide; \
               on v1, mount the memory and pids controllers";
    let placement = sc
        .placement()
        .map_err(|e| fault(format!("no usable cgroup hierarchy: {e}"), fix))?;
    let shown = placement.describe();
    let probe = async {
        placement
            .prepare()
            .map_err(|e| format!("cannot prepare the job groups' parent: {e}"))?;
        let group = placement
            .create(&probe_name(config), &Limits::default())
            .map_err(|e| format!("cannot create a job group with memory and pids limits: {e}"))?;
        group
            .destroy()
            .await
            .map_err(|e| format!("cannot remove a job group: {e}"))
    };
    let probed = probe.await;
    // What the probe set up is undone, as a graceful stop undoes it.
    placement.release();
    probed.map_err(|problem| fault(format!("{problem} ({shown})"), fix))?;
    Ok(shown)
}

fn areas(config: &Config) -> Result<String, Fault> {
    let sc = config.sandbox_config();
    let fix = "manimd mounts a tmpfs per job under DATA_DIR/sandbox: it needs root and a \
               kernel with tmpfs (in a container: CAP_SYS_ADMIN)";
    std::fs::create_dir_all(&sc.areas_dir).map_err(|e| {
        fault(
            format!("cannot create {}: {e}", sc.areas_dir.display()),
            fix,
        )
    })?;
    let root = sc.areas_dir.join(probe_name(config));
    let area = Area::create(root, &Limits::default(), sc.uid, sc.gid)
        .map_err(|e| fault(format!("cannot mount a job area: {e}"), fix))?;
    area.destroy()
        .map_err(|e| fault(format!("cannot unmount a job area: {e}"), fix))?;
    Ok(format!("tmpfs under {}", sc.areas_dir.display()))
}

/// The sandbox's user must be able to reach (search) every directory that
/// bubblewrap binds from: the worker and job areas in the data dir, and the
/// engines' venvs. A data dir made by `mktemp -d` (mode 0700) is not.
fn access(config: &Config) -> Result<String, Fault> {
    let sc = config.sandbox_config();
    let runtime = Runtime::new(&config.runtime_dir);
    let mut paths = vec![config.data_dir.join("runtime"), sc.areas_dir.clone()];
    paths.extend(
        Engine::ALL
            .into_iter()
            .filter(|e| runtime.is_installed(*e))
            .map(|e| runtime.venv(e)),
    );
    for path in &paths {
        if let Some((dir, mode)) = blocked(path, sc.uid, sc.gid) {
            return Err(fault(
                format!(
                    "uid {} cannot enter {} (mode {:o}), so the sandbox cannot see {}",
                    sc.uid,
                    dir.display(),
                    mode & 0o7777,
                    path.display()
                ),
                format!(
                    "chmod o+x {} (search only: nothing becomes listable), or choose \
                     a data dir the sandbox's user can reach",
                    dir.display()
                ),
            ));
        }
    }
    Ok(format!(
        "uid {} reaches the data dir and the engines",
        sc.uid
    ))
}

/// The first directory on the way to `path` (itself included, where it
/// exists) that `uid`/`gid` may not search, with its mode.
fn blocked(path: &Path, uid: u32, gid: u32) -> Option<(PathBuf, u32)> {
    let mut dirs: Vec<&Path> = path.ancestors().collect();
    dirs.reverse();
    for dir in dirs {
        let Ok(meta) = std::fs::metadata(dir) else {
            // Not made yet: made later by root with the default mode.
            return None;
        };
        let mode = meta.mode();
        let bit = if meta.uid() == uid {
            0o100
        } else if meta.gid() == gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Some((dir.to_owned(), mode));
        }
    }
    None
}

fn engines(runtime: &Runtime) -> Result<String, Fault> {
    let installed: Vec<String> = Engine::ALL
        .into_iter()
        .filter(|e| runtime.is_installed(*e))
        .map(|e| format!("{} {}", e.as_str(), runtime::engine_version(e)))
        .collect();
    if installed.is_empty() {
        return Err(fault(
            format!("no engine is installed under {}", runtime.root().display()),
            "run scripts/setup.sh (or point --runtime-dir at its install)",
        ));
    }
    Ok(installed.join(", "))
}

async fn ffmpeg() -> Result<String, Fault> {
    version_of(
        "ffmpeg",
        "-version",
        "apt-get install ffmpeg (webm and gif need it)",
    )
    .await
}

async fn espeak() -> Result<String, Fault> {
    version_of(
        "espeak-ng",
        "--version",
        "apt-get install espeak-ng (narration's default speech)",
    )
    .await
}

async fn fonts() -> Result<String, Fault> {
    let fix = "apt-get install fonts-dejavu-core (Text needs a font)";
    let out = run_tool("fc-list", &[], Path::new("/"), &[])
        .await
        .map_err(|e| fault(format!("fc-list does not run: {e}"), fix))?;
    match String::from_utf8_lossy(&out.stdout).lines().count() {
        0 => Err(fault("no font is installed", fix)),
        n => Ok(format!("{n} fonts")),
    }
}

fn tex() -> Result<String, Fault> {
    if runtime::tex_available() {
        Ok("latex, dvisvgm and standalone.cls".into())
    } else {
        Err(fault(
            "TeX is incomplete: MathTex and Tex fail",
            "run scripts/setup.sh (texlive, dvisvgm)",
        ))
    }
}

fn egl() -> Result<String, Fault> {
    let found = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join("libEGL_mesa.so.0"))
    .find(|p| p.exists());
    match found {
        Some(p) => Ok(format!("Mesa's EGL at {}", p.display())),
        None => Err(fault(
            "Mesa's EGL is missing: ManimGL renders fail",
            "apt-get install libegl-mesa0 libgl1-mesa-dri",
        )),
    }
}

/// The studio's files that the setup installs (the page itself is in the
/// binary): without them the studio answers 404 for each, and the page falls
/// back to a plain text area without completion.
fn studio_assets(runtime: &Runtime) -> Result<String, Fault> {
    let missing: Vec<String> = StudioAsset::ALL
        .into_iter()
        .map(|a| runtime.studio_asset(a))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Ok("hls.js, the editor and the engines' names".into());
    }
    Err(fault(
        format!("missing: {}", missing.join(", ")),
        "run scripts/setup.sh (install_web)",
    ))
}

fn free_disk(data_dir: &Path) -> Result<String, Fault> {
    let st = nix::sys::statvfs::statvfs(data_dir).map_err(|e| {
        fault(
            format!("cannot read {}: {e}", data_dir.display()),
            "create the data dir",
        )
    })?;
    let free = st.blocks_available() * st.fragment_size();
    let gib = free as f64 / (1u64 << 30) as f64;
    if free < 1 << 30 {
        return Err(fault(
            format!("{gib:.2} GiB free under {}", data_dir.display()),
            "free some space: videos and cached animations live there",
        ));
    }
    Ok(format!("{gib:.1} GiB free under {}", data_dir.display()))
}

async fn version_of(program: impl AsRef<OsStr>, flag: &str, fix: &str) -> Result<String, Fault> {
    let program = program.as_ref();
    let out = run_tool(program, &[OsStr::new(flag)], Path::new("/"), &[])
        .await
        .map_err(|e| {
            fault(
                format!("{} does not run: {e}", program.to_string_lossy()),
                fix,
            )
        })?;
    Ok(first_line(&out.stdout))
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Named like a job's sandbox, so that a crash between creating and
/// removing a probe leaves something the start-up reaper removes.
fn probe_name(config: &Config) -> String {
    format!("{}-{}", config.instance(), crate::sandbox::new_id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_on_the_way_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        let inner = private.join("data/runtime");
        std::fs::create_dir_all(&inner).unwrap();
        for d in [dir.path(), private.join("data").as_path(), inner.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let (at, mode) = blocked(&inner, 65534, 65534).expect("blocked");
        assert_eq!(at, private);
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(blocked(&inner, 65534, 65534), None);
        // What does not exist yet is made later, searchable.
        assert_eq!(blocked(&inner.join("later/still"), 65534, 65534), None);
    }
}
