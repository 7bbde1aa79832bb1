//! Part alignment: how far a part has moved on the fixture since the reference frame was
//! saved, by phase correlation.
//!
//! A [`Reference`] is built once from the reference frame: the frame in grayscale, reduced
//! by area averaging to a working size of at most [`WORK_SIZE`] px on its long side (the
//! aspect ratio kept), its (Hann-)windowed mean taken off, the window applied so that the
//! frame's edges do not correlate, and its 2-D FFT kept. [`Reference::estimate`] does the
//! same to a frame, forms the cross-power spectrum normalised to unit magnitude (only the
//! phase is kept, so the brightness and contrast of the frame do not matter), transforms
//! it back and takes the highest peak of the correlation surface: its position is the
//! shift. A parabola through the peak and its neighbours places it to a fraction of a
//! working pixel; Newton steps on the surface's exact band-limited interpolant (the
//! inverse DFT evaluated at fractional positions) then remove the parabola's bias towards
//! whole pixels. Peaks beyond half the working size wrap to negative shifts; the shift is
//! scaled back to source pixels.
//!
//! **Only translation is estimated.** A part that has also turned a little still aligns
//! (on real photographs, within a pixel up to 1 degree) but its peak is lower, so the
//! confidence drops (to about half at 1 degree) and the fail-safe threshold catches a part
//! that has turned too far. Shifts must stay below half the frame on each axis (beyond
//! that they wrap); the window already lowers the confidence of shifts beyond a sixth or so
//! of the frame, since less of the part is seen by both frames.
//!
//! The confidence is the height of the correlation peak at its sub-pixel position, in
//! 0..=1 (clamped): the mean, over all frequencies of the working frame, of the cosine of
//! the phase left once the shift is taken out, i.e. the fraction of the spectrum that
//! agrees with the shift (frequencies with no energy in either frame count as disagreeing).
//! It does not depend on where the shift falls between pixels. The reference against
//! itself gives 1 (less the share of frequencies with no energy: 0.88 to 1 on the sample
//! photographs); a shifted frame of the same scene 0.77 to 0.93 on them (new content comes
//! in at the edges); a turned one less (0.6 to 0.66 at half a degree, 0.3 to 0.45 at one);
//! a frame unrelated to the reference about `6 / sqrt(working pixels)` (0.03 at the
//! default working size), and a blank one exactly 0.
//!
//! Uses nothing of the crate (a leaf of `infer`): `image` for the frame, `rustfft` for the
//! transforms.

use std::sync::Arc;

use image::RgbImage;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// The working size: the long side of the reduced frame, in pixels (frames smaller than
/// this are used at their own size). 256 keeps an estimate to a few milliseconds on one
/// core and the shift still well within a source pixel for camera frames up to ~1000 px.
pub const WORK_SIZE: u32 = 256;

/// The smallest frame side that can be aligned, in pixels.
pub const MIN_SIDE: u32 = 16;

/// A frame's windowed standard deviation (gray levels in 0..=1) below which it is taken as
/// featureless: nothing to align on (confidence 0).
const FEATURELESS_STD: f32 = 1e-3;

/// The estimated move of a frame against the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// How far the part moved to the right (negative: to the left), in source pixels, to a
    /// fraction of a pixel. What is at `(x, y)` in the reference frame is at
    /// `(x + dx, y + dy)` in this frame: move the ROI by `(+dx, +dy)`.
    pub dx: f32,
    /// How far the part moved down (negative: up), in source pixels; see `dx`.
    pub dy: f32,
    /// How sure the estimate is, in 0..=1: the height of the correlation peak, the share of
    /// the spectrum that agrees with the shift (see the module doc). Near 1 for a pure
    /// shift, lower for a turned or changed part, near 0 for an unrelated or blank frame.
    pub confidence: f32,
}

/// What can stop an alignment; each message names the sizes it concerns.
#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error(
        "alignment: the frame is {frame_w}x{frame_h} px but the reference frame is \
         {ref_w}x{ref_h} px; frames must have the reference's size (was the camera's \
         resolution changed since training?)"
    )]
    SizeMismatch {
        frame_w: u32,
        frame_h: u32,
        ref_w: u32,
        ref_h: u32,
    },
    #[error(
        "alignment: the reference frame is {width}x{height} px; it needs at least \
         {MIN_SIDE} px on each side"
    )]
    TooSmall { width: u32, height: u32 },
    #[error(
        "alignment: the {width}x{height} px reference frame is featureless (uniform): there \
         is nothing to align on"
    )]
    Featureless { width: u32, height: u32 },
}

