//! The `manimd` binary: the tools around the service (the command line,
//! the benchmark and the load test), over the `manimd` library.

mod bench;
mod cli;
mod folder;
mod load;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    cli::run().await
}
