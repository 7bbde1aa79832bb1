//! `cdo-inspect run --config FILE`: the station daemon.

use std::path::PathBuf;

use anyhow::Result;

use crate::station::daemon::{run_station, RunOptions, StationFailed};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The station file (see config/station.example.toml).
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn run(args: RunArgs) -> Result<i32> {
    let cfg = match crate::config::load(&args.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            // A station never starts on an invalid file.
            log::error!("{}: not starting:\n{errors}", args.config.display());
            return Ok(1);
        }
    };
    match run_station(cfg, RunOptions { config_path: Some(args.config), echo_parts: false }) {
        Ok(_) => Ok(0),
        // A station that ended in failure exits with its own status (a dead stage 70,
        // unwritten records 74, a stage that would not stop 75), after logging why.
        Err(e) => match e.downcast_ref::<StationFailed>() {
            Some(failed) => {
                log::error!("{failed}");
                Ok(failed.code)
            }
            None => Err(e),
        },
    }
}

/// The log filter the station file asks for ("info" when it cannot be read: the
/// errors are reported once logging is up). RUST_LOG still overrides it.
pub fn log_filter(args: &RunArgs) -> String {
    crate::config::load(&args.config)
        .map(|cfg| cfg.logging.level)
        .unwrap_or_else(|_| "info".into())
}
