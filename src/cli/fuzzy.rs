//! `chaff fuzzy add|del|stat|compact`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chaff::Engine;
use chaff::mailbox::Messages;

use super::Context;

/// Reports are made durable in batches, as `learn` does.
const BATCH_MESSAGES: usize = 2000;
const BATCH_TIME: Duration = Duration::from_millis(500);

#[derive(clap::Subcommand)]
pub enum FuzzyCommand {
    /// Report messages to a fuzzy list: their near-copies will match.
    Add {
        /// The list (1 = denied/spam, 2 = allowed by default; see [fuzzy.flags]).
        #[arg(short, long, default_value_t = 1)]
        flag: u32,
        /// Reports this counts as (summed with earlier reports).
        #[arg(short, long, default_value_t = 1)]
        weight: u32,
        /// Message files, directory trees, mbox files or maildirs.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Remove messages' digests from a fuzzy list.
    Del {
        #[arg(short, long, default_value_t = 1)]
        flag: u32,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Stored digests, file sizes, format version.
    Stat {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fold the fuzzy journal into a new model file now (dropping expired entries).
    Compact,
}

pub fn run(context: &Context, command: FuzzyCommand) -> anyhow::Result<ExitCode> {
    match command {
        FuzzyCommand::Add {
            flag,
            weight,
            paths,
        } => learn(context, &paths, flag, Some(weight)),
        FuzzyCommand::Del { flag, paths } => learn(context, &paths, flag, None),
        FuzzyCommand::Stat { json } => {
            let engine = Engine::open(context.config.clone(), &context.data_dir)
                .with_context(|| format!("cannot open {}", context.data_dir.display()))?;
            let stats = engine.fuzzy_stats();
            let intact = engine.verify_fuzzy_store();
            let lines = [
                ("data dir", context.data_dir.display().to_string()),
                (
                    "format version",
                    format!(
                        "{} (digests {})",
                        stats.format_version, stats.digest_version
                    ),
                ),
                (
                    "model entries",
                    format!(
                        "{} ({} with min-hash signatures)",
                        stats.model_entries, stats.model_signatures
                    ),
                ),
                ("model file", format!("{} bytes", stats.model_bytes)),
                (
                    "journal",
                    format!(
                        "{} bytes, {} entries not yet compacted (generation {})",
                        stats.journal_bytes, stats.overlay_entries, stats.journal_generation
                    ),
                ),
            ];
            super::print_store_stats(json, &stats, &lines, intact)
        }
        FuzzyCommand::Compact => {
            let mut engine =
                Engine::open_for_fuzzy_learning(context.config.clone(), &context.data_dir)
                    .with_context(|| {
                        format!("cannot open {} for compaction", context.data_dir.display())
                    })?;
            engine.compact()?;
            let stats = engine.fuzzy_stats();
            println!(
                "compacted: {} entries, {} bytes",
                stats.model_entries, stats.model_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Adds (`weight` given) or deletes every message under `paths`.
fn learn(
    context: &Context,
    paths: &[PathBuf],
    flag: u32,
    weight: Option<u32>,
) -> anyhow::Result<ExitCode> {
    if context.config.fuzzy.flag(flag).is_none() {
        anyhow::bail!(
            "fuzzy flag {flag} is not configured (add [fuzzy.flags.{flag}] to the config)"
        );
    }
    let mut engine = Engine::open_for_fuzzy_learning(context.config.clone(), &context.data_dir)
        .with_context(|| {
            format!(
                "cannot open {} for fuzzy reports",
                context.data_dir.display()
            )
        })?;
    let started = Instant::now();
    let (mut messages, mut digests, mut pending_messages, mut pending_digests) = (0, 0, 0, 0);
    let mut last_commit = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    for item in Messages::new(paths) {
        match item {
            Ok(raw) => {
                let result = match weight {
                    Some(weight) => engine.fuzzy_add(&raw.bytes, flag, weight),
                    None => engine.fuzzy_del(&raw.bytes, flag),
                };
                match result {
                    Ok(done) => {
                        pending_messages += 1;
                        pending_digests += done.digests;
                    }
                    Err(error) => failures.push(format!("{}: {error}", raw.origin)),
                }
            }
            Err(error) => failures.push(error.to_string()),
        }
        if pending_messages >= BATCH_MESSAGES || last_commit.elapsed() >= BATCH_TIME {
            engine.commit()?;
            messages += std::mem::take(&mut pending_messages);
            digests += std::mem::take(&mut pending_digests);
            last_commit = Instant::now();
        }
    }
    engine.commit()?;
    messages += pending_messages;
    digests += pending_digests;
    let compacted = engine.compact_if_due()?;
    let seconds = started.elapsed().as_secs_f64();
    match weight {
        Some(weight) => println!(
            "added {messages} messages ({digests} digests) to list {flag} with weight {weight}, failed {} ({seconds:.2}s{})",
            failures.len(),
            if compacted { ", compacted" } else { "" },
        ),
        None => println!(
            "deleted {digests} digests of {messages} messages from list {flag}, failed {} ({seconds:.2}s{})",
            failures.len(),
            if compacted { ", compacted" } else { "" },
        ),
    }
    for failure in &failures {
        println!("failed: {failure}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
