//! `chaff rules check|stats`: load the configured rules offline, and see
//! how often each fires on labelled mail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use chaff::engine::Active;
use chaff::mailbox::Messages;
use chaff::message::Envelope;
use chaff::rules::RuleTimes;
use rayon::prelude::*;

use super::Context;

#[derive(clap::Subcommand)]
pub enum RulesCommand {
    /// Load and compile the configured rules (and these SpamAssassin
    /// files); print rules loaded and skipped per kind, with reasons.
    Check {
        /// SpamAssassin `.cf` files or directories, added to
        /// `rules.spamassassin`.
        #[arg(long)]
        spamassassin: Vec<PathBuf>,
        /// Also list every skipped rule with its file, line and reason.
        #[arg(long)]
        list_skipped: bool,
    },
    /// Each rule's hit rate on spam and on ham of a labelled corpus (or
    /// its hit count on unlabelled PATHs).
    Stats {
        #[arg(long)]
        spam: Vec<PathBuf>,
        #[arg(long)]
        ham: Vec<PathBuf>,
        /// SpamAssassin `.cf` files or directories, added to
        /// `rules.spamassassin`.
        #[arg(long)]
        spamassassin: Vec<PathBuf>,
        /// Print one line per message: path and the rules that fired.
        #[arg(long)]
        per_message: bool,
        /// Also time every rule, pattern group and text on one thread, and
        /// print the costliest (`--timing 50` for more than 30).
        #[arg(long, num_args = 0..=1, default_missing_value = "30")]
        timing: Option<usize>,
        /// Unlabelled messages, files, directories or mbox files.
        paths: Vec<PathBuf>,
    },
}

pub fn run(context: &Context, command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Check {
            spamassassin,
            list_skipped,
        } => check(context, spamassassin, list_skipped),
        RulesCommand::Stats {
            spam,
            ham,
            spamassassin,
            per_message,
            timing,
            paths,
        } => stats(
            context,
            Corpus { spam, ham, paths },
            spamassassin,
            per_message,
            timing,
        ),
    }
}

fn load(context: &Context, spamassassin: Vec<PathBuf>) -> anyhow::Result<Active> {
    let mut config = context.config.clone();
    config.rules.enabled = true;
    config.rules.spamassassin.extend(spamassassin);
    Ok(Active::load(&config)?)
}

