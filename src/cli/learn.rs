//! `chaff learn --spam|--ham PATH...`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chaff::Engine;
use chaff::bayes::LearnOutcome;
use chaff::engine::LearnPreparer;
use chaff::mailbox::Messages;
use chaff::store::Class;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::Context;

/// Learns are made durable in batches: one fsync per batch instead of per
/// message, and a message is reported learned only once its batch is synced.
const BATCH_MESSAGES: usize = 2000;
const BATCH_TIME: Duration = Duration::from_millis(500);
/// Messages prepared in parallel at a time: enough to keep every core busy,
/// few enough that their bytes and features stay small in memory.
const PREPARE_GROUP: usize = 256;

/// A message's origin (empty when it could not be read) and its prepared
/// learn or why it has none.
type Prepared = (String, Result<chaff::engine::PreparedLearn, String>);

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("class").required(true).args(["spam", "ham"])))]
pub struct LearnArgs {
    /// Learn the messages as spam.
    #[arg(long)]
    spam: bool,
    /// Learn the messages as ham.
    #[arg(long)]
    ham: bool,
    /// Leave the learns in the journal instead of folding them into the
    /// model at the end (a later learn or `model compact` folds them).
    #[arg(long)]
    no_compact: bool,
    /// Message files, directory trees, mbox files or maildirs.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Waits for a batch's flush to disk: its counts once it is durable.
fn finish_flush(
    flushing: std::thread::ScopedJoinHandle<'_, Result<Counts, chaff::store::StoreError>>,
) -> anyhow::Result<Counts> {
    match flushing.join() {
        Ok(flushed) => Ok(flushed?),
        Err(_) => anyhow::bail!("the journal flush failed"),
    }
}

#[derive(Default)]
struct Counts {
    learned: u64,
    already_known: u64,
    relearned: u64,
}

impl Counts {
    fn add(&mut self, outcome: LearnOutcome) {
        match outcome {
            LearnOutcome::Learned => self.learned += 1,
            LearnOutcome::AlreadyKnown => self.already_known += 1,
            LearnOutcome::Relearned => self.relearned += 1,
        }
    }

    fn merge(&mut self, other: Counts) {
        self.learned += other.learned;
        self.already_known += other.already_known;
        self.relearned += other.relearned;
    }
}

pub fn run(context: &Context, args: LearnArgs) -> anyhow::Result<ExitCode> {
    let class = if args.spam { Class::Spam } else { Class::Ham };
    let started = Instant::now();
    // The rules run on every learned message: their hits are features of
    // the classifier, which fits each rule's weight to this site's mail.
    let open_error = || format!("cannot open {} for learning", context.data_dir.display());
    let preparer = LearnPreparer::new(&context.config).with_context(open_error)?;
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos} messages ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut durable = Counts::default();
    let mut pending = Counts::default();
    let mut pending_messages = 0usize;
    let mut last_commit = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    // Messages are read in groups: each group is prepared on every core
    // (parsing, rules and features are most of a learn) on a thread of its
    // own, while this one records the group before it in the order read,
    // one at a time as the store requires, and syncs the batches. The
    // store is opened (its journal replayed) while the first groups
    // prepare.
    let (groups_tx, groups_rx) = std::sync::mpsc::sync_channel::<Vec<Prepared>>(1);
    let paths = &args.paths;
    let preparer = &preparer;
    let mut engine = std::thread::scope(|scope| -> anyhow::Result<Engine> {
        scope.spawn(move || {
            let mut messages = Messages::new(paths).peekable();
            while messages.peek().is_some() {
                let group: Vec<_> = messages.by_ref().take(PREPARE_GROUP).collect();
                let prepared: Vec<Prepared> = group
                    .into_par_iter()
                    .map(|item| match item {
                        Ok(raw) => {
                            let prepared = preparer.prepare(&raw.bytes);
                            (raw.origin.to_string(), prepared.map_err(|e| e.to_string()))
                        }
                        Err(error) => (String::new(), Err(error.to_string())),
                    })
                    .collect();
                if groups_tx.send(prepared).is_err() {
                    // The recorder stopped on an error it reports itself.
                    return;
                }
            }
        });
        let mut engine =
            Engine::open_for_learning_with(context.config.clone(), &context.data_dir, preparer)
                .with_context(open_error)?;
        let mut flushing = None;
        for prepared in groups_rx {
            for (origin, item) in prepared {
                let learned = item.and_then(|prepared| {
                    engine
                        .record_learn(prepared, class)
                        .map_err(|error| error.to_string())
                });
                match learned {
                    Ok(learned) => {
                        pending.add(learned.outcome);
                        pending_messages += 1;
                    }
                    Err(error) if origin.is_empty() => failures.push(error),
                    Err(error) => failures.push(format!("{origin}: {error}")),
                }
                progress.inc(1);
            }
            if pending_messages >= BATCH_MESSAGES || last_commit.elapsed() >= BATCH_TIME {
                // The batch is written now and flushed to disk on a thread
                // of its own while the next one is recorded; one flush at
                // a time, and a batch counts as learned once its flush is
                // done.
                let written = engine.write_learns()?;
                if let Some(flushing) = flushing.take() {
                    durable.merge(finish_flush(flushing)?);
                }
                let batch = std::mem::take(&mut pending);
                flushing = Some(scope.spawn(move || written.sync().map(|()| batch)));
                pending_messages = 0;
                last_commit = Instant::now();
            }
        }
        if let Some(flushing) = flushing.take() {
            durable.merge(finish_flush(flushing)?);
        }
        Ok(engine)
    })?;
    engine.commit()?;
    durable.merge(pending);
    progress.finish_and_clear();
    let compacted = if args.no_compact {
        false
    } else {
        engine.compact_after_batch()?
    };
    let seconds = started.elapsed().as_secs_f64();
    let total = durable.learned + durable.already_known + durable.relearned;
    println!(
        "learned {} as {}, already known {}, relearned {}, failed {} ({} messages in {:.2}s, {:.0}/s{})",
        durable.learned,
        class.name(),
        durable.already_known,
        durable.relearned,
        failures.len(),
        total,
        seconds,
        total as f64 / seconds.max(1e-9),
        if compacted { ", model compacted" } else { "" },
    );
    for failure in &failures {
        println!("failed: {failure}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
