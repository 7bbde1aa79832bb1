//! Host-side post-processing of anomaly maps: Gaussian smoothing and image scores.
//!
//! These run on plain `f32` slices after the map has left the device, so they are written for
//! speed on the CPU (separable filter, cache-friendly passes, selection instead of sorting).

use rayon::prelude::*;

use super::kernels::scratch::Pool;
use crate::model::kernels::simd::weighted_taps;

/// Gaussian smoothing identical to `scipy.ndimage.gaussian_filter(map, sigma)` with its
/// defaults: truncate 4.0 (radius = int(4σ + 0.5)), mode 'reflect' (half-sample symmetric:
/// `d c b a | a b c d | d c b a`), normalised kernel, applied separably.
///
/// Accumulates in f64 (as scipy does internally) and rounds to f32 once at the end. `sigma <=
/// 0` or non-finite returns the map unchanged; a slice that does not hold `h*w` values returns
/// an empty vector (never panics).
pub fn gaussian_smooth(map: &[f32], h: usize, w: usize, sigma: f32) -> Vec<f32> {
    if map.len() != h * w {
        return Vec::new();
    }
    let mut out = map.to_vec();
    gaussian_smooth_in_place(&mut out, h, w, sigma);
    out
}

/// [`gaussian_smooth`] writing the result over the map itself (the inspection path: no
/// second full-size map per frame). A slice that does not hold `h*w` values is left as is.
pub fn gaussian_smooth_in_place(map: &mut [f32], h: usize, w: usize, sigma: f32) {
    if map.len() != h * w || !(sigma.is_finite() && sigma > 0.0) || h == 0 || w == 0 {
        return;
    }
    let kernel = gaussian_kernel(sigma as f64, 4.0);
    let r = kernel.len() / 2;

    // Pass 1 along rows (axis 1), through a reflect-padded line buffer. Rows are
    // independent, as are the output rows of pass 2, so both passes run in parallel
    // (a batch's maps are also smoothed in parallel; rayon shares the cores out).
    let mut tmp = SCRATCH.take(h * w);
    let tmp_rows = &mut tmp[..h * w];
    let col_idx: Vec<usize> = (0..w + 2 * r)
        .map(|i| reflect_index(i as isize - r as isize, w))
        .collect();
    let along_row: Vec<usize> = (0..kernel.len()).collect();
    tmp_rows
        .par_chunks_mut(w)
        .zip(map.par_chunks(w))
        .for_each_init(
            || vec![0.0f64; w + 2 * r],
            |line, (dst, src)| {
                for (l, &j) in line.iter_mut().zip(&col_idx) {
                    *l = src[j] as f64;
                }
                weighted_taps(dst, line, &along_row, &kernel);
            },
        );

    // Pass 2 along columns (axis 0): the taps are whole rows of the intermediate map, so
    // memory is still read along rows.
    let tmp_rows = &*tmp_rows;
    map.par_chunks_mut(w).enumerate().for_each_init(
        || (vec![0.0f64; w], vec![0usize; kernel.len()]),
        |(acc, starts), (y, orow)| {
            for (t, s) in starts.iter_mut().enumerate() {
                *s = reflect_index(y as isize + t as isize - r as isize, h) * w;
            }
            weighted_taps(acc, tmp_rows, starts, &kernel);
            for (o, &a) in orow.iter_mut().zip(acc.iter()) {
                *o = a as f32;
            }
        },
    );
    SCRATCH.give(tmp);
}

/// The smoothing's f64 intermediate map (512 KiB at 256x256), reused across frames.
static SCRATCH: Pool<f64> = Pool::new();

/// scipy's `_gaussian_kernel1d` (order 0): exp(−x²/2σ²) for |x| ≤ int(truncate·σ + 0.5),
/// normalised to sum 1.
fn gaussian_kernel(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as usize;
    let mut k: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let x = i as f64 - radius as f64;
            (-0.5 / (sigma * sigma) * x * x).exp()
        })
        .collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Index into `0..n` for scipy's 'reflect' boundary (period 2n, edge sample repeated).
#[inline]
fn reflect_index(i: isize, n: usize) -> usize {
    let p = 2 * n as isize;
    let m = i.rem_euclid(p) as usize;
    if m >= n {
        2 * n - 1 - m
    } else {
        m
    }
}

