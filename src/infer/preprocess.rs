//! From a decoded RGB frame to the network's input tensor.
//!
//! The resize is the `image` crate's `FilterType::Triangle` resize (antialiased bilinear,
//! like PIL's), written out for 8-bit RGB: the same tap weights, summed in the same order
//! in f32, rounded to 8 bits the same way, so its output is bit-identical (a test checks it
//! against `image::imageops::resize`). The generic version converts every pixel through a
//! four-channel float image and bounds-checks each read; at a 640x480 -> 256x256 frame it
//! was the largest stage outside the networks. This one streams row by row, straight into
//! the normalised CHW planes, and splits the rows across threads.

use candle_core::{Device, Result, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use crate::model::backbone::{IMAGENET_MEAN, IMAGENET_STD};
use crate::model::kernels::simd::add_scaled;

/// Resizes (bilinear, antialiased like PIL's) to `size` x `size` and normalises with the
/// ImageNet mean and std, straight into a CHW f32 buffer.
pub fn image_to_chw(img: &RgbImage, size: u32) -> Vec<f32> {
    let s = size as usize;
    let plane = s * s;
    let mut out = vec![0f32; 3 * plane];
    if s == 0 {
        return out;
    }
    let lut = normalise_lut();
    let (r, gb) = out.split_at_mut(plane);
    let (g, b) = gb.split_at_mut(plane);
    let rows = r
        .par_chunks_mut(s)
        .zip(g.par_chunks_mut(s))
        .zip(b.par_chunks_mut(s))
        .enumerate();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        // Nothing to sample from: black, as the `image` crate gives.
        rows.for_each(|(_, ((r, g), b))| {
            for (c, p) in [r, g, b].into_iter().enumerate() {
                p.fill(lut[c][0]);
            }
        });
        return out;
    }
    let src = img.as_raw();
    let row_len = 3 * w;
    if (w, h) == (s, s) {
        rows.for_each(|(y, ((r, g), b))| {
            store_row(&src[y * row_len..(y + 1) * row_len], [r, g, b], &lut);
        });
        return out;
    }
    let vertical = Taps::new(h, s);
    let horizontal = Taps::new(w, s);
    rows.for_each_init(
        || (vec![0f32; row_len], vec![0u8; 3 * s]),
        |(acc, resized), (y, ((r, g), b))| {
            // Vertical pass: the output row as a weighted sum of input rows.
            acc.fill(0.0);
            let (top, weights) = vertical.get(y);
            for (i, &wt) in weights.iter().enumerate() {
                add_scaled(acc, &src[(top + i) * row_len..(top + i + 1) * row_len], wt);
            }
            // Horizontal pass, rounded to 8 bits as the `image` crate stores its result.
            for (x, px) in resized.chunks_exact_mut(3).enumerate() {
                let (left, weights) = horizontal.get(x);
                let span = &acc[left * 3..(left + weights.len()) * 3];
                let mut t = [0f32; 3];
                for (p, &wt) in span.chunks_exact(3).zip(weights) {
                    for c in 0..3 {
                        t[c] += p[c] * wt;
                    }
                }
                for (v, t) in px.iter_mut().zip(t) {
                    *v = round_to_u8(t);
                }
            }
            store_row(resized, [r, g, b], &lut);
        },
    );
    out
}

/// `t.clamp(0, 255).round() as u8`, halves away from zero, without a call to libm's
/// `roundf` (baseline x86-64 has no rounding instruction). Exact: below 256 the fraction
/// `t - trunc(t)` is representable.
fn round_to_u8(t: f32) -> u8 {
    let t = t.clamp(0.0, 255.0);
    let whole = t as u8;
    if t - whole as f32 >= 0.5 {
        whole + 1
    } else {
        whole
    }
}

/// One interleaved RGB row into the three normalised planes' rows.
fn store_row(rgb: &[u8], planes: [&mut [f32]; 3], lut: &[[f32; 256]; 3]) {
    for (c, plane) in planes.into_iter().enumerate() {
        for (o, px) in plane.iter_mut().zip(rgb.chunks_exact(3)) {
            *o = lut[c][px[c] as usize];
        }
    }
}

