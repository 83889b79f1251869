//! A throwaway cluster on this machine for `manimd load --chaos`: a
//! PostgreSQL (Debian's binaries, a fresh cluster in the run's directory),
//! moto's S3 server (the runtime's tools venv), two API nodes and two
//! `manimd worker` nodes (this binary), each of which can be killed with
//! SIGKILL and started again on the same data, port and address.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use manimd::process::{self, Daemon};
use tokio::io::AsyncBufReadExt;
use tokio::process::Child;

/// The bucket the nodes share, and the prefix their files go under.
pub const BUCKET: &str = "chaos";
pub const PREFIX: &str = "cluster";
/// Any credentials do for moto.
const S3_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "manimd-chaos"),
    ("AWS_SECRET_ACCESS_KEY", "manimd-chaos-secret"),
];

/// What the cluster is made of, and how its nodes run.
pub struct ClusterOptions {
    /// This binary, started as every node.
    pub manimd: PathBuf,
    /// The installed engines and tools (`--runtime-dir`).
    pub runtime: PathBuf,
    /// Where everything lives: the database, the nodes' data dirs, the logs.
    pub dir: PathBuf,
    /// A worker's lease (`--lease-secs`): how soon a killed worker's job is
    /// taken up again.
    pub lease_secs: u64,
}

/// Which part of the cluster a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Postgres,
    Api(usize),
    Worker(usize),
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Postgres => write!(f, "PostgreSQL"),
            Part::Api(i) => write!(f, "API node {}", ["a", "b"][*i]),
            Part::Worker(i) => write!(f, "worker w{}", i + 1),
        }
    }
}

pub struct Cluster {
    opts: ClusterOptions,
    pg: Postgres,
    moto: Child,
    /// `http://127.0.0.1:PORT` of moto.
    s3_endpoint: String,
    /// API nodes a and b, then workers w1 and w2.
    apis: Vec<Node>,
    workers: Vec<Node>,
}

/// One `manimd serve` or `manimd worker` with its own data dir, as on its
/// own machine.
pub struct Node {
    name: String,
    /// `Some(port)` for an API node: it comes back on the same address.
    port: Option<u16>,
    pub data: PathBuf,
    child: Option<Child>,
}

impl Cluster {
    /// Starts PostgreSQL, moto and the four nodes.
    pub async fn start(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(opts.dir.join("logs"))?;
        // PostgreSQL runs as its own user and must reach its directory.
        std::fs::set_permissions(&opts.dir, std::fs::Permissions::from_mode(0o755))?;
        let pg = Postgres::init(&opts.dir).await?;
        let (moto, s3_endpoint) = start_moto(&opts).await?;
        let mut cluster = Cluster {
            pg,
            moto,
            s3_endpoint,
            apis: ["a", "b"]
                .iter()
                .map(|n| Node::new(n, Some(free_port()), &opts.dir))
                .collect::<anyhow::Result<_>>()?,
            workers: ["w1", "w2"]
                .iter()
                .map(|n| Node::new(n, None, &opts.dir))
                .collect::<anyhow::Result<_>>()?,
            opts,
        };
        cluster.pg.start(&cluster.opts.dir).await?;
        for part in [Part::Api(0), Part::Api(1), Part::Worker(0), Part::Worker(1)] {
            cluster.restart(part).await?;
        }
        Ok(cluster)
    }

