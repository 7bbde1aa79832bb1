//! The CDO training loss (MOM + OOM) and the inference anomaly map.
//!
//! The method is Cao et al., "Collaborative Discrepancy Optimization for Reliable Image
//! Anomaly Localization", IEEE TII 2023 (see the README). Everything here works on candle
//! tensors of any float dtype (tests use F64, production F32; F16/BF16 inputs are computed
//! in F32 so the epsilon guards stay representable) and stays on the tensors' device: the
//! mask is applied by multiplying with 0/1 tensors rather than gathering positions, so the
//! loss is differentiable with respect to the apprentice features. `anomaly_maps_host` is
//! the inference map again, on the host, for CPU inference.

use candle_core::{CpuStorage, DType, Result, Storage, StorageRef, Tensor};

use rayon::prelude::*;

use super::kernels::resize::{bilinear, bilinear_align_corners, nearest, BilinearRows, Upsampling};

/// Added under the square root of the channel norm, as `sqrt(Σf² + EPS_NORM²)`: keeps an
/// all-zero feature vector finite (and its gradient finite) instead of 0/0. Relative effect
/// on a non-degenerate vector is ~(EPS_NORM/||f||)², i.e. nil.
pub const EPS_NORM: f64 = 1e-12;

/// Floor for the OOM ratio denominators (μ_n in `d/μ_n`, d in `μ_s/d`) and the level-loss
/// denominator, applied as `max(x, EPS)`: guards against 0/0 (μ = 0, d = 0, all weights 0)
/// without moving any result whose denominators exceed it (every non-degenerate case, and all
/// the reference vectors). It is representable in F32 and caps a synthetic weight at
/// (μ_s/EPS)^γ ≤ (4e8)^γ (d ≤ 4 for unit vectors), finite in F32 for γ up to ~4.
pub const EPS: f64 = 1e-8;

/// Which parts of CDO are switched on.
///
/// - `mom` (margin optimisation): the synthetic positions enter the loss with a negative sign.
///   Without it (the "ST" baseline) the synthetic positions are dropped entirely — they are
///   not counted as normal.
/// - `oom` (overlap optimisation): positions are re-weighted by `(d/μ_n)^γ` (normal) and
///   `(μ_s/d)^γ` (synthetic). `oom = false` or `gamma = 0` means all weights are 1; the
///   reference vectors' `mom_only` case is `{gamma: 0, oom: true, mom: true}`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossConfig {
    pub gamma: f64,
    pub mom: bool,
    pub oom: bool,
}

impl Default for LossConfig {
    /// The paper's setting: γ = 2 with both MOM and OOM.
    fn default() -> Self {
        Self {
            gamma: 2.0,
            mom: true,
            oom: true,
        }
    }
}

impl LossConfig {
    /// The effective OOM exponent (0 when OOM is off).
    pub fn effective_gamma(&self) -> f64 {
        if self.oom {
            self.gamma
        } else {
            0.0
        }
    }
}

/// Result of [`cdo_loss`].
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// Scalar loss Σ_l L_l, differentiable with respect to the apprentice features.
    pub total: Tensor,
    /// L_l for every hierarchy level.
    pub per_level: Vec<f64>,
    /// Mean discrepancy d over normal positions, averaged over levels (0 if there are none).
    pub mean_normal_d: f64,
    /// Mean discrepancy d over synthetic positions, averaged over levels; `None` when the
    /// batch has no synthetic positions (or no mask was given).
    pub mean_synthetic_d: Option<f64>,
}

fn msg<T>(s: String) -> Result<T> {
    Err(candle_core::Error::Msg(s))
}

/// Computation dtype: half types are lifted to F32 so the epsilons do not underflow.
fn work_dtype(dt: DType) -> DType {
    match dt {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    }
}