/// The reference frame, reduced, windowed and transformed once; estimates frames against
/// it. Shareable between threads (`Send + Sync`); each estimate allocates its own buffers.
pub struct Reference {
    src_w: u32,
    src_h: u32,
    work_w: usize,
    work_h: usize,
    /// Source pixels per working pixel, on each axis.
    scale_x: f32,
    scale_y: f32,
    /// The separable Hann window, one factor per axis.
    win_x: Vec<f32>,
    win_y: Vec<f32>,
    /// The reference's spectrum, in the transposed layout of [`Self::forward`].
    spectrum: Vec<Complex<f32>>,
    fwd_x: Arc<dyn Fft<f32>>,
    fwd_y: Arc<dyn Fft<f32>>,
    inv_x: Arc<dyn Fft<f32>>,
    inv_y: Arc<dyn Fft<f32>>,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference")
            .field("frame", &(self.src_w, self.src_h))
            .field("working", &(self.work_w, self.work_h))
            .finish_non_exhaustive()
    }
}

impl Reference {
    /// Builds the reference from the reference frame. Fails on a frame smaller than
    /// [`MIN_SIDE`] or a featureless (uniform) one.
    pub fn new(frame: &RgbImage) -> Result<Self, AlignError> {
        let (src_w, src_h) = frame.dimensions();
        if src_w < MIN_SIDE || src_h < MIN_SIDE {
            return Err(AlignError::TooSmall {
                width: src_w,
                height: src_h,
            });
        }
        let (work_w, work_h) = working_size(src_w, src_h);
        let mut planner = FftPlanner::new();
        let mut reference = Self {
            src_w,
            src_h,
            work_w,
            work_h,
            scale_x: src_w as f32 / work_w as f32,
            scale_y: src_h as f32 / work_h as f32,
            win_x: hann(work_w),
            win_y: hann(work_h),
            spectrum: Vec::new(),
            fwd_x: planner.plan_fft_forward(work_w),
            fwd_y: planner.plan_fft_forward(work_h),
            inv_x: planner.plan_fft_inverse(work_w),
            inv_y: planner.plan_fft_inverse(work_h),
        };
        reference.spectrum = reference.prepare(frame).ok_or(AlignError::Featureless {
            width: src_w,
            height: src_h,
        })?;
        Ok(reference)
    }

    /// The size of the reference frame (and of every frame it aligns), in pixels.
    pub fn frame_size(&self) -> (u32, u32) {
        (self.src_w, self.src_h)
    }

    /// The working size the frames are reduced to, in pixels.
    pub fn working_size(&self) -> (u32, u32) {
        (self.work_w as u32, self.work_h as u32)
    }