    /// The API nodes' base URLs.
    pub fn api_urls(&self) -> Vec<String> {
        self.apis
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.port.unwrap_or(0)))
            .collect()
    }

    pub fn database_url(&self) -> &str {
        &self.pg.url
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.apis.iter().chain(&self.workers)
    }

    /// SIGKILLs a part: a node's process alone (its sandboxes must die with
    /// it), or PostgreSQL's whole process group, as a crash of its machine.
    pub async fn kill(&mut self, part: Part) -> anyhow::Result<()> {
        match part {
            Part::Postgres => self.pg.kill().await,
            Part::Api(i) => self.apis[i].kill().await,
            Part::Worker(i) => self.workers[i].kill().await,
        }
    }

    /// Starts a part again on the same data (a node retries while the store
    /// it needs at start is still coming back).
    pub async fn restart(&mut self, part: Part) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let started = match part {
                Part::Postgres => self.pg.start(&self.opts.dir).await,
                Part::Api(i) => self.spawn_node(true, i).await,
                Part::Worker(i) => self.spawn_node(false, i).await,
            };
            match started {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.context(format!("{part}"))),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    async fn spawn_node(&mut self, api: bool, i: usize) -> anyhow::Result<()> {
        let storage = format!(
            "s3://{BUCKET}/{PREFIX}?endpoint={}&region=us-east-1",
            self.s3_endpoint
        );
        let lease = self.opts.lease_secs.to_string();
        let node = if api {
            &mut self.apis[i]
        } else {
            &mut self.workers[i]
        };
        let addr = format!("127.0.0.1:{}", node.port.unwrap_or(0));
        let mut args: Vec<&OsStr> = vec![
            OsStr::new(if api { "serve" } else { "worker" }),
            OsStr::new("--data-dir"),
            node.data.as_os_str(),
            OsStr::new("--runtime-dir"),
            self.opts.runtime.as_os_str(),
            OsStr::new("--database"),
            OsStr::new(&self.pg.url),
            OsStr::new("--storage"),
            OsStr::new(&storage),
            OsStr::new("--lease-secs"),
            OsStr::new(&lease),
            OsStr::new("--warm-pool"),
            OsStr::new("0"),
        ];
        if api {
            // An API node renders nothing: the workers do.
            args.extend(["--addr", &addr, "--workers", "0"].map(OsStr::new));
        } else {
            args.extend(["--workers", "1"].map(OsStr::new));
        }
        let log = log_file(&self.opts.dir, &node.name)?;
        let mut env = S3_ENV.to_vec();
        env.push(("MANIMD_LOG", "info"));
        let mut child = process::spawn_daemon(Daemon {
            program: &self.opts.manimd,
            args: &args,
            env: &env,
            user: None,
            log: Some(log),
            stdout: true,
        })?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("manimd listening on ") || line == "manimd worker ready" {
                    return Ok(true);
                }
            }
            Ok::<_, std::io::Error>(false)
        })
        .await;
        if !matches!(ready, Ok(Ok(true))) {
            let _ = child.kill().await;
            bail!("{} did not start (see its log)", node.name);
        }
        // Keep reading its stdout so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        node.child = Some(child);
        Ok(())
    }

    /// Stops every node gracefully (SIGTERM, as a service manager would),
    /// then moto and PostgreSQL.
    pub async fn stop(mut self) {
        for node in self.apis.iter_mut().chain(self.workers.iter_mut()) {
            node.stop().await;
        }
        let _ = self.moto.kill().await;
        let _ = self.pg.kill().await;
    }

    /// The S3 bucket as the nodes see it, for the checks after the run.
    pub fn bucket(&self) -> anyhow::Result<object_store::aws::AmazonS3> {
        Ok(object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(&self.s3_endpoint)
            .with_allow_http(true)
            .with_access_key_id(S3_ENV[0].1)
            .with_secret_access_key(S3_ENV[1].1)
            .build()?)
    }
}

