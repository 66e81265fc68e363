//! `chaff model stat|compact`

use std::process::ExitCode;

use anyhow::Context as _;
use chaff::Engine;

use super::Context;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Learned messages per class, tokens, file sizes, format version.
    Stat {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fold the journal into a new model file now.
    Compact,
}

pub fn run(context: &Context, command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Stat { json } => {
            let engine = Engine::open(context.config.clone(), &context.data_dir)
                .with_context(|| format!("cannot open {}", context.data_dir.display()))?;
            let stats = engine.store_stats();
            let intact = engine.verify_store();
            if json {
                let mut value = serde_json::to_value(&stats)?;
                value["checksum_ok"] = serde_json::Value::Bool(intact);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("data dir:          {}", context.data_dir.display());
                println!(
                    "format version:    {} (tokenizer {})",
                    stats.format_version, stats.tokenizer_version
                );
                println!("learned spam:      {}", stats.spam_learns);
                println!("learned ham:       {}", stats.ham_learns);
                println!("learned messages:  {}", stats.learned_messages);
                println!(
                    "model tokens:      {} in {} slots",
                    stats.model_tokens, stats.model_slots
                );
                println!(
                    "byte-gram buckets: {} of {} used",
                    stats.gram_buckets_used, stats.gram_buckets
                );
                println!("model file:        {} bytes", stats.model_bytes);
                println!(
                    "journal:           {} bytes, {} tokens not yet compacted (generation {})",
                    stats.journal_bytes, stats.overlay_tokens, stats.journal_generation
                );
                println!(
                    "checksum:          {}",
                    if intact { "ok" } else { "MISMATCH" }
                );
            }
            Ok(if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ModelCommand::Compact => {
            let mut engine = Engine::open_for_learning(context.config.clone(), &context.data_dir)
                .with_context(|| {
                format!("cannot open {} for compaction", context.data_dir.display())
            })?;
            engine.compact()?;
            let stats = engine.store_stats();
            println!(
                "compacted: {} tokens, {} learned messages, {} bytes",
                stats.model_tokens, stats.learned_messages, stats.model_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
