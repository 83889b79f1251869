//! The `manimd` command line: argument definitions and dispatch.

mod render;

use crate::bench::{self as benchmark, BenchOptions};
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_DATA_DIR, DEFAULT_RUNTIME_DIR};
use crate::spec::{Engine, Format, Quality};

#[derive(Parser, Debug)]
#[command(
    name = "manimd",
    version,
    about = "Render Manim scenes to video, every scene in a sandbox"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Job areas, outputs and state.
    #[arg(long, global = true, env = "MANIMD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where scripts/setup.sh installed the engines.
    #[arg(long, global = true, env = "MANIMD_RUNTIME", default_value = DEFAULT_RUNTIME_DIR)]
    pub runtime_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render scenes of a file to a video, locally, in the sandbox.
    Render(RenderArgs),
    /// Compare `manimd render` with the plain `manim` CLI on a fixed scene set.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Runs of each scene each way; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The scene file (Python).
    pub file: PathBuf,
    /// Scenes to render, stitched in the order given. Default: the file's only scene.
    pub scenes: Vec<String>,
    /// The engine; detected from the file's imports when not given.
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    #[arg(long, short, value_enum, default_value = "low")]
    pub quality: Quality,
    /// Output format; taken from the extension of -o when not given, else mp4.
    #[arg(long, short, value_enum)]
    pub format: Option<Format>,
    /// Frame rate, overriding the quality's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=crate::spec::MAX_FPS as i64))]
    pub fps: Option<u32>,
    /// Seed for Python's and NumPy's random generators.
    #[arg(long)]
    pub seed: Option<u32>,
    /// Render every scene in the file, stitched in file order.
    #[arg(long, conflicts_with = "scenes")]
    pub all: bool,
    /// Wall-clock limit in seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Memory limit in MiB (the render's files count too).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Where to write the result. Default: the file's name with the format's extension.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Print no progress, only the result or the error.
    #[arg(long)]
    pub quiet: bool,
    /// Print the result as one JSON object on stdout (for scripts).
    #[arg(long)]
    pub json: bool,
}

impl GlobalArgs {
    pub fn config(&self) -> Config {
        Config {
            data_dir: self.data_dir.clone(),
            runtime_dir: self.runtime_dir.clone(),
            ..Config::default()
        }
    }
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let config = cli.global.config();
    match cli.command {
        Command::Render(args) => render::run(&config, args).await,
        Command::Bench(args) => bench(&config, args).await,
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MANIMD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn bench(config: &Config, args: BenchArgs) -> ExitCode {
    let opts = BenchOptions {
        runs: args.runs.max(1),
        runtime: crate::runtime::Runtime::new(&config.runtime_dir),
        manimd: std::env::current_exe().unwrap_or_else(|_| "manimd".into()),
        data_dir: config.data_dir.join("bench"),
    };
    println!(
        "manimd bench: {} run(s) per scene, medians; machine: {}",
        opts.runs,
        benchmark::machine()
    );
    println!("wall: spawn to exit; MiB: peak RSS (manim: its largest process; manimd: its own plus the sandbox's largest)");
    println!("{}", benchmark::header());
    let result = tokio::task::spawn_blocking(move || {
        benchmark::run(&opts, |row| println!("{}", benchmark::format_row(row)))
    })
    .await;
    match result {
        Ok(Ok(_)) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
