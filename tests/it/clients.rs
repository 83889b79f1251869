//! The Python client (`clients/python`, `manimd-client`) and its `%%manimd`
//! Jupyter magic against the real server: the package is pip-installed from
//! the repository into a throwaway venv over the tools venv's locked
//! packages, then its pytest suite runs there: real renders, event streams,
//! typed errors with lines, previews, generation against the scripted model
//! (`common::mock_llm`), a keyed server, the generated types against the
//! served OpenAPI document, and a notebook executed by nbclient in a real
//! IPython kernel.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock_llm::{MockLlm, Reply};
use common::server::TestServer;
use manimd::llm::LlmConfig;
use manimd::secret::Secret;
use manimd::server::ServeOptions;
use tokio::process::Command;
use tokio::sync::OnceCell;

/// The model's scripted answers for the suite's one generation; the scene
/// is the suite's `GENERATED`.
const PLAN: &str = "1. A square is drawn.";
const GENERATED: &str = "from manim import *\n\n\nclass Gen(Scene):\n    def construct(self):\n        self.play(Create(Square()), run_time=1)\n";

const KEY: &str = "python-client-key";

/// The longest a pytest run may take (real renders on a shared machine).
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python")
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("clients")
}

/// Runs a command to its end; panics with its output when it fails.
async fn run(cmd: &mut Command) -> String {
    let out = tokio::time::timeout(SUITE_TIMEOUT, cmd.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish"))
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Copies the package's sources (not its tests or build leftovers), so that
/// pip's in-tree build writes nothing into the repository.
fn copy_package(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_str().unwrap();
        if matches!(name, "tests" | "build" | "__pycache__") || name.ends_with(".egg-info") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_package(&entry.path(), &to.join(name));
        } else {
            std::fs::copy(entry.path(), to.join(name)).unwrap();
        }
    }
}

/// A venv whose own site-packages holds only `manimd-client`, installed by
/// pip from the repository's sources without the network (the build backend,
/// setuptools, and httpx, IPython and nbclient come from the locked tools
/// venv through a `.pth` line). Made once per test process.
async fn client_venv() -> &'static Path {
    static VENV: OnceCell<PathBuf> = OnceCell::const_new();
    VENV.get_or_init(|| async {
        let root = artifacts().join("venv");
        let _ = std::fs::remove_dir_all(&root);
        let tools = manimd::config::Config::for_tests("/")
            .runtime_dir
            .join("venv/tools/bin/python");
        assert!(
            tools.exists(),
            "{} is missing: run scripts/setup.sh",
            tools.display()
        );
        let venv = root.join("env");
        run(Command::new(&tools)
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv))
        .await;
        let purelib = "import sysconfig; print(sysconfig.get_path('purelib'))";
        let tools_site = run(Command::new(&tools).args(["-c", purelib])).await;
        let python = venv.join("bin/python");
        let own_site = run(Command::new(&python).args(["-c", purelib])).await;
        std::fs::write(
            Path::new(own_site.trim()).join("manimd-tools.pth"),
            format!("{}\n", tools_site.trim()),
        )
        .unwrap();
        let source = root.join("src");
        copy_package(&client_dir(), &source);
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--disable-pip-version-check",
                "--quiet",
            ])
            .arg(&source)
            .current_dir(&root))
        .await;
        venv
    })
    .await
}

/// Runs test files of `clients/python/tests` in the client's venv with
/// `envs`; expects exactly `passed` tests to pass and none to be skipped.
async fn pytest(files: &[&str], envs: &[(&str, &str)], passed: usize) -> String {
    let venv = client_venv().await;
    let tests = client_dir().join("tests");
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"])
        .args(files.iter().map(|f| tests.join(f)))
        // Not the repository: `import manimd_client` must find the installed copy.
        .current_dir(venv)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("MANIMD_TEST_ARTIFACTS", artifacts())
        .env_remove("MANIMD_URL")
        .env_remove("MANIMD_API_KEY")
        .envs(envs.iter().copied());
    let report = run(&mut cmd).await;
    let summary = report.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!("{passed} passed")) && !summary.contains("skipped"),
        "expected {passed} passed, none skipped:\n{report}"
    );
    report
}

fn options() -> ServeOptions {
    ServeOptions {
        workers: 1,
        warm_pool: 0,
        grace: Duration::from_millis(200),
        ..ServeOptions::default()
    }
}

#[tokio::test]
async fn python_client_suite_against_real_servers() {
    let mock = MockLlm::start(vec![
        Reply::Text(PLAN.into()),
        Reply::Text(format!("Here is the scene:\n\n```python\n{GENERATED}```\n")),
    ])
    .await;
    let open = TestServer::start(ServeOptions {
        llm: LlmConfig {
            base_url: Some(mock.base_url.clone()),
            model: "mock-model".into(),
            ..LlmConfig::default()
        },
        ..options()
    })
    .await;
    let keyed = TestServer::start(ServeOptions {
        api_keys: vec![Secret::new(KEY).unwrap()],
        ..options()
    })
    .await;
    pytest(
        &["test_client.py", "test_types.py"],
        &[
            ("MANIMD_TEST_URL", &open.url),
            ("MANIMD_TEST_KEYED_URL", &keyed.url),
            ("MANIMD_TEST_KEY", KEY),
        ],
        14,
    )
    .await;
    // The one generation asked the model twice: the storyboard, the code.
    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].body["model"], "mock-model");
    open.assert_clean();
}

#[tokio::test]
async fn notebook_with_the_manimd_magic_against_a_real_server() {
    let server = TestServer::start(options()).await;
    pytest(
        &["test_notebook.py"],
        &[("MANIMD_TEST_URL", &server.url)],
        1,
    )
    .await;
    server.assert_clean();
}

#[tokio::test]
async fn manimd_openapi_prints_the_served_document_which_the_types_were_made_from() {
    let server = TestServer::start(options()).await;
    let (_, served) = server.get("/openapi.json").await;
    let out = Command::new(env!("CARGO_BIN_EXE_manimd"))
        .arg("openapi")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, served);
    // The event stream's data is in the document, for typed events.
    for schema in ["Progress", "GenEvent", "JobView", "ErrorDetail"] {
        assert!(
            printed["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }

    // The checked-in types are what the generator makes of it.
    let tools = server.config.runtime_dir.join("venv/tools/bin/python");
    let mut check = std::process::Command::new(tools)
        .arg(client_dir().join("generate_types.py"))
        .args(["--check", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "clients/python/manimd_client/_types.py is stale; regenerate it with \
         `manimd openapi | python clients/python/generate_types.py -`:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
