//! The hand-written kernels under the networks: candle custom ops with CPU code written for
//! speed (fused EfficientNet blocks and stem, depthwise and unfolded convolutions, pooling,
//! BatchNorm, ReLU6) and the element-wise and resizing loops of pre- and post-processing.
//! Each falls back to candle's own ops on other devices, so results stay correct
//! everywhere.

pub mod activation;
pub mod batchnorm;
pub mod depthwise;
pub mod im2col;
pub mod maxpool;
pub mod mbconv;
pub mod resize;
pub(crate) mod scratch;
pub(crate) mod simd;
pub mod stem;

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
