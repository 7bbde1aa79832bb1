//! The verbs of the `cdo-inspect` binary. Each takes its parsed arguments and returns an
//! exit code; `main.rs` only parses and dispatches.

pub mod bench;
pub mod check_config;
pub mod demo;
pub mod eval;
pub mod infer;
pub mod run;
pub mod sample_data;
pub mod train;

use std::path::PathBuf;

use crate::infer::default_models_dir;
use crate::platform::device::DeviceChoice;

/// Where the expert's weights are and what runs the model: shared by the verbs that load a
/// trained pair.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Expert weights file (default: the file the bundle names, in the models dir).
    #[arg(long)]
    pub expert: Option<PathBuf>,
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

impl ModelArgs {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }
}

