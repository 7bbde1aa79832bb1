//! Exact spatial resizing matching `torch.nn.functional.interpolate`.
//!
//! The CDO reference implementation resizes feature maps with `mode='bilinear',
//! align_corners=True` and the synthetic-anomaly mask with `mode='nearest'`. Results must
//! match it closely (the test vectors are computed with torch), so the coordinate
//! conventions below follow torch exactly.
//!
//! The tensor versions are written as matrix products / index selections so that candle's
//! autograd flows through them on any backend; the plain-slice version is for host-side
//! post-processing of large maps, where a dense interpolation matrix would be wasteful.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Where bilinear upsampling puts a coarse grid's cells in the finer one: how a feature
/// level's discrepancy is placed in the anomaly map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsampling {
    /// torch's `align_corners=True`, the reference implementation's: the first and last
    /// cells on the first and last output pixels. A level of stride s is stretched by
    /// (n_out − 1)/(n_out − s), so its cells land up to s − 1 pixels right of and below
    /// what they see (15 px at the far edge of a 256 px input's stride-16 level).
    #[default]
    AlignCorners,
    /// Cell i of a level of stride s = n_out / n_in on output pixel s·i: the centre of its
    /// receptive field, as every convolution of both backbones is padded symmetrically
    /// (k/2). Past the last cell its value is held. All levels then agree where a defect is.
    ReceptiveField,
}

/// Source coordinate of output index `o` under `up`:
/// `o (n_in − 1)/(n_out − 1)` (align corners) or `o n_in / n_out` (receptive field).
/// Returns (lower index, upper index, fraction of the upper one).
#[inline]
fn source_coord(o: usize, n_in: usize, n_out: usize, up: Upsampling) -> (usize, usize, f64) {
    if n_out <= 1 || n_in <= 1 {
        // torch: with a single output (or input) sample the scale is 0, so index 0 is taken.
        return (0, 0, 0.0);
    }
    let x = match up {
        Upsampling::AlignCorners => o as f64 * (n_in - 1) as f64 / (n_out - 1) as f64,
        Upsampling::ReceptiveField => o as f64 * n_in as f64 / n_out as f64,
    };
    let x0 = (x.floor() as usize).min(n_in - 1);
    let x1 = (x0 + 1).min(n_in - 1);
    // Past the last cell (receptive field only) both indices are the last: the value held.
    let f = if x1 == x0 { 0.0 } else { x - x0 as f64 };
    (x0, x1, f)
}

/// Dense `n_out x n_in` interpolation matrix (row-major, f64).
fn interpolation_matrix(n_in: usize, n_out: usize, up: Upsampling) -> Vec<f64> {
    let mut m = vec![0.0f64; n_out * n_in];
    for o in 0..n_out {
        let (x0, x1, f) = source_coord(o, n_in, n_out, up);
        m[o * n_in + x0] += 1.0 - f;
        m[o * n_in + x1] += f;
    }
    m
}

/// Transposed interpolation matrix (`n_in x n_out`) as a tensor of `dtype` on `device`.
fn interpolation_matrix_t(
    n_in: usize,
    n_out: usize,
    up: Upsampling,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let m = interpolation_matrix(n_in, n_out, up);
    let mut t = vec![0.0f64; n_in * n_out];
    for o in 0..n_out {
        for i in 0..n_in {
            t[i * n_out + o] = m[o * n_in + i];
        }
    }
    Tensor::from_vec(t, (n_in, n_out), device)?.to_dtype(dtype)
}

fn dims4(x: &Tensor, what: &str) -> candle_core::Result<(usize, usize, usize, usize)> {
    x.dims4().map_err(|_| {
        candle_core::Error::Msg(format!(
            "{what}: expected a (B, C, H, W) tensor, got shape {:?}",
            x.dims()
        ))
    })
}

fn check_out(out_h: usize, out_w: usize, what: &str) -> candle_core::Result<()> {
    if out_h == 0 || out_w == 0 {
        return Err(candle_core::Error::Msg(format!(
            "{what}: output size must be non-zero, got {out_h}x{out_w}"
        )));
    }
    Ok(())
}

/// Bilinear resize of a (B, C, H, W) tensor, identical to torch's
/// `interpolate(mode='bilinear', align_corners=True)`.
pub fn bilinear_align_corners(
    x: &Tensor,
    out_h: usize,
    out_w: usize,
) -> candle_core::Result<Tensor> {
    bilinear(x, out_h, out_w, Upsampling::AlignCorners)
}

