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
    /// Fold the journal into a new model file now (trains the classifier).
    Compact,
    /// Train the classifier to convergence over every kept sample now, and
    /// fold the journal (what `learn` does at its end).
    Train,
}

pub fn run(context: &Context, command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Stat { json } => {
            let engine = Engine::open(context.config.clone(), &context.data_dir)
                .with_context(|| format!("cannot open {}", context.data_dir.display()))?;
            let stats = engine.store_stats();
            let intact = engine.verify_store();
            let lines = [
                ("data dir", context.data_dir.display().to_string()),
                (
                    "format version",
                    format!(
                        "{} (tokenizer {})",
                        stats.format_version, stats.tokenizer_version
                    ),
                ),
                ("learned spam", stats.spam_learns.to_string()),
                ("learned ham", stats.ham_learns.to_string()),
                ("learned messages", stats.learned_messages.to_string()),
                (
                    "model tokens",
                    format!("{} in {} slots", stats.model_tokens, stats.model_slots),
                ),
                (
                    "byte-gram buckets",
                    format!("{} of {} used", stats.gram_buckets_used, stats.gram_buckets),
                ),
                ("model file", format!("{} bytes", stats.model_bytes)),
                (
                    "samples kept",
                    format!(
                        "{} spam, {} ham ({} bytes of features; at most {})",
                        stats.spam_samples,
                        stats.ham_samples,
                        stats.sample_bytes,
                        context.config.classifier.max_samples
                    ),
                ),
                (
                    "last training",
                    if stats.trained_at == 0 {
                        "never".to_owned()
                    } else {
                        format!(
                            "unix time {}, {:.0} ms, {} epochs, loss {:.5}, calibration {:.3} z {:+.3}; {} learns since (online steps)",
                            stats.trained_at,
                            stats.train_millis,
                            stats.train_epochs,
                            stats.train_loss,
                            stats.calibration_slope,
                            stats.calibration_intercept,
                            stats.untrained_learns
                        )
                    },
                ),
                (
                    "journal",
                    format!(
                        "{} bytes, {} tokens not yet compacted (generation {})",
                        stats.journal_bytes, stats.overlay_tokens, stats.journal_generation
                    ),
                ),
            ];
            super::print_store_stats(json, &stats, &lines, intact)
        }
        ModelCommand::Train => {
            let mut engine = Engine::open_for_learning(context.config.clone(), &context.data_dir)
                .with_context(|| {
                format!("cannot open {} for training", context.data_dir.display())
            })?;
            let trained = engine.train()?;
            println!(
                "trained: {} spam and {} ham samples, {} epochs, loss {:.5}, duality gap {:.1}%, calibration {:.3} z {:+.3}, {:.0} ms",
                trained.spam_samples,
                trained.ham_samples,
                trained.epochs,
                trained.loss,
                trained.duality_gap * 100.0,
                trained.calibration.slope,
                trained.calibration.intercept,
                trained.micros as f64 / 1000.0
            );
            Ok(ExitCode::SUCCESS)
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
