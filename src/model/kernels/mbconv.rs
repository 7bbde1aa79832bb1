//! EfficientNet's inverted-residual block, fused, for frozen networks on the CPU.
//!
//! Layer by layer a block is a 1x1 expand GEMM, a bias + ReLU6 pass, the depthwise
//! convolution, another bias + ReLU6 pass, the 1x1 project GEMM, a bias pass and the
//! residual add: seven trips through memory, four new tensors, and the largest of them is
//! the expanded activation (six times the input's channels). Here that activation never
//! exists whole. The block works through its output rows a band at a time and its
//! middle channels a chunk at a time, so that one tile stays in the core's L2 cache:
//!
//! 1. the expand GEMM for the chunk's channels over the input rows the band needs;
//! 2. bias + ReLU6, written into a zero-padded scratch tile (split into stride phases, so a
//!    strided tap reads a contiguous run);
//! 3. the depthwise convolution, its sums held in registers with the bias added first and
//!    ReLU6 applied on the way out.
//!
//! With AVX2 (`avx2::block_rows`) the bands run in parallel and each also does the
//! project: row by row, the chunk's depthwise output (a few KiB) is multiplied into the
//! output rows, which already hold the project bias and the residual. Elsewhere the
//! chunks run in parallel over whole bands and one project GEMM over all middle channels
//! follows. Same arithmetic as the layer-by-layer path up to the order of float sums
//! (fused multiply-adds where the CPU has them).

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::scratch::Pool;

/// Output columns computed per register block (two AVX vectors).
pub(crate) const LANES: usize = 16;
/// Scratch bytes per tile: about half a core's L2 here, so the tiles stay there while the
/// depthwise reads them (and, on the AVX2 path, the project runs beside them).
const TILE_BYTES: usize = 256 * 1024;
/// Middle channels per chunk, at most; fewer when the block has fewer. A multiple of six:
/// EfficientNet's middle widths are too (six times the input's), so the AVX2 expand sums
/// six channels at a time through every chunk, never four or one. 32 was 2-4 % slower
/// over Lite0's tapped blocks, 48 and 60 the same as 36, 96 slower (A/B, one thread).
const CHUNK: usize = 36;

/// A 1x1 convolution as a row-major matrix (out x in) and its bias.
pub struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// One inverted-residual block with BatchNorm folded, ReLU6 after expand and depthwise.
pub struct FusedMbConv {
    cin: usize,
    mid: usize,
    cout: usize,
    k: usize,
    stride: usize,
    /// None when the expand ratio is 1 (the depthwise reads the input itself).
    expand: Option<Dense>,
    /// mid x k x k, and mid biases.
    depthwise: Dense,
    project: Dense,
    /// The project weights chunk by chunk (each chunk's cout x cc columns, contiguous),
    /// as the streamed AVX2 path reads them.
    #[cfg(target_arch = "x86_64")]
    project_chunks: Vec<f32>,
    residual: bool,
}

impl FusedMbConv {
    /// Checks every shape once, so the kernels can index without surprises.
    pub fn new(
        cin: usize,
        k: usize,
        stride: usize,
        expand: Option<Dense>,
        depthwise: Dense,
        project: Dense,
    ) -> Result<Self> {
        let mid = depthwise.bias.len();
        let cout = project.bias.len();
        if k == 0 || k % 2 == 0 || !(1..=2).contains(&stride) {
            bail!("fused block: kernel {k} stride {stride} not supported (odd k, stride 1 or 2)");
        }
        match &expand {
            Some(e) if e.bias.len() != mid || e.weight.len() != mid * cin => {
                bail!("fused block: expand weights do not fit {cin} -> {mid} channels")
            }
            None if mid != cin => bail!("fused block: no expand, yet {cin} in and {mid} middle"),
            _ => {}
        }
        if depthwise.weight.len() != mid * k * k || project.weight.len() != cout * mid {
            bail!("fused block: depthwise or project weights do not fit {mid} -> {cout} channels");
        }
        #[cfg(target_arch = "x86_64")]
        let project_chunks = chunk_columns(&project.weight, cout, mid);
        Ok(Self {
            cin,
            mid,
            cout,
            k,
            stride,
            expand,
            depthwise,
            project,
            #[cfg(target_arch = "x86_64")]
            project_chunks,
            residual: stride == 1 && cin == cout,
        })
    }

