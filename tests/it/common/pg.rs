//! A throwaway PostgreSQL server for one test: Debian's binaries (installed
//! by scripts/setup.sh), a fresh cluster in a temporary directory, a free
//! port on loopback and its own socket directory, so it shares nothing with
//! any server the machine already runs. Stopped and removed on drop.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    /// `postgres://manimd@127.0.0.1:PORT/postgres`
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The newest installed major version's binaries.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup.sh)")
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version").1
}

/// PostgreSQL refuses to run as root; it runs as Debian's `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("the postgres user exists (Debian's package makes it)");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    pub fn start() -> Postgres {
        let (uid, gid) = postgres_ids();
        let dir = tempfile::Builder::new()
            .prefix("manimd-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (data, sock) = (dir.path().join("data"), dir.path().join("sock"));
        for d in [&data, &sock] {
            std::fs::create_dir(d).unwrap();
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
        }
        let bin = bin_dir();
        let out = Command::new(bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=manimd",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Command::new(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&sock)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = Postgres {
            url: format!("postgres://manimd@127.0.0.1:{port}/postgres"),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .unwrap();
            if ready.success() {
                return pg;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the server and its children exit and
        // release their shared memory; the cluster is thrown away anyway.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGQUIT);
        }
        let _ = self.child.wait();
    }
}
