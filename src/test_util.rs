//! Helpers shared by the unit tests in `src/` (compiled for tests only). A leaf: it uses
//! candle and std, nothing of the crate, so any layer's tests may use it.

use candle_core::{DType, Tensor};

/// The largest |a - b| over all elements, as f32 (any float dtype; the difference is taken
/// in the tensors' own dtype). The shapes must be equal: a shape mismatch fails here with
/// both shapes, not later as an unrelated candle error.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "max_abs_diff: shapes differ");
    max_abs(&(a - b).expect("tensors subtract"))
}

/// The largest |x| over all elements, as f32 (the scale for a relative tolerance).
pub(crate) fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.max(0))
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_scalar::<f32>())
        .expect("max |x| of a non-empty tensor")
}

/// The largest |a[i] - b[i]| of two slices of equal length.
pub(crate) fn max_abs_diff_slices(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "max_abs_diff_slices: lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Every element of `t`, row-major, as f32.
pub(crate) fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .expect("tensor values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn differences_are_the_largest_absolute_ones() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1f32, -2.0], [3.0, 4.0]], &dev).unwrap();
        let b = Tensor::new(&[[1f32, 0.5], [3.0, 3.0]], &dev).unwrap();
        assert_eq!(max_abs_diff(&a, &b), 2.5);
        assert_eq!(max_abs_diff(&b, &a), 2.5);
        assert_eq!(max_abs(&a), 4.0);
        let a64 = a.to_dtype(DType::F64).unwrap();
        assert_eq!(max_abs_diff(&a64, &a64), 0.0);
        assert_eq!(max_abs_diff_slices(&[1.0, -1.0], &[1.0, 2.0]), 3.0);
        assert_eq!(max_abs_diff_slices(&[], &[]), 0.0);
        assert_eq!(values(&a64), vec![1.0, -2.0, 3.0, 4.0]);
    }

    #[test]
    #[should_panic(expected = "shapes differ")]
    fn different_shapes_are_refused() {
        let dev = Device::Cpu;
        let a = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let b = Tensor::zeros((3, 2), DType::F32, &dev).unwrap();
        max_abs_diff(&a, &b);
    }
}