    /// The block on a B x cin x H x W f32 CPU tensor. No gradient: frozen networks only.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    fn pad(&self) -> usize {
        self.k / 2
    }

    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let p = self.pad();
        let f = |n: usize| (n + 2 * p - self.k) / self.stride + 1;
        (f(h), f(w))
    }

    /// One image: `x` is cin x H x W; writes every value of the cout x OH x OW output at
    /// `y` (uninitialised memory on entry).
    ///
    /// # Safety
    /// `y` must be valid for `cout * OH * OW` writes, and nothing else may access that
    /// memory meanwhile.
    unsafe fn image(&self, x: &[f32], y: *mut f32, h: usize, w: usize) {
        let (oh, ow) = self.out_size(h, w);
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            if let Some(run) = match (self.k, self.stride) {
                (3, 1) => Some(avx2::block_rows::<3, 1> as BandFn),
                (3, 2) => Some(avx2::block_rows::<3, 2> as BandFn),
                (5, 1) => Some(avx2::block_rows::<5, 1> as BandFn),
                (5, 2) => Some(avx2::block_rows::<5, 2> as BandFn),
                _ => None,
            } {
                return self.image_streamed(x, y, h, w, run);
            }
        }
        // The project GEMM accumulates onto the project bias plus the residual.
        let plane = oh * ow;
        for (co, &bias) in self.project.bias.iter().enumerate() {
            let dst = y.add(co * plane);
            for i in 0..plane {
                let residual = if self.residual {
                    x[co * plane + i]
                } else {
                    0.0
                };
                dst.add(i).write(residual + bias);
            }
        }
        let y = std::slice::from_raw_parts_mut(y, self.cout * plane);
        let tile = Tile::new(self, h, w, oh, ow);
        let chunk = CHUNK.min(self.mid);
        let mut mids = POOL.take(self.mid * oh * ow);
        mids[..self.mid * oh * ow]
            .par_chunks_mut(chunk * oh * ow)
            .enumerate()
            .for_each(|(i, d)| self.chunk(x, i * chunk, d, &tile));
        // SAFETY: y is cout x (oh*ow), mids mid x (oh*ow), the weight cout x mid, all
        // row-major and contiguous, sizes as allocated; no aliasing between them.
        {
            gemm::gemm(
                self.cout,
                oh * ow,
                self.mid,
                y.as_mut_ptr(),
                1,
                (oh * ow) as isize,
                true,
                self.project.weight.as_ptr(),
                1,
                self.mid as isize,
                mids.as_ptr(),
                1,
                (oh * ow) as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        POOL.give(mids);
    }

    /// The AVX2 path: bands of output rows in parallel, each running the whole block
    /// (see `avx2::block_rows`). Bands of equal height, as tall as the tiles allow.
    #[cfg(target_arch = "x86_64")]
    fn image_streamed(&self, x: &[f32], y: *mut f32, h: usize, w: usize, run: BandFn) {
        let (oh, ow) = self.out_size(h, w);
        let tallest = Tile::new(self, h, w, oh, ow).band;
        let bands = oh.div_ceil(tallest);
        let rows = oh.div_ceil(bands);
        let t = Tile::with_band(h, w, oh, ow, self.k, self.stride, rows);
        let out = RowsOut(y);
        (0..bands).into_par_iter().for_each(|i| {
            let (r0, r1) = (i * rows, ((i + 1) * rows).min(oh));
            // SAFETY: the CPU has AVX2 and FMA (checked by the caller); y is this image's
            // cout x oh x ow output and each band writes (all of) only its own rows.
            unsafe { run(self, x, out.get(), r0, r1, &t) };
        });
    }

    /// Middle channels `c0 ..` (as many as `d` has planes): expand, pad, depthwise, band
    /// by band; writes the chunk's activated depthwise output into `d`.
    fn chunk(&self, x: &[f32], c0: usize, d: &mut [f32], t: &Tile) {
        let (s, k, p) = (self.stride, self.k, self.pad());
        let cc = d.len() / (t.oh * t.ow);
        let mut expanded: Option<Vec<f32>> = None;
        let mut padded = POOL.take(cc * t.band_padded_rows * t.padded_row);
        let mut r0 = 0;
        while r0 < t.oh {
            let r1 = (r0 + t.band).min(t.oh);
            // Padded rows [pr0, pr1) feed output rows [r0, r1); input row = padded - p.
            let pr0 = r0 * s;
            let pr1 = (r1 - 1) * s + k;
            let iy0 = pr0.saturating_sub(p).min(t.h);
            let iy1 = pr1.saturating_sub(p).min(t.h);
            let n = (iy1 - iy0) * t.w;
            // The chunk's planes, rows iy0..iy1: expanded into scratch, or the input.
            let (src, src_plane): (&[f32], usize) = match &self.expand {
                Some(e) => {
                    let expanded =
                        expanded.get_or_insert_with(|| POOL.take(cc * t.band_in_rows * t.w));
                    if n > 0 {
                        // SAFETY: dst is cc x n, lhs the chunk's cc x cin weight rows,
                        // rhs cin rows of n floats, HW apart, starting at row iy0.
                        unsafe {
                            gemm::gemm(
                                cc,
                                n,
                                self.cin,
                                expanded.as_mut_ptr(),
                                1,
                                n as isize,
                                false,
                                e.weight[c0 * self.cin..].as_ptr(),
                                1,
                                self.cin as isize,
                                x[iy0 * t.w..].as_ptr(),
                                1,
                                (t.h * t.w) as isize,
                                0.0,
                                1.0,
                                false,
                                false,
                                false,
                                gemm::Parallelism::None,
                            );
                        }
                    }
                    (&expanded[..cc * n], n)
                }
                None => (&x[c0 * t.h * t.w + iy0 * t.w..], t.h * t.w),
            };
            let tile_len = (pr1 - pr0) * t.padded_row;
            for c in 0..cc {
                let band = Band {
                    src: &src[c * src_plane..],
                    expand_bias: self.expand.as_ref().map(|e| e.bias[c0 + c]),
                    first_row: pr0,
                    first_src_row: iy0,
                    kernel: &self.depthwise.weight[(c0 + c) * k * k..(c0 + c + 1) * k * k],
                    bias: self.depthwise.bias[c0 + c],
                };
                let dplane = &mut d[c * t.oh * t.ow..(c + 1) * t.oh * t.ow];
                let out = &mut dplane[r0 * t.ow..r1 * t.ow];
                let tile = &mut padded[c * tile_len..(c + 1) * tile_len];
                match (k, s) {
                    (3, 1) => dispatch::<3, 1>(&band, tile, out, t),
                    (3, 2) => dispatch::<3, 2>(&band, tile, out, t),
                    (5, 1) => dispatch::<5, 1>(&band, tile, out, t),
                    (5, 2) => dispatch::<5, 2>(&band, tile, out, t),
                    _ => band_loops::<0, 0, false>(&band, tile, out, t, k, s),
                }
            }
            r0 = r1;
        }
        if let Some(expanded) = expanded {
            POOL.give(expanded);
        }
        POOL.give(padded);
    }
}

