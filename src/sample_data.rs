//! A small, reproducible "surface" dataset cut from one real texture photograph, for the
//! demo, the quickstart and the tests, so that nobody needs a proprietary image set to see
//! the detector work.
//!
//! Layout (MVTec-AD-like, which the rest of the crate reads):
//! ```text
//! out/train/good/000.png ...
//! out/test/good/000.png ...
//! out/test/<defect>/000.png ...            defect in {scratch, spot, contamination}
//! out/ground_truth/<defect>/000_mask.png   8-bit, 255 = defect
//! ```
//! Train tiles come from the top ~70% of the photograph, test tiles from the bottom ~30%,
//! so no test tile is a copy of a training tile. Everything is driven by one ChaCha stream
//! seeded from [`SampleSpec::seed`], so the same seed and photograph give byte-identical
//! files (no trigonometric library calls are used, only IEEE-exact arithmetic).
//!
//! [`build_line_dataset`] writes the same layout for tiled inspection: frames of one part
//! larger than the network's input, as a station's camera sees one part after another
//! (the photograph's centre at native resolution, moved in its fixture, under its own
//! light level and camera noise), with the same painted defects.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use image::{imageops, GrayImage, Luma, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::imageio::{self, ImageError};

/// File name (in the directory `scripts/fetch-sample-images.sh` fills) of the photograph
/// the sample dataset is cut from: gravel is a fine, even, isotropic texture, so every
/// crop and every 90° rotation/flip of it is a plausible "good" surface.
pub const DEFAULT_TEXTURE: &str = "gravel.png";

/// Defect types painted into test tiles, in the order they are generated.
pub const DEFECT_TYPES: [&str; 3] = ["scratch", "spot", "contamination"];

/// Name of the marker file that identifies a directory as built by this module (so a
/// rebuild may clean it, and nothing else is ever deleted).
const MARKER: &str = ".cdo-sample-dataset";

/// A pixel blended at least this much toward the defect colour is marked in the mask:
/// weaker changes (anti-aliased fringes, faded scratch ends) are below ~13 grey levels.
const MASK_ALPHA: f32 = 0.1;

/// Draws of one defect before a minimum size that none reaches is an error.
const MAX_DRAWS: usize = 1000;

/// Smallest tile side supported: defects up to 60 px long must fit inside a tile.
pub const MIN_TILE: u32 = 64;

/// What to build. `test_defect` is the number of images *per defect type*.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSpec {
    /// Side of the square tiles in pixels (at least [`MIN_TILE`]).
    pub tile: u32,
    /// Good tiles in `train/good`.
    pub train_good: usize,
    /// Good tiles in `test/good`.
    pub test_good: usize,
    /// Defective tiles in each of `test/scratch`, `test/spot`, `test/contamination`.
    pub test_defect: usize,
    /// Seed of the ChaCha stream; same seed, same files.
    pub seed: u64,
}

impl Default for SampleSpec {
    fn default() -> Self {
        Self {
            tile: 128,
            train_good: 32,
            test_good: 8,
            test_defect: 4,
            seed: 7,
        }
    }
}

/// Which part of the dataset an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

/// One written image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleImage {
    pub path: PathBuf,
    pub split: Split,
    /// `"good"` or one of [`DEFECT_TYPES`].
    pub label: String,
    /// Ground-truth mask; `None` for good images (MVTec convention: no mask file).
    pub mask: Option<PathBuf>,
    /// Number of 255 pixels in the mask (0 for good images).
    pub defect_pixels: usize,
}

/// What [`build_surface_dataset`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSummary {
    pub root: PathBuf,
    /// Every image's width and height.
    pub size: (u32, u32),
    pub images: Vec<SampleImage>,
}

impl SampleSummary {
    /// Number of images with this split and label.
    pub fn count(&self, split: Split, label: &str) -> usize {
        self.images
            .iter()
            .filter(|i| i.split == split && i.label == label)
            .count()
    }
}

/// Errors of the sample-dataset builder; each names the file or directory concerned.
#[derive(Debug, thiserror::Error)]
pub enum SampleDataError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("invalid sample spec: {0}")]
    InvalidSpec(String),
    #[error(
        "texture {} is {width}x{height}; {tile}px tiles need at least {tile}x{}",
        path.display(),
        2 * tile
    )]
    TextureTooSmall {
        path: PathBuf,
        width: u32,
        height: u32,
        tile: u32,
    },
    #[error("texture {} is too small for {wanted} distinct {split} tiles of {tile}px (only {available} possible)", path.display())]
    NotEnoughCrops {
        path: PathBuf,
        split: &'static str,
        tile: u32,
        wanted: usize,
        available: u64,
    },
    #[error(
        "photograph {} is {width}x{height}; {}x{} frames moved by up to {jitter} px need at least {}x{}",
        path.display(), frame.0, frame.1, frame.0 + 2 * jitter, frame.1 + 2 * jitter
    )]
    PhotoTooSmallForFrames {
        path: PathBuf,
        width: u32,
        height: u32,
        frame: (u32, u32),
        jitter: u32,
    },
    #[error("{} exists and is not an empty directory or a sample dataset built by cdo-inspect; refusing to overwrite it", path.display())]
    OutputNotEmpty { path: PathBuf },
    #[error("cannot prepare {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

/// A crop of the photograph: top-left corner and one of the 8 rotations/flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Crop {
    x: u32,
    y: u32,
    transform: u8,
}

/// Rows `[0, split)` feed training tiles, `[split, height)` test tiles. 70/30 where the
/// photograph is tall enough, otherwise the test band is exactly one tile high.
fn split_row(height: u32, tile: u32) -> u32 {
    let seventy = ((height as u64 * 7 + 5) / 10) as u32;
    seventy.min(height.saturating_sub(tile))
}

