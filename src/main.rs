use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    manimd::cli::run().await
}
