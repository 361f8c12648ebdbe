//! The `tiergate` binary: command line, logging, config loading, then the gateway until a signal stops it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tiergate::{config, serve, Listen};

/// An OpenAI-compatible LLM gateway: virtual keys and free/paid tier routing, configured like LiteLLM.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// LiteLLM-style config file (model_list, general_settings.master_key, ...).
    #[arg(long, default_value = "config.yaml")]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on (0 picks a free port; the start-up log line shows which).
    #[arg(long, default_value_t = 4000)]
    port: u16,
    /// Directory of the key store (created if missing). Keys are stored hashed.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// HTTP worker threads (default: one per CPU core).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let loaded = match config::load(&cli.config, &|var| std::env::var(var).ok()) {
        Ok(loaded) => loaded,
        Err(err) => {
            log::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    let listen = Listen { host: cli.host, port: cli.port, workers: cli.workers };
    match actix_rt::System::new().block_on(serve(loaded.settings, &cli.data_dir, listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
