//! Which device runs the networks: the CPU, or the first CUDA GPU.

use candle_core::Device;

/// The compute device a verb or a station asks for.
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

/// Why the compute device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device = cuda, but this binary was built without the `cuda` feature")]
    CudaNotBuilt,
    #[error("device = cuda, but no usable GPU: {0}")]
    NoGpu(candle_core::Error),
}

/// Opens the compute device, with a clear error when CUDA is asked for but absent.
pub fn open_device(choice: DeviceChoice) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                return Err(DeviceError::CudaNotBuilt);
            }
            Device::new_cuda(0).map_err(DeviceError::NoGpu)
        }
    }
}