    /// Estimates how far `frame` has moved against the reference (see [`Alignment`] for
    /// the sign). A frame of another size than the reference is an error; a featureless
    /// frame gives no shift and confidence 0.
    pub fn estimate(&self, frame: &RgbImage) -> Result<Alignment, AlignError> {
        if frame.dimensions() != (self.src_w, self.src_h) {
            return Err(AlignError::SizeMismatch {
                frame_w: frame.width(),
                frame_h: frame.height(),
                ref_w: self.src_w,
                ref_h: self.src_h,
            });
        }
        let Some(mut cross) = self.prepare(frame) else {
            return Ok(Alignment {
                dx: 0.0,
                dy: 0.0,
                confidence: 0.0,
            });
        };
        // The cross-power spectrum F_frame · conj(F_ref), normalised to unit magnitude:
        // for frame(x) = ref(x - d) it is exp(-2πi k·d / N), whose inverse is a peak at d.
        // Frequencies where either spectrum is (numerically) empty carry no phase: zero.
        let floor = cross
            .iter()
            .zip(&self.spectrum)
            .map(|(f, r)| (f * r.conj()).norm())
            .fold(0f32, f32::max)
            * 1e-7;
        for (f, r) in cross.iter_mut().zip(&self.spectrum) {
            let c = *f * r.conj();
            let m = c.norm();
            *f = if m > floor {
                c / m
            } else {
                Complex::new(0.0, 0.0)
            };
        }
        // The mean was taken off: the DC term carries no phase, only rounding.
        cross[0] = Complex::new(0.0, 0.0);
        let surface = self.inverse(cross.clone());
        let (w, h) = (self.work_w, self.work_h);
        let at = |x: isize, y: isize| {
            surface[y.rem_euclid(h as isize) as usize * w + x.rem_euclid(w as isize) as usize]
        };
        let (peak, _) = surface
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            });
        let (px, py) = ((peak % w) as isize, (peak / w) as isize);
        let centre = at(px, py);
        let coarse = (
            wrap(
                px as f32 + parabolic(at(px - 1, py), centre, at(px + 1, py)),
                w,
            ),
            wrap(
                py as f32 + parabolic(at(px, py - 1), centre, at(px, py + 1)),
                h,
            ),
        );
        let ((dx, dy), height) = self.refine(&cross, coarse);
        Ok(Alignment {
            dx: dx * self.scale_x,
            dy: dy * self.scale_y,
            confidence: height.clamp(0.0, 1.0),
        })
    }

    /// The sub-pixel peak of the correlation surface near `start` (working pixels), found
    /// on the surface's exact band-limited interpolant (the inverse DFT of the normalised
    /// cross-power spectrum `cross`, evaluated at fractional positions) by Newton steps,
    /// and its height there. The parabola of the caller is biased towards whole pixels
    /// (the peak is sinc-shaped, not parabolic) by up to a tenth of a working pixel; this
    /// is not. The height is the mean cosine of the phase left over once the shift is taken
    /// out, over all frequencies: the fraction of the spectrum that agrees with the shift.
    fn refine(&self, cross: &[Complex<f32>], start: (f32, f32)) -> ((f32, f32), f32) {
        let (w, h) = (self.work_w, self.work_h);
        // Signed frequencies in cycles per working pixel.
        let freq = |k: usize, n: usize| {
            let k = if k > n / 2 {
                k as f64 - n as f64
            } else {
                k as f64
            };
            k / n as f64
        };
        let fxs: Vec<f64> = (0..w).map(|k| freq(k, w)).collect();
        let fys: Vec<f64> = (0..h).map(|k| freq(k, h)).collect();
        let n = (w * h) as f64;
        let tau = 2.0 * std::f64::consts::PI;
        // The height at `d` with its gradient and Hessian (xx, xy, yy). With
        // z = cross · exp(2πi (fx dx + fy dy)): height = mean Re z, d/dx = -2π mean fx Im z,
        // d²/dx dy = -(2π)² mean fx fy Re z, and so on; summed per column (one fx), the
        // fy-weighted sums complex, then turned by the column's exp(2πi fx dx).
        let eval = |d: (f64, f64)| {
            let by: Vec<Complex<f64>> = fys
                .iter()
                .map(|f| Complex::from_polar(1.0, tau * f * d.1))
                .collect();
            let (mut v, mut gx, mut gy) = (0f64, 0f64, 0f64);
            let (mut hxx, mut hxy, mut hyy) = (0f64, 0f64, 0f64);
            for (col, &fx) in cross.chunks_exact(h).zip(&fxs) {
                let mut sums = [Complex::new(0f64, 0f64); 3];
                for ((c, b), &fy) in col.iter().zip(&by).zip(&fys) {
                    let z = Complex::new(c.re as f64, c.im as f64) * b;
                    sums[0] += z;
                    sums[1] += z * fy;
                    sums[2] += z * (fy * fy);
                }
                let ax = Complex::from_polar(1.0, tau * fx * d.0);
                let [t0, t1, t2] = sums.map(|s| s * ax);
                v += t0.re;
                gx += fx * t0.im;
                gy += t1.im;
                hxx += fx * fx * t0.re;
                hxy += fx * t1.re;
                hyy += t2.re;
            }
            let k = tau * tau / n;
            (
                v / n,
                [-tau * gx / n, -tau * gy / n],
                [-k * hxx, -k * hxy, -k * hyy],
            )
        };
        let mut d = (start.0 as f64, start.1 as f64);
        let (mut height, mut grad, mut hess) = eval(d);
        for _ in 0..8 {
            let [hxx, hxy, hyy] = hess;
            let det = hxx * hyy - hxy * hxy;
            // Newton needs a maximum here (negative definite Hessian); else keep the
            // parabola's estimate.
            if !(hxx < 0.0 && det > 0.0) {
                break;
            }
            let step = (
                -(hyy * grad[0] - hxy * grad[1]) / det,
                -(hxx * grad[1] - hxy * grad[0]) / det,
            );
            let step = (step.0.clamp(-0.5, 0.5), step.1.clamp(-0.5, 0.5));
            let next = (d.0 + step.0, d.1 + step.1);
            let (h2, g2, he2) = eval(next);
            if h2 < height {
                break;
            }
            (d, height, grad, hess) = (next, h2, g2, he2);
            if step.0.abs().max(step.1.abs()) < 1e-4 {
                break;
            }
        }
        ((d.0 as f32, d.1 as f32), height as f32)
    }

    /// The frame reduced to the working size in grayscale, its windowed mean taken off,
    /// windowed and transformed (transposed layout: `work_w` columns of `work_h`); `None`
    /// for a featureless frame.
    fn prepare(&self, frame: &RgbImage) -> Option<Vec<Complex<f32>>> {
        let (w, h) = (self.work_w, self.work_h);
        let gray = reduce_gray(frame, w, h);
        let (mut wsum, mut mean) = (0f64, 0f64);
        for (y, row) in gray.chunks_exact(w).enumerate() {
            for (x, &v) in row.iter().enumerate() {
                let wt = (self.win_x[x] * self.win_y[y]) as f64;
                wsum += wt;
                mean += wt * v as f64;
            }
        }
        let mean = (mean / wsum) as f32;
        let mut var = 0f64;
        let mut buf: Vec<Complex<f32>> = Vec::with_capacity(w * h);
        for (y, row) in gray.chunks_exact(w).enumerate() {
            for (x, &v) in row.iter().enumerate() {
                let wt = self.win_x[x] * self.win_y[y];
                let d = v - mean;
                var += (wt * d * d) as f64;
                buf.push(Complex::new(wt * d, 0.0));
            }
        }
        if ((var / wsum) as f32).sqrt() < FEATURELESS_STD {
            return None;
        }
        self.fwd_x.process(&mut buf);
        let mut t = transpose(&buf, w, h);
        self.fwd_y.process(&mut t);
        Some(t)
    }

    /// The real part of the inverse transform of a spectrum in the transposed layout,
    /// row-major `work_h` rows of `work_w`, divided by the number of pixels.
    fn inverse(&self, mut spectrum: Vec<Complex<f32>>) -> Vec<f32> {
        let (w, h) = (self.work_w, self.work_h);
        self.inv_y.process(&mut spectrum);
        let mut rows = transpose(&spectrum, h, w);
        self.inv_x.process(&mut rows);
        let n = (w * h) as f32;
        rows.iter().map(|c| c.re / n).collect()
    }
}