/// Bilinear resize of a (B, C, H, W) tensor with the cells placed as `up` says.
///
/// Computed as `Ry · x · Rwᵀ` with small interpolation matrices built on the host, so it is
/// differentiable with respect to `x` and runs on whatever device `x` lives on. Axes whose
/// size does not change are skipped (identity), and an unchanged size returns a cheap clone.
pub fn bilinear(
    x: &Tensor,
    out_h: usize,
    out_w: usize,
    up: Upsampling,
) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = dims4(x, "bilinear_align_corners")?;
    check_out(out_h, out_w, "bilinear_align_corners")?;
    if h == out_h && w == out_w {
        return Ok(x.clone());
    }
    if h == 0 || w == 0 || b * c == 0 {
        return Err(candle_core::Error::Msg(format!(
            "bilinear_align_corners: cannot resize an empty tensor of shape {:?}",
            x.dims()
        )));
    }
    let n = b * c;
    let (dtype, device) = (x.dtype(), x.device());
    // Width: (N*H, W) · Rwᵀ(W, out_w).
    let mut y = x.contiguous()?.reshape((n * h, w))?;
    if w != out_w {
        let rw_t = interpolation_matrix_t(w, out_w, up, dtype, device)?;
        y = y.matmul(&rw_t)?;
    }
    // Height: bring H last, (N*out_w, H) · Ryᵀ(H, out_h), and transpose back.
    if h != out_h {
        let ry_t = interpolation_matrix_t(h, out_h, up, dtype, device)?;
        y = y
            .reshape((n, h, out_w))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((n * out_w, h))?
            .matmul(&ry_t)?
            .reshape((n, out_w, out_h))?
            .transpose(1, 2)?
            .contiguous()?;
    }
    y.reshape((b, c, out_h, out_w))
}

/// Nearest-neighbour resize of a (B, C, H, W) tensor, identical to torch's
/// `interpolate(mode='nearest')`: source index = floor(dst * in / out).
///
/// Used for the synthetic-anomaly mask (kept exactly 0/1, no blending). Works for any dtype
/// and is differentiable (index selection).
pub fn nearest(x: &Tensor, out_h: usize, out_w: usize) -> candle_core::Result<Tensor> {
    let (_b, _c, h, w) = dims4(x, "nearest")?;
    check_out(out_h, out_w, "nearest")?;
    if h == out_h && w == out_w {
        return Ok(x.clone());
    }
    if h == 0 || w == 0 {
        return Err(candle_core::Error::Msg(format!(
            "nearest: cannot resize an empty tensor of shape {:?}",
            x.dims()
        )));
    }
    let idx = |n_in: usize, n_out: usize| -> Vec<u32> {
        // Integer arithmetic: exact floor(dst * in / out), no float rounding surprises.
        (0..n_out)
            .map(|o| ((o * n_in) / n_out).min(n_in - 1) as u32)
            .collect()
    };
    let device = x.device();
    let mut y = x.clone();
    if h != out_h {
        let iy = Tensor::from_vec(idx(h, out_h), out_h, device)?;
        y = y.index_select(&iy, 2)?;
    }
    if w != out_w {
        let ix = Tensor::from_vec(idx(w, out_w), out_w, device)?;
        y = y.index_select(&ix, 3)?;
    }
    Ok(y)
}

/// Host-side bilinear (align_corners=true) resize of one row-major `h x w` plane.
///
/// Separable and O(output pixels) — for upsampling a 256x256 anomaly map to the source
/// image size (e.g. 1024x1024) before export. Returns an empty vector if `src` does not hold
/// `h*w` values or a size is zero (callers validate sizes; this never panics).
pub fn bilinear_align_corners_plane(
    src: &[f32],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    if h == out_h && w == out_w && src.len() == h * w {
        return src.to_vec();
    }
    let Some(rows) = BilinearRows::new(src, h, w, out_h, out_w, Upsampling::AlignCorners) else {
        return Vec::new();
    };
    let mut out = vec![0.0f32; out_h * out_w];
    for (oy, orow) in out.chunks_exact_mut(out_w).enumerate() {
        rows.write_row(oy, orow);
    }
    out
}

/// Bilinear upsampling of one plane (cells placed as [`Upsampling`] says), output row by
/// output row: every
/// source row is interpolated horizontally once, and each output row blends two of them.
/// Rows can then be built in any order, in parallel, or summed over several planes
/// without a full-size temporary per plane.
pub struct BilinearRows {
    /// The `h` source rows, each interpolated to `out_w` columns.
    rows: Vec<f32>,
    up: Upsampling,
    h: usize,
    out_h: usize,
    out_w: usize,
}