impl Node {
    fn new(name: &str, port: Option<u16>, dir: &Path) -> anyhow::Result<Node> {
        let data = dir.join("nodes").join(name);
        std::fs::create_dir_all(&data)?;
        Ok(Node {
            name: name.to_owned(),
            port,
            data,
            child: None,
        })
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                process::signal(pid, libc::SIGKILL)?;
            }
            child.wait().await?;
        }
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = process::signal(pid, libc::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(90), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// PostgreSQL on a free port of loopback, with its own socket directory, so
/// it shares nothing with any server the machine already runs.
struct Postgres {
    /// `postgres://manimd@127.0.0.1:PORT/postgres`
    url: String,
    port: u16,
    bin: PathBuf,
    user: (u32, u32),
    child: Option<Child>,
}

impl Postgres {
    /// A fresh cluster in `<dir>/pg` (not started).
    async fn init(dir: &Path) -> anyhow::Result<Postgres> {
        let user = postgres_ids()?;
        let (data, sock) = (dir.join("pg/data"), dir.join("pg/sock"));
        for d in [&data, &sock] {
            std::fs::create_dir_all(d)?;
            std::os::unix::fs::chown(d, Some(user.0), Some(user.1))?;
        }
        let bin = pg_bin_dir()?;
        let args = [
            "--auth=trust",
            "--username=manimd",
            "--encoding=UTF8",
            "--no-sync",
            "-D",
        ]
        .map(OsStr::new);
        let mut args = args.to_vec();
        args.push(data.as_os_str());
        let mut initdb = process::spawn_daemon(Daemon {
            program: &bin.join("initdb"),
            args: &args,
            env: &[],
            user: Some(user),
            log: Some(log_file(dir, "postgres")?),
            stdout: false,
        })?;
        if !initdb.wait().await?.success() {
            bail!("initdb failed (see logs/postgres.log)");
        }
        let port = free_port();
        Ok(Postgres {
            url: format!("postgres://manimd@127.0.0.1:{port}/postgres"),
            port,
            bin,
            user,
            child: None,
        })
    }

    /// Starts the server and waits until it answers (after a crash, once
    /// its recovery is done).
    async fn start(&mut self, dir: &Path) -> anyhow::Result<()> {
        let (data, sock) = (dir.join("pg/data"), dir.join("pg/sock"));
        let port = self.port.to_string();
        let mut args: Vec<&OsStr> = vec![OsStr::new("-D"), data.as_os_str()];
        args.extend(["-p", &port, "-k"].map(OsStr::new));
        args.push(sock.as_os_str());
        // fsync off: a crash of the server process, not of the machine, is
        // what the run simulates; the kernel keeps what was written.
        args.extend(
            [
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ]
            .map(OsStr::new),
        );
        let mut child = process::spawn_daemon(Daemon {
            program: &self.bin.join("postgres"),
            args: &args,
            env: &[],
            user: Some(self.user),
            log: Some(log_file(dir, "postgres")?),
            stdout: false,
        })?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("PostgreSQL exited at start: {status}");
            }
            let ready = process::run_tool(
                self.bin.join("pg_isready"),
                &["-h", "127.0.0.1", "-p", &port, "-q"].map(OsStr::new),
                Path::new("/"),
                &[],
            )
            .await?;
            if ready.status.success() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = process::kill_group(child.id().unwrap_or(0));
                bail!("PostgreSQL did not start");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().unwrap_or(0);
            if pid != 0 {
                process::kill_group(pid)?;
            }
            child.wait().await?;
            // Its backends are in the group too; wait until they are gone,
            // or the next start finds their shared memory still in use.
            let gone = Instant::now() + Duration::from_secs(30);
            while group_alive(pid) && Instant::now() < gone {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// Whether any process is still in the process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    if pgid == 0 {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                // pid (comm) state ppid pgrp ...: comm may hold spaces.
                let rest = &s[s.rfind(')')? + 2..];
                rest.split(' ').nth(2)?.parse::<u32>().ok()
            })
            == Some(pgid)
    })
}

/// moto's S3 server on a free port of loopback, with the bucket made.
async fn start_moto(opts: &ClusterOptions) -> anyhow::Result<(Child, String)> {
    let moto = opts.runtime.join("venv/tools/bin/moto_server");
    if !moto.exists() {
        bail!("{} is missing: run scripts/setup.sh", moto.display());
    }
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let port = free_port().to_string();
        let mut child = process::spawn_daemon(Daemon {
            program: &moto,
            args: &["-H", "127.0.0.1", "-p", &port].map(OsStr::new),
            env: &[],
            user: None,
            log: Some(log_file(&opts.dir, "moto")?),
            stdout: false,
        })?;
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if child.try_wait()?.is_some() {
                break;
            }
            // Path-style bucket creation; moto does not check signatures.
            let made = http.put(format!("{endpoint}/{BUCKET}")).send().await;
            if made.is_ok_and(|r| r.status().is_success()) {
                return Ok((child, endpoint));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill().await;
    }
    bail!("moto_server did not answer")
}

/// `<dir>/logs/<name>.log`, appended to: a restart adds to the same log.
fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path = dir.join("logs").join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    // PostgreSQL writes its log as its own user, through this descriptor.
    Ok(file)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The newest installed major version's binaries (Debian's layout).
fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (scripts/setup.sh installs it)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    Ok(versions.pop().context("no PostgreSQL version")?.1)
}

/// PostgreSQL refuses to run as root; it runs as Debian's `postgres` user.
fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .context("no postgres user (Debian's package makes it)")?;
    let f: Vec<&str> = line.split(':').collect();
    Ok((f[2].parse()?, f[3].parse()?))
}
