//! The anomaly map on the GPU (anomaly_map.cu): per level the cosine discrepancy, then
//! bilinear upsampling of every level to the input size (cells placed as the bundle's
//! `Upsampling` says) and their mean, then scipy's Gaussian smoothing, so only the
//! finished map is copied to the host (for the score and the decision). The twins are
//! `model::cdo::anomaly_maps_host` and `model::postprocess::gaussian_smooth_in_place`;
//! each op's `cpu_fwd` below computes the same thing on the host, for the parity test.

use candle_core::{bail, CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, Layout};
use candle_core::{Result, Shape, Tensor};

use super::{elementwise, i32_of, i64_of, input, kernel, launch, output};
use crate::model::kernels::cpu_f32;
use crate::model::kernels::resize::{BilinearRows, Upsampling};

/// The raw (unsmoothed) anomaly maps, B x out_h x out_w on the features' GPU: the mean over
/// the levels of `1 − e·a / (sqrt(|e|² + eps²) sqrt(|a|² + eps²))` upsampled. Up to three
/// levels (both backbones tap three). Four launches for three levels.
pub fn anomaly_map(
    expert: &[Tensor],
    apprentice: &[Tensor],
    out_h: usize,
    out_w: usize,
    up: Upsampling,
    eps: f64,
) -> Result<Tensor> {
    if expert.is_empty() || expert.len() > 3 || expert.len() != apprentice.len() {
        bail!(
            "anomaly map on the GPU: 1 to 3 levels of expert and apprentice features, got {} and {}",
            expert.len(),
            apprentice.len()
        )
    }
    let planes = expert
        .iter()
        .zip(apprentice)
        .map(|(e, a)| {
            let (e, a) = (e.contiguous()?, a.contiguous()?);
            e.apply_op2_no_bwd(&a, &Discrepancy { eps2: eps * eps })
        })
        .collect::<Result<Vec<_>>>()?;
    // Fewer than three levels: the first plane fills the unused operands (never read).
    let pick = |i: usize| planes.get(i).unwrap_or(&planes[0]);
    let op = UpsampleMean {
        levels: planes.len(),
        out_h,
        out_w,
        up,
    };
    pick(0).apply_op3_no_bwd(pick(1), pick(2), &op)
}

/// scipy's `gaussian_filter(map, sigma)` (truncate 4, mode 'reflect') of each B x H x W map
/// on its GPU; `sigma <= 0` or non-finite returns the maps as they are.
pub fn gaussian_smooth(maps: &Tensor, sigma: f32) -> Result<Tensor> {
    if !(sigma.is_finite() && sigma > 0.0) {
        return Ok(maps.clone());
    }
    maps.contiguous()?.apply_op1_no_bwd(&Smooth { sigma })
}

/// (e, a), each B x C x H x W -> the level's discrepancy plane, B x H x W.
struct Discrepancy {
    eps2: f64,
}

impl Discrepancy {
    fn dims(l1: &Layout, l2: &Layout) -> Result<(usize, usize, usize, usize)> {
        let d = l1.shape().dims4()?;
        if l2.dims() != l1.dims() {
            bail!(
                "cos-discrepancy: expert {:?} and apprentice {:?}",
                l1.dims(),
                l2.dims()
            )
        }
        Ok(d)
    }
}

