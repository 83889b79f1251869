//! The installed engines (one pinned Python virtual environment each, made by
//! `scripts/setup.sh`) and the worker program that runs inside the sandbox.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::spec::Engine;

/// The pinned engine versions; `scripts/setup.sh` installs the same.
pub fn engine_version(engine: Engine) -> &'static str {
    match engine {
        Engine::Manim => "0.22.0",
        Engine::Manimgl => "1.7.2",
    }
}

/// A short hash of the locks an engine's venv is installed from
/// (`python/locks`, with the build tools'): every package and version that
/// can change a frame. Part of the result cache's key and of each cached
/// animation's, so that a new lock never serves what an old one rendered.
pub fn environment(engine: Engine) -> &'static str {
    static MANIM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static MANIMGL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let cell = match engine {
        Engine::Manim => &MANIM,
        Engine::Manimgl => &MANIMGL,
    };
    let lock = lock_of(engine);
    cell.get_or_init(|| {
        let mut hasher = Sha256::new();
        hasher.update(include_str!("../python/locks/build.txt").as_bytes());
        hasher.update([0]);
        hasher.update(lock.as_bytes());
        crate::project::hex(&hasher.finalize()[..8])
    })
}

/// A plugin of the allow-list: a package pinned in an engine's lock
/// (`python/locks/NAME.in` says why each), importable by scenes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plugin {
    /// The package's name on PyPI, as the lock spells it.
    pub name: &'static str,
    /// The engine whose venv holds it.
    pub engine: Engine,
    /// What a scene writes to use it.
    pub import: &'static str,
}

/// The allow-list. No plugin is installed for ManimGL: the ecosystem's
/// plugins are built on Manim Community's API (README, "Plugins").
pub const PLUGINS: &[Plugin] = &[
    Plugin {
        name: "manim-physics",
        engine: Engine::Manim,
        import: "from manim_physics import *",
    },
    Plugin {
        name: "manim-chemistry",
        engine: Engine::Manim,
        import: "from manim_chemistry import *",
    },
    Plugin {
        name: "manim-voiceover",
        engine: Engine::Manim,
        import: "from manim_voiceover import VoiceoverScene",
    },
    // Manim's own `typst` extra: `Typst` and `MathTypst` (no TeX needed).
    Plugin {
        name: "typst",
        engine: Engine::Manim,
        import: "from manim import Typst, MathTypst",
    },
];

impl Plugin {
    /// The version the engine's lock pins (`name==version`): the one the
    /// setup installs.
    pub fn version(&self) -> Option<&'static str> {
        locked_version(lock_of(self.engine), self.name)
    }
}

fn lock_of(engine: Engine) -> &'static str {
    match engine {
        Engine::Manim => include_str!("../python/locks/manim-0.22.0.txt"),
        Engine::Manimgl => include_str!("../python/locks/manimgl-1.7.2.txt"),
    }
}

/// `name`'s pinned version in a lock's text (lines `name==version \`).
fn locked_version(lock: &'static str, name: &str) -> Option<&'static str> {
    lock.lines().find_map(|line| {
        let (package, rest) = line.split_once("==")?;
        (package == name).then(|| rest.split_whitespace().next())?
    })
}

/// The worker's source, compiled into the binary so that the binary and its
/// worker can never disagree about the protocol.
const WORKER_FILES: &[(&str, &str)] = &[
    ("run_worker.py", include_str!("../python/run_worker.py")),
    (
        "manimd_worker/__init__.py",
        include_str!("../python/manimd_worker/__init__.py"),
    ),
    (
        "manimd_worker/__main__.py",
        include_str!("../python/manimd_worker/__main__.py"),
    ),
    (
        "manimd_worker/main.py",
        include_str!("../python/manimd_worker/main.py"),
    ),
    (
        "manimd_worker/protocol.py",
        include_str!("../python/manimd_worker/protocol.py"),
    ),
    (
        "manimd_worker/project.py",
        include_str!("../python/manimd_worker/project.py"),
    ),
    (
        "manimd_worker/usercode.py",
        include_str!("../python/manimd_worker/usercode.py"),
    ),
    (
        "manimd_worker/media.py",
        include_str!("../python/manimd_worker/media.py"),
    ),
    (
        "manimd_worker/memory.py",
        include_str!("../python/manimd_worker/memory.py"),
    ),
    (
        "manimd_worker/narration.py",
        include_str!("../python/manimd_worker/narration.py"),
    ),
    (
        "manimd_worker/plugins.py",
        include_str!("../python/manimd_worker/plugins.py"),
    ),
    (
        "manimd_worker/voiceover.py",
        include_str!("../python/manimd_worker/voiceover.py"),
    ),
    (
        "manimd_worker/tex.py",
        include_str!("../python/manimd_worker/tex.py"),
    ),
    (
        "manimd_worker/enginecheck.py",
        include_str!("../python/manimd_worker/enginecheck.py"),
    ),
    (
        "manimd_worker/timeline.py",
        include_str!("../python/manimd_worker/timeline.py"),
    ),
    (
        "manimd_worker/engines/__init__.py",
        include_str!("../python/manimd_worker/engines/__init__.py"),
    ),
    (
        "manimd_worker/engines/ce.py",
        include_str!("../python/manimd_worker/engines/ce.py"),
    ),
    (
        "manimd_worker/engines/gl.py",
        include_str!("../python/manimd_worker/engines/gl.py"),
    ),
];

/// Where the worker appears inside the sandbox.
pub const WORKER_MOUNT: &str = "/opt/manimd-worker";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the {engine} engine is not installed: {venv} is missing or incomplete (run scripts/setup.sh)")]
    EngineMissing { engine: Engine, venv: PathBuf },
    #[error("cannot install the worker into {0}: {1}")]
    Worker(PathBuf, io::Error),
}

