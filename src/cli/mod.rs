//! Command adapters: each reads its arguments, calls the engine and prints.

pub mod fuzzy;
pub mod learn;
pub mod model;
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
