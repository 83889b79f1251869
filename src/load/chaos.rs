//! `manimd load --chaos`: jobs on a throwaway cluster (two API nodes, two
//! workers, PostgreSQL, an S3-compatible store) while its parts are killed
//! with SIGKILL and started again on a seeded schedule; then what became of
//! every job, checked against the store and the bucket, and what was left
//! behind on the host.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use manimd::client::Client;
use manimd::config::Config;
use manimd::jobs::{Job, JobStatus, Store};
use object_store::ObjectStore;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::cluster::{Cluster, ClusterOptions, Part, PREFIX};

pub struct ChaosOptions {
    /// Jobs to have accepted.
    pub count: usize,
    /// Submissions per second.
    pub rate: f64,
    /// Seeds the faults: which part, when, and for how long.
    pub seed: u64,
    /// The mean time between two faults.
    pub fault_every: Duration,
    /// How long to wait for the accepted jobs to end.
    pub deadline: Duration,
    /// Keep the run's directory (logs, database) even when all is well.
    pub keep: bool,
    pub manimd: PathBuf,
    pub runtime: PathBuf,
}

/// What the run saw.
#[derive(Default, Debug)]
pub struct ChaosReport {
    pub count: usize,
    pub seed: u64,
    pub elapsed: Duration,
    /// Where the logs are (kept when something went wrong, or with --keep).
    pub dir: Option<PathBuf>,
    /// Faults, by the part they hit, and each one as it happened.
    pub faults: BTreeMap<String, usize>,
    pub fault_log: Vec<String>,
    /// Submissions that did not reach an API node (it was down, or the
    /// connection broke), sent again to the other one.
    pub retried_other_node: usize,
    /// Submissions an API node refused for now (5xx, 429), sent again.
    pub refused_for_now: BTreeMap<u16, usize>,
    /// Submissions refused for good (a 4xx): none of ours should be.
    pub refused: BTreeMap<u16, usize>,
    /// Jobs the client was told were accepted (202).
    pub accepted: usize,
    /// Jobs in the store that no client was told of: a submission whose
    /// answer was lost (its node or the database died as it answered).
    pub unanswered: usize,
    pub succeeded: usize,
    pub failed: BTreeMap<String, usize>,
    pub canceled: usize,
    /// Jobs that ran more than once (a killed worker, a lost lease).
    pub retried_jobs: usize,
    /// Accepted (or stored) and never ended before the deadline.
    pub lost: usize,
    /// Jobs whose outcome changed after a client first saw it end.
    pub ended_twice: usize,
    /// Jobs with the outputs of more than one attempt in the bucket: each
    /// attempt uploads only after its render succeeded.
    pub run_twice: usize,
    /// Succeeded jobs whose video is not in the bucket.
    pub without_video: usize,
    /// Sandbox processes still alive a second after their node was killed.
    pub orphaned: usize,
    pub leaked_processes: usize,
    pub leaked_cgroups: usize,
    pub leaked_mounts: usize,
    /// Details of anything counted above that should be 0.
    pub problems: Vec<String>,
}

impl ChaosReport {
    pub fn clean(&self) -> bool {
        self.lost
            + self.ended_twice
            + self.run_twice
            + self.without_video
            + self.orphaned
            + self.leaked_processes
            + self.leaked_cgroups
            + self.leaked_mounts
            == 0
    }
}

/// A small seeded generator (SplitMix64): the schedule is the same for the
/// same seed on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The i-th job: a one-second scene at low quality; every tenth raises on
/// purpose, so that outcomes are mixed (`scene-error`, a 422 code).
fn request(i: usize) -> serde_json::Value {
    let fail = if i % 10 == 9 {
        format!("        raise ValueError('on purpose, job {i}')\n")
    } else {
        String::new()
    };
    let code = format!(
        "from manim import *\n\n# chaos job {i}\nclass Chaos(Scene):\n    def construct(self):\n        self.play(Create(Circle()), run_time=1)\n{fail}"
    );
    json!({"code": code, "quality": "low"})
}

