//! `manimd render` as a person runs it: the real binary, real renders.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

fn manimd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("manimd runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[tokio::test]
async fn renders_the_example_and_prints_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let o = manimd(
        dir.path(),
        &["render", &repo("examples/hello.py"), "--quiet"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8(o.stdout).unwrap();
    assert_eq!(printed.trim(), "hello.mp4");
    common::assert_video(&dir.path().join("hello.mp4"), "h264", (854, 480), 15.0, 4.5).await;
}

#[tokio::test]
async fn manimgl_is_detected_from_the_imports() {
    let dir = tempfile::tempdir().unwrap();
    let o = manimd(
        dir.path(),
        &["render", &repo("examples/hello_gl.py"), "-o", "gl.mp4"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("manimgl 1.7.2"), "{}", stderr(&o));
    common::assert_video(&dir.path().join("gl.mp4"), "h264", (854, 480), 15.0, 4.5).await;
}

#[tokio::test]
async fn several_scenes_are_listed_or_all_stitched() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo("tests/fixtures/ce_two.py");
    let o = manimd(dir.path(), &["render", &file], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("Intro") && err.contains("Outro") && err.contains("--all"),
        "{err}"
    );

    let o = manimd(
        dir.path(),
        &["render", &file, "--all", "-o", "both.gif", "--fps", "10"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    common::assert_video(&dir.path().join("both.gif"), "gif", (854, 480), 10.0, 2.5).await;
}

#[test]
fn errors_are_typed_with_the_authors_line_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let o = manimd(
        dir.path(),
        &["render", &repo("tests/fixtures/scene_error.py")],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("error[scene-error]: ZeroDivisionError"),
        "{err}"
    );
    assert!(err.contains("scene_error.py:5"), "{err}");
    assert!(err.contains("> 5 |     return a / b"), "{err}");

    let o = manimd(
        dir.path(),
        &["render", &repo("tests/fixtures/syntax_error.py")],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[syntax-error]"), "{}", stderr(&o));

    let o = manimd(
        dir.path(),
        &["render", &repo("tests/fixtures/ce_two.py"), "; rm -rf /"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid scene name"), "{}", stderr(&o));
}

#[test]
fn limits_can_be_changed_for_one_render() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("loop.py");
    std::fs::write(&scene, "from manim import *\n\nclass L(Scene):\n    def construct(self):\n        while True:\n            pass\n").unwrap();
    let o = manimd(
        dir.path(),
        &["render", scene.to_str().unwrap(), "--timeout", "3"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[timeout]"), "{}", stderr(&o));

    let hog = dir.path().join("hog.py");
    std::fs::write(
        &hog,
        format!(
            "from manim import *\n\nclass H(Scene):\n    def construct(self):\n{}\n",
            crate::security::HOG_10_GIB
        ),
    )
    .unwrap();
    let o = manimd(
        dir.path(),
        &["render", hog.to_str().unwrap(), "--memory", "600"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error[out-of-memory]") && stderr(&o).contains("600 MiB"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn secrets_in_the_supervisors_environment_never_reach_the_scene() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("env.py");
    std::fs::write(
        &scene,
        "from manim import *\nimport os\n\nclass E(Scene):\n    def construct(self):\n        seen = dict(os.environ)\n        seen['pid1'] = open('/proc/1/environ').read()\n        raise RuntimeError(repr(seen))\n",
    )
    .unwrap();
    let secret = "sk-manimd-test-secret-4242";
    let o = manimd(
        dir.path(),
        &["render", scene.to_str().unwrap()],
        &[
            ("MANIMD_LLM_API_KEY", secret),
            ("AWS_SECRET_ACCESS_KEY", secret),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("error[scene-error]") && err.contains("'HOME': '/job/home'"),
        "{err}"
    );
    assert!(!err.contains(secret), "the secret leaked: {err}");
    assert!(!err.contains("MANIMD_LLM_API_KEY"), "{err}");
}

#[test]
fn a_worker_refuses_any_store_but_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    for store in [db.to_str().unwrap(), "sqlite:/tmp/manimd-nothing.db"] {
        let out = manimd(dir.path(), &["worker", "--database", store], &[]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("needs the PostgreSQL store"),
            "{}",
            stderr(&out)
        );
    }
    let out = manimd(dir.path(), &["worker"], &[]);
    assert!(!out.status.success());
    assert!(!db.exists(), "nothing was opened");
}

#[tokio::test]
async fn watch_renders_each_save_and_names_the_animations_it_changed() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene.py");
    let code = "from manim import *\n\nclass Steps(Scene):\n    def construct(self):\n        s = Square()\n        self.play(Create(s), run_time=0.4)\n        self.play(s.animate.shift(RIGHT), run_time=0.4)\n        self.play(FadeOut(s), run_time=0.4)\n";
    std::fs::write(&scene, code).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(["render", "scene.py", "--watch", "--quiet", "-o", "out.mp4"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    async fn until(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
        want: &str,
    ) -> String {
        let wait = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(want) {
                    return line;
                }
            }
            panic!("manimd ended before printing {want:?}");
        });
        wait.await.expect("in time")
    }
    until(&mut lines, "watching").await;
    let first = common::probe(&dir.path().join("out.mp4")).await;
    // Only the last play changes (a longer run time).
    std::fs::write(
        &scene,
        code.replace("FadeOut(s), run_time=0.4", "FadeOut(s), run_time=0.8"),
    )
    .unwrap();
    let line = until(&mut lines, " changed").await;
    assert!(
        line.starts_with("1 of 3 changed: #2 FadeOut(Square) (line 8)"),
        "{line}"
    );
    let second = common::probe(&dir.path().join("out.mp4")).await;
    assert!(
        second.duration > first.duration + 0.3,
        "{first:?} -> {second:?}"
    );
    // A broken save is reported, and the watch goes on.
    std::fs::write(&scene, "from manim import *\nclass Steps(Scene:\n").unwrap();
    until(&mut lines, "syntax-error").await;
    std::fs::write(&scene, code).unwrap();
    let line = until(&mut lines, "no animation changed").await;
    assert!(line.contains("(3 reused)"), "{line}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("Ctrl-C ends the watch")
        .unwrap();
    assert!(status.success(), "Ctrl-C ends the watch: {status:?}");
}

#[test]
fn doctor_checks_the_host_and_serve_refuses_a_data_dir_the_sandbox_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let o = manimd(dir.path(), &["doctor"], &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for name in [
        "root",
        "bubblewrap",
        "cgroups",
        "job areas",
        "sandbox user's access",
        "engines",
        // Reported only: the studio's files from the setup.
        "studio assets",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(name)),
            "{name}: {out}"
        );
    }

    // A data dir as `mktemp -d` makes it: mode 0700, so the sandbox's user
    // cannot reach the worker inside.
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let data = private.to_str().unwrap();
    let doctor = || {
        Command::new(env!("CARGO_BIN_EXE_manimd"))
            .args(["doctor", "--data-dir", data])
            .output()
            .unwrap()
    };
    let o = doctor();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "FAIL  sandbox user's access  uid 65534 cannot enter {data} (mode 700)"
        )) && out.contains(&format!("fix: chmod o+x {data}")),
        "{out}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", data])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("renders cannot work on this host")
            && stderr(&o).contains(&format!("chmod o+x {data}")),
        "{}",
        stderr(&o)
    );
    // Fixed as it says, the host passes.
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let o = doctor();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
