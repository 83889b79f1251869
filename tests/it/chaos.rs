//! `manimd load --chaos`, reduced: the same cluster (two API nodes, two
//! workers, PostgreSQL, moto) and the same checks as the full run that
//! RELIABILITY.md records, with 30 jobs instead of 200 and a fault about
//! every 8 s instead of 20 (each round of three faults kills a worker, an
//! API node and PostgreSQL once), so that it ends in a few minutes on two
//! cores.

/// The number that ends the report's first line starting with `label`.
fn count(report: &str, label: &str) -> usize {
    sum(report, label).unwrap_or_else(|| panic!("no line {label:?} in:\n{report}"))
}

/// The numbers that end the report's lines starting with `label`: the
/// first one, or all of them added for a label ending in ": " (the failed
/// jobs, a line per code).
fn sum(report: &str, label: &str) -> Option<usize> {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with(label))
        .collect();
    if lines.is_empty() {
        return None;
    }
    let take = if label.ends_with(": ") {
        lines.len()
    } else {
        1
    };
    let number = |l: &&str| -> usize {
        let last = l.split_whitespace().last().unwrap_or("");
        last.parse().unwrap_or_else(|_| panic!("no count on {l:?}"))
    };
    Some(lines[..take].iter().map(number).sum())
}

#[test]
fn every_job_ends_once_while_workers_an_api_node_and_postgres_are_killed() {
    let runtime = manimd::config::Config::for_tests("/").runtime_dir;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(["load", "--chaos", "--count", "30", "--rate", "1"])
        .args(["--fault-every-secs", "8", "--seed", "7"])
        .arg("--runtime-dir")
        .arg(&runtime)
        .output()
        .expect("manimd runs");
    let report = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}\n{stderr}");

    assert_eq!(count(&report, "accepted "), 30, "{report}");
    let stored = 30 + count(&report, "accepted, answer lost");
    let ended = count(&report, "succeeded ")
        + sum(&report, "failed: ").unwrap_or(0)
        + count(&report, "canceled ");
    assert!(ended >= 30, "{report}");
    // One in ten raises on purpose: a typed failure of the scene's own.
    assert!(count(&report, "failed: scene-error") >= 3, "{report}");
    assert!(stored >= 30);
    for zero in [
        "lost",
        "ended twice",
        "run twice to success",
        "succeeded without a stored video",
        "sandbox processes outliving",
    ] {
        assert_eq!(count(&report, zero), 0, "{zero}: {report}");
    }
    assert!(
        report.contains("leaked: processes 0, cgroups 0, mounts 0"),
        "{report}"
    );
    // At least one round: every kind of part was killed.
    for part in ["worker", "API node", "PostgreSQL"] {
        assert!(report.contains(&format!("{part} ")), "{part}: {report}");
    }
}