/// Mean of the largest k = max(1, floor(fraction·N)) values — the reference implementation's
/// image score with `max_ratio = fraction`. Uses selection (O(N)), not a full sort, and
/// mostly without copying the map: a threshold picked from a strided sample keeps about
/// 2k candidates, and the k largest are selected among those. Should fewer than k values
/// pass the threshold (a map unlike its sample), the whole map is selected among instead;
/// the result is exact either way.
///
/// `fraction` is clamped to [0, 1]; an empty slice gives NaN. NaNs in the input order above
/// +∞ (IEEE total order), so a NaN map yields a NaN score rather than being silently ignored.
pub fn top_fraction_mean(values: &[f32], fraction: f64) -> f32 {
    let n = values.len();
    if n == 0 {
        return f32::NAN;
    }
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let k = ((fraction * n as f64).floor() as usize).clamp(1, n);
    const STRIDE: usize = 8;
    let mut sample: Vec<f32> = values.iter().step_by(STRIDE).copied().collect();
    // About twice the sample's share of the k largest, plus a few for small k.
    let keep = (2 * k / STRIDE + 8).min(sample.len());
    let at = sample.len() - keep;
    let threshold = total_order_key(*sample.select_nth_unstable_by(at, |a, b| a.total_cmp(b)).1);
    let mut candidates = sample;
    candidates.clear();
    candidates.extend(values.iter().filter(|&&x| total_order_key(x) >= threshold));
    if candidates.len() < k {
        candidates.clear();
        candidates.extend_from_slice(values);
    }
    // After selection, the k largest sit at `at` and right of it.
    let at = candidates.len() - k;
    let (_, kth, above) = candidates.select_nth_unstable_by(at, |a, b| a.total_cmp(b));
    let sum: f64 = above.iter().map(|&x| x as f64).sum::<f64>() + *kth as f64;
    (sum / k as f64) as f32
}

/// The bits of `x` as an unsigned key in IEEE total order (the order of `f32::total_cmp`).
#[inline]
fn total_order_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The largest value (NaN for an empty slice; NaNs are ignored unless all values are NaN).
pub fn max_value(values: &[f32]) -> f32 {
    values.iter().copied().fold(f32::NAN, f32::max)
}

/// How an anomaly map is reduced to one image score.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMethod {
    /// Mean of the top fraction of map values (reference: 0.01, i.e. the top 1%).
    TopFraction(f64),
    /// Plain maximum of the map.
    Max,
}

impl Default for ScoreMethod {
    /// The reference implementation's `max_ratio = 0.01`.
    fn default() -> Self {
        ScoreMethod::TopFraction(0.01)
    }
}