/// `w` (rows x cols) as column chunks of `CHUNK` (the last one narrower), each chunk's
/// rows x chunk contiguous, one chunk after the other.
#[cfg(target_arch = "x86_64")]
fn chunk_columns(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let chunk = CHUNK.min(cols);
    (0..cols)
        .step_by(chunk)
        .flat_map(|c0| {
            (0..rows).flat_map(move |r| &w[r * cols + c0..r * cols + (c0 + chunk).min(cols)])
        })
        .copied()
        .collect()
}

/// `avx2::block_rows` for one kernel size and stride.
#[cfg(target_arch = "x86_64")]
type BandFn = unsafe fn(&FusedMbConv, &[f32], *mut f32, usize, usize, &Tile);

/// Output memory shared by tasks that write disjoint parts of it: the images of a batch,
/// the bands of an image.
struct RowsOut(*mut f32);
// SAFETY: each task writes only its own image or rows (see `cpu_fwd`, `image_streamed`).
unsafe impl Sync for RowsOut {}

impl RowsOut {
    /// Through a method, so closures capture the wrapper (Sync), not the bare pointer.
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Scratch geometry shared by a block's chunks for one input size.
pub(crate) struct Tile {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    /// Output rows per band, and the most input / padded rows a band touches.
    pub(crate) band: usize,
    pub(crate) band_in_rows: usize,
    pub(crate) band_padded_rows: usize,
    /// One stride phase of a padded row: the output row rounded up to whole register
    /// blocks plus the kernel's reach into the phase.
    pub(crate) phase_len: usize,
    pub(crate) padded_row: usize,
}

impl Tile {
    /// Where the input sits in stride phase `ph` of a padded row: positions
    /// `[lo, lo + n)` hold input columns `first, first + s, ...`; the rest is padding.
    fn phase_data(&self, ph: usize, p: usize, s: usize) -> (usize, usize, usize) {
        let lo = p.saturating_sub(ph).div_ceil(s).min(self.phase_len);
        let first = lo * s + ph - p;
        let n = (self.w.saturating_sub(first))
            .div_ceil(s)
            .min(self.phase_len - lo);
        (lo, n, first)
    }