/// The job number a stored job's code carries.
fn job_number(job: &Job) -> Option<usize> {
    let line = job
        .spec
        .code
        .lines()
        .find(|l| l.starts_with("# chaos job "))?;
    line["# chaos job ".len()..].trim().parse().ok()
}

/// How a client first saw a job end.
#[derive(Clone, Debug, PartialEq)]
struct Ending {
    status: JobStatus,
    code: Option<String>,
    attempt: Option<u32>,
}

impl Ending {
    fn of(status: JobStatus, error: Option<String>, attempt: Option<u32>) -> Ending {
        Ending {
            status,
            code: error,
            attempt,
        }
    }
}

/// Counters the submitting task shares.
#[derive(Default)]
struct Sent {
    retried_other_node: usize,
    refused_for_now: BTreeMap<u16, usize>,
    refused: BTreeMap<u16, usize>,
}

pub async fn run(config: &Config, opts: &ChaosOptions) -> anyhow::Result<ChaosReport> {
    let dir = tempfile::Builder::new()
        .prefix("manimd-chaos-")
        .tempdir()?
        .keep();
    let cluster = Cluster::start(ClusterOptions {
        manimd: opts.manimd.clone(),
        runtime: opts.runtime.clone(),
        dir: dir.clone(),
        lease_secs: 5,
    })
    .await?;
    let mut report = ChaosReport {
        count: opts.count,
        seed: opts.seed,
        ..ChaosReport::default()
    };
    let started = Instant::now();
    let clients = cluster
        .api_urls()
        .iter()
        .map(|u| Client::new(u, None))
        .collect::<Result<Vec<_>, _>>()?;
    let (accepted_tx, mut accepted_rx) = mpsc::unbounded_channel();
    let sent = Arc::new(Mutex::new(Sent::default()));
    let submitter = tokio::spawn(submit(
        clients.clone(),
        opts.count,
        opts.rate,
        accepted_tx,
        Arc::clone(&sent),
    ));
    let (done_tx, done_rx) = watch::channel(false);
    let schedule = Schedule {
        seed: opts.seed,
        every: opts.fault_every,
        runtime: opts.runtime.clone(),
    };
    let chaos = tokio::spawn(faults(cluster, schedule, started, done_rx));

    // Follow every accepted job through the API until it ends.
    let deadline = started + opts.deadline;
    let mut pending: Vec<String> = Vec::new();
    let mut ended: HashMap<String, Ending> = HashMap::new();
    let mut accepted: HashSet<String> = HashSet::new();
    let mut submitting = true;
    while (submitting || !pending.is_empty()) && Instant::now() < deadline {
        while let Ok(id) = accepted_rx.try_recv() {
            report.accepted += 1;
            accepted.insert(id.clone());
            pending.push(id);
        }
        submitting = !(accepted_rx.is_closed() && accepted_rx.is_empty());
        let mut still = Vec::new();
        let mut answering = true;
        for (n, id) in pending.into_iter().enumerate() {
            // No node answers (the database is down): the rest wait for
            // the next sweep.
            if !answering {
                still.push(id);
                continue;
            }
            match poll(&clients, n, &id).await {
                Poll::Ended(e) => {
                    ended.insert(id, e);
                }
                Poll::Running => still.push(id),
                Poll::NoAnswer => {
                    answering = false;
                    still.push(id);
                }
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    submitter.abort();
    let _ = done_tx.send(true);
    let (cluster, fault_log) = chaos.await??;
    report.elapsed = started.elapsed();
    report.fault_log = fault_log.lines;
    report.faults = fault_log.counts;
    report.orphaned = fault_log.orphaned;
    {
        let sent = sent.lock().unwrap();
        report.retried_other_node = sent.retried_other_node;
        report.refused_for_now = sent.refused_for_now.clone();
        report.refused = sent.refused.clone();
    }
    let outputs = outputs(&cluster).await?;
    let store = Store::open(cluster.database_url()).await?;
    let jobs = all_jobs(&store).await?;
    store.close().await;
    reconcile(&mut report, &jobs, &accepted, &ended, &outputs);

    // Stop the nodes as a service manager would, then look for leftovers.
    let nodes: Vec<PathBuf> = cluster.nodes().map(|n| n.data.clone()).collect();
    cluster.stop().await;
    leftovers(&mut report, config, &dir, &nodes);
    if report.clean() && !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        report.dir = Some(dir);
    }
    Ok(report)
}

/// Submits `count` jobs at `rate`, alternating the API nodes; a submission
/// that does not reach its node goes to the other, one refused for now is
/// sent again. Sends the accepted ids on `accepted`.
async fn submit(
    clients: Vec<Client>,
    count: usize,
    rate: f64,
    accepted: mpsc::UnboundedSender<String>,
    sent: Arc<Mutex<Sent>>,
) {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let started = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let body = request(i).to_string().into_bytes();
        let mut node = i % clients.len();
        loop {
            let answer = tokio::time::timeout(
                Duration::from_secs(30),
                clients[node].submit_raw(body.clone()),
            )
            .await;
            let settled = {
                let mut sent = sent.lock().unwrap();
                match answer {
                    Ok(Ok((202, Some(job)))) => {
                        let _ = accepted.send(job.id);
                        true
                    }
                    Ok(Ok((status, _))) if status == 429 || status >= 500 => {
                        *sent.refused_for_now.entry(status).or_default() += 1;
                        false
                    }
                    Ok(Ok((status, _))) => {
                        *sent.refused.entry(status).or_default() += 1;
                        true
                    }
                    // Refused, reset or timed out: the node is down (or went
                    // down as it answered: the store tells, at the end).
                    Ok(Err(_)) | Err(_) => {
                        sent.retried_other_node += 1;
                        false
                    }
                }
            };
            if settled {
                break;
            }
            node = (node + 1) % clients.len();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

enum Poll {
    Ended(Ending),
    Running,
    NoAnswer,
}

/// A job's ending as the API tells it, asking the other node when one does
/// not answer.
async fn poll(clients: &[Client], n: usize, id: &str) -> Poll {
    for k in 0..clients.len() {
        let client = &clients[(n + k) % clients.len()];
        let Ok(Ok(job)) = tokio::time::timeout(Duration::from_secs(5), client.job(id)).await else {
            continue;
        };
        if !job.status.is_terminal() {
            return Poll::Running;
        }
        let code = job.error.map(|e| e.code.to_string());
        return Poll::Ended(Ending::of(job.status, code, job.result.map(|r| r.attempt)));
    }
    Poll::NoAnswer
}

/// When and how the faults come.
struct Schedule {
    seed: u64,
    every: Duration,
    runtime: PathBuf,
}

/// What the fault task did.
struct FaultLog {
    lines: Vec<String>,
    counts: BTreeMap<String, usize>,
    orphaned: usize,
}

/// Kills and restarts parts of the cluster until told to stop (and at
/// least one round is done). Each round hits a worker, an API node and
/// PostgreSQL once, in a seeded order; the gaps and downtimes are seeded too.
async fn faults(
    mut cluster: Cluster,
    opts: Schedule,
    started: Instant,
    mut done: watch::Receiver<bool>,
) -> anyhow::Result<(Cluster, FaultLog)> {
    let mut rng = Rng(opts.seed);
    let mut log = FaultLog {
        lines: Vec::new(),
        counts: BTreeMap::new(),
        orphaned: 0,
    };
    let mut round: Vec<Part> = Vec::new();
    loop {
        if round.is_empty() {
            if *done.borrow() && log.lines.len() >= 3 {
                break;
            }
            round = vec![
                Part::Worker(rng.below(2)),
                Part::Api(rng.below(2)),
                Part::Postgres,
            ];
            // Fisher-Yates with the seeded generator.
            for k in (1..round.len()).rev() {
                round.swap(k, rng.below(k + 1));
            }
        }
        let part = round.remove(0);
        let gap = opts.every.mul_f64(0.5 + rng.unit());
        let down = Duration::from_secs_f64(1.0 + 4.0 * rng.unit());
        tokio::select! {
            _ = tokio::time::sleep(gap) => {}
            _ = done.changed() => {}
        }
        let at = started.elapsed().as_secs_f64();
        cluster.kill(part).await?;
        let mut line = format!(
            "{at:7.1} s  killed {part}, down {:.1} s",
            down.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Part::Worker(i) | Part::Api(i) = part {
            let data = match part {
                Part::Worker(_) => cluster.nodes().nth(2 + i),
                _ => cluster.nodes().nth(i),
            }
            .map(|n| n.data.clone());
            let alive = data.map_or(0, |d| sandbox_processes(&node_config(&opts.runtime, &d)));
            if alive > 0 {
                line.push_str(&format!(", {alive} sandbox processes outlived it"));
                log.orphaned += alive;
            }
        }
        tokio::time::sleep(down.saturating_sub(Duration::from_secs(1))).await;
        cluster.restart(part).await?;
        line.push_str(&format!(
            ", back at {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        println!("  fault {line}");
        log.lines.push(line);
        let kind = match part {
            Part::Postgres => "PostgreSQL",
            Part::Api(_) => "API node",
            Part::Worker(_) => "worker",
        };
        *log.counts.entry(kind.to_owned()).or_default() += 1;
    }
    Ok((cluster, log))
}

/// A node's configuration as the node itself has it: its data dir names its
/// sandboxes' cgroups and areas.
fn node_config(runtime: &Path, data: &Path) -> Config {
    let mut config = Config::for_tests(data);
    config.runtime_dir = runtime.to_owned();
    config
}

/// Processes in a node's job cgroups now.
fn sandbox_processes(config: &Config) -> usize {
    let sc = config.sandbox_config();
    let Ok(placement) = sc.placement() else {
        return 0;
    };
    sc.job_groups()
        .iter()
        .map(|g| placement.open(g).pids().len())
        .sum()
}

/// Every job in the store, oldest pages last.
async fn all_jobs(store: &Store) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(None, None, 500, cursor).await?;
        let last = page.jobs.last().map(|j| (j.created_ms, j.id.clone()));
        jobs.extend(page.jobs);
        match (page.next_cursor, last) {
            (Some(_), Some(last)) => cursor = Some(last),
            _ => return Ok(jobs),
        }
    }
}

/// The attempts whose output is in the bucket, by job id
/// (`<prefix>/<id>/<attempt>/output.<ext>`).
async fn outputs(cluster: &Cluster) -> anyhow::Result<HashMap<String, BTreeSet<u32>>> {
    let bucket = cluster.bucket()?;
    let prefix = object_store::path::Path::from(PREFIX);
    let keys: Vec<String> = bucket
        .list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    let mut found: HashMap<String, BTreeSet<u32>> = HashMap::new();
    for key in keys {
        let parts: Vec<&str> = key.split('/').collect();
        if let [_, id, attempt, name] = parts[..] {
            if let (Ok(attempt), true) = (attempt.parse(), name.starts_with("output.")) {
                found.entry(id.to_owned()).or_default().insert(attempt);
            }
        }
    }
    Ok(found)
}

/// Checks every stored job: it ended, once, and ran to success at most
/// once; counts the outcomes.
fn reconcile(
    report: &mut ChaosReport,
    jobs: &[Job],
    accepted: &HashSet<String>,
    ended: &HashMap<String, Ending>,
    outputs: &HashMap<String, BTreeSet<u32>>,
) {
    for job in jobs {
        let id = job.id.to_string();
        let Some(n) = job_number(job) else {
            continue;
        };
        let seen = ended.get(&id);
        if !accepted.contains(&id) {
            report.unanswered += 1;
        }
        if !job.status.is_terminal() {
            report.lost += 1;
            report.problems.push(format!(
                "job {id} (no. {n}) never ended: {}",
                job.status.as_str()
            ));
            continue;
        }
        let code = job.error.as_ref().map(|e| e.code.to_string());
        let now = Ending::of(
            job.status,
            code.clone(),
            job.result.as_ref().map(|r| r.attempt),
        );
        if let Some(seen) = seen {
            if *seen != now {
                report.ended_twice += 1;
                report
                    .problems
                    .push(format!("job {id} ended as {seen:?}, later {now:?}"));
            }
        }
        if job.attempts > 1 {
            report.retried_jobs += 1;
        }
        match job.status {
            JobStatus::Succeeded => {
                report.succeeded += 1;
                let attempt = job.result.as_ref().map_or(0, |r| r.attempt);
                if !outputs.get(&id).is_some_and(|a| a.contains(&attempt)) {
                    report.without_video += 1;
                    report
                        .problems
                        .push(format!("job {id} succeeded without its video"));
                }
            }
            JobStatus::Failed => {
                *report
                    .failed
                    .entry(code.unwrap_or_else(|| "(no code)".into()))
                    .or_default() += 1
            }
            _ => report.canceled += 1,
        }
        if let Some(attempts) = outputs.get(&id).filter(|a| a.len() > 1) {
            report.run_twice += 1;
            report.problems.push(format!(
                "job {id} (no. {n}) has outputs of attempts {attempts:?}"
            ));
        }
    }
}

/// After the nodes stopped: processes, cgroups and mounts of the run's
/// sandboxes still on this host.
fn leftovers(report: &mut ChaosReport, config: &Config, dir: &Path, nodes: &[PathBuf]) {
    let dir_text = dir.to_string_lossy().into_owned();
    let mut instances = Vec::new();
    for data in nodes {
        let node = node_config(&config.runtime_dir, data);
        let groups = node.sandbox_config().job_groups();
        if !groups.is_empty() {
            report
                .problems
                .push(format!("cgroups left by {}: {groups:?}", data.display()));
        }
        report.leaked_cgroups += groups.len();
        instances.push(format!("/{}-", node.instance()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines().filter(|l| l.contains(&dir_text)) {
        report.leaked_mounts += 1;
        report.problems.push(format!("mount left: {line}"));
    }
    // bubblewrap and the Python worker: by their command line (bubblewrap
    // names the node's paths) or by the cgroup they run in.
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let read = |name: &str| std::fs::read(entry.path().join(name)).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ");
        let cgroup = String::from_utf8_lossy(&read("cgroup")).into_owned();
        if cmdline.contains(&dir_text) || instances.iter().any(|i| cgroup.contains(i)) {
            report.leaked_processes += 1;
            report.problems.push(format!(
                "process {} left: {}",
                entry.file_name().to_string_lossy(),
                cmdline.chars().take(200).collect::<String>()
            ));
        }
    }
}

pub fn print(r: &ChaosReport) {
    let faults: usize = r.faults.values().sum();
    let by_part: Vec<String> = r.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "manimd load --chaos: {} jobs on 2 API nodes and 2 workers (PostgreSQL, S3 on moto), seed {}, {:.1} s",
        r.count,
        r.seed,
        r.elapsed.as_secs_f64()
    );
    println!(
        "  faults (SIGKILL, restart)                 {faults} ({})",
        by_part.join(", ")
    );
    println!(
        "  submissions sent to the other API node    {}",
        r.retried_other_node
    );
    for (code, n) in &r.refused_for_now {
        println!("  submissions refused for now ({code}), resent {n}");
    }
    for (code, n) in &r.refused {
        println!("  submissions refused ({code})               {n}");
    }
    println!("  accepted                                  {}", r.accepted);
    println!(
        "  accepted, answer lost (found in store)    {}",
        r.unanswered
    );
    println!(
        "  succeeded                                 {}",
        r.succeeded
    );
    for (code, n) in &r.failed {
        println!("  failed: {code:<33} {n}");
    }
    println!("  canceled                                  {}", r.canceled);
    println!(
        "  ran more than one attempt                 {}",
        r.retried_jobs
    );
    println!("  lost (never ended)                        {}", r.lost);
    println!(
        "  ended twice (outcome changed)             {}",
        r.ended_twice
    );
    println!(
        "  run twice to success (2 outputs stored)   {}",
        r.run_twice
    );
    println!(
        "  succeeded without a stored video          {}",
        r.without_video
    );
    println!("  sandbox processes outliving a killed node {}", r.orphaned);
    println!(
        "  leaked: processes {}, cgroups {}, mounts {}",
        r.leaked_processes, r.leaked_cgroups, r.leaked_mounts
    );
    for p in &r.problems {
        println!("  ! {p}");
    }
    if let Some(dir) = &r.dir {
        println!("  logs and database kept in {}", dir.display());
    }
}