impl CustomOp2 for Discrepancy {
    fn name(&self) -> &'static str {
        "cos-discrepancy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = Self::dims(l1, l2)?;
        let e = cpu_f32(self.name(), "expert", s1, l1)?;
        let a = cpu_f32(self.name(), "apprentice", s2, l2)?;
        let p = h * w;
        let out = (0..b * p)
            .map(|i| {
                let (bi, pi) = (i / p, i % p);
                let (mut ee, mut aa, mut ea) = (0f64, 0f64, 0f64);
                for ch in 0..c {
                    let k = (bi * c + ch) * p + pi;
                    let (x, y) = (e[k] as f64, a[k] as f64);
                    ee += x * x;
                    aa += y * y;
                    ea += x * y;
                }
                (1.0 - ea / ((ee + self.eps2).sqrt() * (aa + self.eps2).sqrt())) as f32
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from((b, h, w))))
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, c, h, w) = Self::dims(l1, l2)?;
        let e = input(self.name(), "expert", s1, l1)?;
        let a = input(self.name(), "apprentice", s2, l2)?;
        let n = b * h * w;
        let mut out = output(&s1.device, n)?;
        let f = kernel(&s1.device, "anomaly_map", "cos_discrepancy")?;
        launch!(f, elementwise(n); &e, &a, &mut out, &i32_of(b)?, &i32_of(c)?, &i64_of(h * w),
            &self.eps2);
        let out = CudaStorage::wrap_cuda_slice(out, s1.device.clone());
        Ok((out, Shape::from((b, h, w))))
    }
}

/// (d0, d1, d2), each B x h_l x w_l -> the mean of the first `levels` upsampled to
/// B x out_h x out_w.
struct UpsampleMean {
    levels: usize,
    out_h: usize,
    out_w: usize,
    up: Upsampling,
}

impl UpsampleMean {
    /// The batch size, after checking the planes agree on it.
    fn batch(&self, layouts: [&Layout; 3]) -> Result<usize> {
        let mut b = None;
        for l in &layouts[..self.levels] {
            let (lb, _, _) = l.shape().dims3()?;
            if *b.get_or_insert(lb) != lb {
                bail!("upsample-mean: levels of different batch sizes")
            }
        }
        if self.out_h == 0 || self.out_w == 0 {
            bail!("upsample-mean: output size must be non-zero")
        }
        b.ok_or_else(|| candle_core::Error::Msg("upsample-mean: no levels".into()))
    }
}

impl CustomOp3 for UpsampleMean {
    fn name(&self) -> &'static str {
        "upsample-mean"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let b = self.batch([l1, l2, l3])?;
        let (oh, ow) = (self.out_h, self.out_w);
        let levels = [(s1, l1), (s2, l2), (s3, l3)];
        let mut out = vec![0f32; b * oh * ow];
        let inv = 1.0 / self.levels as f32;
        for (bi, map) in out.chunks_exact_mut(oh * ow).enumerate() {
            // Level by level, row by row, as anomaly_maps_host adds them.
            for &(s, l) in &levels[..self.levels] {
                let (_, h, w) = l.shape().dims3()?;
                let d = cpu_f32(self.name(), "plane", s, l)?;
                let plane = &d[bi * h * w..(bi + 1) * h * w];
                let Some(rows) = BilinearRows::new(plane, h, w, oh, ow, self.up) else {
                    bail!("upsample-mean: empty plane")
                };
                for (oy, row) in map.chunks_exact_mut(ow).enumerate() {
                    rows.add_row(oy, row);
                }
            }
            map.iter_mut().for_each(|v| *v *= inv);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, oh, ow))))
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let b = self.batch([l1, l2, l3])?;
        let mut args = Vec::with_capacity(3);
        for (s, l) in [(s1, l1), (s2, l2), (s3, l3)] {
            let (_, h, w) = l.shape().dims3()?;
            args.push((input(self.name(), "plane", s, l)?, i32_of(h)?, i32_of(w)?));
        }
        let [(d0, h0, w0), (d1, h1, w1), (d2, h2, w2)] = <[_; 3]>::try_from(args)
            .map_err(|_| candle_core::Error::Msg("upsample-mean: three operands".into()))?;
        let n = b * self.out_h * self.out_w;
        let mut out = output(&s1.device, n)?;
        let f = kernel(&s1.device, "anomaly_map", "upsample_mean")?;
        // The fourth level slot is unused (levels <= 3); the first plane stands in.
        let (levels, oh, ow) = (
            i32_of(self.levels)?,
            i32_of(self.out_h)?,
            i32_of(self.out_w)?,
        );
        let receptive_field = i32::from(self.up == Upsampling::ReceptiveField);
        launch!(f, elementwise(n); &d0, &h0, &w0, &d1, &h1, &w1, &d2, &h2, &w2, &d0, &h0, &w0,
            &levels, &mut out, &i32_of(b)?, &oh, &ow, &receptive_field);
        let out = CudaStorage::wrap_cuda_slice(out, s1.device.clone());
        Ok((out, Shape::from((b, self.out_h, self.out_w))))
    }
}

