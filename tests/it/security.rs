//! Hostile scenes: busy and sleeping loops, fork bombs, memory and disk hogs,
//! output floods, fake protocol lines, probes for host secrets, the network,
//! host sockets and the kernel, and attacks on the job's own files. Each must
//! end with a clear outcome and leave nothing behind (no cgroup, so no
//! process; no mount; no job area).

use crate::common;

use common::{spec, Harness};
use manimd::limits::Limits;
use manimd::render::RenderError;
use manimd::sandbox::Stopped;
use manimd::spec::Engine;

fn small() -> Limits {
    Limits {
        wall_secs: 20,
        memory_mib: 700,
        pids: 64,
        output_mib: 64,
        files: 2_000,
        file_size_mib: 32,
        ..Limits::default()
    }
}

fn stopped(e: RenderError) -> Stopped {
    match e {
        RenderError::Stopped(s) => s,
        other => panic!(
            "expected the supervisor to stop the run, got [{}] {other}",
            other.code()
        ),
    }
}

/// A scene that runs `body` (Python, indented by 8) inside `construct`.
fn scene(body: &str) -> String {
    format!("from manim import *\nimport os, sys, time, json, socket, subprocess, threading\n\nclass Hostile(Scene):\n    def construct(self):\n{body}\n")
}

/// Runs probes in a scene, which reports them by raising; returns the JSON.
async fn probe(h: &Harness, body: &str) -> serde_json::Value {
    let code = scene(&format!(
        "{body}\n        raise RuntimeError('PROBE' + json.dumps(results))"
    ));
    let e = h.fails(&spec(Engine::Manim, &code), &small()).await;
    let RenderError::User(u) = e else {
        panic!("{e}")
    };
    let start = u.message.find("PROBE").expect("probe output") + 5;
    let end = u.message.rfind(" (line").unwrap_or(u.message.len());
    serde_json::from_str(&u.message[start..end]).unwrap_or_else(|e| panic!("{e}: {}", u.message))
}

#[tokio::test]
async fn a_busy_loop_is_killed_at_the_wall_clock() {
    let h = Harness::new();
    let limits = Limits {
        wall_secs: 4,
        ..small()
    };
    let e = h
        .fails(
            &spec(
                Engine::Manim,
                &scene("        while True:\n            pass"),
            ),
            &limits,
        )
        .await;
    assert_eq!(stopped(e), Stopped::Timeout { limit_secs: 4 });
    h.assert_clean();
}

#[tokio::test]
async fn sleeping_and_import_loops_end_at_the_wall_clock_too() {
    let h = Harness::new();
    let limits = Limits {
        wall_secs: 3,
        ..small()
    };
    let e = h
        .fails(
            &spec(Engine::Manim, &scene("        time.sleep(10**9)")),
            &limits,
        )
        .await;
    assert_eq!(e.code(), "timeout");
    let at_import = "from manim import *\nwhile True:\n    pass\n\nclass A(Scene):\n    pass\n";
    let e = h.fails(&spec(Engine::Manim, at_import), &limits).await;
    assert_eq!(e.code(), "timeout");
    h.assert_clean();
}

#[tokio::test]
async fn a_fork_bomb_threads_and_subprocess_spam_hit_the_pids_cap() {
    let h = Harness::new();
    let bombs = [
        "        while True:\n            os.fork()",
        "        ts = [threading.Thread(target=time.sleep, args=(30,)) for _ in range(10000)]\n        for t in ts:\n            t.start()",
        "        ps = [subprocess.Popen(['sleep', '30']) for _ in range(1000)]",
    ];
    for body in bombs {
        let e = h.fails(&spec(Engine::Manim, &scene(body)), &small()).await;
        assert_eq!(stopped(e), Stopped::ProcessLimit { limit: 64 }, "{body}");
        h.assert_clean();
    }
}

/// 10 GiB, 64 MiB at a time, every page written: the cgroup's cap stops it,
/// not the kernel's overcommit check (one 10 GiB allocation fails with a
/// `MemoryError` before the cap acts on a host with less memory and swap).
pub const HOG_10_GIB: &str =
    "        hog = []\n        for _ in range(160):\n            hog.append(b'x' * (64 * 1024**2))";

#[tokio::test]
async fn allocating_10_gb_is_killed_inside_the_memory_cap() {
    let h = Harness::new();
    let e = h
        .fails(&spec(Engine::Manim, &scene(HOG_10_GIB)), &small())
        .await;
    let s = stopped(e);
    assert_eq!(s, Stopped::OutOfMemory { limit_mib: 700 });
    assert!(
        s.to_string().contains("700 MiB"),
        "the message names the limit: {s}"
    );
    h.assert_clean();
}