/// Draw `n` distinct crops whose rows lie inside `[y0, y1)`; `(texture, split)` only
/// name things in the error.
fn draw_crops(
    rng: &mut ChaCha8Rng,
    n: usize,
    width: u32,
    (y0, y1): (u32, u32),
    tile: u32,
    (texture, split): (&Path, &'static str),
    taken: &mut HashSet<Crop>,
) -> Result<Vec<Crop>, SampleDataError> {
    let nx = (width - tile + 1) as u64;
    let ny = (y1 - y0 - tile + 1) as u64;
    let available = nx * ny * 8 - taken.len() as u64;
    // Rejection sampling below terminates quickly as long as at most half is used.
    if n as u64 > available / 2 {
        return Err(SampleDataError::NotEnoughCrops {
            path: texture.to_path_buf(),
            split,
            tile,
            wanted: n,
            available: available / 2,
        });
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let c = Crop {
            x: rng.gen_range(0..=width - tile),
            y: rng.gen_range(y0..=y1 - tile),
            transform: rng.gen_range(0..8u8),
        };
        if taken.insert(c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Cut a crop out of the photograph and apply its rotation/flip.
fn cut(photo: &RgbImage, c: Crop, tile: u32) -> RgbImage {
    let mut t = imageops::crop_imm(photo, c.x, c.y, tile, tile).to_image();
    for _ in 0..(c.transform & 3) {
        t = imageops::rotate90(&t);
    }
    if c.transform & 4 != 0 {
        t = imageops::flip_horizontal(&t);
    }
    t
}

/// A random unit vector, by rejection sampling (no trigonometry, so bit-reproducible).
fn unit_vector(rng: &mut ChaCha8Rng) -> (f32, f32) {
    loop {
        let x: f32 = rng.gen_range(-1.0..=1.0);
        let y: f32 = rng.gen_range(-1.0..=1.0);
        let r2 = x * x + y * y;
        if r2 > 0.01 && r2 <= 1.0 {
            let r = r2.sqrt();
            return (x / r, y / r);
        }
    }
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Blend pixel `(x, y)` toward `target` by `a` in [0, 1].
fn blend(img: &mut RgbImage, x: u32, y: u32, target: [f32; 3], a: f32) {
    let px = img.get_pixel_mut(x, y);
    for (ch, &t) in px.0.iter_mut().zip(&target) {
        let v = *ch as f32;
        *ch = (v + a * (t - v)).round().clamp(0.0, 255.0) as u8;
    }
}

/// Pixel-index bounds `[lo, hi)` of a float interval, clipped to the tile.
fn span(lo: f32, hi: f32, tile: u32) -> (u32, u32) {
    let a = lo.floor().max(0.0) as u32;
    let b = (hi.ceil().max(0.0) as u32 + 1).min(tile);
    (a.min(tile), b)
}

/// A thin scratch: an anti-aliased quadratic curve 20-60 px long, 1-3 px wide, bright
/// (whitened plastic) or dark (groove shadow), fading at both ends like a real scratch.
fn paint_scratch(rng: &mut ChaCha8Rng, img: &mut RgbImage, mask: &mut GrayImage) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let max_len = 60.0f32.min((w.min(h) - 12.0) / 1.5);
    let len: f32 = rng.gen_range(20.0..=max_len);
    let width: f32 = rng.gen_range(1.0..=3.0);
    let (dx, dy) = unit_vector(rng);
    let bend: f32 = rng.gen_range(-0.2..=0.2) * len;
    let reach = len / 2.0 + bend.abs() + width + 2.0;
    let cx: f32 = rng.gen_range(reach..=w - reach);
    let cy: f32 = rng.gen_range(reach..=h - reach);
    let bright = rng.gen_bool(0.5);
    let strength: f32 = rng.gen_range(0.6..=0.95);
    let level: f32 = if bright {
        rng.gen_range(225.0..=255.0)
    } else {
        rng.gen_range(0.0..=35.0)
    };

    // Quadratic Bézier P0 -> P1 -> P2, its apex offset by `bend` perpendicular to it.
    let p0 = (cx - dx * len / 2.0, cy - dy * len / 2.0);
    let p2 = (cx + dx * len / 2.0, cy + dy * len / 2.0);
    let p1 = (cx - dy * 2.0 * bend, cy + dx * 2.0 * bend);
    const SEGS: usize = 32;
    let pts: Vec<(f32, f32)> = (0..=SEGS)
        .map(|i| {
            let t = i as f32 / SEGS as f32;
            let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * (1.0 - t) * t, t * t);
            (
                a * p0.0 + b * p1.0 + c * p2.0,
                a * p0.1 + b * p1.1 + c * p2.1,
            )
        })
        .collect();

    let (x0, x1) = span(cx - reach, cx + reach, img.width());
    let (y0, y1) = span(cy - reach, cy + reach, img.height());
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            // Distance to the polyline and the curve parameter of the nearest point.
            let mut best = (f32::INFINITY, 0.0f32);
            for (i, w) in pts.windows(2).enumerate() {
                let (ax, ay) = w[0];
                let (ex, ey) = (w[1].0 - ax, w[1].1 - ay);
                let l2 = ex * ex + ey * ey;
                let s = if l2 > 0.0 {
                    (((px - ax) * ex + (py - ay) * ey) / l2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (ax + s * ex - px, ay + s * ey - py);
                let d2 = qx * qx + qy * qy;
                if d2 < best.0 {
                    best = (d2, (i as f32 + s) / SEGS as f32);
                }
            }
            let coverage = (width / 2.0 + 0.5 - best.0.sqrt()).clamp(0.0, 1.0);
            let taper = (best.1 * 6.0).min((1.0 - best.1) * 6.0).min(1.0);
            let a = coverage * taper * strength;
            if a > 0.0 {
                blend(img, x, y, [level; 3], a);
                if a >= MASK_ALPHA {
                    mask.put_pixel(x, y, Luma([255]));
                }
            }
        }
    }
}

/// A spot: a soft-edged elliptical blotch 6-16 px across, darker (burn mark, oil) or, when
/// `light` allows it, lighter (stress whitening) than the surface (each half the time).
fn paint_spot(rng: &mut ChaCha8Rng, img: &mut RgbImage, mask: &mut GrayImage, light: bool) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let diameter: f32 = rng.gen_range(6.0..=16.0);
    let a_ax = diameter / 2.0;
    let b_ax = a_ax * rng.gen_range(0.6..=1.0f32);
    let (ux, uy) = unit_vector(rng);
    let reach = a_ax + 3.0;
    let cx: f32 = rng.gen_range(reach..=w - reach);
    let cy: f32 = rng.gen_range(reach..=h - reach);
    // Drawn either way, so the other draws stay those of a dataset with light spots.
    let dark = rng.gen_bool(0.5) || !light;
    let strength: f32 = rng.gen_range(0.75..=1.0);

    let (x0, x1) = span(cx - reach, cx + reach, img.width());
    let (y0, y1) = span(cy - reach, cy + reach, img.height());
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let u = (dx * ux + dy * uy) / a_ax;
            let v = (-dx * uy + dy * ux) / b_ax;
            let r = (u * u + v * v).sqrt();
            let a = strength * (1.0 - smoothstep(0.45, 1.0, r));
            if a <= 0.0 {
                continue;
            }
            let px = img.get_pixel_mut(x, y);
            for k in 0..3 {
                let c = px.0[k] as f32;
                let nv = if dark {
                    c * (1.0 - 0.75 * a)
                } else {
                    c + (255.0 - c) * 0.7 * a
                };
                px.0[k] = nv.round().clamp(0.0, 255.0) as u8;
            }
            if a >= MASK_ALPHA {
                mask.put_pixel(x, y, Luma([255]));
            }
        }
    }
}

