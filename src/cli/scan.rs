//! `chaff scan FILE...` (or `-` for stdin): score, action and symbols, as
//! `rspamc` prints them, or rspamd's `/checkv2` JSON.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use chaff::Engine;
use chaff::engine::Scan;
use chaff::mailbox::{MAX_READ_BYTES, Messages, RawMessage};
use chaff::message::Envelope;
use chaff::report::CheckV2Reply;
use rayon::prelude::*;

use super::Context;

/// Messages scanned per parallel batch: enough to keep every core busy,
/// few enough that memory stays small and output stays in input order.
const BATCH: usize = 256;

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Print rspamd's /checkv2 JSON object (JSON Lines with a `file` key
    /// when several messages are scanned).
    #[arg(long, short = 'j')]
    json: bool,
    /// Show the tokens that weighed most in the statistical verdict.
    #[arg(long)]
    explain: bool,
    /// How many tokens `--explain` shows.
    #[arg(long, default_value_t = 20)]
    explain_tokens: usize,
    /// Client IP address.
    #[arg(long, short = 'i')]
    ip: Option<IpAddr>,
    /// HELO/EHLO name.
    #[arg(long)]
    helo: Option<String>,
    /// The client's reverse-DNS name.
    #[arg(long)]
    hostname: Option<String>,
    /// MAIL FROM.
    #[arg(long, short = 'F')]
    from: Option<String>,
    /// RCPT TO (repeatable).
    #[arg(long, short = 'r')]
    rcpt: Vec<String>,
    /// Authenticated user.
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long, short = 'n')]
    threads: Option<usize>,
    /// Run the network (DNS) checks too: RBLs, URIBLs, SPF, DKIM, DMARC,
    /// ARC, sender MX (`[network]` in the config). Off by default, whatever
    /// the config says.
    #[arg(long)]
    network: bool,
    /// Message files, directories, mbox files or maildirs; `-` reads stdin.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(context: &Context, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let mut config = context.config.clone();
    config.network.enabled = args.network;
    let engine = Engine::open(config, &context.data_dir)
        .with_context(|| format!("cannot open {}", context.data_dir.display()))?;
    let envelope = Envelope {
        client_ip: args.ip,
        client_hostname: args.hostname.clone(),
        helo: args.helo.clone(),
        mail_from: args.from.clone(),
        recipients: args.rcpt.clone(),
        user: args.user.clone(),
        queue_id: None,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;
    let many = args.files.len() > 1 || args.files.iter().any(|f| f.is_dir());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = false;

    let batch = BatchScanner {
        engine: &engine,
        envelope: &envelope,
        pool: &pool,
        args: &args,
        many,
    };
    let mut sources: Vec<Result<RawMessage, String>> = Vec::new();
    for file in &args.files {
        if file.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_READ_BYTES + 1)
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
            sources.push(Ok(RawMessage {
                origin: chaff::mailbox::Origin {
                    path: PathBuf::from("stdin"),
                    mbox_offset: None,
                },
                bytes,
            }));
        } else {
            for item in Messages::new(std::slice::from_ref(file)) {
                sources.push(item.map_err(|e| e.to_string()));
                if sources.len() >= BATCH {
                    failed |= batch.scan(&mut sources, &mut out)?;
                }
            }
        }
    }
    failed |= batch.scan(&mut sources, &mut out)?;
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What every batch of one `scan` command shares.
struct BatchScanner<'a> {
    engine: &'a Engine,
    envelope: &'a Envelope,
    pool: &'a rayon::ThreadPool,
    args: &'a ScanArgs,
    /// Several messages: JSON Lines with a `file` key.
    many: bool,
}