/// Checks the feature lists: same non-zero length, matching (B, C, H, W) per level and the
/// same batch size everywhere. Returns the batch size and first level's (H, W).
fn check_features(expert: &[Tensor], apprentice: &[Tensor]) -> Result<(usize, usize, usize)> {
    if expert.is_empty() || expert.len() != apprentice.len() {
        return msg(format!(
            "cdo: need the same non-zero number of expert and apprentice levels, got {} and {}",
            expert.len(),
            apprentice.len()
        ));
    }
    let mut first = None;
    for (l, (e, a)) in expert.iter().zip(apprentice).enumerate() {
        if e.rank() != 4 || e.dims() != a.dims() {
            return msg(format!(
                "cdo: level {l}: expert {:?} and apprentice {:?} must be equal (B, C, H, W) shapes",
                e.dims(),
                a.dims()
            ));
        }
        let (b, c, h, w) = e.dims4()?;
        if b == 0 || c == 0 || h == 0 || w == 0 {
            return msg(format!("cdo: level {l}: empty feature map {:?}", e.dims()));
        }
        if !e.dtype().is_float() || e.dtype() != a.dtype() {
            return msg(format!(
                "cdo: level {l}: features must share one float dtype, got {:?} and {:?}",
                e.dtype(),
                a.dtype()
            ));
        }
        match first {
            None => first = Some((b, h, w)),
            Some((b0, _, _)) if b0 != b => {
                return msg(format!(
                    "cdo: level {l}: batch size {b} differs from level 0's {b0}"
                ))
            }
            _ => {}
        }
    }
    // `first` is set because the lists are non-empty.
    first.ok_or_else(|| candle_core::Error::Msg("cdo: no levels".into()))
}

/// L2-normalises over the channel dimension (dim 1), epsilon-guarded (see [`EPS_NORM`]).
fn l2_normalize_channels(f: &Tensor) -> Result<Tensor> {
    let norm = f
        .sqr()?
        .sum_keepdim(1)?
        .affine(1.0, EPS_NORM * EPS_NORM)?
        .sqrt()?;
    f.broadcast_div(&norm)
}