    fn new(b: &FusedMbConv, h: usize, w: usize, oh: usize, ow: usize) -> Self {
        let (s, k) = (b.stride, b.k);
        let padded_row = s * Self::phase_len(ow, k, s);
        let cc = CHUNK.min(b.mid);
        // Floats per output row of a band: s padded rows (the AVX2 path expands straight
        // into them; elsewhere the expanded rows come on top).
        let per_row = cc * s * padded_row;
        let band = (TILE_BYTES / 4 / per_row.max(1)).clamp(1, oh);
        Self::with_band(h, w, oh, ow, k, s, band)
    }

    fn phase_len(ow: usize, k: usize, s: usize) -> usize {
        ow.div_ceil(LANES) * LANES + (k - 1) / s
    }

    /// The geometry for bands of `band` output rows (`oh`: the whole image in one band).
    pub(crate) fn with_band(
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        k: usize,
        s: usize,
        band: usize,
    ) -> Self {
        let phase_len = Self::phase_len(ow, k, s);
        let padded_row = s * phase_len;
        let band_padded_rows = (band - 1) * s + k;
        Self {
            h,
            w,
            oh,
            ow,
            band,
            band_in_rows: band_padded_rows.min(h),
            band_padded_rows,
            phase_len,
            padded_row,
        }
    }
}

/// One channel's share of a band: where its input rows are and its weights.
pub(crate) struct Band<'a> {
    /// The channel's input plane from row `first_src_row` on (expanded, or the block's
    /// input when there is no expand layer).
    pub(crate) src: &'a [f32],
    /// The expand layer's bias; with it the depthwise input is ReLU6(src + bias).
    pub(crate) expand_bias: Option<f32>,
    /// The first padded row of the band's tile.
    pub(crate) first_row: usize,
    pub(crate) first_src_row: usize,
    pub(crate) kernel: &'a [f32],
    pub(crate) bias: f32,
}

/// `band_loops` for one kernel size and stride (the portable path).
fn dispatch<const K: usize, const S: usize>(b: &Band, tile: &mut [f32], out: &mut [f32], t: &Tile) {
    // aarch64 has NEON with fused multiply-add everywhere; elsewhere a plain multiply-add.
    band_loops::<K, S, { cfg!(target_arch = "aarch64") }>(b, tile, out, t, K, S)
}

