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

use anyhow::{bail, Result};
use candle_core::Device;

/// Where model files live when not given explicitly: `$CDO_MODELS_DIR`, else `./models`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("CDO_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

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

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    Default,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
}

/// Opens the compute device, with a clear error when CUDA is asked for but absent.
pub fn open_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                bail!("device = cuda, but this binary was built without the `cuda` feature");
            }
            Device::new_cuda(0)
                .map_err(|e| anyhow::anyhow!("device = cuda, but no usable GPU: {e}"))
        }
    }
}
