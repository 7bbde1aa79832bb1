//! Stitching the tiles' anomaly maps into one map of the region of interest, and the
//! smoothing, masking and image score on that map. Pure functions on slices (row-major
//! maps, network pixels): `Detector::inspect_frame` runs the networks and calls these.
//!
//! # Blending overlaps: the maximum
//!
//! Where tiles overlap, the stitched map takes the larger of their values, not their mean.
//! A tile sees a pixel near its border with little context (its features there come from
//! zero-padded convolutions), and the neighbour that holds the same pixel well inside sees
//! it properly; a defect that one view shows clearly must not be halved by another view
//! that shows it weakly, or a defect on a tile seam would score lower than the same defect
//! in a tile's middle. The maximum also never lowers a pixel below any tile's evidence, so
//! the score errs towards rejecting: for a fail-safe station a false reject costs a part,
//! a false pass ships a defect. The price is that border noise on normal parts is never
//! averaged away; the threshold calibrated on tiled good parts (the training's hold-out,
//! inspected the same way) absorbs it. The maximum propagates NaN (`f32::max` would drop
//! it): a tile whose map is not finite makes the score NaN, which the station rejects.
//!
//! # Masked smoothing
//!
//! With an ignore mask the stitched map is smoothed as a normalised convolution over the
//! inspected pixels only, `G*(m·M) / G*M`: an ignored region's discrepancy (a label, an
//! edge the mask hides) does not bleed into the inspected pixels next to it, and the
//! ignored region does not dilute a defect at the mask's border with zeros. Without a mask
//! it is the plain smoothing of the whole map, as for an untiled image.

use crate::model::postprocess::{gaussian_smooth_in_place, ScoreMethod};

/// The tiles of a `width` x `height` map (network pixels): their origins along each axis
/// (from [`super::geometry::tile_origins`]) and their side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileGrid {
    pub width: u32,
    pub height: u32,
    pub tile: u32,
    pub xs: Vec<u32>,
    pub ys: Vec<u32>,
}

impl TileGrid {
    /// The grid covering `width` x `height` with `tile`-pixel tiles sharing `overlap`;
    /// `None` when the map is smaller than a tile (or the tile degenerate).
    pub fn new(width: u32, height: u32, tile: u32, overlap: u32) -> Option<Self> {
        let xs = super::geometry::tile_origins(width, tile, overlap);
        let ys = super::geometry::tile_origins(height, tile, overlap);
        if xs.is_empty() || ys.is_empty() {
            return None;
        }
        Some(Self { width, height, tile, xs, ys })
    }