impl ScoreMethod {
    /// Scores one (smoothed) anomaly map.
    pub fn apply(&self, values: &[f32]) -> f32 {
        match *self {
            ScoreMethod::TopFraction(f) => top_fraction_mean(values, f),
            ScoreMethod::Max => max_value(values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_scipy() {
        // n = 3, period 6: ... 2 2 1 0 | 0 1 2 | 2 1 0 | 0 1 ...
        let got: Vec<usize> = (-4..8).map(|i| reflect_index(i, 3)).collect();
        assert_eq!(got, vec![2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]);
        assert_eq!(reflect_index(-5, 1), 0);
    }

    #[test]
    fn kernel_radius_and_sum() {
        let k = gaussian_kernel(4.0, 4.0);
        assert_eq!(k.len(), 33);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert_eq!(gaussian_kernel(0.5, 4.0).len(), 5); // int(2.5) = 2
    }

    #[test]
    fn constant_map_stays_constant() {
        let (h, w) = (7, 40); // smaller than the radius in one direction, larger in the other
        let m = vec![0.25f32; h * w];
        let s = gaussian_smooth(&m, h, w, 4.0);
        assert!(s.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn reflect_preserves_sum() {
        // With half-sample reflection the filter is mass-preserving on each axis.
        let (h, w) = (20, 23);
        let m: Vec<f32> = (0..h * w)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0)
            .collect();
        let s = gaussian_smooth(&m, h, w, 2.0);
        let a: f64 = m.iter().map(|&v| v as f64).sum();
        let b: f64 = s.iter().map(|&v| v as f64).sum();
        assert!((a - b).abs() < 1e-4 * a, "{a} vs {b}");
        // A single impulse spreads symmetrically.
        let mut d = vec![0f32; 21 * 21];
        d[10 * 21 + 10] = 1.0;
        let s = gaussian_smooth(&d, 21, 21, 1.5);
        assert!((s[10 * 21 + 9] - s[10 * 21 + 11]).abs() < 1e-9);
        assert!((s[9 * 21 + 10] - s[10 * 21 + 9]).abs() < 1e-9);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn smoothing_degenerate_inputs() {
        assert!(gaussian_smooth(&[1.0, 2.0], 2, 2, 4.0).is_empty());
        assert_eq!(gaussian_smooth(&[1.0, 2.0], 1, 2, 0.0), vec![1.0, 2.0]);
        assert_eq!(gaussian_smooth(&[3.0], 1, 1, 4.0), vec![3.0]);
    }

    #[test]
    fn top_fraction_with_ties() {
        let v = [1.0f32, 5.0, 5.0, 3.0, 5.0, 2.0, 0.0, 4.0, 5.0, 1.0];
        // k = floor(0.3*10) = 3 -> three 5s.
        assert_eq!(top_fraction_mean(&v, 0.3), 5.0);
        // k = 5 -> 5,5,5,5,4.
        assert_eq!(top_fraction_mean(&v, 0.5), 4.8);
        // k = max(1, 0) = 1.
        assert_eq!(top_fraction_mean(&v, 0.01), 5.0);
        assert_eq!(top_fraction_mean(&v, 1.0), 3.1);
        assert_eq!(top_fraction_mean(&v, 7.0), 3.1);
        assert!(top_fraction_mean(&[], 0.1).is_nan());
        assert_eq!(top_fraction_mean(&[2.0], 0.0), 2.0);
    }

    /// Each output as one dot product over its taps, in order: the plain definition.
    fn smooth_naive(map: &[f32], h: usize, w: usize, sigma: f32) -> Vec<f32> {
        let k = gaussian_kernel(sigma as f64, 4.0);
        let r = k.len() as isize / 2;
        let mut rows = vec![0f64; h * w];
        for y in 0..h {
            for x in 0..w {
                rows[y * w + x] = k.iter().enumerate().fold(0.0, |acc, (t, &kt)| {
                    acc + map[y * w + reflect_index(x as isize + t as isize - r, w)] as f64 * kt
                });
            }
        }
        let mut out = vec![0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                out[y * w + x] = k.iter().enumerate().fold(0.0, |acc, (t, &kt)| {
                    acc + rows[reflect_index(y as isize + t as isize - r, h) * w + x] * kt
                }) as f32;
            }
        }
        out
    }

    #[test]
    fn smoothing_equals_the_plain_definition_bit_for_bit() {
        // Widths with and without a tail after the 32-wide register blocks, and a map
        // narrower than the kernel.
        for (h, w, sigma) in [(64, 64, 4.0), (37, 70, 4.0), (9, 5, 1.5), (50, 33, 2.5)] {
            let m: Vec<f32> = (0..h * w)
                .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.3)
                .collect();
            let want = smooth_naive(&m, h, w, sigma);
            assert_eq!(gaussian_smooth(&m, h, w, sigma), want, "{h}x{w}");
            let mut inplace = m.clone();
            gaussian_smooth_in_place(&mut inplace, h, w, sigma);
            assert_eq!(inplace, want, "{h}x{w} in place");
        }
        // A slice of the wrong length is left as it is.
        let mut short = vec![1.0f32, 2.0, 3.0];
        gaussian_smooth_in_place(&mut short, 2, 2, 4.0);
        assert_eq!(short, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn top_fraction_matches_a_full_sort() {
        let by_sort = |v: &[f32], f: f64| {
            let k = ((f * v.len() as f64).floor() as usize).clamp(1, v.len());
            let mut s = v.to_vec();
            s.sort_by(|a, b| b.total_cmp(a));
            (s[..k].iter().map(|&x| x as f64).sum::<f64>() / k as f64) as f32
        };
        let n = 256 * 256;
        // A smooth bump over noise, as a smoothed anomaly map looks.
        let bumpy: Vec<f32> = (0..n)
            .map(|i| {
                let (y, x) = ((i / 256) as f32 - 90.0, (i % 256) as f32 - 170.0);
                (-(x * x + y * y) / 800.0).exp() + ((i * 7919) % 997) as f32 * 1e-5
            })
            .collect();
        // The sampled positions (every 8th) hold the largest values, so the threshold
        // from the sample passes too few: the whole-map fallback.
        let adversarial: Vec<f32> = (0..n)
            .map(|i| {
                if i % 8 == 0 {
                    1.0 + i as f32
                } else {
                    (i % 13) as f32 * 0.01
                }
            })
            .collect();
        let mut ties = vec![0.5f32; n];
        ties[1234] = 2.0;
        for v in [&bumpy, &adversarial, &ties] {
            for f in [0.0, 0.001, 0.01, 0.1, 0.5, 1.0] {
                assert_eq!(top_fraction_mean(v, f), by_sort(v, f), "fraction {f}");
            }
        }
        let mut with_nan = bumpy.clone();
        with_nan[77] = f32::NAN;
        assert!(top_fraction_mean(&with_nan, 0.01).is_nan());
    }

    #[test]
    fn max_and_score_method() {
        assert_eq!(max_value(&[1.0, -3.0, 2.5]), 2.5);
        assert!(max_value(&[]).is_nan());
        let v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        // top 1% of 0..999 = 990..999, mean 994.5
        assert_eq!(ScoreMethod::default().apply(&v), 994.5);
        assert_eq!(ScoreMethod::Max.apply(&v), 999.0);
    }

    #[test]
    fn score_method_serde_names() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct C {
            score: ScoreMethod,
        }
        let t = toml::to_string(&C {
            score: ScoreMethod::Max,
        })
        .unwrap();
        assert_eq!(t.trim(), "score = \"max\"");
        let c: C = toml::from_str("score = { top_fraction = 0.05 }").unwrap();
        assert_eq!(c.score, ScoreMethod::TopFraction(0.05));
    }
}
