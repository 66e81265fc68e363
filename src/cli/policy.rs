//! `chaff policy`: list and reset the daemon's policy state (rate-limit
//! buckets, spam bursts, greylist triplets, remembered replies and senders).
//!
//! The running daemon owns that state (it holds `policy.lock` and the live
//! entries are in its memory), so the command asks its controller, as
//! `rspamc` does: `GET /policy` to list, `POST /policyreset` to remove, the
//! controller's passwords applying.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use super::Context;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The daemon's controller (default: `[server] controller_bind`).
    #[arg(long, global = true)]
    controller: Option<String>,
    /// The controller's password (`enable_password` to reset).
    #[arg(long, global = true, env = "CHAFF_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Entries whose key starts with PREFIX (`rl:` buckets, `burst:` spam
    /// bursts, `grey:` triplets, `greynet:` allowed networks, `reply:`,
    /// `known:`); all when none is given.
    List {
        #[arg(default_value = "")]
        prefix: String,
        /// Print the controller's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// Remove the entries whose key starts with PREFIX (a user's bucket:
    /// `rl:NAME:bob@example.com`, every bucket: `rl:`).
    Reset {
        #[arg(required_unless_present = "all")]
        prefix: Option<String>,
        /// Remove every entry.
        #[arg(long, conflicts_with = "prefix")]
        all: bool,
    },
}

pub fn run(context: &Context, args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let controller = args
        .controller
        .unwrap_or_else(|| context.config.server.controller_bind.clone());
    let password = args.password.as_deref();
    match args.command {
        PolicyCommand::List { prefix, json } => {
            let body = request(
                &controller,
                "GET",
                &format!("/policy?prefix={}", encode(&prefix)),
                password,
            )?;
            if json {
                println!("{body}");
                return Ok(ExitCode::SUCCESS);
            }
            let value: serde_json::Value =
                serde_json::from_str(&body).context("the controller's reply is not JSON")?;
            let now = chaff::policy::state::unix_now();
            let empty = Vec::new();
            let rows = value["entries"].as_array().unwrap_or(&empty);
            for row in rows {
                let what = match row["kind"].as_str() {
                    Some("bucket") => format!(
                        "level {:.1}, updated {} s ago",
                        row["level"].as_f64().unwrap_or(0.0),
                        row["updated_secs_ago"]
                    ),
                    Some("greylist") => format!(
                        "first seen {} s ago, {}",
                        now.saturating_sub(row["first_seen"].as_u64().unwrap_or(0)),
                        if row["passed"].as_bool() == Some(true) {
                            "passed"
                        } else {
                            "waiting"
                        }
                    ),
                    _ => format!("seen {} times", row["count"]),
                };
                println!(
                    "{}\t{what}\texpires in {} s",
                    row["key"].as_str().unwrap_or(""),
                    row["expires"].as_u64().unwrap_or(0).saturating_sub(now)
                );
            }
            println!(
                "{} of {} matching shown; {} live entries, journal {} bytes",
                rows.len(),
                value["matched"],
                value["live"],
                value["journal_bytes"]
            );
        }
        PolicyCommand::Reset { prefix, all } => {
            let prefix = if all {
                String::new()
            } else {
                prefix.unwrap_or_default()
            };
            let body = request(
                &controller,
                "POST",
                &format!("/policyreset?prefix={}", encode(&prefix)),
                password,
            )?;
            let value: serde_json::Value =
                serde_json::from_str(&body).context("the controller's reply is not JSON")?;
            println!("removed {} entries", value["removed"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~@".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One HTTP/1.0 request to the controller; the body of a 200, else an
/// error with the controller's own `error` text.
fn request(
    controller: &str,
    method: &str,
    path: &str,
    password: Option<&str>,
) -> anyhow::Result<String> {
    let address = controller
        .to_socket_addrs()
        .with_context(|| format!("controller address {controller}"))?
        .next()
        .with_context(|| format!("controller address {controller} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("cannot reach the daemon's controller at {controller}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head =
        format!("{method} {path} HTTP/1.0\r\nHost: {controller}\r\nContent-Length: 0\r\n");
    if let Some(password) = password {
        head.push_str(&format!("Password: {password}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        let why = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.trim().to_owned());
        bail!("the controller at {controller} answered {status}: {why}");
    }
    Ok(body.to_owned())
}
