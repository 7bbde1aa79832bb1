//! EfficientNet's stem (a dense 3x3 stride-2 convolution of the RGB input, BatchNorm
//! folded, ReLU6) as one direct CPU kernel for frozen networks.
//!
//! Through im2col the stem copies its input nine times over and then runs a GEMM whose
//! inner dimension is only 27; here the three input planes are padded and split into
//! stride phases once (the layout of the fused blocks' depthwise tiles), and four output
//! channels by sixteen columns are summed in registers over all 27 taps.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::mbconv::{deinterleave, fill_run, fill_tile, Band, Dense, Tile, POOL};

/// Output channels per parallel task: whole register groups of four.
const TASK_CHANNELS: usize = 8;

pub struct FusedStem {
    cin: usize,
    k: usize,
    stride: usize,
    /// cout x cin x k x k (PyTorch order) and cout biases.
    conv: Dense,
}

impl FusedStem {
    pub fn new(cin: usize, k: usize, stride: usize, conv: Dense) -> Result<Self> {
        let cout = conv.bias.len();
        if k == 0 || k % 2 == 0 || !(1..=2).contains(&stride) || cin == 0 {
            bail!("fused stem: kernel {k} stride {stride} not supported (odd k, stride 1 or 2)");
        }
        if conv.weight.len() != cout * cin * k * k {
            bail!("fused stem: weights do not fit {cin} -> {cout} channels, kernel {k}");
        }
        Ok(Self {
            cin,
            k,
            stride,
            conv,
        })
    }

    /// The stem on a B x cin x H x W f32 CPU tensor (symmetric padding k / 2, ReLU6).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// One image: `x` is cin x H x W; writes every value of `y` (cout x OH x OW).
    fn image(&self, x: &[f32], y: &mut [MaybeUninit<f32>], h: usize, w: usize) {
        let (k, s, p) = (self.k, self.stride, self.k / 2);
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let t = Tile::with_band(h, w, oh, ow, k, s, oh);
        let tile_len = t.band_padded_rows * t.padded_row;
        // Scratch from the fused blocks' pool: `fill_tile` writes every element, padding
        // included, so it needs no clearing.
        let mut scratch = POOL.take(self.cin * tile_len);
        let tiles = &mut scratch[..self.cin * tile_len];
        for (ci, tile) in tiles.chunks_exact_mut(tile_len).enumerate() {
            let band = Band {
                src: &x[ci * h * w..(ci + 1) * h * w],
                expand_bias: None,
                first_row: 0,
                first_src_row: 0,
                kernel: &[],
                bias: 0.0,
            };
            fill_tile(&band, tile, &t, p, s, fill_run, deinterleave);
        }
        let plane = oh * ow;
        let taps = self.cin * k * k;
        y.par_chunks_mut(TASK_CHANNELS * plane)
            .enumerate()
            .for_each(|(task, out)| {
                let c0 = task * TASK_CHANNELS;
                let n = out.len() / plane;
                let weights = &self.conv.weight[c0 * taps..(c0 + n) * taps];
                let bias = &self.conv.bias[c0..c0 + n];
                channels(tiles, tile_len, out, weights, bias, &t, self.cin, k, s);
            });
        POOL.give(scratch);
    }
}

