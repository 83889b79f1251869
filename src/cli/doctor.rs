//! `manimd doctor`: the host self-check, printed one line per requirement.

use std::process::ExitCode;

use manimd::config::Config;

pub async fn run(config: &Config) -> ExitCode {
    let checks = manimd::doctor::run(config).await;
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