impl BilinearRows {
    /// `None` if `src` does not hold `h*w` values or a size is zero.
    pub fn new(
        src: &[f32],
        h: usize,
        w: usize,
        out_h: usize,
        out_w: usize,
        up: Upsampling,
    ) -> Option<Self> {
        if h == 0 || w == 0 || out_h == 0 || out_w == 0 || src.len() != h * w {
            return None;
        }
        let xs: Vec<(usize, usize, f32)> = (0..out_w)
            .map(|o| {
                let (a, b, f) = source_coord(o, w, out_w, up);
                (a, b, f as f32)
            })
            .collect();
        let mut rows = Vec::with_capacity(h * out_w);
        for row in src.chunks_exact(w) {
            rows.extend(xs.iter().map(|&(a, b, f)| row[a] + (row[b] - row[a]) * f));
        }
        Some(BilinearRows {
            rows,
            up,
            h,
            out_h,
            out_w,
        })
    }

    /// The two interpolated source rows output row `oy` blends, and the second one's weight.
    fn pair(&self, oy: usize) -> (&[f32], &[f32], f32) {
        let (y0, y1, fy) = source_coord(oy, self.h, self.out_h, self.up);
        let row = |y: usize| &self.rows[y * self.out_w..(y + 1) * self.out_w];
        (row(y0), row(y1), fy as f32)
    }

    /// Writes output row `oy` (`out_w` values) into `out`.
    pub fn write_row(&self, oy: usize, out: &mut [f32]) {
        let (r0, r1, fy) = self.pair(oy);
        for ((o, &a), &b) in out.iter_mut().zip(r0).zip(r1) {
            *o = a + (b - a) * fy;
        }
    }