impl BatchScanner<'_> {
    /// Scans `sources` in parallel and prints the results in input order.
    /// Returns whether any source failed.
    fn scan(
        &self,
        sources: &mut Vec<Result<RawMessage, String>>,
        out: &mut impl Write,
    ) -> anyhow::Result<bool> {
        let batch = std::mem::take(sources);
        let results: Vec<Result<(RawMessage, Scan, f64), String>> = self.pool.install(|| {
            batch
                .into_par_iter()
                .map(|source| {
                    let raw = source?;
                    let started = Instant::now();
                    let scan = self.engine.scan(&raw.bytes, self.envelope);
                    Ok((raw, scan, started.elapsed().as_secs_f64()))
                })
                .collect()
        });
        let mut failed = false;
        for result in results {
            match result {
                Err(error) => {
                    failed = true;
                    eprintln!("chaff: {error}");
                }
                Ok((raw, scan, seconds)) => {
                    let file = raw.origin.to_string();
                    if self.args.json {
                        let reply = CheckV2Reply::new(&scan, seconds);
                        let mut value = serde_json::to_value(&reply)?;
                        if self.many
                            && let serde_json::Value::Object(map) = &mut value
                        {
                            map.insert("file".into(), serde_json::Value::String(file));
                        }
                        writeln!(out, "{}", serde_json::to_string(&value)?)?;
                    } else {
                        print_text(out, &file, &scan, seconds)?;
                    }
                    if self.args.explain {
                        print_explanation(
                            out,
                            self.engine,
                            &raw.bytes,
                            &scan,
                            self.args.explain_tokens,
                        )?;
                    }
                }
            }
        }
        Ok(failed)
    }
}

/// The layout `rspamc symbols` prints.
fn print_text(out: &mut impl Write, file: &str, scan: &Scan, seconds: f64) -> std::io::Result<()> {
    let verdict = &scan.verdict;
    writeln!(out, "Results for file: {file} ({seconds:.3} seconds)")?;
    writeln!(out, "[Metric: default]")?;
    writeln!(out, "Action: {}", verdict.action.name())?;
    writeln!(out, "Spam: {}", verdict.action.is_spam())?;
    writeln!(
        out,
        "Score: {:.2} / {:.2}",
        verdict.score, verdict.required_score
    )?;
    for symbol in &verdict.symbols {
        write!(out, "Symbol: {} ({:.2})", symbol.name, symbol.score)?;
        if !symbol.options.is_empty() {
            write!(out, "[{}]", symbol.options.join(", "))?;
        }
        writeln!(out)?;
    }
    if let Some(id) = &scan.message_id {
        writeln!(out, "Message-ID: {id}")?;
    }
    writeln!(out)
}

fn print_explanation(
    out: &mut impl Write,
    engine: &Engine,
    raw: &[u8],
    scan: &Scan,
    limit: usize,
) -> std::io::Result<()> {
    match &scan.bayes {
        Err(abstain) => writeln!(out, "Statistics: no verdict ({abstain:?})")?,
        Ok(classification) if engine.config().classifier.enabled => {
            let explained = engine.explain_classifier(raw, &Envelope::default(), limit);
            let scale = engine.config().classifier.points_per_logit;
            writeln!(
                out,
                "Classifier: spam probability {:.6} (log-odds {:.2}, {:.2} points) from {} features; bias {:+.2} points; strongest:",
                classification.probability,
                explained.log_odds,
                explained.log_odds * scale,
                classification.tokens_used,
                explained.bias_points
            )?;
            writeln!(out, "  {:>8} {:>8}  token or byte gram", "points", "weight")?;
            for feature in &explained.features {
                writeln!(
                    out,
                    "  {:>+8.3} {:>+8.4}  {}",
                    feature.points, feature.weight, feature.text
                )?;
            }
            if !explained.rules.is_empty() {
                writeln!(out, "Rules (configured -> fitted on this site's mail):")?;
                for rule in &explained.rules {
                    writeln!(
                        out,
                        "  {:<32} {:>+7.2} -> {:>+7.2}{}",
                        rule.name,
                        rule.configured,
                        rule.fitted,
                        if rule.pinned { "  (pinned)" } else { "" }
                    )?;
                }
            }
        }
        Ok(classification) => {
            writeln!(
                out,
                "Statistics: spam probability {:.4} from {} tokens and byte grams; strongest:",
                classification.probability, classification.tokens_used
            )?;
            writeln!(
                out,
                "  {:>7} {:>7} {:>6}  token or gram",
                "spam", "ham", "p"
            )?;
            for token in engine.explain(raw, limit) {
                let c = &token.contribution;
                writeln!(
                    out,
                    "  {:>7} {:>7} {:>6.3}  {}",
                    c.spam, c.ham, c.probability, token.text
                )?;
            }
        }
    }
    writeln!(out)
}