/// Bilinear sample of the photograph (clamped at the borders).
fn sample(photo: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = photo.dimensions();
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let p = |xx, yy| photo.get_pixel(xx, yy).0[k] as f32;
        let top = p(x0, y0) + fx * (p(x1, y0) - p(x0, y0));
        let bot = p(x0, y1) + fx * (p(x1, y1) - p(x0, y1));
        *o = top + fy * (bot - top);
    }
    out
}

/// `Re((z)^k * phase)` for unit complex numbers: cos(kθ + φ) without calling `cos`.
fn cos_k(z: (f32, f32), k: u32, phase: (f32, f32)) -> f32 {
    let mut p = (1.0f32, 0.0f32);
    for _ in 0..k {
        p = (p.0 * z.0 - p.1 * z.1, p.0 * z.1 + p.1 * z.0);
    }
    p.0 * phase.0 - p.1 * phase.1
}

/// Contamination: an irregular blob 14-28 px across of foreign material, made from a
/// different region of the photograph magnified 1.8-3x (coarser grain), with shifted
/// brightness and lower contrast, and a darker rim so its boundary is visible.
fn paint_contamination(
    rng: &mut ChaCha8Rng,
    photo: &RgbImage,
    img: &mut RgbImage,
    mask: &mut GrayImage,
) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let radius: f32 = rng.gen_range(7.0..=14.0);
    let (a2, a3): (f32, f32) = (rng.gen_range(0.0..=0.2), rng.gen_range(0.0..=0.15));
    let (ph2, ph3) = (unit_vector(rng), unit_vector(rng));
    let reach = radius * 1.35 + 2.0;
    let cx: f32 = rng.gen_range(reach..=w - reach);
    let cy: f32 = rng.gen_range(reach..=h - reach);
    let (pw, ph) = (photo.width() as f32, photo.height() as f32);
    let sx: f32 = rng.gen_range(0.0..pw);
    let sy: f32 = rng.gen_range(0.0..ph);
    let zoom: f32 = rng.gen_range(1.8..=3.0);
    let contrast: f32 = rng.gen_range(0.45..=0.8);
    let shift: f32 = rng.gen_range(30.0..=60.0) * if rng.gen_bool(0.5) { 1.0 } else { -1.0 };

    // Reference level: the tile's mean colour, so the shift reads as "different material".
    let n = (img.width() * img.height()) as f32;
    let mut mean = [0.0f32; 3];
    for p in img.pixels() {
        for (m, &v) in mean.iter_mut().zip(&p.0) {
            *m += v as f32 / n;
        }
    }

    let (x0, x1) = span(cx - reach, cx + reach, img.width());
    let (y0, y1) = span(cy - reach, cy + reach, img.height());
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let r = (dx * dx + dy * dy).sqrt();
            let z = if r > 1e-6 {
                (dx / r, dy / r)
            } else {
                (1.0, 0.0)
            };
            let edge = radius * (1.0 + a2 * cos_k(z, 2, ph2) + a3 * cos_k(z, 3, ph3));
            let coverage = (edge - r + 0.5).clamp(0.0, 1.0);
            if coverage <= 0.0 {
                continue;
            }
            let src = sample(photo, sx + dx / zoom, sy + dy / zoom);
            let rim = if edge - r < 1.5 { 0.7 } else { 1.0 };
            let mut target = [0.0f32; 3];
            for k in 0..3 {
                target[k] =
                    ((mean[k] + (src[k] - mean[k]) * contrast + shift) * rim).clamp(0.0, 255.0);
            }
            blend(img, x, y, target, coverage);
            if coverage >= 0.5 {
                mask.put_pixel(x, y, Luma([255]));
            }
        }
    }
}