    /// Every tile's origin `(x, y)`, row by row: the order tiles are cut and their maps
    /// are given to [`Self::stitch`] in.
    pub fn origins(&self) -> Vec<(u32, u32)> {
        self.ys
            .iter()
            .flat_map(|&y| self.xs.iter().map(move |&x| (x, y)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.xs.len() * self.ys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stitched map: each tile's map (`tile * tile` values, in [`Self::origins`]'s
    /// order) placed at its origin, overlaps max-blended (see the module's doc).
    ///
    /// Panics when the number of maps or a map's length is not the grid's.
    pub fn stitch<M: AsRef<[f32]>>(&self, maps: &[M]) -> Vec<f32> {
        assert_eq!(maps.len(), self.len(), "one map per tile");
        let (w, t) = (self.width as usize, self.tile as usize);
        let mut out = vec![f32::NEG_INFINITY; w * self.height as usize];
        for ((x, y), map) in self.origins().into_iter().zip(maps) {
            let map = map.as_ref();
            assert_eq!(map.len(), t * t, "tile map size");
            let (x, y) = (x as usize, y as usize);
            for (r, src) in map.chunks_exact(t).enumerate() {
                let dst = &mut out[(y + r) * w + x..][..t];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = max_nan(*d, s);
                }
            }
        }
        // The origins cover the map (tile_origins' guarantee): no pixel left unset.
        debug_assert!(out.iter().all(|&v| v != f32::NEG_INFINITY));
        out
    }
}

/// The larger of two values, NaN if either is NaN.
#[inline]
fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// Smooths a stitched `width` x `height` map in place with a Gaussian of `sigma` network
/// pixels (the bundle's: the same physical smoothing as on the training images), zeroes the
/// ignored pixels, and returns the image score by `score` over the inspected pixels only.
///
/// `mask` (`width * height`, `true` = inspect) is the ignore mask at network resolution;
/// none = every pixel. With a mask the smoothing is the normalised convolution over the
/// inspected pixels (module doc). A mask with no inspected pixel gives a NaN score.
pub fn finish_stitched(
    map: &mut [f32],
    width: usize,
    height: usize,
    sigma: f32,
    mask: Option<&[bool]>,
    score: ScoreMethod,
) -> f32 {
    assert_eq!(map.len(), width * height, "map size");
    let Some(mask) = mask else {
        gaussian_smooth_in_place(map, height, width, sigma);
        return score.apply(map);
    };
    assert_eq!(mask.len(), map.len(), "mask size");
    let mut weight: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    for (v, &m) in map.iter_mut().zip(mask) {
        if !m {
            *v = 0.0;
        }
    }
    gaussian_smooth_in_place(map, height, width, sigma);
    gaussian_smooth_in_place(&mut weight, height, width, sigma);
    let mut inspected = Vec::with_capacity(map.len());
    for ((v, &m), &wt) in map.iter_mut().zip(mask).zip(&weight) {
        if m {
            // An inspected pixel weighs itself: wt > 0.
            *v /= wt;
            inspected.push(*v);
        } else {
            *v = 0.0;
        }
    }
    score.apply(&inspected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 112x64 map in 64-px tiles sharing 16: origins x 0 and 48, y 0.
    fn grid() -> TileGrid {
        TileGrid::new(112, 64, 64, 16).unwrap()
    }

    #[test]
    fn each_tile_lands_at_its_origin() {
        let g = TileGrid::new(160, 112, 64, 16).unwrap();
        assert_eq!((g.xs.clone(), g.ys.clone()), (vec![0, 48, 96], vec![0, 48]));
        assert_eq!(g.origins(), vec![(0, 0), (48, 0), (96, 0), (0, 48), (48, 48), (96, 48)]);
        // Tile i holds the value i everywhere: a pixel takes the largest tile over it.
        let maps: Vec<Vec<f32>> = (0..g.len()).map(|i| vec![i as f32; 64 * 64]).collect();
        let m = g.stitch(&maps);
        assert_eq!(m.len(), 160 * 112);
        let at = |x: usize, y: usize| m[y * 160 + x];
        assert_eq!(at(0, 0), 0.0);
        assert_eq!(at(47, 47), 0.0);
        assert_eq!(at(48, 0), 1.0); // tiles 0 and 1 overlap: max
        assert_eq!(at(100, 10), 2.0);
        assert_eq!(at(159, 111), 5.0);
        assert_eq!(at(10, 50), 3.0);
        // A tile's own pattern keeps its layout: value = the pixel's position in the tile.
        let maps: Vec<Vec<f32>> = (0..g.len()).map(|_| (0..64 * 64).map(|i| -(i as f32)).collect()).collect();
        let m = g.stitch(&maps);
        // (5, 7) is in tile (0, 0) only; (100, 60) in tiles (96, 0) and (96, 48).
        assert_eq!(m[7 * 160 + 5], -(7.0 * 64.0 + 5.0));
        assert_eq!(m[60 * 160 + 100], -(12.0 * 64.0 + 4.0));
    }

    #[test]
    fn spikes_at_a_corner_and_in_an_overlap_land_where_they_belong_max_blended() {
        let g = grid();
        let mut left = vec![0.1f32; 64 * 64];
        let mut right = vec![0.2f32; 64 * 64];
        // Near the left tile's bottom-right corner, inside the overlap (stitched x 48..64):
        // left sees it at (62, 61), right at (14, 61), weaker.
        left[61 * 64 + 62] = 0.9;
        right[61 * 64 + 14] = 0.5;
        // A spike only the right tile sees, at its top-left corner inside the overlap.
        right[0] = 0.7;
        // One near the right tile's far corner, outside the overlap.
        right[63 * 64 + 63] = 1.5;
        let m = g.stitch(&[left, right]);
        let at = |x: usize, y: usize| m[y * 112 + x];
        assert_eq!(at(62, 61), 0.9);
        assert_eq!(at(48, 0), 0.7);
        assert_eq!(at(111, 63), 1.5);
        // Elsewhere in the overlap the larger background (right's) wins; outside, each own.
        assert_eq!(at(50, 30), 0.2);
        assert_eq!(at(47, 30), 0.1);
        assert_eq!(at(64, 30), 0.2);
        let spikes: Vec<usize> = (0..m.len()).filter(|&i| m[i] > 0.2).collect();
        assert_eq!(spikes, vec![48, 61 * 112 + 62, 63 * 112 + 111]);
    }

    #[test]
    fn a_nan_in_any_tile_survives_the_blend() {
        let g = grid();
        let mut right = vec![0.2f32; 64 * 64];
        right[5 * 64 + 3] = f32::NAN;
        let m = g.stitch(&[vec![0.9f32; 64 * 64], right]);
        assert!(m[5 * 112 + 51].is_nan());
        let mut m2 = m.clone();
        assert!(finish_stitched(&mut m2, 112, 64, 0.0, None, ScoreMethod::default()).is_nan());
    }

    #[test]
    fn without_a_mask_it_is_the_plain_smoothing_and_score() {
        let mut m: Vec<f32> = (0..112 * 64).map(|i| ((i * 7919) % 101) as f32 / 500.0).collect();
        let mut want = m.clone();
        gaussian_smooth_in_place(&mut want, 64, 112, 4.0);
        let s = finish_stitched(&mut m, 112, 64, 4.0, None, ScoreMethod::default());
        assert_eq!(m, want);
        assert_eq!(s, ScoreMethod::default().apply(&want));
    }

    /// Inspect everything but the left third.
    fn mask(w: usize, h: usize) -> Vec<bool> {
        (0..w * h).map(|i| i % w >= w / 3).collect()
    }

    #[test]
    fn a_spike_in_the_ignored_region_is_zeroed_and_does_not_move_the_score() {
        let (w, h) = (112, 64);
        let mk = mask(w, h);
        let base: Vec<f32> = (0..w * h).map(|i| 0.1 + ((i * 7919) % 101) as f32 / 1000.0).collect();
        let mut spiked = base.clone();
        // A strong defect in the ignored region, two pixels from the inspected one.
        for y in 30..34 {
            for x in (w / 3 - 6)..(w / 3 - 2) {
                spiked[y * w + x] = 1.9;
            }
        }
        let (mut a, mut b) = (base.clone(), spiked);
        let sa = finish_stitched(&mut a, w, h, 4.0, Some(&mk), ScoreMethod::default());
        let sb = finish_stitched(&mut b, w, h, 4.0, Some(&mk), ScoreMethod::default());
        assert_eq!(sa, sb);
        assert_eq!(a, b);
        assert!(a.iter().zip(&mk).all(|(&v, &m)| m || v == 0.0));
        // The score is over the inspected pixels only: a constant map inside the mask
        // scores its constant, whatever is outside.
        let mut c: Vec<f32> = (0..w * h).map(|i| if mk[i] { 0.3 } else { 1.0 }).collect();
        let s = finish_stitched(&mut c, w, h, 4.0, Some(&mk), ScoreMethod::Max);
        assert!((s - 0.3).abs() < 1e-6, "{s}");
        // With the Max rule and no smoothing, the score is the largest inspected value,
        // though an ignored one is larger.
        let mut d = vec![0.0f32; w * h];
        d[10 * w] = 1.5; // ignored (x = 0)
        d[10 * w + w - 1] = 0.4; // inspected
        assert_eq!(finish_stitched(&mut d, w, h, 0.0, Some(&mk), ScoreMethod::Max), 0.4);
        assert_eq!(d[10 * w], 0.0);
        // Top 1% over the inspected pixels: k = floor(0.01 * 4800) = 48 of them.
        let n_in = mk.iter().filter(|&&m| m).count();
        assert_eq!(n_in, 64 * (112 - 37));
        let mut e: Vec<f32> = (0..w * h).map(|i| if mk[i] { 0.0 } else { 2.0 }).collect();
        for (_, v) in e.iter_mut().enumerate().filter(|(i, _)| mk[*i]).take(48) {
            *v = 1.0;
        }
        assert_eq!(finish_stitched(&mut e, w, h, 0.0, Some(&mk), ScoreMethod::TopFraction(0.01)), 1.0);
    }

    #[test]
    fn a_defect_at_the_mask_border_is_not_diluted_by_the_ignored_zeros() {
        let (w, h) = (96, 64);
        let mk = mask(w, h);
        let mut m = vec![0.0f32; w * h];
        // Uniform 0.5 over the inspected region: after masked smoothing still 0.5 there.
        for (v, &k) in m.iter_mut().zip(&mk) {
            if k {
                *v = 0.5;
            }
        }
        finish_stitched(&mut m, w, h, 4.0, Some(&mk), ScoreMethod::default());
        for (v, &k) in m.iter().zip(&mk) {
            if k {
                assert!((v - 0.5).abs() < 1e-5, "{v}");
            }
        }
    }
}
