//! `chaff rescore PATH...`: score whole mail archives offline, on every core,
//! and write one machine-readable record per message.
//!
//! The shape is a three-stage pipeline with bounded memory:
//!
//! ```text
//! reader thread      Messages (files, trees, maildirs, mbox, gzip/zstd mbox)
//!   → batches of BATCH messages over a channel of CHANNEL_BATCHES
//! rayon pool         Engine::scan + rendering of each record, in parallel
//! this thread        writes records in input order, summary, progress
//! ```
//!
//! At most `CHANNEL_BATCHES + 2` batches exist at once (one being filled, the
//! queued ones, one being scanned), whatever the archive's size. Batches are
//! collected in input order and their size does not depend on the thread
//! count, so the output is byte-for-byte the same for 1 thread and N.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chaff::engine::Scan;
use chaff::mailbox::{Messages, Origin, RawMessage, SourceError};
use chaff::message::Envelope;
use chaff::{Action, Engine};
use rayon::prelude::*;

use super::Context;

/// Messages scanned per parallel batch: large enough that the pool's
/// start-up and the ordered hand-back cost nothing per message, small enough
/// that a batch of typical mail is a few megabytes.
const BATCH: usize = 512;

/// Batches the reader may have ready ahead of the scanners, so that reading
/// (I/O, decompression) overlaps scanning without running ahead unbounded.
const CHANNEL_BATCHES: usize = 2;

/// Failures listed one by one in the summary; the rest are counted (every
/// one was already printed as it happened).
const SUMMARY_FAILURES: usize = 20;

/// Most frequent symbols shown in the summary.
const SUMMARY_SYMBOLS: usize = 10;

/// Upper bounds of the score histogram's buckets; the last bucket is
/// "at least the last bound". They follow rspamd's default thresholds
/// (greylist 4, add header 6, reject 15).
const HISTOGRAM_BOUNDS: [f64; 6] = [0.0, 2.0, 4.0, 6.0, 10.0, 15.0];

/// Every action, mildest first, for the summary's counts.
const ACTIONS: [Action; 6] = [
    Action::NoAction,
    Action::Greylist,
    Action::AddHeader,
    Action::RewriteSubject,
    Action::SoftReject,
    Action::Reject,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header row; symbols as `NAME=score;NAME=score`.
    Csv,
}

#[derive(clap::Args)]
pub struct RescoreArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Write records to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Scanning threads (default: all cores).
    #[arg(long, short = 'n', value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    /// Write only messages with this action (repeatable; rspamd's spelling,
    /// `add header` or `add_header`).
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    only_action: Vec<Action>,
    /// Write only messages scoring at least X.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    min_score: Option<f64>,
    /// Stop after N messages (counted before the output filters).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Run the network (DNS) checks too: RBLs, URIBLs, SPF, DKIM, DMARC,
    /// ARC, sender MX (`[network]` in the config). Off by default, whatever
    /// the config says, so offline rescoring never waits on a resolver.
    #[arg(long)]
    network: bool,
    /// Message files, directory trees, maildirs, mbox files (plain, gzip or zstd).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn parse_action(name: &str) -> Result<Action, String> {
    Action::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = ACTIONS.iter().map(|a| a.name()).collect();
        format!("unknown action (expected one of: {})", known.join(", "))
    })
}