fn check(
    context: &Context,
    spamassassin: Vec<PathBuf>,
    list_skipped: bool,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let active = match load(context, spamassassin) {
        Ok(active) => active,
        Err(error) => {
            eprintln!("chaff rules check: {error:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let report = &active.rules.report;
    let skipped = report.skipped_by_kind();
    let mut kinds: Vec<&String> = report.loaded.keys().chain(skipped.keys()).collect();
    kinds.sort();
    kinds.dedup();
    println!("{:<12} {:>8} {:>8}", "kind", "loaded", "skipped");
    let (mut total_loaded, mut total_skipped) = (0, 0);
    for kind in kinds {
        let loaded = report.loaded.get(kind).copied().unwrap_or(0);
        let reasons = skipped.get(kind);
        let n_skipped: usize = reasons.map_or(0, |r| r.values().sum());
        total_loaded += loaded;
        total_skipped += n_skipped;
        println!("{kind:<12} {loaded:>8} {n_skipped:>8}");
        if let Some(reasons) = reasons {
            let mut reasons: Vec<(&&str, &usize)> = reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (reason, count) in reasons {
                println!("{:<12} {:>8} {count:>8}  {reason}", "", "");
            }
        }
    }
    println!("{:<12} {total_loaded:>8} {total_skipped:>8}", "total");
    if !report.not_run.is_empty() {
        println!(
            "not run: {} network evals, as SpamAssassin in this score set (metas read them as 0)",
            report.not_run.len()
        );
    }
    println!(
        "patterns: {} behind the literal prefilter, {} without a literal ({} of them searched alone, the rest in sets), {} by fancy-regex on every text",
        report.prefiltered, report.in_set, report.alone, report.fancy
    );
    if report.gated > 0 {
        println!(
            "  of those, {} by fancy-regex only where a relaxed form matched (look-around dropped, back-references loosened)",
            report.gated
        );
    }
    if report.looked_up > 0 {
        println!(
            "  {} more only on texts naming a domain of their list (FreeMail)",
            report.looked_up
        );
    }
    let maps = active.rules.maps.specs().count();
    if maps > 0 {
        println!("maps: {maps}");
    }
    println!("compiled in {:.2} s", started.elapsed().as_secs_f64());
    if list_skipped {
        for skip in &report.skipped {
            println!(
                "skipped {} {} ({}): {}",
                skip.origin,
                skip.symbol,
                skip.kind,
                skip.reason()
            );
        }
        for rule in &report.not_run {
            println!(
                "not run {} {} ({}): {}",
                rule.origin,
                rule.symbol,
                rule.kind,
                rule.reason()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The messages `rules stats` reads: labelled, unlabelled or both.
struct Corpus {
    spam: Vec<PathBuf>,
    ham: Vec<PathBuf>,
    paths: Vec<PathBuf>,
}

fn stats(
    context: &Context,
    corpus: Corpus,
    spamassassin: Vec<PathBuf>,
    per_message: bool,
    timing: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let Corpus { spam, ham, paths } = corpus;
    let active = load(context, spamassassin)?;
    let mut times = RuleTimes::default();
    // The first message, scanned once before any is timed: it builds the
    // lazy DFA states and compiled helpers every later message reuses, a
    // start-up cost a running daemon pays once.
    let mut cold: Option<std::time::Duration> = None;
    let envelope = Envelope::default();
    let mut classes: Vec<(&str, Vec<PathBuf>)> = Vec::new();
    if !spam.is_empty() || !ham.is_empty() {
        classes.push(("spam", spam));
        classes.push(("ham", ham));
    }
    if !paths.is_empty() {
        classes.push(("all", paths));
    }
    if classes.is_empty() {
        anyhow::bail!("give --spam DIR and --ham DIR, or PATHs");
    }
    // Per class: messages, then hits per symbol.
    let mut totals: Vec<(&str, usize, BTreeMap<String, usize>)> = Vec::new();
    let mut failed = false;
    for (class, paths) in classes {
        let mut hits: BTreeMap<String, usize> = BTreeMap::new();
        let mut count = 0usize;
        let mut batch = Vec::new();
        let mut messages = Messages::new(&paths).peekable();
        loop {
            batch.clear();
            for item in messages.by_ref().take(512) {
                match item {
                    Ok(raw) => batch.push(raw),
                    Err(error) => {
                        eprintln!("chaff rules stats: {error}");
                        failed = true;
                    }
                }
            }
            if batch.is_empty() && messages.peek().is_none() {
                break;
            }
            let origin = |raw: &chaff::mailbox::RawMessage| raw.origin.path.display().to_string();
            // Timed on this thread alone: rules on other cores would share
            // its caches and memory bandwidth and blur what each costs.
            let fired: Vec<(String, Vec<String>)> = if timing.is_some() {
                batch
                    .iter()
                    .map(|raw| {
                        if cold.is_none() {
                            let started = std::time::Instant::now();
                            active.rule_hits(&raw.bytes, &envelope);
                            cold = Some(started.elapsed());
                        }
                        let before = times.total();
                        let names = active.rule_hits_timed(&raw.bytes, &envelope, &mut times);
                        let took = times.total().saturating_sub(before);
                        times.message_took(origin(raw), took);
                        (origin(raw), names)
                    })
                    .collect()
            } else {
                batch
                    .par_iter()
                    .map(|raw| (origin(raw), active.rule_hits(&raw.bytes, &envelope)))
                    .collect()
            };
            for (path, names) in fired {
                count += 1;
                if per_message {
                    println!("{class}\t{path}\t{}", names.join(","));
                }
                for name in names {
                    *hits.entry(name).or_default() += 1;
                }
            }
        }
        totals.push((class, count, hits));
    }
    if per_message {
        return Ok(ExitCode::from(u8::from(failed)));
    }
    if let Some(shown) = timing {
        print_timing(&times, cold, shown);
        return Ok(ExitCode::from(u8::from(failed)));
    }
    let mut symbols: Vec<&String> = totals.iter().flat_map(|(_, _, h)| h.keys()).collect();
    symbols.sort();
    symbols.dedup();
    print!("{:<28} {:>7}", "symbol", "weight");
    for (class, count, _) in &totals {
        print!(" {:>14}", format!("{class} ({count})"));
    }
    println!();
    let rate = |hits: usize, count: usize| {
        if count == 0 {
            0.0
        } else {
            hits as f64 * 100.0 / count as f64
        }
    };
    for symbol in symbols {
        print!("{symbol:<28} {:>7.2}", active.config.weight(symbol));
        for (_, count, hits) in &totals {
            let n = hits.get(symbol).copied().unwrap_or(0);
            print!(" {:>14}", format!("{n} {:.1}%", rate(n, *count)));
        }
        println!();
    }
    Ok(ExitCode::from(u8::from(failed)))
}

/// The costliest entries of a timed run: total, per message and share;
/// `cold`, the untimed first scan of the first message.
fn print_timing(times: &RuleTimes, cold: Option<std::time::Duration>, shown: usize) {
    let total = times.total().as_secs_f64();
    let messages = times.messages.max(1) as f64;
    let cold = cold.map_or(String::new(), |cold| {
        format!(
            "; before timing, the first message once: {:.2} ms with cold caches",
            cold.as_secs_f64() * 1e3
        )
    });
    println!(
        "rules: {:.3} s over {} messages, {:.1} µs per message (one thread{cold})",
        total,
        times.messages,
        total * 1e6 / messages
    );
    println!(
        "{:>10} {:>12} {:>7} {:>9}  what",
        "total ms", "µs/message", "share", "runs"
    );
    for (what, spent) in times.costliest().into_iter().take(shown) {
        let seconds = spent.total.as_secs_f64();
        println!(
            "{:>10.1} {:>12.1} {:>6.1}% {:>9}  {what}",
            seconds * 1e3,
            seconds * 1e6 / messages,
            if total > 0.0 {
                seconds * 100.0 / total
            } else {
                0.0
            },
            spent.runs
        );
    }
    println!("slowest messages (rules, ms):");
    for (took, origin) in times.slowest() {
        println!("{:>10.2}  {origin}", took.as_secs_f64() * 1e3);
    }
}
