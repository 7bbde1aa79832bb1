//! Synthetic anomalies for training (the reference "white noise" generator): on each image,
//! n in {0..=max_count} rectangles whose pixels are replaced by random noise. The union of
//! the rectangles is the anomaly mask the MOM loss pushes apart.

use image::RgbImage;
use rand::Rng;

pub use crate::bundle::settings::{AnomalyConfig, NoiseKind};

/// A rectangle, inclusive-exclusive pixel bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// Draws the rectangles for one image of size w x h: half-sizes uniform in [H/40, H/10)
/// and [W/40, W/10), centres chosen so the rectangle stays inside the image.
pub fn draw_rects(rng: &mut impl Rng, w: u32, h: u32, cfg: &AnomalyConfig) -> Vec<Rect> {
    let n = rng.gen_range(0..=cfg.max_count);
    (0..n)
        .map(|_| {
            let hh = half_size(rng, h);
            let hw = half_size(rng, w);
            let cy = rng.gen_range(hh..=(h - hh).max(hh));
            let cx = rng.gen_range(hw..=(w - hw).max(hw));
            Rect {
                x0: cx - hw,
                y0: cy - hh,
                x1: (cx + hw).min(w),
                y1: (cy + hh).min(h),
            }
        })
        .collect()
}

fn half_size(rng: &mut impl Rng, extent: u32) -> u32 {
    let lo = (extent / 40).max(1);
    let hi = (extent / 10).max(lo + 1);
    rng.gen_range(lo..hi)
}

/// Paints noise into the rectangles and returns the mask (w*h, 1.0 = synthetic).
pub fn apply(rng: &mut impl Rng, img: &mut RgbImage, rects: &[Rect], noise: NoiseKind) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let mut mask = vec![0f32; (w * h) as usize];
    for r in rects {
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                let px = img.get_pixel_mut(x, y);
                for c in 0..3 {
                    px[c] = match noise {
                        NoiseKind::Uniform => rng.gen_range(0..=255u8),
                        NoiseKind::Gaussian => {
                            let g: f32 = gaussian(rng);
                            (128.0 + 64.0 * g).clamp(0.0, 255.0) as u8
                        }
                    };
                }
                mask[(y * w + x) as usize] = 1.0;
            }
        }
    }
    mask
}

/// Standard normal sample (Box-Muller), to avoid another dependency.
fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen::<f32>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn counts_sizes_and_bounds_follow_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let cfg = AnomalyConfig::default();
        let mut counts = [0usize; 5];
        for _ in 0..2000 {
            let rects = draw_rects(&mut rng, 256, 256, &cfg);
            counts[rects.len()] += 1;
            for r in rects {
                assert!(
                    r.x1 <= 256 && r.y1 <= 256 && r.x0 < r.x1 && r.y0 < r.y1,
                    "{r:?}"
                );
                // Half-sizes in [256/40, 256/10) = [6, 25): full sides in [12, 50).
                let (sw, sh) = (r.x1 - r.x0, r.y1 - r.y0);
                assert!((12..50).contains(&sw) && (12..50).contains(&sh), "{r:?}");
            }
        }
        // n uniform over 0..=4: each count near 400 of 2000.
        for c in counts {
            assert!((300..500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn mask_is_the_union_of_painted_rectangles() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut img = RgbImage::from_pixel(64, 64, image::Rgb([10, 20, 30]));
        let rects = [
            Rect {
                x0: 2,
                y0: 2,
                x1: 10,
                y1: 8,
            },
            Rect {
                x0: 6,
                y0: 4,
                x1: 12,
                y1: 12,
            },
        ];
        let mask = apply(&mut rng, &mut img, &rects, NoiseKind::Uniform);
        let inside = |x: u32, y: u32| {
            rects
                .iter()
                .any(|r| x >= r.x0 && x < r.x1 && y >= r.y0 && y < r.y1)
        };
        let mut painted = 0;
        for y in 0..64 {
            for x in 0..64 {
                let m = mask[(y * 64 + x) as usize];
                assert_eq!(m == 1.0, inside(x, y), "({x},{y})");
                if !inside(x, y) {
                    assert_eq!(img.get_pixel(x, y).0, [10, 20, 30]);
                } else if img.get_pixel(x, y).0 != [10, 20, 30] {
                    painted += 1;
                }
            }
        }
        // 8*6 + 6*8 - overlap(4*4) = 80 pixels; noise almost never reproduces the colour.
        assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), 80);
        assert!(painted >= 78);
    }

    #[test]
    fn zero_count_leaves_image_untouched() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cfg = AnomalyConfig {
            max_count: 0,
            ..Default::default()
        };
        assert!(draw_rects(&mut rng, 256, 256, &cfg).is_empty());
    }

    #[test]
    fn gaussian_noise_stays_in_range_and_varies() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut img = RgbImage::new(32, 32);
        let rects = [Rect {
            x0: 0,
            y0: 0,
            x1: 32,
            y1: 32,
        }];
        apply(&mut rng, &mut img, &rects, NoiseKind::Gaussian);
        let vals: Vec<f32> = img.pixels().map(|p| p[0] as f32).collect();
        let mean = vals.iter().sum::<f32>() / vals.len() as f32;
        assert!((mean - 128.0).abs() < 8.0, "{mean}");
        assert!(vals.iter().any(|&v| v < 64.0) && vals.iter().any(|&v| v > 192.0));
    }
}