pub fn run(context: &Context, args: RescoreArgs) -> anyhow::Result<ExitCode> {
    let mut config = context.config.clone();
    config.network.enabled = args.network;
    let engine = Engine::open(config, &context.data_dir)
        .with_context(|| format!("cannot open {}", context.data_dir.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, sink);
    if args.format == Format::Csv {
        out.write_all(b"path,offset,message_id,score,action,symbols\n")?;
    }

    let progress = progress_bar();
    let mut summary = Summary::default();
    let started = Instant::now();
    let (sender, receiver) =
        mpsc::sync_channel::<Vec<Result<RawMessage, SourceError>>>(CHANNEL_BATCHES);
    let written = std::thread::scope(|scope| -> anyhow::Result<()> {
        let paths = &args.paths;
        let limit = args.limit;
        scope.spawn(move || read_batches(paths, limit, &sender));
        for batch in receiver {
            let results: Vec<Result<Scored, SourceError>> = pool.install(|| {
                batch
                    .into_par_iter()
                    .map(|item| item.map(|raw| Scored::new(&engine, raw, &args)))
                    .collect()
            });
            for result in results {
                match result {
                    Ok(scored) => {
                        if let Some(line) = &scored.line {
                            out.write_all(line.as_bytes())?;
                        }
                        summary.add(&scored);
                    }
                    Err(error) => {
                        progress.suspend(|| eprintln!("chaff: rescore: {error}"));
                        summary.failures.push(error.to_string());
                    }
                }
                progress.inc(1);
            }
        }
        Ok(())
    })
    .and_then(|()| Ok(out.flush()?));
    progress.finish_and_clear();
    match written {
        // The reader of our output has gone (`rescore ... | head`): what it
        // wanted was written, so stop quietly, as `head`'s users expect.
        Err(error) if is_broken_pipe(&error) => return Ok(ExitCode::SUCCESS),
        Err(error) => return Err(error.context("cannot write the output")),
        Ok(()) => {}
    }
    summary.print(
        &mut std::io::stderr().lock(),
        started.elapsed(),
        pool.current_num_threads(),
    )?;
    Ok(if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The reader stage: walks `paths` and sends batches until the limit, the
/// end, or the receiver hanging up (an output error ends the run early).
fn read_batches(
    paths: &[PathBuf],
    limit: Option<u64>,
    sender: &mpsc::SyncSender<Vec<Result<RawMessage, SourceError>>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut messages = 0u64;
    for item in Messages::new(paths) {
        if limit.is_some_and(|limit| messages >= limit) {
            break;
        }
        messages += u64::from(item.is_ok());
        batch.push(item);
        if batch.len() >= BATCH
            && sender
                .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .is_err()
        {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = sender.send(batch);
    }
}

/// A terminal gets a live count and rate; anything else (a pipe, a log file,
/// CI) gets nothing, so stderr holds only failures and the summary.
fn progress_bar() -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {human_pos} messages  {rate}  {elapsed}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} messages/s", state.per_sec());
        },
    );
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One scanned message: what the summary needs, and its output line if the
/// filters keep it (rendered on the scanning thread, so the writer only
/// copies bytes).
struct Scored {
    score: f64,
    action: Action,
    symbols: Vec<String>,
    line: Option<String>,
}

impl Scored {
    fn new(engine: &Engine, raw: RawMessage, args: &RescoreArgs) -> Scored {
        let scan = engine.scan_verdict(&raw.bytes, &Envelope::default());
        let verdict = &scan.verdict;
        let keep = (args.only_action.is_empty() || args.only_action.contains(&verdict.action))
            && args.min_score.is_none_or(|min| verdict.score >= min);
        let line = keep.then(|| match args.format {
            Format::Jsonl => json_line(&raw.origin, &scan),
            Format::Csv => csv_line(&raw.origin, &scan),
        });
        Scored {
            score: verdict.score,
            action: verdict.action,
            symbols: verdict.symbols.iter().map(|s| s.name.clone()).collect(),
            line,
        }
    }
}

fn path_text(origin: &Origin) -> String {
    origin.path.to_string_lossy().into_owned()
}

/// `{"path", "offset", "message_id", "score", "action", "symbols"}`, the
/// symbols as an object in the verdict's order.
fn json_line(origin: &Origin, scan: &Scan) -> String {
    let verdict = &scan.verdict;
    let symbols: serde_json::Map<String, serde_json::Value> = verdict
        .symbols
        .iter()
        .map(|s| (s.name.clone(), serde_json::Value::from(s.score)))
        .collect();
    let record = serde_json::json!({
        "path": path_text(origin),
        "offset": origin.mbox_offset,
        "message_id": scan.message_id,
        "score": verdict.score,
        "action": verdict.action.name(),
        "symbols": symbols,
    });
    let mut line = record.to_string();
    line.push('\n');
    line
}

/// The same fields as [`json_line`]; an absent offset or Message-ID is an
/// empty field.
fn csv_line(origin: &Origin, scan: &Scan) -> String {
    let verdict = &scan.verdict;
    let mut symbols = String::new();
    for (i, symbol) in verdict.symbols.iter().enumerate() {
        if i > 0 {
            symbols.push(';');
        }
        let _ = write!(symbols, "{}={}", symbol.name, symbol.score);
    }
    let offset = origin
        .mbox_offset
        .map_or_else(String::new, |o| o.to_string());
    let fields = [
        path_text(origin),
        offset,
        scan.message_id.clone().unwrap_or_default(),
        verdict.score.to_string(),
        verdict.action.name().to_owned(),
        symbols,
    ];
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_field(&mut line, field);
    }
    line.push('\n');
    line
}