/// The CDO loss for one batch (MOM + OOM, per `cfg`).
///
/// Per level: both maps are resized bilinearly (align_corners=true) to the first level's
/// size, as the reference does (the map's placement is the bundle's `upsampling`; placing
/// cells at their receptive fields here too trained no better on tiled line frames),
/// L2-normalised over channels, and `d = Σ_c (f̂_E − f̂_A)²`. `mask` (B×1×Hm×Wm at image
/// resolution, > 0 = synthetic anomaly) is nearest-resized to that size; `None` means all
/// positions are normal. Statistics (μ_n, μ_s, the sums) are pooled over the whole batch.
/// OOM weights are detached. Level loss `(Σ w_n d_n − Σ w_s d_s) / (Σ w_n + Σ w_s)`; total =
/// Σ over levels, no batch-size factor. The expert features are detached (frozen network).
pub fn cdo_loss(
    expert: &[Tensor],
    apprentice: &[Tensor],
    mask: Option<&Tensor>,
    cfg: &LossConfig,
) -> Result<LossOutput> {
    let (b, h0, w0) = check_features(expert, apprentice)?;
    let in_dtype = expert[0].dtype();
    let dt = work_dtype(in_dtype);
    let device = expert[0].device();
    if !cfg.gamma.is_finite() || cfg.gamma < 0.0 {
        return msg(format!(
            "cdo_loss: gamma must be finite and >= 0, got {}",
            cfg.gamma
        ));
    }
    let gamma = cfg.effective_gamma();

    // Synthetic indicator s (B×1×h0×w0, 0/1 in `dt`), detached; normal = 1 − s.
    let synth = match mask {
        None => None,
        Some(m) => {
            let (mb, mc, mh, mw) = m.dims4().or_else(|_| {
                msg(format!(
                    "cdo_loss: mask must be (B, 1, H, W), got {:?}",
                    m.dims()
                ))
            })?;
            if mb != b || mc != 1 || mh == 0 || mw == 0 {
                return msg(format!(
                    "cdo_loss: mask shape {:?} does not fit batch size {b} (want (B, 1, H, W))",
                    m.dims()
                ));
            }
            let m = m.detach().to_device(device)?.to_dtype(dt)?;
            let s = nearest(&m, h0, w0)?.gt(0.0)?.to_dtype(dt)?;
            Some(s)
        }
    };
    let normal = match &synth {
        Some(s) => s.affine(-1.0, 1.0)?,
        None => Tensor::ones((b, 1, h0, w0), dt, device)?,
    };
    // Counts as tensors (no host sync); clamped to ≥ 1 so empty sets give means of 0.
    let n_count = normal.sum_all()?.maximum(1.0)?;
    let s_count = match &synth {
        Some(s) => Some(s.sum_all()?),
        None => None,
    };

    let zero = Tensor::zeros((), dt, device)?;
    let mut level_losses = Vec::with_capacity(expert.len());
    let mut stats = Vec::with_capacity(expert.len() * 3);
    for (e, a) in expert.iter().zip(apprentice) {
        let e = bilinear_align_corners(&e.detach().to_dtype(dt)?, h0, w0)?;
        let a = bilinear_align_corners(&a.to_dtype(dt)?, h0, w0)?;
        let diff = (l2_normalize_channels(&e)? - l2_normalize_channels(&a)?)?;
        let d = diff.sqr()?.sum_keepdim(1)?; // B×1×h0×w0
        let dd = d.detach();

        // Normal part.
        let mu_n = (&dd * &normal)?.sum_all()?.div(&n_count)?;
        let w_n = if gamma == 0.0 {
            normal.clone()
        } else {
            let ratio = dd.broadcast_div(&mu_n.maximum(EPS)?)?;
            (ratio.powf(gamma)? * &normal)?
        };
        let mut num = (&w_n * &d)?.sum_all()?;
        let mut den = w_n.sum_all()?;

        // Synthetic part (only with MOM; without MOM those positions are dropped).
        let mut mu_s = None;
        if let (Some(s), Some(sc)) = (&synth, &s_count) {
            let m = (&dd * s)?.sum_all()?.div(&sc.maximum(1.0)?)?;
            if cfg.mom {
                let w_s = if gamma == 0.0 {
                    s.clone()
                } else {
                    let ratio = dd.maximum(EPS)?.recip()?.broadcast_mul(&m)?;
                    (ratio.powf(gamma)? * s)?
                };
                num = (num - (&w_s * &d)?.sum_all()?)?;
                den = (den + w_s.sum_all()?)?;
            }
            mu_s = Some(m);
        }
        let level = num.div(&den.maximum(EPS)?)?;
        stats.push(level.detach());
        stats.push(mu_n);
        stats.push(mu_s.unwrap_or_else(|| zero.clone()));
        level_losses.push(level);
    }

    let total = Tensor::stack(&level_losses, 0)?.sum_all()?;
    // One host transfer for all the reported numbers.
    let host = Tensor::stack(&stats, 0)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let n_levels = expert.len() as f64;
    let per_level: Vec<f64> = host.chunks_exact(3).map(|c| c[0]).collect();
    let mean_normal_d = host.chunks_exact(3).map(|c| c[1]).sum::<f64>() / n_levels;
    let has_synthetic = match &s_count {
        Some(sc) => sc.to_dtype(DType::F64)?.to_scalar::<f64>()? > 0.0,
        None => false,
    };
    let mean_synthetic_d = if has_synthetic {
        Some(host.chunks_exact(3).map(|c| c[2]).sum::<f64>() / n_levels)
    } else {
        None
    };
    Ok(LossOutput {
        total,
        per_level,
        mean_normal_d,
        mean_synthetic_d,
    })
}

