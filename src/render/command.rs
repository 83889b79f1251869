//! The worker's command line inside the sandbox: the Python of an engine's
//! venv, the environment it runs with, and what it sees read-only. Every
//! pass (inspect, warm, render, mux) starts from this one command, so the
//! sandbox's environment is written once.

use crate::runtime::WORKER_MOUNT;
use crate::sandbox;
use crate::spec::Engine;

use super::Renderer;

/// The sandbox's whole environment: nothing of the host's leaks in except
/// the two OpenBLAS settings below.
const ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/bin:/bin"),
    ("HOME", "/job/home"),
    ("USER", "sandbox"),
    ("LOGNAME", "sandbox"),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("TMPDIR", "/tmp"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    // The same string hashes in every process: a scene that walks a set
    // of names draws it in the same order on every worker (and in every
    // chunk of a split render).
    ("PYTHONHASHSEED", "0"),
    ("MPLCONFIGDIR", "/tmp/matplotlib"),
    ("XDG_CACHE_HOME", "/tmp/cache"),
    ("TEXMFVAR", "/tmp/texmf-var"),
    // Mesa's software rasterizer behind EGL, with no display.
    ("EGL_PLATFORM", "surfaceless"),
    ("LIBGL_ALWAYS_SOFTWARE", "1"),
    // One BLAS thread: threads count against the pids cap, and
    // renders gain nothing from them.
    ("OPENBLAS_NUM_THREADS", "1"),
    ("OMP_NUM_THREADS", "1"),
];

impl Renderer {
    /// The worker command; with `preload` it imports `engine` before it
    /// reads its job.
    pub(super) fn command(&self, engine: Engine, preload: bool) -> sandbox::Command {
        let venv = self.runtime.venv(engine);
        let mut args = vec![
            "-I".into(),
            "-B".into(),
            format!("{WORKER_MOUNT}/run_worker.py"),
        ];
        if preload {
            args.extend(["--engine".into(), engine.as_str().into()]);
        }
        sandbox::Command {
            program: venv.join("bin/python"),
            args,
            env: env(),
            ro_binds: vec![
                (venv.clone(), venv),
                (self.worker_dir.clone(), WORKER_MOUNT.into()),
            ],
        }
    }
}

fn env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // Set on hosts whose CPUs some OpenBLAS builds misdetect; not secret.
    for key in ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"] {
        if let Ok(v) = std::env::var(key) {
            env.push((key.to_owned(), v));
        }
    }
    env
}