/// Fills one channel's padded tile for the band, then computes its depthwise output rows
/// (`out`: whole rows). `K` and `S` are the kernel size and stride when known at compile
/// time (0: use `k`, `s`); `FMA` says whether `mul_add` is one instruction here.
#[inline(always)]
fn band_loops<const K: usize, const S: usize, const FMA: bool>(
    b: &Band,
    tile: &mut [f32],
    out: &mut [f32],
    t: &Tile,
    k: usize,
    s: usize,
) {
    let k = if K > 0 { K } else { k };
    let s = if S > 0 { S } else { s };
    fill_tile(b, tile, t, k / 2, s, fill_run, deinterleave);
    let w = &b.kernel[..k * k];
    for (r, orow) in out.chunks_exact_mut(t.ow).enumerate() {
        let rows = &tile[r * s * t.padded_row..];
        for (blk, dst) in orow.chunks_mut(LANES).enumerate() {
            let x0 = blk * LANES;
            let mut acc = [b.bias; LANES];
            for i in 0..k {
                let row = &rows[i * t.padded_row..(i + 1) * t.padded_row];
                for j in 0..k {
                    let at = (j % s) * t.phase_len + x0 + j / s;
                    let run: &[f32; LANES] = row[at..at + LANES].try_into().unwrap();
                    let wv = w[i * k + j];
                    for l in 0..LANES {
                        acc[l] = if FMA {
                            wv.mul_add(run[l], acc[l])
                        } else {
                            acc[l] + wv * run[l]
                        };
                    }
                }
            }
            for (o, a) in dst.iter_mut().zip(acc) {
                *o = a.clamp(0.0, 6.0);
            }
        }
    }
}

/// One channel's padded tile for a band. Padded column c (input column c - p) goes to
/// phase c % s, position c / s, so each tap of a strided kernel reads a contiguous run;
/// padding is zeros. `run` writes a contiguous run of depthwise inputs, `pairs` the
/// even and odd columns of a stride-2 row.
#[inline(always)]
pub(crate) fn fill_tile(
    b: &Band,
    tile: &mut [f32],
    t: &Tile,
    p: usize,
    s: usize,
    run: impl Fn(&mut [f32], &[f32], Option<f32>),
    pairs: impl Fn(&mut [f32], &mut [f32], &[f32], Option<f32>),
) {
    for (r, prow) in tile.chunks_exact_mut(t.padded_row).enumerate() {
        let iy = (b.first_row + r).checked_sub(p).filter(|&iy| iy < t.h);
        let Some(iy) = iy else {
            prow.fill(0.0);
            continue;
        };
        let at = (iy - b.first_src_row) * t.w;
        let src = &b.src[at..at + t.w];
        // Per phase: positions [lo, lo + n) hold data, from input column `first` on
        // (every s-th); the rest is padding.
        let mut runs = [(0usize, 0usize); 2];
        for (ph, phase) in prow.chunks_exact_mut(t.phase_len).enumerate() {
            let (lo, n, first) = t.phase_data(ph, p, s);
            phase[..lo].fill(0.0);
            phase[lo + n..].fill(0.0);
            if s == 1 {
                run(
                    &mut phase[lo..lo + n],
                    &src[first..first + n],
                    b.expand_bias,
                );
            } else if s == 2 {
                runs[first.min(1)] = (ph * t.phase_len + lo, n);
            } else {
                for (i, o) in phase[lo..lo + n].iter_mut().enumerate() {
                    *o = activate(src[first + i * s], b.expand_bias);
                }
            }
        }
        if s == 2 {
            // The two phases start at input columns 0 and 1: even columns go to one,
            // odd ones to the other.
            let [(even_at, even_n), (odd_at, odd_n)] = runs;
            let (even, odd) = if even_at < odd_at {
                let (a, z) = prow.split_at_mut(odd_at);
                (&mut a[even_at..even_at + even_n], &mut z[..odd_n])
            } else {
                let (a, z) = prow.split_at_mut(even_at);
                (&mut z[..even_n], &mut a[odd_at..odd_at + odd_n])
            };
            pairs(even, odd, src, b.expand_bias);
        }
    }
}

/// The depthwise input value: the expand layer's ReLU6(x + bias), or x itself.
#[inline(always)]
fn activate(v: f32, expand_bias: Option<f32>) -> f32 {
    match expand_bias {
        Some(b) => (v + b).clamp(0.0, 6.0),
        None => v,
    }
}

/// A contiguous run of `activate`.
#[inline(always)]
pub(crate) fn fill_run(dst: &mut [f32], src: &[f32], expand_bias: Option<f32>) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = activate(v, expand_bias);
    }
}