/// Output channels (`out`: whole planes, every value written) from the padded input
/// tiles.
#[allow(clippy::too_many_arguments)]
fn channels(
    tiles: &[f32],
    tile_len: usize,
    out: &mut [MaybeUninit<f32>],
    weights: &[f32],
    bias: &[f32],
    t: &Tile,
    cin: usize,
    k: usize,
    s: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if super::mbconv::avx2_available() && k == 3 && s == 2 {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { avx2::channels::<3, 2>(tiles, tile_len, out, weights, bias, t, cin) };
    }
    let plane = t.oh * t.ow;
    let taps = cin * k * k;
    for (c, oplane) in out.chunks_exact_mut(plane).enumerate() {
        let wc = &weights[c * taps..(c + 1) * taps];
        for (oy, orow) in oplane.chunks_exact_mut(t.ow).enumerate() {
            for (ox, o) in orow.iter_mut().enumerate() {
                let mut sum = bias[c];
                for ci in 0..cin {
                    for i in 0..k {
                        let row = ci * tile_len + (oy * s + i) * t.padded_row;
                        for j in 0..k {
                            let at = row + (j % s) * t.phase_len + ox + j / s;
                            sum += wc[(ci * k + i) * k + j] * tiles[at];
                        }
                    }
                }
                o.write(sum.clamp(0.0, 6.0));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Tile;
    use crate::model::kernels::mbconv::LANES;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn channels<const K: usize, const S: usize>(
        tiles: &[f32],
        tile_len: usize,
        out: &mut [MaybeUninit<f32>],
        weights: &[f32],
        bias: &[f32],
        t: &Tile,
        cin: usize,
    ) {
        let plane = t.oh * t.ow;
        let taps = cin * K * K;
        let n = out.len() / plane;
        // The furthest float a tap reads (see `Tile`), checked once for the loads below.
        assert!(
            cin * tile_len <= tiles.len()
                && tile_len >= ((t.oh - 1) * S + K) * t.padded_row
                && weights.len() >= n * taps
                && bias.len() >= n,
            "stem tiles too small"
        );
        let mut c = 0;
        while c < n {
            if n - c >= 4 {
                group::<K, S, 4>(tiles, tile_len, out, weights, bias, t, cin, c);
                c += 4;
            } else {
                group::<K, S, 1>(tiles, tile_len, out, weights, bias, t, cin, c);
                c += 1;
            }
        }
    }

    /// Output channels `c .. c + G`, every row, sixteen columns at a time.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn group<const K: usize, const S: usize, const G: usize>(
        tiles: &[f32],
        tile_len: usize,
        out: &mut [MaybeUninit<f32>],
        weights: &[f32],
        bias: &[f32],
        t: &Tile,
        cin: usize,
        c: usize,
    ) {
        let plane = t.oh * t.ow;
        let taps = cin * K * K;
        let (zero, six) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
        for oy in 0..t.oh {
            for x0 in (0..t.ow).step_by(LANES) {
                let mut acc = [[_mm256_setzero_ps(); 2]; G];
                for ci in 0..cin {
                    for i in 0..K {
                        let row = tiles
                            .as_ptr()
                            .add(ci * tile_len + (oy * S + i) * t.padded_row + x0);
                        for j in 0..K {
                            let p = row.add((j % S) * t.phase_len + j / S);
                            let (v0, v1) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                            let tap = (ci * K + i) * K + j;
                            for (q, a) in acc.iter_mut().enumerate() {
                                let wv =
                                    _mm256_set1_ps(*weights.get_unchecked((c + q) * taps + tap));
                                a[0] = _mm256_fmadd_ps(wv, v0, a[0]);
                                a[1] = _mm256_fmadd_ps(wv, v1, a[1]);
                            }
                        }
                    }
                }
                let left = (t.ow - x0).min(LANES);
                for (q, a) in acc.iter().enumerate() {
                    let b = _mm256_set1_ps(bias[c + q]);
                    let [v0, v1] =
                        a.map(|v| _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, b), zero), six));
                    let dst = &mut out[(c + q) * plane + oy * t.ow + x0..][..left];
                    let o = dst.as_mut_ptr() as *mut f32;
                    if left == LANES {
                        _mm256_storeu_ps(o, v0);
                        _mm256_storeu_ps(o.add(8), v1);
                    } else {
                        let mut tmp = [0f32; LANES];
                        _mm256_storeu_ps(tmp.as_mut_ptr(), v0);
                        _mm256_storeu_ps(tmp.as_mut_ptr().add(8), v1);
                        std::ptr::copy_nonoverlapping(tmp.as_ptr(), o, left);
                    }
                }
            }
        }
    }
}

impl CustomOp1 for FusedStem {
    fn name(&self) -> &'static str {
        "fused-stem"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = super::cpu_f32("fused-stem", "input", s, l)?;
        let (b, c, h, w) = l.shape().dims4()?;
        let (k, st) = (self.k, self.stride);
        if c != self.cin || h + 2 * (k / 2) < k || w + 2 * (k / 2) < k {
            bail!(
                "fused-stem: input {:?} does not fit {} channels",
                l.dims(),
                self.cin
            );
        }
        let cout = self.conv.bias.len();
        let (oh, ow) = (
            (h + 2 * (k / 2) - k) / st + 1,
            (w + 2 * (k / 2) - k) / st + 1,
        );
        // Not zeroed first: `image` writes every value of its image.
        let n = b * cout * oh * ow;
        let mut y = Vec::with_capacity(n);
        y.spare_capacity_mut()[..n]
            .par_chunks_mut(cout * oh * ow)
            .zip(x.par_chunks(c * h * w))
            .for_each(|(yi, xi)| self.image(xi, yi, h, w));
        // SAFETY: the n values were all written just above.
        unsafe { y.set_len(n) };
        Ok((CpuStorage::F32(y), Shape::from((b, cout, oh, ow))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::im2col;
    use crate::test_util::max_abs_diff;
    use candle_core::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The portable loops (what aarch64 runs) on the same cases.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn portable_loops_match_the_layer_by_layer_stem() {
        crate::model::kernels::mbconv::with_kernels(true, check_against_the_layer_by_layer_stem);
    }

    #[test]
    fn matches_the_layer_by_layer_stem() {
        crate::model::kernels::mbconv::with_kernels(false, check_against_the_layer_by_layer_stem);
    }

    /// Against im2col + GEMM + bias + ReLU6 (the layer-by-layer stem), on the real stem's
    /// shape and on sizes with partial register blocks and odd edges.
    fn check_against_the_layer_by_layer_stem() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (cin, cout, h, w) in [(3, 32, 64, 64), (3, 7, 17, 23), (2, 5, 5, 3)] {
            let r = |rng: &mut ChaCha8Rng, n: usize| -> Vec<f32> {
                (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
            };
            let conv = Dense {
                weight: r(&mut rng, cout * cin * 9),
                bias: r(&mut rng, cout),
            };
            let dev = Device::Cpu;
            let wt = Tensor::from_slice(&conv.weight, (cout, cin, 3, 3), &dev).unwrap();
            let bt = Tensor::from_slice(&conv.bias, (1, cout, 1, 1), &dev).unwrap();
            let x = Tensor::from_vec(r(&mut rng, 2 * cin * h * w), (2, cin, h, w), &dev).unwrap();
            let want = im2col::conv2d(&x, &wt, 2, 1)
                .unwrap()
                .broadcast_add(&bt)
                .unwrap()
                .clamp(0f32, 6f32)
                .unwrap();
            let stem = FusedStem::new(cin, 3, 2, conv).unwrap();
            let got = stem.forward(&x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "{cin}->{cout} {h}x{w}: max diff {diff}");
        }
    }
}
