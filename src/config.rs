//! Configuration, parsed once at start from flags and `MANIMD_*` variables.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::limits::Limits;
use crate::narration::TtsConfig;
use crate::sandbox::SandboxConfig;

/// Where things live and how renders are confined.
#[derive(Clone, Debug)]
pub struct Config {
    /// Job areas, outputs and the extracted worker live here.
    pub data_dir: PathBuf,
    /// Root of the engines' virtual environments (`scripts/setup.sh` fills it).
    pub runtime_dir: PathBuf,
    /// The bubblewrap binary.
    pub bwrap: PathBuf,
    /// The unprivileged host uid/gid that scene code runs as.
    pub sandbox_uid: u32,
    pub sandbox_gid: u32,
    /// The cgroup mount point.
    pub cgroup_mount: PathBuf,
    /// `--cgroup-parent`: `None` lets the sandbox choose (its own delegated
    /// group on cgroup v2, else `manimd` at the root).
    pub cgroup_parent: Option<String>,
    /// Default limits of one render.
    pub limits: Limits,
    /// Text to speech for narrated renders.
    pub tts: TtsConfig,
    /// Each owner's animation cache may keep this much (`--cache-quota-mib`).
    pub cache_quota_mib: u64,
}

/// The default of `--cache-quota-mib`.
pub const DEFAULT_CACHE_QUOTA_MIB: u64 = 2048;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/manimd";
pub const DEFAULT_RUNTIME_DIR: &str = "/opt/manimd";
/// `nobody`/`nogroup` on Debian: owns no files, so sandboxed code can read
/// only what is world-readable.
pub const DEFAULT_SANDBOX_ID: u32 = 65534;

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: DEFAULT_DATA_DIR.into(),
            runtime_dir: DEFAULT_RUNTIME_DIR.into(),
            bwrap: "/usr/bin/bwrap".into(),
            sandbox_uid: DEFAULT_SANDBOX_ID,
            sandbox_gid: DEFAULT_SANDBOX_ID,
            cgroup_mount: "/sys/fs/cgroup".into(),
            cgroup_parent: None,
            limits: Limits::default(),
            tts: TtsConfig::default(),
            cache_quota_mib: DEFAULT_CACHE_QUOTA_MIB,
        }
    }
}

impl Config {
    /// A configuration rooted in a test's own directory; the runtime (the
    /// installed engines) is the real one.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Config {
        let runtime_dir = std::env::var_os("MANIMD_RUNTIME")
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_RUNTIME_DIR.into());
        Config {
            data_dir: data_dir.into(),
            runtime_dir,
            ..Config::default()
        }
    }

    /// A short name for this data directory, prefixed to its cgroups and job
    /// areas so that instances sharing a host never reap each other's jobs.
    pub fn instance(&self) -> String {
        let digest = Sha256::digest(self.data_dir.as_os_str().as_encoded_bytes());
        crate::project::hex(&digest[..4])
    }

    pub fn sandbox_config(&self) -> SandboxConfig {
        SandboxConfig {
            bwrap: self.bwrap.clone(),
            uid: self.sandbox_uid,
            gid: self.sandbox_gid,
            cgroup_mount: self.cgroup_mount.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            areas_dir: self.data_dir.join("sandbox"),
            instance: self.instance(),
        }
    }
}