/// Installed engines under one runtime root (default `/opt/manimd`).
#[derive(Clone, Debug)]
pub struct Runtime {
    root: PathBuf,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The engine's virtual environment, bound into the sandbox at the same path.
    pub fn venv(&self, engine: Engine) -> PathBuf {
        self.root
            .join("venv")
            .join(format!("{}-{}", engine.as_str(), engine_version(engine)))
    }

    pub fn python(&self, engine: Engine) -> PathBuf {
        self.venv(engine).join("bin/python")
    }

    pub fn is_installed(&self, engine: Engine) -> bool {
        self.venv(engine).join(".manimd-complete").exists()
    }

    pub fn check(&self, engine: Engine) -> Result<(), RuntimeError> {
        if self.is_installed(engine) {
            Ok(())
        } else {
            Err(RuntimeError::EngineMissing {
                engine,
                venv: self.venv(engine),
            })
        }
    }
}

/// A file of the web studio that the setup installs under the runtime
/// (`scripts/setup.sh`'s `install_web`), not built into the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudioAsset {
    /// hls.js, the live player, from npm.
    HlsJs,
    /// The editor: `web/editor/` and CodeMirror, bundled with esbuild.
    Editor,
    /// The names each installed engine exports, for the editor's completion.
    EngineNames,
}

impl StudioAsset {
    pub const ALL: [StudioAsset; 3] = [
        StudioAsset::HlsJs,
        StudioAsset::Editor,
        StudioAsset::EngineNames,
    ];

    /// Where the setup puts it, under the runtime root.
    pub fn relative_path(self) -> &'static str {
        match self {
            StudioAsset::HlsJs => "web/node_modules/hls.js/dist/hls.min.js",
            StudioAsset::Editor => "web/editor.js",
            StudioAsset::EngineNames => "web/engine-names.json",
        }
    }
}

impl Runtime {
    /// Where a studio asset lives on this host.
    pub fn studio_asset(&self, asset: StudioAsset) -> PathBuf {
        self.root.join(asset.relative_path())
    }
}

/// Whether TeX can typeset `MathTex`/`Tex`: the compiler, the SVG converter
/// and Manim Community's document class are installed.
pub fn tex_available() -> bool {
    [
        "/usr/bin/latex",
        "/usr/bin/dvisvgm",
        "/usr/share/texlive/texmf-dist/tex/latex/standalone/standalone.cls",
    ]
    .iter()
    .all(|p| Path::new(p).exists())
}

/// A short hash of the worker's source: part of cache keys and of the
/// directory the worker is installed in.
pub fn worker_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let mut hasher = Sha256::new();
        for (name, text) in WORKER_FILES {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
        crate::project::hex(&hasher.finalize()[..8])
    })
}

/// Writes the worker under `dir/worker-<hash>` unless it is already there,
/// and returns that directory. The directory is root-owned and read-only to
/// everyone else; it is content-addressed, so a new binary gets a new one.
pub fn install_worker(dir: &Path) -> Result<PathBuf, RuntimeError> {
    let short = worker_hash();
    let target = dir.join(format!("worker-{short}"));
    if target.join("run_worker.py").exists() {
        return Ok(target);
    }
    let err = |e| RuntimeError::Worker(target.clone(), e);
    fs::create_dir_all(dir).map_err(err)?;
    let staging = dir.join(format!(".worker-{short}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    for (name, text) in WORKER_FILES {
        let path = staging.join(name);
        fs::create_dir_all(path.parent().expect("a parent")).map_err(err)?;
        fs::write(&path, text).map_err(err)?;
    }
    match fs::rename(&staging, &target) {
        Ok(()) => Ok(target),
        // Another process installed the same worker first: theirs is identical.
        Err(_) if target.join("run_worker.py").exists() => {
            let _ = fs::remove_dir_all(&staging);
            Ok(target)
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plugin_is_pinned_in_its_engine_lock() {
        for plugin in PLUGINS {
            let version = plugin.version();
            assert!(
                version.is_some_and(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit())),
                "{} is not pinned in the {} lock",
                plugin.name,
                plugin.engine
            );
        }
        assert_eq!(locked_version("a==1.2 \\\n", "a"), Some("1.2"));
        assert_eq!(locked_version("ab==1.2 \\\n", "a"), None);
    }

    #[test]
    fn worker_install_is_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let a = install_worker(dir.path()).unwrap();
        let b = install_worker(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.join("manimd_worker/engines/gl.py").is_file());
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no staging directory is left");
    }

    #[test]
    fn every_worker_module_is_compiled_in() {
        fn walk(dir: &Path, root: &Path, found: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, found);
                } else if path.extension().is_some_and(|e| e == "py") {
                    let rel = path.strip_prefix(root).unwrap();
                    found.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
        let mut found = Vec::new();
        walk(&root.join("manimd_worker"), &root, &mut found);
        for name in found {
            assert!(
                WORKER_FILES.iter().any(|(n, _)| *n == name),
                "python/{name} is not in WORKER_FILES"
            );
        }
    }
}