/// The unsmoothed anomaly map, B × out_h × out_w.
///
/// Per level `a_l = 1 − cos(f_E, f_A)` over channels at the level's own resolution, then
/// bilinear to the output size (cells placed as `up` says; the reference: align corners);
/// the map is the mean over levels.
/// Gaussian smoothing and scoring are host-side (`postprocess`). Half-precision inputs give
/// an F32 map.
pub fn anomaly_map(
    expert: &[Tensor],
    apprentice: &[Tensor],
    out_h: usize,
    out_w: usize,
    up: Upsampling,
) -> Result<Tensor> {
    check_features(expert, apprentice)?;
    if out_h == 0 || out_w == 0 {
        return msg(format!(
            "anomaly_map: output size must be non-zero, got {out_h}x{out_w}"
        ));
    }
    let dt = work_dtype(expert[0].dtype());
    let mut sum: Option<Tensor> = None;
    for (e, a) in expert.iter().zip(apprentice) {
        let e = l2_normalize_channels(&e.to_dtype(dt)?)?;
        let a = l2_normalize_channels(&a.to_dtype(dt)?)?;
        let cos = (e * a)?.sum_keepdim(1)?;
        let al = bilinear(&cos.affine(-1.0, 1.0)?, out_h, out_w, up)?;
        sum = Some(match sum {
            None => al,
            Some(s) => (s + al)?,
        });
    }
    let sum = sum.ok_or_else(|| candle_core::Error::Msg("anomaly_map: no levels".into()))?;
    sum.affine(1.0 / expert.len() as f64, 0.0)?.squeeze(1)
}

/// [`anomaly_map`] computed by the crate's CUDA kernels on the features' GPU (f32, up to
/// three levels): the same per-level discrepancy as [`anomaly_maps_host`] (sums in f64,
/// the same `EPS_NORM`), upsampling and mean over levels; B x out_h x out_w, left on the
/// GPU.
#[cfg(feature = "cuda")]
pub fn anomaly_maps_cuda(
    expert: &[Tensor],
    apprentice: &[Tensor],
    out_h: usize,
    out_w: usize,
    up: Upsampling,
) -> Result<Tensor> {
    check_features(expert, apprentice)?;
    super::kernels::cuda::map::anomaly_map(expert, apprentice, out_h, out_w, up, EPS_NORM)
}

/// [`anomaly_map`] computed on the host (sums in f64, map in f32), one `out_h * out_w` row-major map per image:
/// the same per-level cosine discrepancy, bilinear upsampling and mean over levels, in one
/// pass over each level's features instead of a dozen tensor ops with a full-size temporary
/// each (normalise, multiply, sum, resize). For CPU inference, where it is several times
/// faster; it matches [`anomaly_map`] to float rounding (`1 − e·a / (|e| |a|)` instead of the
/// dot product of normalised vectors).
///
/// Contiguous f32 CPU features are read in place, not copied; each level's small
/// discrepancy plane is upsampled row by row straight into the sum, in parallel over rows.
pub fn anomaly_maps_host(
    expert: &[Tensor],
    apprentice: &[Tensor],
    out_h: usize,
    out_w: usize,
    up: Upsampling,
) -> Result<Vec<Vec<f32>>> {
    let (b, _, _) = check_features(expert, apprentice)?;
    if out_h == 0 || out_w == 0 {
        return msg(format!(
            "anomaly_map: output size must be non-zero, got {out_h}x{out_w}"
        ));
    }
    let levels = expert
        .iter()
        .zip(apprentice)
        .map(|(e, a)| Ok((e.dims4()?, HostF32::of(e)?, HostF32::of(a)?)))
        .collect::<Result<Vec<_>>>()?;
    let inv = 1.0 / levels.len() as f32;
    let maps = (0..b)
        .into_par_iter()
        .map(|i| {
            let planes: Vec<BilinearRows> = levels
                .par_iter()
                .filter_map(|((_, c, h, w), e, a)| {
                    let n = c * h * w;
                    let (e, a) = (
                        &e.values()[i * n..(i + 1) * n],
                        &a.values()[i * n..(i + 1) * n],
                    );
                    BilinearRows::new(&discrepancy_plane(e, a, h * w), *h, *w, out_h, out_w, up)
                })
                .collect();
            let mut sum = vec![0f32; out_h * out_w];
            sum.par_chunks_mut(out_w).enumerate().for_each(|(oy, row)| {
                // Level by level, as adding the whole upsampled planes would: the same bits.
                for plane in &planes {
                    plane.add_row(oy, row);
                }
                row.iter_mut().for_each(|s| *s *= inv);
            });
            sum
        })
        .collect();
    Ok(maps)
}