/// Make `out` an empty directory, cleaning it only if an earlier build left its marker.
fn prepare_output(out: &Path) -> Result<(), SampleDataError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| SampleDataError::Io { path, error }
    };
    if out.exists() {
        if !out.is_dir() {
            return Err(SampleDataError::OutputNotEmpty {
                path: out.to_path_buf(),
            });
        }
        let empty = fs::read_dir(out).map_err(io_err(out))?.next().is_none();
        if !empty {
            if !out.join(MARKER).is_file() {
                return Err(SampleDataError::OutputNotEmpty {
                    path: out.to_path_buf(),
                });
            }
            for sub in ["train", "test", "ground_truth"] {
                let p = out.join(sub);
                if p.exists() {
                    fs::remove_dir_all(&p).map_err(io_err(&p))?;
                }
            }
        }
    }
    fs::create_dir_all(out).map_err(io_err(out))?;
    Ok(())
}

/// Build the dataset described in the module docs from the photograph `texture` into
/// `out`. `out` must be missing, empty, or an earlier output of this function (which is
/// then replaced). Same photograph and spec give byte-identical files.
pub fn build_surface_dataset(
    texture: &Path,
    out: &Path,
    spec: &SampleSpec,
) -> Result<SampleSummary, SampleDataError> {
    let tile = spec.tile;
    if !(MIN_TILE..=4096).contains(&tile) {
        return Err(SampleDataError::InvalidSpec(format!(
            "tile must be between {MIN_TILE} and 4096 px, got {tile}"
        )));
    }
    if spec.train_good == 0 {
        return Err(SampleDataError::InvalidSpec(
            "train_good must be at least 1".into(),
        ));
    }
    let photo = imageio::load_rgb(texture)?;
    let (w, h) = photo.dimensions();
    let split = split_row(h, tile);
    if w < tile || split < tile {
        return Err(SampleDataError::TextureTooSmall {
            path: texture.to_path_buf(),
            width: w,
            height: h,
            tile,
        });
    }

    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut taken = HashSet::new();
    let train = draw_crops(
        &mut rng,
        spec.train_good,
        w,
        (0, split),
        tile,
        (texture, "train"),
        &mut taken,
    )?;
    let n_test = spec.test_good + spec.test_defect * DEFECT_TYPES.len();
    let test = draw_crops(
        &mut rng,
        n_test,
        w,
        (split, h),
        tile,
        (texture, "test"),
        &mut taken,
    )?;
    let (mut train, mut test) = (train.into_iter(), test.into_iter());
    let mut next = |_: &mut ChaCha8Rng, split: Split| {
        let c = match split {
            Split::Train => train.next(),
            Split::Test => test.next(),
        };
        cut(&photo, c.expect("one crop drawn per image"), tile)
    };
    let marker = format!(
        "cdo-inspect sample dataset\ntexture = {}\ntile = {tile}\ntrain_good = {}\ntest_good = {}\ntest_defect_per_type = {}\nseed = {}\n",
        file_name(texture),
        spec.train_good,
        spec.test_good,
        spec.test_defect,
        spec.seed
    );
    let counts = (spec.train_good, spec.test_good, spec.test_defect);
    let defects = Defects { min_px: 0, light_spots: true };
    let images = write_dataset(out, counts, defects, &photo, &mut rng, &mut next, &marker)?;
    Ok(SampleSummary {
        root: out.to_path_buf(),
        size: (tile, tile),
        images,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes a dataset into `out` (prepared by [`prepare_output`]): `counts` = (good
/// training images, good test images, defective test images per type), each image from
/// `next` (which may draw from `rng`), the defects painted with `rng` (the contamination
/// from elsewhere in `photo`; a defect under `defects.min_px` mask pixels is drawn again),
/// then the marker with `marker`'s text.
fn write_dataset(
    out: &Path,
    (train_good, test_good, test_defect): (usize, usize, usize),
    Defects { min_px: min_defect_px, light_spots }: Defects,
    photo: &RgbImage,
    rng: &mut ChaCha8Rng,
    next: &mut dyn FnMut(&mut ChaCha8Rng, Split) -> RgbImage,
    marker: &str,
) -> Result<Vec<SampleImage>, SampleDataError> {
    prepare_output(out)?;
    let mkdir = |p: PathBuf| -> Result<PathBuf, SampleDataError> {
        fs::create_dir_all(&p).map_err(|error| SampleDataError::Io {
            path: p.clone(),
            error,
        })?;
        Ok(p)
    };
    let mut images = Vec::new();
    for (split, n) in [(Split::Train, train_good), (Split::Test, test_good)] {
        let sub = if split == Split::Train { "train" } else { "test" };
        let dir = mkdir(out.join(sub).join("good"))?;
        for i in 0..n {
            let path = dir.join(format!("{i:03}.png"));
            imageio::save_png_atomic(&path, &next(rng, split))?;
            images.push(SampleImage {
                path,
                split,
                label: "good".into(),
                mask: None,
                defect_pixels: 0,
            });
        }
    }

    for defect in DEFECT_TYPES {
        if test_defect == 0 {
            break;
        }
        let dir = mkdir(out.join("test").join(defect))?;
        let gt_dir = mkdir(out.join("ground_truth").join(defect))?;
        for i in 0..test_defect {
            let frame = next(rng, Split::Test);
            // Painted again (another draw) until the defect is at least `min_defect_px`.
            let mut draws = 0;
            let (img, mask, defect_pixels) = loop {
                draws += 1;
                if draws > MAX_DRAWS {
                    return Err(SampleDataError::InvalidSpec(format!(
                        "no {defect} of at least {min_defect_px} px in {MAX_DRAWS} draws; ask for smaller defects"
                    )));
                }
                let mut img = frame.clone();
                let mut mask = GrayImage::new(img.width(), img.height());
                match defect {
                    "scratch" => paint_scratch(rng, &mut img, &mut mask),
                    "spot" => paint_spot(rng, &mut img, &mut mask, light_spots),
                    _ => paint_contamination(rng, photo, &mut img, &mut mask),
                }
                let n = mask.pixels().filter(|p| p.0[0] == 255).count();
                if n >= min_defect_px {
                    break (img, mask, n);
                }
            };
            let path = dir.join(format!("{i:03}.png"));
            let mask_path = gt_dir.join(format!("{i:03}_mask.png"));
            imageio::save_png_atomic(&path, &img)?;
            imageio::save_gray_png_atomic(&mask_path, &mask)?;
            images.push(SampleImage {
                path,
                split: Split::Test,
                label: defect.into(),
                mask: Some(mask_path),
                defect_pixels,
            });
        }
    }

    // Written last: a directory with the marker is a complete build and may be replaced.
    let marker_path = out.join(MARKER);
    fs::write(&marker_path, marker).map_err(|error| SampleDataError::Io {
        path: marker_path,
        error,
    })?;
    Ok(images)
}

/// What [`build_line_dataset`] makes: frames of one part as a station's camera sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSpec {
    /// Frame size in pixels, cut at the photograph's native resolution.
    pub width: u32,
    pub height: u32,
    /// The part's play in its fixture: each frame is cut this many pixels or fewer off
    /// the photograph's centre, in x and in y.
    pub jitter: u32,
    /// Good frames in `train/good`, `test/good`; defective frames per defect type.
    pub train_good: usize,
    pub test_good: usize,
    pub test_defect: usize,
    /// The smallest defect painted, in mask pixels (a station's specification names the
    /// smallest defect it must find; smaller draws are painted again).
    pub min_defect_px: usize,
    /// Spots lighter than the surface too (stress whitening), not only darker ones (burn
    /// marks, oil). On the brick photograph a light spot looks like its white mortar.
    pub light_spots: bool,
    pub seed: u64,
}

/// Camera noise of a line frame: grey levels added to each pixel, a sum of three uniform
/// draws in [-2, 2] (standard deviation 2, no transcendental function, so the files are
/// bit-reproducible everywhere).
const LINE_NOISE: f32 = 2.0;
/// The light's variation from frame to frame: a gain in [1 - x, 1 + x].
const LINE_GAIN: f32 = 0.04;

/// One frame of the line: the part (the photograph's centre) moved by up to `jitter`
/// pixels, under a light level and with camera noise of its own.
fn line_frame(rng: &mut ChaCha8Rng, photo: &RgbImage, spec: &LineSpec) -> RgbImage {
    let (pw, ph) = photo.dimensions();
    let j = spec.jitter as i64;
    let dx = rng.gen_range(-j..=j);
    let dy = rng.gen_range(-j..=j);
    let x = ((pw - spec.width) / 2) as i64 + dx;
    let y = ((ph - spec.height) / 2) as i64 + dy;
    let mut f = imageops::crop_imm(photo, x as u32, y as u32, spec.width, spec.height).to_image();
    let gain: f32 = rng.gen_range(1.0 - LINE_GAIN..=1.0 + LINE_GAIN);
    for p in f.pixels_mut() {
        let noise: f32 = (0..3).map(|_| rng.gen_range(-LINE_NOISE..=LINE_NOISE)).sum();
        for c in p.0.iter_mut() {
            *c = (*c as f32 * gain + noise).round().clamp(0.0, 255.0) as u8;
        }
    }
    f
}

/// A production line's dataset in the layout of the module docs, for tiled inspection:
/// every frame (good or defective, training or test) is the same part, the centre of the
/// photograph `photo` at its native resolution, moved in its fixture by up to
/// `spec.jitter` pixels, under a light level and with camera noise of its own, as a
/// station's camera sees one part after another; the defective ones have one small
/// defect painted anywhere in the frame. Training and test frames are draws from this
/// one distribution, as on a line (they overlap in the part's area, as every part of a
/// line does). Same photograph and spec give byte-identical files.
pub fn build_line_dataset(
    photo_path: &Path,
    out: &Path,
    spec: &LineSpec,
) -> Result<SampleSummary, SampleDataError> {
    if spec.width.min(spec.height) < MIN_TILE || spec.width.max(spec.height) > 16384 {
        return Err(SampleDataError::InvalidSpec(format!(
            "frame sides must be between {MIN_TILE} and 16384 px, got {}x{}",
            spec.width, spec.height
        )));
    }
    if spec.train_good == 0 {
        return Err(SampleDataError::InvalidSpec(
            "train_good must be at least 1".into(),
        ));
    }
    let photo = imageio::load_rgb(photo_path)?;
    let (pw, ph) = photo.dimensions();
    let need = |side: u32| side as u64 + 2 * spec.jitter as u64;
    if need(spec.width) > pw as u64 || need(spec.height) > ph as u64 {
        return Err(SampleDataError::PhotoTooSmallForFrames {
            path: photo_path.to_path_buf(),
            width: pw,
            height: ph,
            frame: (spec.width, spec.height),
            jitter: spec.jitter,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut next = |rng: &mut ChaCha8Rng, _: Split| line_frame(rng, &photo, spec);
    let marker = format!(
        "cdo-inspect line dataset\nphoto = {}\nframe = {}x{}\njitter = {}\ntrain_good = {}\ntest_good = {}\ntest_defect_per_type = {}\nmin_defect_px = {}\nlight_spots = {}\nseed = {}\n",
        file_name(photo_path),
        spec.width,
        spec.height,
        spec.jitter,
        spec.train_good,
        spec.test_good,
        spec.test_defect,
        spec.min_defect_px,
        spec.light_spots,
        spec.seed
    );
    let counts = (spec.train_good, spec.test_good, spec.test_defect);
    let defects = Defects { min_px: spec.min_defect_px, light_spots: spec.light_spots };
    let images = write_dataset(out, counts, defects, &photo, &mut rng, &mut next, &marker)?;
    Ok(SampleSummary {
        root: out.to_path_buf(),
        size: (spec.width, spec.height),
        images,
    })
}

/// How the defects of a dataset are painted.
#[derive(Debug, Clone, Copy)]
struct Defects {
    /// The smallest defect, in mask pixels (smaller draws are painted again).
    min_px: usize,
    /// Spots lighter than the surface as well as darker ones.
    light_spots: bool,
}

/// The categories [`build_benchmark_dataset`] writes: (name, photograph in the directory
/// `scripts/fetch-sample-images.sh` fills). Gravel and grass are the two stationary,
/// isotropic textures among the photographs, so every crop and rotation of them is a
/// plausible good surface; brick is seen in perspective (brick size changes from the top
/// training band to the bottom test band), which would make good test tiles look
/// anomalous. Sorted by name, as the evaluation lists categories.
pub const BENCHMARK_TEXTURES: [(&str, &str); 2] =
    [("grass", "grass.png"), ("gravel", "gravel.png")];

/// Write a small two-category MVTec-AD dataset under `out_root` from real photographs in
/// `images_dir`, for the end-to-end benchmark test; returns the category names, sorted.
/// Same photographs and spec give byte-identical files. Both photographs are checked
/// before anything is written.
pub fn build_benchmark_dataset(
    images_dir: &Path,
    out_root: &Path,
    spec: &SampleSpec,
) -> Result<Vec<String>, SampleDataError> {
    for (_, file) in BENCHMARK_TEXTURES {
        let path = images_dir.join(file);
        fs::metadata(&path).map_err(|source| {
            SampleDataError::Image(ImageError::Unreadable { path, source })
        })?;
    }
    let mut names = Vec::new();
    for (name, file) in BENCHMARK_TEXTURES {
        build_surface_dataset(&images_dir.join(file), &out_root.join(name), spec)?;
        names.push(name.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use std::collections::BTreeMap;

    /// A synthetic grainy texture so the tests need no downloaded photograph.
    fn synthetic_texture(dir: &Path, name: &str, w: u32, h: u32, colour: bool) -> PathBuf {
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let noise: Vec<f32> = (0..w * h).map(|_| rng.gen_range(0.0..255.0)).collect();
        let at = |x: i64, y: i64| {
            let x = x.clamp(0, w as i64 - 1) as u32;
            let y = y.clamp(0, h as i64 - 1) as u32;
            noise[(y * w + x) as usize]
        };
        let img = RgbImage::from_fn(w, h, |x, y| {
            let (x, y) = (x as i64, y as i64);
            let v =
                (at(x, y) * 2.0 + at(x + 1, y) + at(x, y + 1) + at(x - 1, y) + at(x, y - 1)) / 6.0;
            if colour {
                Rgb([v as u8, (v * 0.8) as u8, (255.0 - v) as u8])
            } else {
                Rgb([v as u8; 3])
            }
        });
        let path = dir.join(name);
        img.save(&path).unwrap();
        path
    }

    fn small_spec(seed: u64) -> SampleSpec {
        SampleSpec {
            tile: 64,
            train_good: 5,
            test_good: 3,
            test_defect: 2,
            seed,
        }
    }

    /// Relative path -> bytes of every file under `root`.
    fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(
                        p.strip_prefix(root).unwrap().to_path_buf(),
                        fs::read(&p).unwrap(),
                    );
                }
            }
        }
        out
    }

    #[test]
    fn same_seed_gives_byte_identical_files() {
        let dir = tempfile::tempdir().unwrap();
        let tex = synthetic_texture(dir.path(), "tex.png", 200, 220, false);
        build_surface_dataset(&tex, &dir.path().join("a"), &small_spec(3)).unwrap();
        build_surface_dataset(&tex, &dir.path().join("b"), &small_spec(3)).unwrap();
        build_surface_dataset(&tex, &dir.path().join("c"), &small_spec(4)).unwrap();
        let (a, b, c) = (
            tree(&dir.path().join("a")),
            tree(&dir.path().join("b")),
            tree(&dir.path().join("c")),
        );
        assert_eq!(a.len(), 5 + 3 + 2 * 3 * 2 + 1);
        assert_eq!(a, b);
        assert_ne!(a, c, "a different seed must give different files");
    }

    #[test]
    fn counts_sizes_and_masks_match_spec() {
        let dir = tempfile::tempdir().unwrap();
        let tex = synthetic_texture(dir.path(), "tex.png", 200, 220, true);
        let out = dir.path().join("ds");
        let spec = small_spec(11);
        let s = build_surface_dataset(&tex, &out, &spec).unwrap();
        assert_eq!(s.count(Split::Train, "good"), spec.train_good);
        assert_eq!(s.count(Split::Test, "good"), spec.test_good);
        for d in DEFECT_TYPES {
            assert_eq!(s.count(Split::Test, d), spec.test_defect, "{d}");
            let on_disk = imageio::list_images(&out.join("test").join(d)).unwrap();
            assert_eq!(on_disk.len(), spec.test_defect);
        }
        assert_eq!(
            imageio::list_images(&out.join("train/good")).unwrap().len(),
            spec.train_good
        );
        assert!(!out.join("ground_truth/good").exists());
        for im in &s.images {
            let img = imageio::load_rgb(&im.path).unwrap();
            assert_eq!(
                img.dimensions(),
                (spec.tile, spec.tile),
                "{}",
                im.path.display()
            );
            if im.label == "good" {
                assert!(im.mask.is_none());
                assert_eq!(im.defect_pixels, 0);
            } else {
                let mp = im.mask.as_ref().unwrap();
                let name = mp.file_name().unwrap().to_string_lossy().into_owned();
                let stem = im.path.file_stem().unwrap().to_string_lossy().into_owned();
                assert_eq!(name, format!("{stem}_mask.png"));
                let mask = image::open(mp).unwrap();
                assert_eq!(mask.color(), image::ColorType::L8);
                let mask = mask.to_luma8();
                assert_eq!(mask.dimensions(), (spec.tile, spec.tile));
                assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
                let n = mask.pixels().filter(|p| p.0[0] == 255).count();
                assert!(n > 0, "empty mask for {}", im.path.display());
                assert_eq!(n, im.defect_pixels);
                assert!(
                    n < (spec.tile * spec.tile / 4) as usize,
                    "mask too large: {n}"
                );
            }
        }
    }

    #[test]
    fn mask_covers_the_painted_pixels() {
        // Paint on a flat tile so every change is visible, then check that the mask holds
        // the clearly changed pixels and that nothing changes far from the mask.
        let dir = tempfile::tempdir().unwrap();
        let tex = synthetic_texture(dir.path(), "tex.png", 200, 220, false);
        let photo = imageio::load_rgb(&tex).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        for round in 0..30 {
            let flat = RgbImage::from_pixel(96, 96, Rgb([128, 128, 128]));
            let mut img = flat.clone();
            let mut mask = GrayImage::new(96, 96);
            match round % 3 {
                0 => paint_scratch(&mut rng, &mut img, &mut mask),
                1 => paint_spot(&mut rng, &mut img, &mut mask, true),
                _ => paint_contamination(&mut rng, &photo, &mut img, &mut mask),
            }
            let near_mask = |x: u32, y: u32| {
                let (x0, y0) = (x.saturating_sub(2), y.saturating_sub(2));
                (y0..(y + 3).min(96))
                    .any(|yy| (x0..(x + 3).min(96)).any(|xx| mask.get_pixel(xx, yy).0[0] == 255))
            };
            let mut masked = 0;
            for (x, y, p) in img.enumerate_pixels() {
                let diff = (p.0[0] as i32 - 128).abs();
                if mask.get_pixel(x, y).0[0] == 255 {
                    masked += 1;
                } else if diff > 0 {
                    assert!(
                        near_mask(x, y),
                        "round {round}: change at ({x},{y}) far from mask"
                    );
                }
                if diff > 48 {
                    assert!(
                        near_mask(x, y),
                        "round {round}: strong change at ({x},{y}) not masked"
                    );
                }
            }
            assert!(masked > 0, "round {round}: empty mask");
        }
    }

    #[test]
    fn train_and_test_crops_are_disjoint() {
        let (w, h, tile) = (300u32, 260u32, 64u32);
        let split = split_row(h, tile);
        assert_eq!(split, 182);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut taken = HashSet::new();
        let p = Path::new("t.png");
        let train =
            draw_crops(&mut rng, 50, w, (0, split), tile, (p, "train"), &mut taken).unwrap();
        let test = draw_crops(&mut rng, 30, w, (split, h), tile, (p, "test"), &mut taken).unwrap();
        assert!(train.iter().all(|c| c.y + tile <= split));
        assert!(test.iter().all(|c| c.y >= split && c.y + tile <= h));
        assert_eq!(taken.len(), 80);
        // A short photograph still gets a full tile-high test band.
        assert_eq!(split_row(140, 64), 76);
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let tex = synthetic_texture(dir.path(), "small.png", 100, 100, false);
        let err = build_surface_dataset(&tex, &dir.path().join("o"), &small_spec(1)).unwrap_err();
        assert!(
            matches!(err, SampleDataError::TextureTooSmall { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("small.png"));

        let mut spec = small_spec(1);
        spec.tile = 8;
        let err = build_surface_dataset(&tex, &dir.path().join("o"), &spec).unwrap_err();
        assert!(matches!(err, SampleDataError::InvalidSpec(_)));

        let err = build_surface_dataset(
            &dir.path().join("missing.png"),
            &dir.path().join("o"),
            &small_spec(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing.png"));

        let big = synthetic_texture(dir.path(), "big.png", 130, 130, false);
        let mut spec = small_spec(1);
        spec.train_good = 100_000;
        let err = build_surface_dataset(&big, &dir.path().join("o"), &spec).unwrap_err();
        assert!(
            matches!(err, SampleDataError::NotEnoughCrops { .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_foreign_directory_and_replaces_own_build() {
        let dir = tempfile::tempdir().unwrap();
        let tex = synthetic_texture(dir.path(), "tex.png", 200, 220, false);
        let foreign = dir.path().join("precious");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("keep.txt"), b"x").unwrap();
        let err = build_surface_dataset(&tex, &foreign, &small_spec(1)).unwrap_err();
        assert!(matches!(err, SampleDataError::OutputNotEmpty { .. }));
        assert!(foreign.join("keep.txt").exists());

        let out = dir.path().join("ds");
        build_surface_dataset(&tex, &out, &small_spec(1)).unwrap();
        let mut spec = small_spec(1);
        spec.train_good = 2;
        spec.test_defect = 1;
        build_surface_dataset(&tex, &out, &spec).unwrap();
        assert_eq!(
            imageio::list_images(&out.join("train/good")).unwrap().len(),
            2
        );
        assert_eq!(
            imageio::list_images(&out.join("ground_truth/spot"))
                .unwrap()
                .len(),
            1
        );
    }

    fn line_spec(seed: u64) -> LineSpec {
        LineSpec {
            width: 96,
            height: 80,
            jitter: 12,
            train_good: 3,
            test_good: 2,
            test_defect: 2,
            min_defect_px: 0,
            light_spots: true,
            seed,
        }
    }

    #[test]
    fn line_frames_are_the_part_moved_within_the_jitter_under_varying_light() {
        let dir = tempfile::tempdir().unwrap();
        let tex = synthetic_texture(dir.path(), "tex.png", 140, 120, false);
        let photo = imageio::load_rgb(&tex).unwrap();
        let s = build_line_dataset(&tex, &dir.path().join("a"), &line_spec(3)).unwrap();
        assert_eq!(s.size, (96, 80));
        assert_eq!(s.images.len(), 3 + 2 + 3 * 2);
        assert_eq!(s.count(Split::Train, "good"), 3);
        let mut offsets = HashSet::new();
        for im in s.images.iter().filter(|i| i.label == "good") {
            let f = imageio::load_rgb(&im.path).unwrap();
            assert_eq!(f.dimensions(), (96, 80));
            // The crop of the photograph it was cut from: the offset (within the jitter
            // around the centre) where it differs least from the photograph.
            let centre = ((140 - 96) / 2i64, (120 - 80) / 2i64);
            let diff = |dx: i64, dy: i64| -> f64 {
                let (x0, y0) = ((centre.0 + dx) as u32, (centre.1 + dy) as u32);
                f.enumerate_pixels()
                    .map(|(x, y, p)| (p.0[0] as f64 - photo.get_pixel(x0 + x, y0 + y).0[0] as f64).abs())
                    .sum::<f64>()
                    / (96.0 * 80.0)
            };
            let best = (-12..=12)
                .flat_map(|dy| (-12..=12).map(move |dx| (dx, dy)))
                .min_by(|a, b| diff(a.0, a.1).total_cmp(&diff(b.0, b.1)))
                .unwrap();
            // Light (4 %) and noise (sd 2) keep it close, not equal.
            let d = diff(best.0, best.1);
            assert!(d > 0.5 && d < 8.0, "{}: mean difference {d}", im.path.display());
            offsets.insert(best);
        }
        assert!(offsets.len() > 1, "every frame at the same offset: {offsets:?}");
        // Same spec, same files; another seed, other files.
        build_line_dataset(&tex, &dir.path().join("b"), &line_spec(3)).unwrap();
        build_line_dataset(&tex, &dir.path().join("c"), &line_spec(4)).unwrap();
        let (a, b, c) = (tree(&dir.path().join("a")), tree(&dir.path().join("b")), tree(&dir.path().join("c")));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn line_defects_are_at_least_the_smallest_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let tex = synthetic_texture(dir.path(), "tex.png", 140, 120, true);
        let spec = LineSpec { min_defect_px: 100, test_defect: 4, ..line_spec(5) };
        let s = build_line_dataset(&tex, &dir.path().join("a"), &spec).unwrap();
        let defects: Vec<&SampleImage> = s.images.iter().filter(|i| i.label != "good").collect();
        assert_eq!(defects.len(), 12);
        assert!(defects.iter().all(|i| i.defect_pixels >= 100), "{defects:?}");
        // A size no spot reaches (they are at most 16 px across) is an error, not a hang.
        let spec = LineSpec { min_defect_px: 5000, ..line_spec(5) };
        let err = build_line_dataset(&tex, &dir.path().join("b"), &spec).unwrap_err();
        assert!(err.to_string().contains("of at least 5000 px"), "{err}");
        // A photograph too small for the frames and their play, named with both sizes.
        let spec = LineSpec { jitter: 30, ..line_spec(5) };
        let err = build_line_dataset(&tex, &dir.path().join("c"), &spec).unwrap_err();
        assert!(
            err.to_string().contains("tex.png is 140x120; 96x80 frames moved by up to 30 px need at least 156x140"),
            "{err}"
        );
    }

    #[test]
    fn line_spots_are_dark_only_when_light_ones_are_not_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let tex = synthetic_texture(dir.path(), "tex.png", 140, 120, true);
        let any = LineSpec { test_defect: 6, ..line_spec(5) };
        let dark = LineSpec { light_spots: false, ..any };
        build_line_dataset(&tex, &dir.path().join("any"), &any).unwrap();
        build_line_dataset(&tex, &dir.path().join("dark"), &dark).unwrap();
        // The same draws: every other file is the same, byte for byte.
        for sub in ["train/good", "test/good", "test/scratch", "test/contamination", "ground_truth"] {
            let (a, b) = (dir.path().join("any").join(sub), dir.path().join("dark").join(sub));
            assert_eq!(tree(&a), tree(&b), "{sub}");
        }
        // A light spot becomes a dark one in the same place; a dark one stays as it was.
        let (mut lighter, mut same) = (0, 0);
        for i in 0..6 {
            let name = format!("test/spot/{i:03}.png");
            let a = imageio::load_rgb(&dir.path().join("any").join(&name)).unwrap();
            let b = imageio::load_rgb(&dir.path().join("dark").join(&name)).unwrap();
            if a == b {
                same += 1;
                continue;
            }
            let sum = |im: &RgbImage| im.pixels().map(|p| p.0[0] as u64).sum::<u64>();
            assert!(sum(&b) < sum(&a), "{name}: the dark-only spot is not darker");
            lighter += 1;
        }
        assert!(lighter > 0 && same > 0, "light {lighter}, dark {same}: both kinds expected");
    }

    /// The real photographs fetched by `scripts/fetch-sample-images.sh` (the test script
    /// runs it first).
    #[test]
    fn real_texture_default_spec() {
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/images");
        let tex = images.join(DEFAULT_TEXTURE);
        assert!(
            tex.is_file(),
            "{} missing: run scripts/fetch-sample-images.sh",
            tex.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let s =
            build_surface_dataset(&tex, &dir.path().join("ds"), &SampleSpec::default()).unwrap();
        assert_eq!(s.images.len(), 32 + 8 + 3 * 4);
        assert!(s
            .images
            .iter()
            .filter(|i| i.label != "good")
            .all(|i| i.defect_pixels > 0));
        // Colour photographs work too.
        let coffee = images.join("coffee.png");
        {
            let s =
                build_surface_dataset(&coffee, &dir.path().join("coffee"), &small_spec(2)).unwrap();
            assert_eq!(s.images.len(), 5 + 3 + 6);
        }
    }
}
