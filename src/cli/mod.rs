//! Command adapters: each reads its arguments, calls the engine and prints.

pub mod fuzzy;
pub mod learn;
pub mod model;
pub mod policy;
pub mod rescore;
pub mod rules;
pub mod scan;

use std::path::{Path, PathBuf};

use chaff::config::Config;

/// What every command needs: the merged config and the data directory.
pub struct Context {
    pub config: Config,
    pub data_dir: PathBuf,
}

impl Context {
    pub fn load(data_dir: PathBuf, config: Option<&Path>) -> anyhow::Result<Context> {
        Ok(Context {
            config: Config::load(config)?,
            data_dir,
        })
    }
}

/// Prints a store's figures for `model stat` / `fuzzy stat`: as pretty JSON
/// with `checksum_ok` added, or as aligned `label: value` lines ending in the
/// checksum verdict. Exit status 1 when the checksum does not match.
pub(crate) fn print_store_stats(
    json: bool,
    stats: &impl serde::Serialize,
    lines: &[(&str, String)],
    intact: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if json {
        let mut value = serde_json::to_value(stats)?;
        value["checksum_ok"] = serde_json::Value::Bool(intact);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for (label, value) in lines {
            println!("{:<19}{value}", format!("{label}:"));
        }
        println!(
            "{:<19}{}",
            "checksum:",
            if intact { "ok" } else { "MISMATCH" }
        );
    }
    Ok(if intact {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
