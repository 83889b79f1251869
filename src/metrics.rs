//! Counters for `/metrics`, in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the render-duration histogram, in seconds.
const BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];

#[derive(Default)]
pub struct Metrics {
    succeeded: AtomicU64,
    failed: AtomicU64,
    canceled: AtomicU64,
    rejected_queue_full: AtomicU64,
    cache_hits: AtomicU64,
    render_buckets: [AtomicU64; BUCKETS.len()],
    render_count: AtomicU64,
    /// Sum of render seconds, in milliseconds.
    render_sum_ms: AtomicU64,
}

pub enum Outcome {
    Succeeded,
    Failed,
    Canceled,
}

impl Metrics {
    pub fn job_finished(&self, outcome: Outcome, render_secs: f64) {
        let counter = match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::Failed => &self.failed,
            Outcome::Canceled => &self.canceled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        for (bound, bucket) in BUCKETS.iter().zip(&self.render_buckets) {
            if render_secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.render_count.fetch_add(1, Ordering::Relaxed);
        self.render_sum_ms
            .fetch_add((render_secs * 1000.0) as u64, Ordering::Relaxed);
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self) {
        self.rejected_queue_full.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition, with the gauges the caller measured just now.
    pub fn render(
        &self,
        queue_depth: u64,
        busy_workers: u64,
        rss_bytes: u64,
        sandboxes_started: u64,
    ) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        s.push_str("# HELP manimd_jobs_total Jobs that ended, by outcome.\n# TYPE manimd_jobs_total counter\n");
        for (outcome, v) in [
            ("succeeded", &self.succeeded),
            ("failed", &self.failed),
            ("canceled", &self.canceled),
        ] {
            let _ = writeln!(s, "manimd_jobs_total{{outcome=\"{outcome}\"}} {}", get(v));
        }
        s.push_str("# HELP manimd_jobs_rejected_total Submissions refused because the queue was full.\n# TYPE manimd_jobs_rejected_total counter\n");
        let _ = writeln!(
            s,
            "manimd_jobs_rejected_total {}",
            get(&self.rejected_queue_full)
        );
        s.push_str("# HELP manimd_cache_hits_total Jobs served from the result cache.\n# TYPE manimd_cache_hits_total counter\n");
        let _ = writeln!(s, "manimd_cache_hits_total {}", get(&self.cache_hits));
        s.push_str("# HELP manimd_sandboxes_started_total Sandboxes started (inspections, renders, warm).\n# TYPE manimd_sandboxes_started_total counter\n");
        let _ = writeln!(s, "manimd_sandboxes_started_total {sandboxes_started}");
        s.push_str("# HELP manimd_render_seconds Wall-clock time of sandboxed renders.\n# TYPE manimd_render_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.render_buckets) {
            let _ = writeln!(
                s,
                "manimd_render_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.render_count);
        let _ = writeln!(s, "manimd_render_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "manimd_render_seconds_sum {}",
            get(&self.render_sum_ms) as f64 / 1000.0
        );
        let _ = writeln!(s, "manimd_render_seconds_count {count}");
        s.push_str("# HELP manimd_queue_depth Jobs waiting for a worker.\n# TYPE manimd_queue_depth gauge\n");
        let _ = writeln!(s, "manimd_queue_depth {queue_depth}");
        s.push_str(
            "# HELP manimd_workers_busy Workers rendering now.\n# TYPE manimd_workers_busy gauge\n",
        );
        let _ = writeln!(s, "manimd_workers_busy {busy_workers}");
        s.push_str("# HELP manimd_memory_rss_bytes Resident memory of the manimd process.\n# TYPE manimd_memory_rss_bytes gauge\n");
        let _ = writeln!(s, "manimd_memory_rss_bytes {rss_bytes}");
        s
    }
}

/// A memory field (`VmRSS:`, `VmHWM:`, ...) of a process's status, in
/// bytes; `pid` `None` is this process.
pub fn status_bytes(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// The process's resident and virtual memory.
pub fn process_memory() -> (u64, u64) {
    (status_bytes(None, "VmRSS:"), status_bytes(None, "VmSize:"))
}

/// Total memory of the machine.
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}