    /// Adds output row `oy` to `acc` (each value rounded to f32 before the add, as adding
    /// the upsampled plane would).
    pub fn add_row(&self, oy: usize, acc: &mut [f32]) {
        let (r0, r1, fy) = self.pair(oy);
        for ((o, &a), &b) in acc.iter_mut().zip(r0).zip(r1) {
            *o += a + (b - a) * fy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t4(data: &[f64], h: usize, w: usize) -> Tensor {
        Tensor::from_vec(data.to_vec(), (1, 1, h, w), &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn bilinear_2x2_to_3x3() {
        // [[0,1],[2,3]] -> align_corners: corners kept, midpoints averaged.
        let x = t4(&[0., 1., 2., 3.], 2, 2);
        let y = bilinear_align_corners(&x, 3, 3).unwrap();
        assert_eq!(y.dims(), &[1, 1, 3, 3]);
        close(&flat(&y), &[0., 0.5, 1., 1., 1.5, 2., 2., 2.5, 3.]);
    }

    #[test]
    fn bilinear_non_square_and_batch() {
        // 1x3 row to 1x5, two channels: [0,2,4] -> [0,1,2,3,4]; [1,1,1] stays 1.
        let x = Tensor::from_vec(vec![0., 2., 4., 1., 1., 1.], (1, 2, 1, 3), &Device::Cpu).unwrap();
        let y = bilinear_align_corners(&x, 1, 5).unwrap();
        close(&flat(&y), &[0., 1., 2., 3., 4., 1., 1., 1., 1., 1.]);
        // 3x1 column to 2x1 (downsample): rows 0 and 2.
        let x = t4(&[5., 6., 7.], 3, 1);
        close(&flat(&bilinear_align_corners(&x, 2, 1).unwrap()), &[5., 7.]);
    }

    #[test]
    fn bilinear_size_one_edges() {
        // Output size 1 takes the first row/column (torch align_corners=True).
        let x = t4(&[0., 1., 2., 3.], 2, 2);
        close(&flat(&bilinear_align_corners(&x, 1, 1).unwrap()), &[0.]);
        // Input size 1 is replicated.
        let x = t4(&[7.], 1, 1);
        close(&flat(&bilinear_align_corners(&x, 2, 3).unwrap()), &[7.; 6]);
        // Identity.
        let x = t4(&[0., 1., 2., 3.], 2, 2);
        close(
            &flat(&bilinear_align_corners(&x, 2, 2).unwrap()),
            &[0., 1., 2., 3.],
        );
    }

    #[test]
    fn receptive_field_puts_cell_i_on_pixel_stride_times_i() {
        // Stride 4: cells on pixels 0 and 4, blended between, the last held past it.
        let x = t4(&[0., 1.], 1, 2);
        let up = Upsampling::ReceptiveField;
        close(
            &flat(&bilinear(&x, 1, 8, up).unwrap()),
            &[0., 0.25, 0.5, 0.75, 1., 1., 1., 1.],
        );
        // One hot cell of a stride-16 level (16 cells, a 256 px input) peaks at 16 i with
        // this placement; align corners puts it at 17 i, 15 px further for the last cell.
        let peak = |up| {
            let mut v = vec![0f32; 16];
            v[15] = 1.0;
            let rows = BilinearRows::new(&v, 1, 16, 1, 256, up).unwrap();
            let mut out = vec![0f32; 256];
            rows.write_row(0, &mut out);
            out.iter().position(|&v| v == 1.0).unwrap()
        };
        assert_eq!(peak(up), 240);
        assert_eq!(peak(Upsampling::AlignCorners), 255);
        // The plane and the tensor versions agree (the CPU maps with one, other devices
        // without the crate's kernels with the other).
        let src: Vec<f32> = (0..12).map(|i| ((i * 7) % 5) as f32).collect();
        let t = Tensor::from_vec(src.clone(), (1, 1, 3, 4), &Device::Cpu).unwrap();
        let want = flat(&bilinear(&t.to_dtype(DType::F64).unwrap(), 12, 16, up).unwrap());
        let rows = BilinearRows::new(&src, 3, 4, 12, 16, up).unwrap();
        let mut got = vec![0f32; 12 * 16];
        for (oy, row) in got.chunks_exact_mut(16).enumerate() {
            rows.write_row(oy, row);
        }
        let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
        close(&got, &want);
    }

    #[test]
    fn bilinear_rejects_bad_input() {
        let x = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(bilinear_align_corners(&x, 3, 3).is_err());
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(bilinear_align_corners(&x, 0, 3).is_err());
        assert!(nearest(&x, 3, 0).is_err());
    }

    #[test]
    fn bilinear_f32_and_grad() {
        let v =
            candle_core::Var::from_vec(vec![0f32, 1., 2., 3.], (1, 1, 2, 2), &Device::Cpu).unwrap();
        let y = bilinear_align_corners(v.as_tensor(), 3, 3).unwrap();
        let s = y.sum_all().unwrap();
        assert_eq!(s.to_scalar::<f32>().unwrap(), 13.5);
        let g = s.backward().unwrap();
        let g = g.get(v.as_tensor()).unwrap().flatten_all().unwrap();
        // Each corner receives 1 + 0.5*2 + 0.25 = 2.25.
        assert_eq!(g.to_vec1::<f32>().unwrap(), vec![2.25; 4]);
    }

    #[test]
    fn nearest_matches_torch() {
        // 2x2 -> 4x4 replicates; 4 -> 3 picks floor(d*4/3) = 0,1,2.
        let x = t4(&[1., 2., 3., 4.], 2, 2);
        close(
            &flat(&nearest(&x, 4, 4).unwrap()),
            &[
                1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.,
            ],
        );
        let x = t4(&[0., 1., 2., 3.], 1, 4);
        close(&flat(&nearest(&x, 1, 3).unwrap()), &[0., 1., 2.]);
        // 32 -> 8 picks every 4th starting at 0.
        let x = t4(&(0..32).map(|v| v as f64).collect::<Vec<_>>(), 1, 32);
        close(
            &flat(&nearest(&x, 1, 8).unwrap()),
            &[0., 4., 8., 12., 16., 20., 24., 28.],
        );
        // u8 mask works too.
        let m = Tensor::from_vec(vec![0u8, 1, 1, 0], (1, 1, 2, 2), &Device::Cpu).unwrap();
        let r = nearest(&m, 4, 4).unwrap().flatten_all().unwrap();
        assert_eq!(r.to_vec1::<u8>().unwrap()[..4], [0, 0, 1, 1]);
    }

    #[test]
    fn plane_matches_tensor_version() {
        let (h, w, oh, ow) = (5, 7, 13, 4);
        let src: Vec<f32> = (0..h * w)
            .map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.0)
            .collect();
        let t = Tensor::from_vec(src.clone(), (1, 1, h, w), &Device::Cpu).unwrap();
        let want = bilinear_align_corners(&t, oh, ow)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = bilinear_align_corners_plane(&src, h, w, oh, ow);
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(
            bilinear_align_corners_plane(&[0., 1., 2., 3.], 2, 2, 3, 3),
            vec![0., 0.5, 1., 1., 1.5, 2., 2., 2.5, 3.]
        );
        assert!(bilinear_align_corners_plane(&[0., 1.], 2, 2, 3, 3).is_empty());
    }
}