/// `activate` of a row's even columns into `even` and odd ones into `odd`.
#[inline(always)]
pub(crate) fn deinterleave(
    even: &mut [f32],
    odd: &mut [f32],
    src: &[f32],
    expand_bias: Option<f32>,
) {
    for (i, o) in even.iter_mut().enumerate() {
        *o = activate(src[2 * i], expand_bias);
    }
    for (i, o) in odd.iter_mut().enumerate() {
        *o = activate(src[2 * i + 1], expand_bias);
    }
}

/// Tests set this (through `with_kernels`) to run the portable kernels on a machine that
/// has AVX2 as well. Both are correct, so other tests running meanwhile are unaffected.
#[cfg(test)]
pub(crate) static PORTABLE_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Runs `check` with the AVX2 kernels (where the CPU has them) or, with `portable`, the
/// portable ones. A test that compares kernels holds this switch for its whole run, so a
/// concurrent test's choice cannot swap its kernels midway (which had let the AVX2 checks
/// silently run the portable kernels whenever the two tests overlapped).
#[cfg(test)]
pub(crate) fn with_kernels(portable: bool, check: fn()) {
    use std::sync::atomic::Ordering::Relaxed;
    static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = SWITCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    PORTABLE_ONLY.store(portable, Relaxed);
    let result = std::panic::catch_unwind(check);
    PORTABLE_ONLY.store(false, Relaxed);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Whether the AVX2 + FMA kernels run here.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_available() -> bool {
    avx2::available()
}

#[cfg(target_arch = "x86_64")]
mod avx2;

impl CustomOp1 for FusedMbConv {
    fn name(&self) -> &'static str {
        "fused-mbconv"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = super::cpu_f32("fused-mbconv", "input", s, l)?;
        let (b, c, h, w) = l.shape().dims4()?;
        if c != self.cin || h == 0 || w == 0 {
            bail!(
                "fused-mbconv: input {:?} does not fit {} channels",
                l.dims(),
                self.cin
            );
        }
        let (oh, ow) = self.out_size(h, w);
        let image_len = self.cout * oh * ow;
        // Not zeroed first: every image writes all of its output (the bias and residual
        // with its first sums), which saves a pass over the output.
        let mut y: Vec<f32> = Vec::with_capacity(b * image_len);
        let out = RowsOut(y.as_mut_ptr());
        x.par_chunks(self.cin * h * w)
            .take(b)
            .enumerate()
            // SAFETY: image i writes only its own image_len values of y's capacity.
            .for_each(|(i, xi)| unsafe { self.image(xi, out.get().add(i * image_len), h, w) });
        // SAFETY: all b images' values are written (above); a panic would have left y
        // empty, never exposing unwritten values.
        unsafe { y.set_len(b * image_len) };
        Ok((CpuStorage::F32(y), Shape::from((b, self.cout, oh, ow))))
    }
}

