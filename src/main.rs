//! The `tiergate` binary: the gateway (default), `tiergate check` to validate a config, or `tiergate keys …` to
//! provision and move keys.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use tiergate::keys::MovingStore;
use tiergate::provision::{self, ApplyOptions};
use tiergate::{config, serve, Listen};

/// `tiergate --version`: the crate version and the git commit it was built from (build.rs), so a report or an
/// installed package names the exact source.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TIERGATE_COMMIT"), ")");

/// An OpenAI-compatible LLM gateway: virtual keys and free/paid tier routing, configured like LiteLLM.
#[derive(Parser, Debug)]
#[command(version = VERSION, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Running the gateway.
#[derive(Args, Debug)]
struct ServeArgs {
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
    /// HTTP worker threads, 1 to 1024 (default: one per CPU core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// Write a JSON line per inference request to this file (appended), or `-` for standard output.
    #[arg(long)]
    access_log: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load and validate a config as start-up and reload do: prints every warning and the error, each naming
    /// its entry; exits non-zero when the gateway would refuse it (for `ExecStartPre=` and CI).
    Check {
        /// The config file to check.
        #[arg(long, default_value = "config.yaml")]
        config: PathBuf,
    },
    /// Manage the virtual keys of a running gateway (local or remote) over HTTP.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create the keys listed in a YAML file that the gateway lacks and update those that differ (by alias).
    /// The master key is read from the LITELLM_MASTER_KEY environment variable.
    Apply {
        /// YAML file: `keys: [{alias, tier, models, duration, metadata}, ...]`.
        file: PathBuf,
        /// The gateway's base URL.
        #[arg(long, env = "TIERGATE_URL", default_value = "http://localhost:4000")]
        url: String,
        /// File the new plaintext keys are appended to, one JSON line each (created with mode 0600).
        #[arg(long, default_value = "new-keys.jsonl")]
        keys_out: PathBuf,
        /// Print the outcome as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write every key (hashed), its spend and every budget tier as JSON lines, from a stopped gateway's
    /// store, or from the shared store of replicas (`--redis-url`). No plaintext key is in it: neither has any.
    Export {
        /// The stopped gateway's --data-dir.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Read the replicas' shared store in this Redis instead (running replicas may stay up).
        #[arg(long, env = "REDIS_URL", hide_env_values = true)]
        redis_url: Option<String>,
        /// Where the lines go (`-`: standard output).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Read an export into a stopped gateway's store, or into the shared store of replicas (`--redis-url`):
    /// keys and budgets it lacks are added (audited as `import`); ones it has (same hash, alias or budget
    /// id) are skipped, never overwritten.
    Import {
        /// The export (`-`: standard input).
        file: PathBuf,
        /// The stopped gateway's --data-dir (created if missing).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Write into the replicas' shared store in this Redis instead (running replicas pick the keys up).
        #[arg(long, env = "REDIS_URL", hide_env_values = true)]
        redis_url: Option<String>,
    },
}

/// mimalloc rather than glibc's malloc: a proxied request allocates and frees a few dozen small blocks, and
/// glibc's per-thread cache (seven blocks a size) sent most of them through its locked slow path and its
/// consolidation; blocks freed on another thread cost that thread's arena lock too (spend-log rows were, before
/// their boxes were handed back for reuse). Measured in `bench/results/issue-22-allocator.md`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status after a panic (EX_SOFTWARE): a bug, for the service manager to restart the gateway on.
const PANIC_EXIT_STATUS: i32 = 70;

fn main() -> ExitCode {
    let mut logging = env_logger::Builder::new();
    // actix-http logs every malformed request at ERROR ("stream error: request parse error"): that is the
    // client's error, answered with a 400, not the operator's. RUST_LOG can turn it back on.
    logging.filter_level(log::LevelFilter::Info).filter_module("actix_http::h1::dispatcher", log::LevelFilter::Off);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        logging.parse_filters(&filters);
    }
    logging.init();
    exit_on_panic();
    let cli = Cli::parse();
    match cli.command {
        None => run_gateway(cli.serve),
        Some(Command::Check { config }) => {
            let checked = config::check(&config, &|var| std::env::var(var).ok());
            print!("{checked}");
            match checked.usable() {
                true => ExitCode::SUCCESS,
                false => ExitCode::FAILURE,
            }
        }
        Some(Command::Keys(KeysCommand::Apply { file, url, keys_out, json })) => {
            let Some(master_key) = std::env::var("LITELLM_MASTER_KEY").ok().filter(|key| !key.is_empty()) else {
                eprintln!("error: set LITELLM_MASTER_KEY to the gateway's master key");
                return ExitCode::FAILURE;
            };
            let options = ApplyOptions { file, url, master_key, keys_out, json };
            match actix_rt::System::new().block_on(provision::apply(&options)) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Keys(KeysCommand::Export { data_dir, out, redis_url })) => move_keys(|| {
            let store = MovingStore::open(&data_dir, redis_url.as_deref())?;
            let mut sink: Box<dyn std::io::Write> = match out.as_os_str() == "-" {
                true => Box::new(std::io::stdout().lock()),
                // Hashes, aliases and limits: the owner's only, as the data dir is.
                false => {
                    let file =
                        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&out)?;
                    // A file that was there keeps its mode on open: made private here too.
                    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                    Box::new(file)
                }
            };
            let moved = store.export_lines(&mut sink)?;
            sink.flush()?;
            Ok(format!(
                "exported {} keys and {} budgets, {} added models, {} users/teams/organizations, {} end users",
                moved.keys, moved.budgets, moved.models, moved.entities, moved.end_users
            ))
        }),
        Some(Command::Keys(KeysCommand::Import { file, data_dir, redis_url })) => move_keys(|| {
            let store = MovingStore::open(&data_dir, redis_url.as_deref())?;
            let input: Box<dyn std::io::BufRead> = match file.as_os_str() == "-" {
                true => Box::new(std::io::stdin().lock()),
                false => Box::new(std::io::BufReader::new(std::fs::File::open(&file)?)),
            };
            let moved = store.import_lines(input)?;
            Ok(format!(
                "imported {} keys and {} budgets, {} added models, {} users/teams/organizations, {} end users; {} \
                 already there, skipped",
                moved.keys, moved.budgets, moved.models, moved.entities, moved.end_users, moved.skipped
            ))
        }),
    }
}

/// Runs an export or import; its summary goes to standard error (standard output may carry the export).
fn move_keys(run: impl FnOnce() -> Result<String, Box<dyn std::error::Error>>) -> ExitCode {
    match run() {
        Ok(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A panic is a bug. Tokio would contain it to one task, which can leave an actor dead in a gateway that still
/// answers (key management or picks failing while readiness says healthy). Rather than run half-alive, the
/// process exits non-zero so its service manager restarts it; acknowledged key changes are already on disk.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        log::error!("tiergate hit a bug and exits with status {PANIC_EXIT_STATUS} so it can be restarted: {info}");
        std::process::exit(PANIC_EXIT_STATUS);
    }));
}

fn run_gateway(args: ServeArgs) -> ExitCode {
    let loaded = match config::load(&args.config, &|var| std::env::var(var).ok()) {
        Ok(loaded) => loaded,
        Err(err) => {
            log::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    let listen = Listen {
        host: args.host,
        port: args.port,
        workers: args.workers.map(usize::from),
        access_log: args.access_log,
    };
    match actix_rt::System::new().block_on(serve(loaded.settings, &args.config, &args.data_dir, listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