#[tokio::test]
async fn filling_the_disk_stops_at_size_and_inode_caps() {
    let h = Harness::new();
    let fills = [
        // /tmp, /dev/shm and the job directory share one capped area.
        "        with open('/tmp/fill', 'wb') as f:\n            while True:\n                f.write(b'x' * 1024 * 1024)",
        "        with open('/dev/shm/fill', 'wb') as f:\n            while True:\n                f.write(b'x' * 1024 * 1024)",
        "        for i in range(10**7):\n            open(f'/job/f{i}', 'w').close()",
        // A 100 GB file, sparse: the file size limit refuses it.
        "        with open('/job/huge', 'wb') as f:\n            f.truncate(100 * 1024**3)",
    ];
    for body in fills {
        let e = h.fails(&spec(Engine::Manim, &scene(body)), &small()).await;
        assert_eq!(e.code(), "output-too-large", "{body}: {e}");
        h.assert_clean();
    }
}

#[tokio::test]
async fn output_floods_and_fake_protocol_lines_decide_nothing() {
    let h = Harness::new();
    // 1 GB to stdout and stderr, then protocol look-alikes on both, then a
    // real scene: the supervisor drains it all and the render still succeeds.
    let body = r#"        chunk = b'\x1b[31m{"event":"error","code":"timeout","message":"fake"}\n' * 16384
        for _ in range(1024 * 1024 * 1024 // len(chunk) // 2):
            os.write(1, chunk)
            os.write(2, chunk)
        print('{"event": "result", "still": true, "format": "png", "duration": 0}')
        self.play(Create(Circle()), run_time=0.2)"#;
    let (r, _) = h.ok(&spec(Engine::Manim, &scene(body))).await;
    assert!(!r.media.still, "a printed result line is not the result");
    // A fake error line before a real failure does not replace it.
    let body = r#"        print('{"event":"error","code":"no-scene","message":"fake"}')
        raise KeyError('real')"#;
    let e = h.fails(&spec(Engine::Manim, &scene(body)), &small()).await;
    assert_eq!(e.code(), "scene-error");
    h.assert_clean();
}

#[tokio::test]
async fn host_secrets_are_not_there() {
    let h = Harness::new();
    let data = h.config.data_dir.display().to_string();
    let checkout = env!("CARGO_MANIFEST_DIR");
    let body = format!(
        r#"        results = {{}}
        for p in ['/etc/shadow', '/etc/passwd', '/root', '/root/.ssh', '/home', '/var/lib/manimd', '{data}', '{checkout}', '{checkout}/.env', '/work', '/run', '/var/run/docker.sock']:
            results[p] = os.path.exists(p)
        results['etc'] = sorted(os.listdir('/etc'))"#
    );
    let r = probe(&h, &body).await;
    for (path, exists) in r.as_object().unwrap() {
        if path != "etc" {
            assert_eq!(
                exists,
                &serde_json::Value::Bool(false),
                "{path} is visible in the sandbox"
            );
        }
    }
    let etc: Vec<&str> = r["etc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(etc, ["alternatives", "fonts", "ld.so.cache", "texmf"]);
    h.assert_clean();
}

#[tokio::test]
async fn the_environment_is_the_allow_list_only() {
    let h = Harness::new();
    let body = r#"        results = {'env': sorted(os.environ), 'pid1': open('/proc/1/environ', 'rb').read().decode(errors='replace'), 'uid': os.getuid(), 'caps': [l for l in open('/proc/self/status') if l.startswith('CapEff')]}"#;
    let r = probe(&h, body).await;
    let allowed = [
        "EGL_PLATFORM",
        "HOME",
        "LANG",
        "LC_ALL",
        "LIBGL_ALWAYS_SOFTWARE",
        "LOGNAME",
        "MPLCONFIGDIR",
        "OMP_NUM_THREADS",
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
        "OPENBLAS_NUM_THREADS",
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "TEXMFVAR",
        "TMPDIR",
        "USER",
        "XDG_CACHE_HOME",
    ];
    for key in r["env"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        // bubblewrap sets PWD for --chdir (to /job).
        assert!(
            allowed.contains(&key) || key == "PWD",
            "{key} leaked into the sandbox"
        );
    }
    let pid1 = r["pid1"].as_str().unwrap();
    assert!(
        pid1.is_empty()
            || pid1
                .split('\0')
                .all(|kv| kv.is_empty() || allowed.iter().any(|a| kv.starts_with(a))),
        "{pid1}"
    );
    assert_eq!(r["uid"], 65534);
    assert!(
        r["caps"][0].as_str().unwrap().contains("0000000000000000"),
        "{}",
        r["caps"]
    );
}

#[tokio::test]
async fn a_scene_has_no_network_at_all() {
    let h = Harness::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = format!(
        r#"        results = {{}}
        for name, addr in [('api', ('127.0.0.1', {port})), ('metadata', ('169.254.169.254', 80)), ('internet', ('1.1.1.1', 53))]:
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(addr)
                results[name] = 'connected'
            except OSError as e:
                results[name] = 'refused: ' + str(e)
        try:
            socket.getaddrinfo('example.com', 80)
            results['dns'] = 'resolved'
        except OSError as e:
            results['dns'] = 'failed: ' + str(e)
        results['interfaces'] = [n for _, n in socket.if_nameindex()]"#
    );
    let r = probe(&h, &body).await;
    for key in ["api", "metadata", "internet"] {
        assert!(
            r[key].as_str().unwrap().starts_with("refused"),
            "{key}: {}",
            r[key]
        );
    }
    assert!(
        r["dns"].as_str().unwrap().starts_with("failed"),
        "{}",
        r["dns"]
    );
    assert_eq!(r["interfaces"], serde_json::json!(["lo"]));
    assert!(
        listener.accept().is_err(),
        "nothing reached the host's listener"
    );
    h.assert_clean();
}

#[tokio::test]
async fn the_system_is_read_only_and_jobs_share_nothing() {
    let h = Harness::new();
    let venv = h.renderer.runtime().venv(Engine::Manim);
    let site = venv.join("lib/python3.11/site-packages/manim/__init__.py");
    let before = std::fs::read(&site).unwrap();
    let body = format!(
        r#"        results = {{}}
        for p in ['{site}', '/usr/bin/python3', '/opt/manimd-worker/run_worker.py', '/etc/fonts/evil', '{venv}/evil']:
            try:
                with open(p, 'a') as f:
                    f.write('pwned')
                results[p] = 'written'
            except OSError as e:
                results[p] = 'refused'
        for p in ['/job/home/marker', '/tmp/marker', '/dev/shm/marker']:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, 'w').write('left for the next job')
            results[p] = 'planted'"#,
        site = site.display(),
        venv = venv.display()
    );
    let r = probe(&h, &body).await;
    for (p, v) in r.as_object().unwrap() {
        if !p.contains("marker") {
            assert_eq!(v, "refused", "{p}");
        }
    }
    assert_eq!(std::fs::read(&site).unwrap(), before);
    let next = r#"        results = {p: os.path.exists(p) for p in ['/job/home/marker', '/tmp/marker', '/dev/shm/marker']}"#;
    let r = probe(&h, next).await;
    assert!(r.as_object().unwrap().values().all(|v| v == false), "{r}");
    h.assert_clean();
}

#[tokio::test]
async fn output_replaced_by_links_fifos_or_devices_is_refused() {
    let h = Harness::new();
    let secret = h.dir.path().join("host-secret.txt");
    std::fs::write(&secret, "host secret").unwrap();
    let tricks = [
        format!("os.symlink('{}', out)", secret.display()),
        "os.symlink('/etc/ld.so.cache', out)".to_string(),
        "os.mkfifo(out)".to_string(),
        "os.symlink('/dev/zero', out)".to_string(),
        "import shutil; shutil.rmtree('/job/out'); os.symlink('/etc', '/job/out')".to_string(),
    ];
    for trick in &tricks {
        let code = format!(
            r#"from manim import *
import os
import manimd_worker.media as media

def finalize(inputs, fmt, out, concat_list):
    {trick}

media.finalize = finalize
media.probe = lambda path: {{"codec": "h264", "width": 854, "height": 480, "fps": 15.0, "duration": 0.2, "frames": 3}}

class Sneaky(Scene):
    def construct(self):
        self.play(Create(Circle()), run_time=0.2)
"#
        );
        // A FIFO must not block collection: the test would hang here.
        let e = h.fails(&spec(Engine::Manim, &code), &small()).await;
        assert_eq!(e.code(), "bad-output", "{trick}: {e}");
        h.assert_clean();
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
}

#[tokio::test]
async fn killing_everything_or_the_parent_harms_only_the_job() {
    let h = Harness::new();
    let hostile = scene(
        r#"        subprocess.Popen(['sleep', '60'])
        self.play(Create(Circle()), run_time=0.2)
        for target in (-1, os.getppid(), 1):
            try:
                os.kill(target, 9)
            except OSError:
                pass
        self.play(FadeOut(Circle()), run_time=0.2)"#,
    );
    let (hostile, bystander) = (
        spec(Engine::Manim, &hostile),
        spec(Engine::Manim, &common::fixture("ce_shapes.py")),
    );
    let limits = small();
    let (hostile, bystander) = tokio::join!(
        h.render(&hostile, &limits),
        h.render(&bystander, &h.config.limits)
    );
    match hostile.0 {
        Ok(r) => assert!(!r.media.still),
        Err(e) => assert!(
            !e.is_internal(),
            "a typed outcome, not an internal error: {e}"
        ),
    }
    let r = bystander.0.expect("the other job is unaffected");
    common::assert_video(&r.output, "h264", (854, 480), 15.0, 3.0).await;
    h.assert_clean();
}

#[tokio::test]
async fn the_servers_processes_are_invisible_and_untouchable() {
    let h = Harness::new();
    let body = r#"        results = {'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), 'me': os.getpid()}
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        # ptrace(PTRACE_ATTACH, 1): the sandbox's own init; the host's are not even visible.
        results['ptrace'] = libc.syscall(101, 16, 1, 0, 0)
        results['ptrace_errno'] = ctypes.get_errno()
        results['host_pid_visible'] = os.path.exists('/proc/%d' % 999999)"#;
    let r = probe(&h, body).await;
    let pids = r["pids"].as_array().unwrap();
    assert!(
        pids.len() <= 4,
        "only the sandbox's own processes are visible: {pids:?}"
    );
    assert!(pids.iter().all(|p| p.as_u64().unwrap() < 100), "{pids:?}");
    assert_eq!(r["ptrace"], -1);
    assert_eq!(r["ptrace_errno"], libc::EPERM);
    assert_eq!(r["host_pid_visible"], false);
    h.assert_clean();
}

#[tokio::test]
async fn no_unix_socket_of_the_host_is_reachable() {
    let h = Harness::new();
    // An abstract socket on the host: reachable from any process in the
    // host's network namespace, so not from the sandbox's.
    let name = format!("manimd-test-{}", std::process::id());
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let body = format!(
        r#"        results = {{}}
        for p in ['/var/run/docker.sock', '/run/docker.sock', '/run/dbus/system_bus_socket', '/tmp/.X11-unix']:
            results[p] = os.path.exists(p)
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect('\0{name}')
            results['abstract'] = 'connected'
        except OSError as e:
            results['abstract'] = 'refused'"#
    );
    let r = probe(&h, &body).await;
    for (k, v) in r.as_object().unwrap() {
        if k == "abstract" {
            assert_eq!(v, "refused");
        } else {
            assert_eq!(v, false, "{k}");
        }
    }
    assert!(
        listener.accept().is_err(),
        "nothing reached the host's socket"
    );
}

#[tokio::test]
async fn files_and_links_created_during_cleanup_leave_nothing() {
    let h = Harness::new();
    let body = r#"        if os.fork() == 0:
            i = 0
            while True:
                i += 1
                try:
                    os.symlink('/etc/ld.so.cache', f'/job/link{i}')
                    open(f'/tmp/f{i}', 'w').close()
                    os.makedirs(f'/job/d{i}/e', exist_ok=True)
                except OSError:
                    pass
        time.sleep(0.5)
        raise RuntimeError('leaving while the child keeps writing')"#;
    let e = h.fails(&spec(Engine::Manim, &scene(body)), &small()).await;
    assert!(
        matches!(e.code().as_str(), "scene-error" | "output-too-large"),
        "{e}"
    );
    h.assert_clean();
    assert!(std::path::Path::new("/etc/ld.so.cache").is_file());
}

#[tokio::test]
async fn the_kernels_attack_surface_is_refused() {
    let h = Harness::new();
    let body = r#"        import ctypes, fcntl, termios
        libc = ctypes.CDLL(None, use_errno=True)
        def call(nr, *args):
            r = libc.syscall(nr, *args)
            return 'ok' if r >= 0 else os.strerror(ctypes.get_errno())
        results = {
            'unshare': call(272, 0x10000000),
            'mount': call(165, b'none', b'/tmp', b'tmpfs', 0, 0),
            'keyctl': call(250, 0, 0, 0, 0, 0),
            'io_uring_setup': call(425, 1, ctypes.create_string_buffer(120)),
            'bpf': call(321, 0, 0, 0),
            'ptrace': call(101, 0, 0, 0, 0),
            'setns': call(308, 0, 0),
        }
        try:
            fcntl.ioctl(1, termios.TIOCSTI, b'x')
            results['tiocsti'] = 'ok'
        except OSError as e:
            results['tiocsti'] = e.strerror
        status = open('/proc/self/status').read()
        results['seccomp'] = [l.split()[1] for l in status.splitlines() if l.startswith('Seccomp:')][0]
        results['no_new_privs'] = [l.split()[1] for l in status.splitlines() if l.startswith('NoNewPrivs:')][0]
        su = subprocess.run(['/usr/bin/su', '-c', 'id -u', 'root'], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        results['su'] = (su.returncode, su.stdout.strip())"#;
    let r = probe(&h, body).await;
    for call in [
        "unshare",
        "mount",
        "keyctl",
        "io_uring_setup",
        "bpf",
        "ptrace",
        "setns",
        "tiocsti",
    ] {
        assert_eq!(r[call], "Operation not permitted", "{call}: {}", r[call]);
    }
    assert_eq!(r["seccomp"], "2", "a seccomp filter is installed");
    assert_eq!(
        r["no_new_privs"], "1",
        "setuid binaries cannot raise privileges"
    );
    assert_ne!(r["su"][1], "0", "su did not make us root: {}", r["su"]);
    h.assert_clean();
}

#[tokio::test]
async fn concurrent_jobs_have_no_channel_between_them() {
    let h = Harness::new();
    let writer = scene(
        r#"        open('/dev/shm/channel', 'w').write('hello')
        open('/tmp/channel', 'w').write('hello')
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        shmid = libc.shmget(0x4d414e49, 4096, 0o1666)
        time.sleep(4)
        self.play(Create(Circle()), run_time=0.2)"#,
    );
    let reader = r#"        time.sleep(2)
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        results = {
            'shm_file': os.path.exists('/dev/shm/channel'),
            'tmp_file': os.path.exists('/tmp/channel'),
            'sysv': libc.shmget(0x4d414e49, 4096, 0o666),
        }"#;
    let w = spec(Engine::Manim, &writer);
    let limits = small();
    let (written, read) = tokio::join!(h.render(&w, &limits), probe(&h, reader));
    assert!(
        written.0.is_ok(),
        "the writer rendered: {:?}",
        written.0.err()
    );
    assert_eq!(read["shm_file"], false);
    assert_eq!(read["tmp_file"], false);
    assert_eq!(
        read["sysv"], -1,
        "the other job's SysV segment is not visible"
    );
    h.assert_clean();
}

#[tokio::test]
async fn tex_cannot_read_host_files_run_commands_or_loop_forever() {
    let h = Harness::new();
    let code = r#"from manim import *

class Tex1(Scene):
    def construct(self):
        self.add(Tex(r"\input{/etc/shadow}"))
"#;
    let e = h.fails(&spec(Engine::Manim, code), &small()).await;
    assert_eq!(e.code(), "latex-error", "{e}");

    let code = r#"from manim import *
import os

class Tex2(Scene):
    def construct(self):
        try:
            self.add(Tex(r"\immediate\write18{touch /job/pwned} x"))
        except Exception:
            pass
        if os.path.exists('/job/pwned'):
            raise RuntimeError('shell escape ran')
        self.play(Create(Circle()), run_time=0.2)
"#;
    let (r, _) = h.ok(&spec(Engine::Manim, code)).await;
    assert!(!r.media.still);

    let looping = r#"from manim import *

class Tex3(Scene):
    def construct(self):
        self.add(Tex(r"\def\x{\x}\x"))
"#;
    let limits = Limits {
        wall_secs: 5,
        ..small()
    };
    let e = h.fails(&spec(Engine::Manim, looping), &limits).await;
    assert!(
        matches!(e.code().as_str(), "timeout" | "latex-error"),
        "{e}"
    );
    h.assert_clean();
}

#[tokio::test]
async fn an_hour_long_wait_is_stopped_by_the_limits() {
    let h = Harness::new();
    let limits = Limits {
        wall_secs: 5,
        ..small()
    };
    let e = h
        .fails(
            &spec(Engine::Manim, &scene("        self.wait(3600)")),
            &limits,
        )
        .await;
    assert!(
        matches!(e.code().as_str(), "timeout" | "output-too-large"),
        "{e}"
    );
    h.assert_clean();
}