/// The working size for a `w` x `h` frame: at most [`WORK_SIZE`] on the long side, the
/// aspect ratio kept, never enlarged.
fn working_size(w: u32, h: u32) -> (usize, usize) {
    let long = w.max(h);
    if long <= WORK_SIZE {
        return (w as usize, h as usize);
    }
    let k = WORK_SIZE as f64 / long as f64;
    let side = |s: u32| ((s as f64 * k).round() as usize).max(1);
    (side(w), side(h))
}

/// The periodic-symmetric Hann window of `n` samples (never exactly 0).
fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = (i as f64 + 0.5) / n as f64;
            (0.5 - 0.5 * (2.0 * std::f64::consts::PI * t).cos()) as f32
        })
        .collect()
}

/// `frame` in grayscale (Rec. 601 luma, 0..=1), reduced to `w` x `h` by area averaging
/// (each output pixel the mean of the source area it covers, fractional pixels weighted).
fn reduce_gray(frame: &RgbImage, w: usize, h: usize) -> Vec<f32> {
    let (sw, sh) = (frame.width() as usize, frame.height() as usize);
    let taps_x = area_taps(sw, w);
    let taps_y = area_taps(sh, h);
    // Horizontal pass on every source row, then the vertical pass.
    let mut rows = vec![0f32; sh * w];
    let src = frame.as_raw();
    let mut line = vec![0f32; sw];
    for y in 0..sh {
        for (x, v) in line.iter_mut().enumerate() {
            let p = &src[(y * sw + x) * 3..(y * sw + x) * 3 + 3];
            *v = (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0;
        }
        for (o, (first, weights)) in rows[y * w..(y + 1) * w].iter_mut().zip(&taps_x) {
            *o = weights
                .iter()
                .zip(&line[*first..])
                .map(|(a, b)| a * b)
                .sum();
        }
    }
    let mut out = vec![0f32; w * h];
    for (oy, (first, weights)) in taps_y.iter().enumerate() {
        let dst = &mut out[oy * w..(oy + 1) * w];
        for (i, &wt) in weights.iter().enumerate() {
            let row = &rows[(first + i) * w..(first + i + 1) * w];
            for (d, &s) in dst.iter_mut().zip(row) {
                *d += wt * s;
            }
        }
    }
    out
}

/// Area-averaging taps from `src` samples to `dst <= src`: for each output sample, its
/// first source sample and the normalised weights of the source samples it covers.
fn area_taps(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let ratio = src as f64 / dst as f64;
    (0..dst)
        .map(|o| {
            let (lo, hi) = (o as f64 * ratio, (o as f64 + 1.0) * ratio);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(src);
            let weights = (first..last)
                .map(|i| ((hi.min(i as f64 + 1.0) - lo.max(i as f64)) / ratio) as f32)
                .collect();
            (first, weights)
        })
        .collect()
}

/// `rows` x `cols` row-major to `cols` x `rows`.
fn transpose<T: Copy>(m: &[T], cols: usize, rows: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(m.len());
    for c in 0..cols {
        out.extend((0..rows).map(|r| m[r * cols + c]));
    }
    out
}

/// The offset (-0.5..=0.5) of the vertex of the parabola through `(-1, l)`, `(0, c)`,
/// `(1, r)` where `c` is the largest; 0 where the three are (nearly) collinear.
fn parabolic(l: f32, c: f32, r: f32) -> f32 {
    let denom = l - 2.0 * c + r;
    if denom.abs() < 1e-12 {
        return 0.0;
    }
    (0.5 * (l - r) / denom).clamp(-0.5, 0.5)
}

/// A peak position on a circular axis of `n` samples as a signed shift: beyond half the
/// axis it wraps to negative.
fn wrap(p: f32, n: usize) -> f32 {
    let n = n as f32;
    if p > n / 2.0 {
        p - n
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::crop_imm;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A `w` x `h` random texture (uniform noise, box-blurred 3x3 so it is not all high
    /// frequencies), the same for the same seed.
    fn texture(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise: Vec<f32> = (0..w * h).map(|_| rng.gen::<f32>()).collect();
        RgbImage::from_fn(w, h, |x, y| {
            let (mut s, mut n) = (0f32, 0f32);
            for yy in y.saturating_sub(1)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 2).min(w) {
                    s += noise[(yy * w + xx) as usize];
                    n += 1.0;
                }
            }
            let v = (s / n * 255.0) as u8;
            image::Rgb([v, v / 2 + 60, 255 - v])
        })
    }

    fn crop(img: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> RgbImage {
        crop_imm(img, x, y, w, h).to_image()
    }

    /// The reference is the window at (32, 32) of `canvas`; the frame is the window at
    /// (32 - dx, 32 - dy), so its content has moved by (+dx, +dy).
    fn moved(canvas: &RgbImage, w: u32, h: u32, dx: i32, dy: i32) -> (RgbImage, RgbImage) {
        let at = |o: i32| (32 - o) as u32;
        (
            crop(canvas, 32, 32, w, h),
            crop(canvas, at(dx), at(dy), w, h),
        )
    }

    #[test]
    fn a_shifted_copy_is_recovered_exactly() {
        // 256 x 192: the working size itself, one working pixel per source pixel.
        let canvas = texture(320, 256, 1);
        let (reference, frame) = moved(&canvas, 256, 192, 7, -4);
        let r = Reference::new(&reference).unwrap();
        assert_eq!(r.working_size(), (256, 192));
        let a = r.estimate(&frame).unwrap();
        assert!(
            (a.dx - 7.0).abs() < 0.05 && (a.dy + 4.0).abs() < 0.05,
            "{a:?}"
        );
        assert!(a.confidence > 0.5, "{a:?}");
        // The reference against itself: no move, full confidence.
        let a = r.estimate(&reference).unwrap();
        assert!(a.dx.abs() < 1e-3 && a.dy.abs() < 1e-3, "{a:?}");
        assert!(a.confidence > 0.99, "{a:?}");
    }

    #[test]
    fn a_reduced_frame_is_recovered_in_source_pixels() {
        // 640 x 480 reduced to 256 x 192: 2.5 source pixels per working pixel.
        let canvas = texture(704, 544, 2);
        let r = Reference::new(&crop(&canvas, 32, 32, 640, 480)).unwrap();
        assert_eq!(r.working_size(), (256, 192));
        for (dx, dy) in [(5, 0), (0, -5), (12, 7), (-9, 3)] {
            let (_, frame) = moved(&canvas, 640, 480, dx, dy);
            let a = r.estimate(&frame).unwrap();
            let err = (a.dx - dx as f32).abs().max((a.dy - dy as f32).abs());
            assert!(err < 0.5, "moved ({dx}, {dy}): {a:?}");
            assert!(a.confidence > 0.3, "moved ({dx}, {dy}): {a:?}");
        }
    }

    #[test]
    fn moves_up_and_left_wrap_to_negative() {
        let canvas = texture(320, 256, 3);
        let r = Reference::new(&crop(&canvas, 32, 32, 256, 192)).unwrap();
        for (dx, dy) in [(-6, -11), (6, -11), (-6, 11), (6, 11), (-20, 0), (0, -20)] {
            let (_, frame) = moved(&canvas, 256, 192, dx, dy);
            let a = r.estimate(&frame).unwrap();
            assert!(
                (a.dx - dx as f32).abs() < 0.1 && (a.dy - dy as f32).abs() < 0.1,
                "moved ({dx}, {dy}): {a:?}"
            );
        }
    }

    #[test]
    fn a_frame_of_another_size_is_refused_naming_both() {
        let canvas = texture(320, 256, 4);
        let r = Reference::new(&crop(&canvas, 0, 0, 256, 192)).unwrap();
        let err = r.estimate(&crop(&canvas, 0, 0, 250, 192)).unwrap_err();
        assert!(matches!(err, AlignError::SizeMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("250x192") && msg.contains("256x192"), "{msg}");
    }

    #[test]
    fn a_blank_frame_has_no_confidence_and_a_blank_reference_is_refused() {
        let canvas = texture(320, 256, 5);
        let r = Reference::new(&crop(&canvas, 0, 0, 256, 192)).unwrap();
        for v in [0u8, 128, 255] {
            let blank = RgbImage::from_pixel(256, 192, image::Rgb([v, v, v]));
            let a = r.estimate(&blank).unwrap();
            assert_eq!(a.confidence, 0.0, "gray {v}: {a:?}");
            let err = Reference::new(&blank).unwrap_err();
            assert!(matches!(err, AlignError::Featureless { .. }), "{err:?}");
        }
        let err = Reference::new(&RgbImage::new(8, 100)).unwrap_err();
        assert!(err.to_string().contains("8x100"), "{err}");
    }

    #[test]
    fn an_unrelated_frame_has_low_confidence() {
        let r = Reference::new(&texture(640, 480, 6)).unwrap();
        let same = r.estimate(&texture(640, 480, 6)).unwrap();
        let other = r.estimate(&texture(640, 480, 7)).unwrap();
        assert!(same.confidence > 0.99, "{same:?}");
        assert!(other.confidence < 0.1, "{other:?}");
    }

    #[test]
    fn brightness_and_contrast_do_not_matter() {
        let canvas = texture(320, 256, 8);
        let (reference, mut frame) = moved(&canvas, 256, 192, -3, 5);
        for p in frame.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = (*c as f32 * 0.6 + 40.0) as u8;
            }
        }
        let a = Reference::new(&reference)
            .unwrap()
            .estimate(&frame)
            .unwrap();
        assert!(
            (a.dx + 3.0).abs() < 0.1 && (a.dy - 5.0).abs() < 0.1,
            "{a:?}"
        );
        assert!(a.confidence > 0.5, "{a:?}");
    }

    #[test]
    fn the_parabola_and_the_wrap() {
        assert_eq!(parabolic(1.0, 2.0, 1.0), 0.0);
        assert!(parabolic(1.0, 2.0, 1.5) > 0.0 && parabolic(1.5, 2.0, 1.0) < 0.0);
        assert_eq!(wrap(3.0, 100), 3.0);
        assert_eq!(wrap(97.5, 100), -2.5);
        let taps = area_taps(5, 2);
        assert_eq!(taps[0].0, 0);
        assert_eq!(taps[1].0, 2);
        let sum: f32 = taps[1].1.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }
}
