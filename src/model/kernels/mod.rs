//! The hand-written kernels under the networks: candle custom ops with CPU code written for
//! speed (fused EfficientNet blocks and stem, depthwise and unfolded convolutions, pooling,
//! BatchNorm, ReLU6) and the element-wise and resizing loops of pre- and post-processing.
//! With the `cuda` feature the depthwise convolution, bias + activation, ReLU6, training
//! BatchNorm, max-pool and the anomaly map also have CUDA kernels (`cuda/`), each the twin
//! of its CPU kernel; other devices and dtypes fall back to candle's own ops, so results
//! stay correct everywhere.

pub mod activation;
pub mod batchnorm;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod depthwise;
pub mod im2col;
pub mod maxpool;
pub mod mbconv;
pub mod resize;
pub(crate) mod scratch;
pub(crate) mod simd;
pub mod stem;

/// Launches of the crate's own CUDA kernels since the process started; `None` in a build
/// without the `cuda` feature.
pub fn cuda_launches() -> Option<u64> {
    #[cfg(feature = "cuda")]
    return Some(cuda::launches());
    #[cfg(not(feature = "cuda"))]
    None
}

static CANDLE_OPS_ON_GPU: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Candle operations the model ran on a GPU since the process started (each at least one
/// launch of candle's or cuBLAS's: the 1x1 convolutions' GEMMs, the k x k convolutions, the
/// residual additions), counted where the model calls them.
pub fn candle_ops_on_gpu() -> u64 {
    CANDLE_OPS_ON_GPU.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one candle operation on `device` if it is a GPU.
pub(crate) fn note_candle_op(device: &candle_core::Device) {
    if !device.is_cpu() {
        CANDLE_OPS_ON_GPU.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The contiguous f32 data of a custom op's CPU operand, or an error naming the op and
/// the operand (`what`).
pub(crate) fn cpu_f32<'a>(
    op: &str,
    what: &str,
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    let candle_core::CpuStorage::F32(d) = s else {
        candle_core::bail!("{op}: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&d[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}

/// [`cpu_f32`] for an op that writes its operand in place.
pub(crate) fn cpu_f32_mut<'a>(
    op: &str,
    what: &str,
    s: &'a mut candle_core::CpuStorage,
    l: &candle_core::Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let candle_core::CpuStorage::F32(d) = s else {
        candle_core::bail!("{op}: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut d[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}