/// RFC 4180: a field holding a comma, quote, CR or LF is quoted, with its
/// quotes doubled; any other field is written as it is.
fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// What the run saw, for the summary on stderr. Counts cover every scanned
/// message, whether or not the output filters kept it.
#[derive(Default)]
struct Summary {
    scanned: u64,
    written: u64,
    actions: HashMap<Action, u64>,
    histogram: [u64; HISTOGRAM_BOUNDS.len() + 1],
    symbols: HashMap<String, u64>,
    failures: Vec<String>,
}

impl Summary {
    fn add(&mut self, scored: &Scored) {
        self.scanned += 1;
        self.written += u64::from(scored.line.is_some());
        *self.actions.entry(scored.action).or_default() += 1;
        let bucket = HISTOGRAM_BOUNDS.partition_point(|&bound| scored.score >= bound);
        if let Some(count) = self.histogram.get_mut(bucket) {
            *count += 1;
        }
        for name in &scored.symbols {
            match self.symbols.get_mut(name) {
                Some(count) => *count += 1,
                None => {
                    self.symbols.insert(name.clone(), 1);
                }
            }
        }
    }

    fn print(
        &self,
        out: &mut impl Write,
        elapsed: Duration,
        threads: usize,
    ) -> std::io::Result<()> {
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.scanned as f64 / seconds
        } else {
            0.0
        };
        writeln!(
            out,
            "rescored {} messages in {seconds:.2}s ({rate:.0} messages/s, {threads} {}); \
             {} records written; {} failed",
            self.scanned,
            if threads == 1 { "thread" } else { "threads" },
            self.written,
            self.failures.len()
        )?;
        writeln!(out, "actions:")?;
        for action in ACTIONS {
            let count = self.actions.get(&action).copied().unwrap_or(0);
            writeln!(
                out,
                "  {:<16} {count:>9}  {}",
                action.name(),
                self.percent(count)
            )?;
        }
        writeln!(out, "scores:")?;
        for (bucket, count) in self.histogram.iter().enumerate() {
            let label = match (
                bucket.checked_sub(1).and_then(|i| HISTOGRAM_BOUNDS.get(i)),
                HISTOGRAM_BOUNDS.get(bucket),
            ) {
                (None, Some(high)) => format!("< {high}"),
                (Some(low), Some(high)) => format!("{low} to < {high}"),
                (Some(low), None) => format!(">= {low}"),
                (None, None) => String::new(),
            };
            writeln!(out, "  {label:<16} {count:>9}  {}", self.percent(*count))?;
        }
        let mut symbols: Vec<(&String, &u64)> = self.symbols.iter().collect();
        symbols.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        if !symbols.is_empty() {
            writeln!(out, "top symbols:")?;
            for (name, count) in symbols.into_iter().take(SUMMARY_SYMBOLS) {
                writeln!(out, "  {name:<16} {count:>9}  {}", self.percent(*count))?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(out, "failures:")?;
            for failure in self.failures.iter().take(SUMMARY_FAILURES) {
                writeln!(out, "  {failure}")?;
            }
            if self.failures.len() > SUMMARY_FAILURES {
                writeln!(
                    out,
                    "  ... and {} more",
                    self.failures.len() - SUMMARY_FAILURES
                )?;
            }
        }
        Ok(())
    }

    fn percent(&self, count: u64) -> String {
        if self.scanned == 0 {
            return String::new();
        }
        format!("{:5.1}%", 100.0 * count as f64 / self.scanned as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = String::new();
        csv_field(&mut out, "plain");
        out.push('|');
        csv_field(&mut out, "a,b");
        out.push('|');
        csv_field(&mut out, "say \"hi\"");
        out.push('|');
        csv_field(&mut out, "two\nlines");
        assert_eq!(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"");
    }

    #[test]
    fn histogram_buckets_include_their_lower_bound() {
        let bucket = |score: f64| HISTOGRAM_BOUNDS.partition_point(|&bound| score >= bound);
        assert_eq!(bucket(-0.5), 0);
        assert_eq!(bucket(0.0), 1);
        assert_eq!(bucket(5.99), 3);
        assert_eq!(bucket(6.0), 4);
        assert_eq!(bucket(14.9), 5);
        assert_eq!(bucket(15.0), 6);
        assert_eq!(bucket(1000.0), 6);
    }
}