/// The tiles' scratch: hot in the hot loop, and the same few sizes come back every frame.
pub(crate) static POOL: Pool<f32> = Pool::new();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::depthwise::depthwise_conv2d;
    use crate::test_util::{max_abs, max_abs_diff};
    use candle_core::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
    }

    /// The block layer by layer with candle ops and the unfused depthwise kernel.
    fn reference(b: &FusedMbConv, x: &Tensor) -> Result<Tensor> {
        let dev = Device::Cpu;
        let n = x.dim(0)?;
        let bias4 = |v: &[f32]| Tensor::from_slice(v, (1, v.len(), 1, 1), &dev);
        let pointwise = |d: &Dense, x: &Tensor, cout: usize, cin: usize| -> Result<Tensor> {
            let (_, _, h, w) = x.dims4()?;
            let wm = Tensor::from_slice(&d.weight, (cout, cin), &dev)?;
            wm.broadcast_matmul(&x.reshape((n, cin, h * w))?)?
                .reshape((n, cout, h, w))?
                .broadcast_add(&bias4(&d.bias)?)
        };
        let mut m = x.clone();
        if let Some(e) = &b.expand {
            m = pointwise(e, &m, b.mid, b.cin)?.clamp(0f32, 6f32)?;
        }
        let dw = Tensor::from_slice(&b.depthwise.weight, (b.mid, 1, b.k, b.k), &dev)?;
        let m = depthwise_conv2d(&m, &dw, b.stride, b.pad())?
            .broadcast_add(&bias4(&b.depthwise.bias)?)?
            .clamp(0f32, 6f32)?;
        let y = pointwise(&b.project, &m, b.cout, b.mid)?;
        if b.residual {
            y + x
        } else {
            Ok(y)
        }
    }

    fn block(
        rng: &mut ChaCha8Rng,
        cin: usize,
        mid: usize,
        cout: usize,
        k: usize,
        s: usize,
    ) -> FusedMbConv {
        let dense = |rng: &mut ChaCha8Rng, o: usize, i: usize| Dense {
            weight: random(rng, o * i, 1.0 / (i as f32).sqrt()),
            bias: random(rng, o, 0.5),
        };
        let expand = (mid != cin).then(|| dense(rng, mid, cin));
        let depthwise = dense(rng, mid, k * k);
        let project = dense(rng, cout, mid);
        FusedMbConv::new(cin, k, s, expand, depthwise, project).unwrap()
    }

    /// The portable kernels (what aarch64 and older x86 CPUs run) on the same cases.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn portable_kernels_match_the_layer_by_layer_block() {
        with_kernels(true, check_against_the_layer_by_layer_block);
    }

    #[test]
    fn matches_the_layer_by_layer_block() {
        with_kernels(false, check_against_the_layer_by_layer_block);
    }

    /// Every shape the backbone has (k 3/5, stride 1/2, with and without expand and
    /// residual), on sizes that leave partial register blocks, several bands and odd
    /// edges, and middle widths that leave a partial chunk.
    fn check_against_the_layer_by_layer_block() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let cases = [
            // (cin, mid, cout, k, s, h, w)
            (8, 8, 8, 3, 1, 17, 19),
            (8, 48, 12, 3, 2, 18, 21),
            (12, 72, 12, 3, 1, 9, 40),
            (12, 72, 20, 5, 2, 23, 16),
            (20, 120, 20, 5, 1, 7, 5),
            (6, 36, 6, 5, 2, 3, 3),
            (16, 96, 24, 3, 2, 64, 64),
            // Many chunks of middle channels and a partial one.
            (8, 264, 12, 3, 1, 6, 7),
            // Two bands of output rows at kernel 5, stride 1, with the residual.
            (12, 72, 12, 5, 1, 70, 40),
            // Odd channel counts: register groups of six, four and one.
            (5, 15, 7, 3, 1, 9, 11),
        ];
        for (cin, mid, cout, k, s, h, w) in cases {
            let b = block(&mut rng, cin, mid, cout, k, s);
            let x = Tensor::from_vec(
                random(&mut rng, 2 * cin * h * w, 3.0),
                (2, cin, h, w),
                &Device::Cpu,
            )
            .unwrap();
            let got = b.forward(&x).unwrap();
            let want = reference(&b, &x).unwrap();
            assert_eq!(
                got.dims(),
                want.dims(),
                "case {cin}/{mid}/{cout} k{k} s{s} {h}x{w}"
            );
            let diff = max_abs_diff(&got, &want);
            let scale = max_abs(&want);
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "case {cin}/{mid}/{cout} k{k} s{s} {h}x{w}: max diff {diff} (scale {scale})"
            );
        }
    }

    #[test]
    fn rejects_weights_that_do_not_fit() {
        let d = |n: usize| Dense {
            weight: vec![0.0; n],
            bias: vec![0.0; 4],
        };
        assert!(
            FusedMbConv::new(4, 4, 1, None, d(4 * 9), d(16)).is_err(),
            "even kernel"
        );
        assert!(
            FusedMbConv::new(4, 3, 3, None, d(4 * 9), d(16)).is_err(),
            "stride 3"
        );
        assert!(
            FusedMbConv::new(2, 3, 1, None, d(4 * 9), d(16)).is_err(),
            "no expand, 2 -> 4"
        );
        assert!(
            FusedMbConv::new(4, 3, 1, None, d(4 * 9), d(15)).is_err(),
            "project size"
        );
        assert!(FusedMbConv::new(4, 3, 1, None, d(4 * 9), d(16)).is_ok());
    }
}