/// `1 − e·a / (|e| |a|)` at every position of one image's level (`e`, `a`: C planes of
/// `plane` values each), summed in f64. Runs of positions in parallel: at batch 1 the
/// largest level would otherwise keep one core busy while the other waits.
fn discrepancy_plane(e: &[f32], a: &[f32], plane: usize) -> Vec<f32> {
    const RUN: usize = 1024;
    let mut out = vec![0f32; plane];
    out.par_chunks_mut(RUN).enumerate().for_each_init(
        || (vec![0f64; RUN], vec![0f64; RUN], vec![0f64; RUN]),
        |(ee, aa, ea), (i, out)| {
            let (p0, n) = (i * RUN, out.len());
            for acc in [&mut *ee, &mut *aa, &mut *ea] {
                acc[..n].fill(0.0);
            }
            // Channel by channel, so every access runs along a contiguous plane.
            for (ep, ap) in e.chunks_exact(plane).zip(a.chunks_exact(plane)) {
                let (ep, ap) = (&ep[p0..p0 + n], &ap[p0..p0 + n]);
                for p in 0..n {
                    let (x, y) = (ep[p] as f64, ap[p] as f64);
                    ee[p] += x * x;
                    aa[p] += y * y;
                    ea[p] += x * y;
                }
            }
            let eps2 = EPS_NORM * EPS_NORM;
            for (p, o) in out.iter_mut().enumerate() {
                *o = (1.0 - ea[p] / ((ee[p] + eps2).sqrt() * (aa[p] + eps2).sqrt())) as f32;
            }
        },
    );
    out
}

/// A tensor's values as one f32 slice on the host: borrowed from a contiguous f32 CPU
/// tensor, copied otherwise (another dtype, a view, a GPU tensor).
enum HostF32<'a> {
    Borrowed(StorageRef<'a>, std::ops::Range<usize>),
    Owned(Vec<f32>),
}

