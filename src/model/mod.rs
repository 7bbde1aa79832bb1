//! Backbones, weight loading and the CDO expert/apprentice pair.

pub mod activation;
pub mod backbone;
pub mod batchnorm;
pub mod cdo;
pub mod checkpoint;
pub mod depthwise;
pub mod efficientnet_lite;
pub mod im2col;
pub mod layers;
pub mod maxpool;
pub mod mbconv;
pub mod postprocess;
pub mod resize;
pub mod resnet;
mod scratch;
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
