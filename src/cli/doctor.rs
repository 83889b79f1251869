//! `manimd doctor`: the host self-check, printed one line per requirement.

use std::process::ExitCode;

use manimd::config::Config;

pub async fn run(config: &Config, storage: Option<&str>) -> ExitCode {
    let mut checks = manimd::doctor::run(config).await;
    if let Some(url) = storage.filter(|u| !u.trim().is_empty()) {
        checks.push(storage_check(url).await);
    }
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut required_failed = false;
    for check in &checks {
        match &check.outcome {
            Ok(detail) => println!("ok    {:<width$}  {detail}", check.name),
            Err(fault) => {
                let mark = if check.required { "FAIL" } else { "warn" };
                required_failed |= check.required;
                println!("{mark}  {:<width$}  {}", check.name, fault.problem);
                println!("      {:<width$}  fix: {}", "", fault.fix);
            }
        }
    }
    if required_failed {
        println!("renders cannot work here until the FAIL lines are fixed");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The file storage `serve` and `worker` would use (`--storage`,
/// `MANIMD_STORAGE`): a bucket must answer a write, a read and a delete,
/// as it must at their start.
async fn storage_check(url: &str) -> manimd::doctor::Check {
    use manimd::doctor::{Check, Fault};
    // Opened in a throwaway directory: a bucket's spool is made at open,
    // and the check should leave nothing in the data dir.
    let outcome = match tempfile::tempdir() {
        Err(e) => Err(e.to_string()),
        Ok(scratch) => match manimd::storage::Storage::open(Some(url), scratch.path()) {
            Err(e) => Err(e.to_string()),
            Ok(storage) => storage.check().await.map_err(|e| e.to_string()),
        },
    };
    Check {
        name: "storage",
        required: true,
        outcome: outcome.map_err(|problem| Fault {
            problem,
            fix:
                "create the bucket, or correct --storage (MANIMD_STORAGE) and the AWS_* credentials"
                    .into(),
        }),
    }
}