/// B x H x W maps -> smoothed, through an f64 intermediate (as scipy and the CPU do).
struct Smooth {
    sigma: f32,
}

impl Smooth {
    /// scipy's radius: int(truncate * sigma + 0.5) with truncate 4.
    fn radius(&self) -> usize {
        (4.0 * self.sigma as f64 + 0.5) as usize
    }
}

impl Smooth {
    /// scipy's `_gaussian_kernel1d` (order 0), normalised to sum 1.
    fn taps(&self) -> Vec<f64> {
        let (sigma, r) = (self.sigma as f64, self.radius());
        let mut k: Vec<f64> = (0..=2 * r)
            .map(|i| {
                let x = i as f64 - r as f64;
                (-0.5 / (sigma * sigma) * x * x).exp()
            })
            .collect();
        let sum: f64 = k.iter().sum();
        k.iter_mut().for_each(|v| *v /= sum);
        k
    }
}

/// scipy's 'reflect' index into `0..n` (half-sample symmetric, period 2n).
fn reflect(i: isize, n: usize) -> usize {
    let m = i.rem_euclid(2 * n as isize) as usize;
    if m >= n {
        2 * n - 1 - m
    } else {
        m
    }
}

impl CustomOp1 for Smooth {
    fn name(&self) -> &'static str {
        "gaussian-smooth"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, h, w) = l.shape().dims3()?;
        let maps = cpu_f32(self.name(), "maps", s, l)?;
        let (k, r) = (self.taps(), self.radius() as isize);
        let mut out = Vec::with_capacity(maps.len());
        // The plain definition, in the kernels' order: rows into f64, then columns.
        for map in maps.chunks_exact(h * w) {
            let tmp: Vec<f64> = (0..h * w)
                .map(|i| {
                    let (y, x) = (i / w, i % w);
                    k.iter().enumerate().fold(0.0, |acc, (t, &kt)| {
                        acc + map[y * w + reflect(x as isize + t as isize - r, w)] as f64 * kt
                    })
                })
                .collect();
            out.extend((0..h * w).map(|i| {
                let (y, x) = (i / w, i % w);
                k.iter().enumerate().fold(0.0, |acc, (t, &kt)| {
                    acc + tmp[reflect(y as isize + t as isize - r, h) * w + x] * kt
                }) as f32
            }));
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (b, h, w) = l.shape().dims3()?;
        let maps = input(self.name(), "maps", s, l)?;
        let n = b * h * w;
        // SAFETY: gauss_rows writes every value before gauss_cols reads it.
        let mut tmp = unsafe { s.device.alloc::<f64>(n) }?;
        let mut out = output(&s.device, n)?;
        let r = i32_of(self.radius())?;
        let mut cfg = elementwise(n);
        cfg.shared_mem_bytes = ((2 * self.radius() + 1) * std::mem::size_of::<f64>()) as u32;
        let (b, h, w, sigma) = (i32_of(b)?, i32_of(h)?, i32_of(w)?, self.sigma as f64);
        let rows = kernel(&s.device, "anomaly_map", "gauss_rows")?;
        launch!(rows, cfg; &maps, &mut tmp, &b, &h, &w, &sigma, &r);
        let cols = kernel(&s.device, "anomaly_map", "gauss_cols")?;
        launch!(cols, cfg; &tmp, &mut out, &b, &h, &w, &sigma, &r);
        let out = CudaStorage::wrap_cuda_slice(out, s.device.clone());
        Ok((out, l.shape().clone()))
    }
}