impl<'a> HostF32<'a> {
    fn of(t: &'a Tensor) -> Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(_)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(HostF32::Borrowed(storage, start..end));
        }
        drop(storage);
        Ok(HostF32::Owned(
            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        ))
    }

    fn values(&self) -> &[f32] {
        match self {
            HostF32::Owned(v) => v,
            HostF32::Borrowed(storage, range) => match &**storage {
                Storage::Cpu(CpuStorage::F32(v)) => &v[range.clone()],
                // `of` borrows only f32 CPU storage.
                _ => &[],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const AC: Upsampling = Upsampling::AlignCorners;
    use crate::test_util::{max_abs, max_abs_diff_slices, values};
    use candle_core::{Device, Var};

    fn features(seed: u64, dims: (usize, usize, usize, usize)) -> Vec<f64> {
        // Small deterministic LCG: no test-only dependency needed.
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    fn pair(dt: DType) -> (Vec<Var>, Vec<Var>, Tensor) {
        let dev = Device::Cpu;
        let dims = [(2, 4, 8, 8), (2, 6, 4, 4)];
        let mk = |seed, d| {
            Var::from_tensor(
                &Tensor::from_vec(features(seed, d), d, &dev)
                    .unwrap()
                    .to_dtype(dt)
                    .unwrap(),
            )
            .unwrap()
        };
        let e = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| mk(i as u64, d))
            .collect();
        let a = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| mk(100 + i as u64, d))
            .collect();
        let mut m = vec![0f32; 2 * 16 * 16];
        for y in 2..6 {
            for x in 3..9 {
                m[y * 16 + x] = 1.0;
            }
        }
        let mask = Tensor::from_vec(m, (2, 1, 16, 16), &dev).unwrap();
        (e, a, mask)
    }

    fn tensors(v: &[Var]) -> Vec<Tensor> {
        v.iter().map(|v| v.as_tensor().clone()).collect()
    }

    #[test]
    fn gradient_flows_to_apprentice_only() {
        for dt in [DType::F32, DType::F64] {
            let (e, a, mask) = pair(dt);
            let out = cdo_loss(
                &tensors(&e),
                &tensors(&a),
                Some(&mask),
                &LossConfig::default(),
            )
            .unwrap();
            assert_eq!(out.total.rank(), 0);
            assert!(out.mean_synthetic_d.is_some());
            let grads = out.total.backward().unwrap();
            for v in &a {
                let g = grads.get(v.as_tensor()).expect("apprentice has a gradient");
                let g = g.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
                let g = g.to_vec1::<f64>().unwrap();
                assert!(g.iter().all(|x| x.is_finite()));
                assert!(g.iter().any(|x| *x != 0.0));
            }
            for v in &e {
                assert!(grads.get(v.as_tensor()).is_none(), "expert must be frozen");
            }
        }
    }

    #[test]
    fn gradient_matches_finite_difference() {
        // Central differences on one apprentice element, F64. With gamma = 0 the (detached)
        // OOM weights are constant, so the analytic gradient is the full derivative.
        let (e, a, mask) = pair(DType::F64);
        let cfg = LossConfig {
            gamma: 0.0,
            mom: true,
            oom: true,
        };
        let out = cdo_loss(&tensors(&e), &tensors(&a), Some(&mask), &cfg).unwrap();
        let grads = out.total.backward().unwrap();
        let g = grads.get(a[1].as_tensor()).unwrap().flatten_all().unwrap();
        let g = g.to_vec1::<f64>().unwrap();
        let base = a[1]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let k = 17;
        let h = 1e-6;
        let eval = |delta: f64| {
            let mut v = base.clone();
            v[k] += delta;
            let t = Tensor::from_vec(v, a[1].as_tensor().dims(), &Device::Cpu).unwrap();
            let ap = vec![a[0].as_tensor().clone(), t];
            cdo_loss(&tensors(&e), &ap, Some(&mask), &cfg)
                .unwrap()
                .total
                .to_scalar::<f64>()
                .unwrap()
        };
        let fd = (eval(h) - eval(-h)) / (2.0 * h);
        assert!(
            (fd - g[k]).abs() < 1e-6 * (1.0 + fd.abs()),
            "fd {fd} vs {}",
            g[k]
        );
    }

    #[test]
    fn no_mask_and_empty_mask_agree() {
        let (e, a, mask) = pair(DType::F64);
        let zero = mask.zeros_like().unwrap();
        let cfg = LossConfig::default();
        let x = cdo_loss(&tensors(&e), &tensors(&a), None, &cfg).unwrap();
        let y = cdo_loss(&tensors(&e), &tensors(&a), Some(&zero), &cfg).unwrap();
        assert_eq!(x.per_level, y.per_level);
        assert!(x.mean_synthetic_d.is_none() && y.mean_synthetic_d.is_none());
        assert!(x.mean_normal_d > 0.0);
    }

    #[test]
    fn identical_features_are_finite() {
        // d = 0 everywhere: the epsilons must keep everything finite (loss 0).
        let (e, _, mask) = pair(DType::F32);
        let e = tensors(&e);
        for cfg in [
            LossConfig::default(),
            LossConfig {
                gamma: 0.0,
                mom: false,
                oom: false,
            },
        ] {
            let out = cdo_loss(&e, &e, Some(&mask), &cfg).unwrap();
            let t = out.total.to_scalar::<f32>().unwrap();
            assert!(t.is_finite() && t.abs() < 1e-6, "{t}");
        }
        let m = anomaly_map(&e, &e, 16, 16, AC).unwrap();
        assert_eq!(m.dims(), &[2, 16, 16]);
        let mx = max_abs(&m);
        assert!(mx < 1e-6, "{mx}");
        // All-zero feature vectors: finite too.
        let z: Vec<Tensor> = e.iter().map(|t| t.zeros_like().unwrap()).collect();
        let out = cdo_loss(&z, &e, Some(&mask), &LossConfig::default()).unwrap();
        assert!(out.total.to_scalar::<f32>().unwrap().is_finite());
    }

    #[test]
    fn host_map_reads_views_and_other_dtypes_like_contiguous_f32() {
        let (e, a, _) = pair(DType::F32);
        let (e, a) = (tensors(&e), tensors(&a));
        let want = anomaly_maps_host(&e, &a, 16, 16, AC).unwrap();
        assert_eq!(want.len(), 2);
        // Contiguous f32 features are borrowed in place, the rest copied: same maps.
        let f64s = |v: &[Tensor]| -> Vec<Tensor> {
            v.iter().map(|t| t.to_dtype(DType::F64).unwrap()).collect()
        };
        // Transposed twice over H and W: the same values, but a strided view.
        let strided = |v: &[Tensor]| -> Vec<Tensor> {
            v.iter()
                .map(|t| t.t().unwrap().contiguous().unwrap().t().unwrap())
                .collect()
        };
        assert!(!strided(&e)[0].is_contiguous());
        assert_eq!(
            anomaly_maps_host(&f64s(&e), &f64s(&a), 16, 16, AC).unwrap(),
            want
        );
        assert_eq!(
            anomaly_maps_host(&strided(&e), &strided(&a), 16, 16, AC).unwrap(),
            want
        );
        // The second image of a batch, alone: the borrowed slice starts at its offset.
        let second = |v: &[Tensor]| -> Vec<Tensor> {
            v.iter().map(|t| t.narrow(0, 1, 1).unwrap()).collect()
        };
        let one = anomaly_maps_host(&second(&e), &second(&a), 16, 16, AC).unwrap();
        assert_eq!(one, vec![want[1].clone()]);
        // And the tensor path agrees to float rounding, with either placement.
        for up in [AC, Upsampling::ReceptiveField] {
            let t = values(&anomaly_map(&e, &a, 16, 16, up).unwrap());
            let host = anomaly_maps_host(&e, &a, 16, 16, up).unwrap().concat();
            let d = max_abs_diff_slices(&t, &host);
            assert!(d < 1e-5, "{up:?}: tensor and host maps differ by {d}");
        }
        // A level larger than one parallel run of positions (1024), with a short last run.
        let dims = (1, 3, 40, 40);
        let mk = |seed| Tensor::from_vec(features(seed, dims), dims, &Device::Cpu).unwrap();
        let (e, a) = (
            vec![mk(7).to_dtype(DType::F32).unwrap()],
            vec![mk(8).to_dtype(DType::F32).unwrap()],
        );
        let host = anomaly_maps_host(&e, &a, 40, 40, AC).unwrap().concat();
        let t = values(&anomaly_map(&e, &a, 40, 40, AC).unwrap());
        assert_eq!(host.len(), 1600);
        let d = max_abs_diff_slices(&t, &host);
        assert!(d < 1e-5, "tensor and host maps differ by {d}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (e, a, mask) = pair(DType::F64);
        let (e, a) = (tensors(&e), tensors(&a));
        let cfg = LossConfig::default();
        assert!(cdo_loss(&e, &a[..1], None, &cfg).is_err());
        assert!(cdo_loss(&[], &[], None, &cfg).is_err());
        let bad_mask = mask.narrow(0, 0, 1).unwrap();
        assert!(cdo_loss(&e, &a, Some(&bad_mask), &cfg).is_err());
        let swapped = vec![a[1].clone(), a[0].clone()];
        assert!(cdo_loss(&e, &swapped, None, &cfg).is_err());
        let neg = LossConfig { gamma: -1.0, ..cfg };
        assert!(cdo_loss(&e, &a, None, &neg).is_err());
        assert!(anomaly_map(&e, &a, 0, 4, AC).is_err());
    }
}
