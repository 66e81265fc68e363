//! The `chaff` command line: argument parsing and exit codes only; the work
//! is in `cli/` (adapters) over the library's `Engine`.

mod cli;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The library logs through `tracing` and never prints; this prints its
/// events on stderr, one line each (`WARN rules changed but …`), for the
/// admin's log. Only chaff's own: the resolver's crates log through
/// `tracing` too, and their per-query chatter is not the admin's business.
fn log_to_stderr() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let only_chaff =
        tracing_subscriber::filter::Targets::new().with_target("chaff", tracing::Level::INFO);
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time();
    let _ = tracing_subscriber::registry()
        .with(lines)
        .with(only_chaff)
        .try_init();
}

/// A spam classifier engine that speaks rspamd's protocol.
#[derive(Parser)]
#[command(name = "chaff", version, about)]
struct Args {
    /// Where the model, journal and lock live.
    #[arg(
        long,
        global = true,
        env = "CHAFF_DATA_DIR",
        default_value = "chaff-data"
    )]
    data_dir: PathBuf,
    /// A TOML file merged over the embedded defaults.
    #[arg(long, global = true, env = "CHAFF_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Learn messages as spam or ham (files, directories, mbox, maildir).
    Learn(cli::learn::LearnArgs),
    /// Scan messages and print score, action and symbols.
    Scan(cli::scan::ScanArgs),
    /// Rescore mail archives offline on every core: one JSON Lines or CSV
    /// record per message, a summary on stderr.
    Rescore(cli::rescore::RescoreArgs),
    /// Run the scanning daemon (rspamd's HTTP protocol on a worker and a controller port).
    Serve(server::ServeArgs),
    /// Report messages to fuzzy lists, remove them, inspect the fuzzy store.
    Fuzzy {
        #[command(subcommand)]
        command: cli::fuzzy::FuzzyCommand,
    },
    /// Check rule files (and SpamAssassin's), or see each rule's hit rate
    /// on spam and ham.
    Rules {
        #[command(subcommand)]
        command: cli::rules::RulesCommand,
    },
    /// Inspect or maintain the model.
    Model {
        #[command(subcommand)]
        command: cli::model::ModelCommand,
    },
    /// List or reset the running daemon's rate limits, greylist and
    /// remembered replies (through its controller).
    Policy(cli::policy::PolicyArgs),
}

fn main() -> ExitCode {
    log_to_stderr();
    let args = Args::parse();
    let result = cli::Context::load(args.data_dir, args.config.as_deref()).and_then(|context| {
        match args.command {
            Command::Learn(learn) => cli::learn::run(&context, learn),
            Command::Scan(scan) => cli::scan::run(&context, scan),
            Command::Rescore(rescore) => cli::rescore::run(&context, rescore),
            Command::Model { command } => cli::model::run(&context, command),
            Command::Rules { command } => cli::rules::run(&context, command),
            Command::Fuzzy { command } => cli::fuzzy::run(&context, command),
            Command::Policy(policy) => cli::policy::run(&context, policy),
            Command::Serve(serve) => {
                server::run(context.config, args.config.clone(), context.data_dir, serve)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chaff: {error:#}");
            ExitCode::from(2)
        }
    }
}