/// `(v / 255 - mean) / std` for every 8-bit value, per channel.
fn normalise_lut() -> [[f32; 256]; 3] {
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, o) in table.iter_mut().enumerate() {
            *o = (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    lut
}

/// The triangle filter's taps along one axis: for every output index, the first input
/// index and the normalised weights, computed exactly as `image::imageops::resize` does.
struct Taps {
    first: Vec<usize>,
    start: Vec<usize>,
    weights: Vec<f32>,
}

impl Taps {
    fn new(src: usize, dst: usize) -> Self {
        let ratio = src as f32 / dst as f32;
        let sratio = ratio.max(1.0);
        let support = sratio; // the triangle's support is 1, scaled when shrinking
        let mut taps = Self {
            first: Vec::with_capacity(dst),
            start: Vec::with_capacity(dst + 1),
            weights: Vec::new(),
        };
        for o in 0..dst {
            let centre = (o as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, src as i64 - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, src as i64);
            let centre = centre - 0.5;
            taps.first.push(left as usize);
            taps.start.push(taps.weights.len());
            let mut sum = 0f32;
            for i in left..right {
                let x = ((i as f32 - centre) / sratio).abs();
                let w = if x < 1.0 { 1.0 - x } else { 0.0 };
                taps.weights.push(w);
                sum += w;
            }
            let from = *taps.start.last().unwrap_or(&0);
            for w in &mut taps.weights[from..] {
                *w /= sum;
            }
        }
        taps.start.push(taps.weights.len());
        taps
    }

    fn get(&self, o: usize) -> (usize, &[f32]) {
        (
            self.first[o],
            &self.weights[self.start[o]..self.start[o + 1]],
        )
    }
}

/// A batch tensor (B x 3 x size x size) from already-normalised CHW buffers.
pub fn batch_tensor(chw: &[Vec<f32>], size: u32, device: &Device) -> Result<Tensor> {
    let s = size as usize;
    let flat: Vec<f32> = chw.iter().flat_map(|v| v.iter().copied()).collect();
    Tensor::from_vec(flat, (chw.len(), 3, s, s), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::FilterType;

    /// The reference: the `image` crate's resize, then the same normalisation.
    fn reference(img: &RgbImage, size: u32) -> Vec<f32> {
        let resized = image::imageops::resize(img, size, size, FilterType::Triangle);
        let plane = (size * size) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in resized.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (px[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
        out
    }

    /// A frame with edges, gradients and noise, so every tap weight matters.
    fn frame(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
        RgbImage::from_fn(w, h, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let edge: u8 = if (x / 7 + y / 5) % 2 == 0 { 200 } else { 30 };
            let noise = (state % 41) as u8;
            image::Rgb([
                edge.saturating_add(noise),
                ((x * 255) / w.max(1)) as u8,
                ((y * 255) / h.max(1)) as u8 ^ noise,
            ])
        })
    }

    #[test]
    fn resize_is_bit_identical_to_the_image_crate() {
        // Shrinking by whole and fractional ratios, enlarging, one axis each way, the
        // identity, and single-pixel edges.
        let cases = [
            (640, 480, 256),
            (640, 480, 128),
            (300, 200, 224),
            (97, 61, 64),
            (100, 300, 128),
            (256, 256, 256),
            (1, 1, 8),
            (33, 1, 16),
            (5, 7, 3),
        ];
        for (i, &(w, h, s)) in cases.iter().enumerate() {
            let img = frame(w, h, i as u32);
            let ours = image_to_chw(&img, s);
            let theirs = reference(&img, s);
            assert_eq!(ours.len(), theirs.len());
            let differing = ours
                .iter()
                .zip(&theirs)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differing, 0, "{w}x{h} -> {s}: {differing} values differ");
        }
    }

    #[test]
    fn rounding_matches_the_libm_one() {
        // Every value from below 0 to above 255 in steps of 1/64, plus the float just
        // below each half.
        let mut probes: Vec<f32> = (-64..=256 * 64).map(|i| i as f32 / 64.0).collect();
        probes.extend((0..256).map(|i| f32::from_bits((i as f32 + 0.5).to_bits() - 1)));
        for t in probes {
            assert_eq!(round_to_u8(t), t.clamp(0.0, 255.0).round() as u8, "{t}");
        }
    }

    #[test]
    fn normalisation_is_the_imagenet_one() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 128]));
        let chw = image_to_chw(&img, 4);
        let expect = [
            (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
            (0.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
            (128.0 / 255.0 - IMAGENET_MEAN[2]) / IMAGENET_STD[2],
        ];
        for c in 0..3 {
            assert!(chw[c * 16..(c + 1) * 16].iter().all(|&v| v == expect[c]));
        }
    }
}
