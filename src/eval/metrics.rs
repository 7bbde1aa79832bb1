//! Exact evaluation metrics of the MVTec AD protocol: AUROC and F1-max (as scikit-learn's
//! `roc_auc_score` and `precision_recall_curve`) for image and pixel scores, and AU-PRO (as
//! the official MVTec AD evaluation code) for anomaly maps.
//!
//! Ties follow scikit-learn: scores are sorted descending and equal scores form one threshold,
//! so a curve only gets a point where the score changes. `-0.0` and `0.0` are equal scores.
//! Counts are integers and the ROC area is summed as an integer, so AUROC is exact up to the
//! final division.

use rayon::prelude::*;

use crate::infer::regions::grow_region;

/// Why a pixel-level image was refused. Nothing of a refused image is kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "image {image}: {width}x{height} needs {expected} values, but the map has {map_len} \
         and the mask {mask_len}"
    )]
    SizeMismatch {
        image: usize,
        width: usize,
        height: usize,
        /// `width * height`, or `usize::MAX` when that overflows.
        expected: usize,
        map_len: usize,
        mask_len: usize,
    },
    #[error("image {image}: anomaly map value {value} at (x {x}, y {y}) is not finite")]
    NonFinite {
        image: usize,
        x: usize,
        y: usize,
        value: f32,
    },
    #[error("image {image}: more than {max} defect regions in total", max = u32::MAX - 1)]
    TooManyRegions { image: usize },
}

/// The best F1 over all thresholds and the threshold reaching it (predictions are
/// `score >= threshold`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F1Max {
    pub f1: f64,
    pub threshold: f32,
}

/// Image-level AUROC. `None` when only one class is present, the lengths differ or a score
/// is not finite (scikit-learn refuses those inputs too).
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    sweep_slices(scores, labels)?.auroc()
}

/// Image-level F1-max as scikit-learn's `precision_recall_curve` followed by `argmax`:
/// the thresholds are the distinct scores; of equal maxima the lowest threshold wins (the
/// curve's thresholds ascend, and `argmax` takes the first). The threshold is the score as
/// given, of the earliest sample with that score (scikit-learn's stable sort keeps `-0.0`
/// if that came first). `None` when there is no positive label, the lengths differ or a
/// score is not finite.
pub fn f1_max(scores: &[f32], labels: &[bool]) -> Option<F1Max> {
    sweep_slices(scores, labels)?.f1()
}

/// Maps `-0.0` to `0.0`, so that a total order groups them as IEEE equality does.
fn unsigned_zero(x: f32) -> f32 {
    x + 0.0
}

fn sweep_slices(scores: &[f32], labels: &[bool]) -> Option<Sweep> {
    if scores.len() != labels.len() || scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let positives = labels.iter().filter(|&&l| l).count() as u64;
    let mut sweep = Sweep::new(positives, labels.len() as u64 - positives);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Stable, so that the first element of a tie group is the earliest sample.
    order.sort_by(|&a, &b| unsigned_zero(scores[b]).total_cmp(&unsigned_zero(scores[a])));
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut group_start = 0;
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last = order.get(k + 1).map_or(true, |&j| scores[j] != scores[i]);
        if last {
            sweep.step(tp, fp, scores[order[group_start]]);
            group_start = k + 1;
        }
    }
    Some(sweep)
}

/// ROC area and F1-max, fed with the cumulative counts after each distinct threshold, in
/// descending threshold order. Shared by the image and the pixel metrics.
struct Sweep {
    positives: u64,
    negatives: u64,
    tp: u64,
    fp: u64,
    /// Twice the ROC area in units of one true × one false positive: exact.
    area2: u128,
    /// (tp, fp, threshold) of the best F1 so far.
    best: Option<(u64, u64, f32)>,
}

impl Sweep {
    fn new(positives: u64, negatives: u64) -> Self {
        Self {
            positives,
            negatives,
            tp: 0,
            fp: 0,
            area2: 0,
            best: None,
        }
    }

    fn step(&mut self, tp: u64, fp: u64, threshold: f32) {
        self.area2 += u128::from(fp - self.fp) * u128::from(tp + self.tp);
        self.tp = tp;
        self.fp = fp;
        // F1 = 2tp / (P + tp + fp); compared as fractions so that equal F1s are equal and
        // the tie rule is exactly "lowest threshold" (`>=`, thresholds descend here).
        let p = u128::from(self.positives);
        let better = match self.best {
            None => true,
            Some((btp, bfp, _)) => {
                u128::from(tp) * (p + u128::from(btp) + u128::from(bfp))
                    >= u128::from(btp) * (p + u128::from(tp) + u128::from(fp))
            }
        };
        if better {
            self.best = Some((tp, fp, threshold));
        }
    }

    fn auroc(&self) -> Option<f64> {
        if self.positives == 0 || self.negatives == 0 {
            return None;
        }
        Some(self.area2 as f64 / (2.0 * self.positives as f64 * self.negatives as f64))
    }

    fn f1(&self) -> Option<F1Max> {
        if self.positives == 0 {
            return None;
        }
        let (tp, fp, threshold) = self.best?;
        Some(F1Max {
            f1: 2.0 * tp as f64 / (self.positives + tp + fp) as f64,
            threshold,
        })
    }
}

/// Region id of an anomaly-free pixel.
const NORMAL: u32 = 0;
/// Placeholder for a defect pixel not yet labelled, while one image is being labelled.
const UNLABELLED: u32 = u32::MAX;

/// Pixel-level metrics over many images, added one image at a time.
///
/// Memory: 8 bytes per pixel — one `(score, region id)` pair, id 0 for anomaly-free
/// pixels, ids unique across images — plus 8 bytes per defect region (its size). `finish`
/// sorts that array in place and makes one pass over it for AUROC, F1-max and every
/// AU-PRO limit, with no second copy and no stored curve, so a full MVTec AD category at
/// native resolution (100 × 1024² pixels) needs about 800 MB (up to 1 GiB of capacity,
/// less with [`PixelMetrics::with_capacity`]). Labelling an image also needs a transient
/// stack of up to 8 bytes per pixel of its largest defect region.
pub struct PixelMetrics {
    /// (score with `-0.0` made `0.0`, region id); id `k >= 1` is `region_sizes[k - 1]`.
    pixels: Vec<(f32, u32)>,
    region_sizes: Vec<u64>,
    normal: u64,
    images: usize,
    /// Flood-fill stack, kept to avoid one allocation per image.
    stack: Vec<usize>,
}

impl Default for PixelMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PixelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PixelMetrics")
            .field("images", &self.images)
            .field("pixels", &self.pixels.len())
            .field("regions", &self.region_sizes.len())
            .finish()
    }
}

/// Pixel AUROC, pixel F1-max and AU-PRO per requested limit. Each is `None` where it is
/// undefined: no defect pixel, no anomaly-free pixel, or a limit outside (0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct PixelReport {
    pub auroc: Option<f64>,
    pub f1: Option<F1Max>,
    /// (limit, normalised area under the PRO curve up to that FPR).
    pub au_pro: Vec<(f64, Option<f64>)>,
}

impl PixelMetrics {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Reserves room for `pixels` pixels in total, so that the array never grows by
    /// doubling (which can hold up to twice the needed memory).
    pub fn with_capacity(pixels: usize) -> Self {
        Self {
            pixels: Vec::with_capacity(pixels),
            region_sizes: Vec::new(),
            normal: 0,
            images: 0,
            stack: Vec::new(),
        }
    }

    /// One image: its anomaly map and ground-truth mask (true = defect), both `width *
    /// height` row-major. Connected defect regions (8-connectivity, as the official MVTec
    /// AD code) are labelled here, per image. A refused image leaves the metrics unchanged.
    pub fn add(
        &mut self,
        map: &[f32],
        mask: &[bool],
        width: usize,
        height: usize,
    ) -> Result<(), MetricsError> {
        let image = self.images;
        let expected = width.checked_mul(height);
        if expected != Some(map.len()) || expected != Some(mask.len()) {
            return Err(MetricsError::SizeMismatch {
                image,
                width,
                height,
                expected: expected.unwrap_or(usize::MAX),
                map_len: map.len(),
                mask_len: mask.len(),
            });
        }
        if let Some(i) = map.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::NonFinite {
                image,
                x: i % width,
                y: i / width,
                value: map[i],
            });
        }
        let start = self.pixels.len();
        let regions_before = self.region_sizes.len();
        self.pixels.extend(
            map.iter()
                .zip(mask)
                .map(|(&s, &d)| (unsigned_zero(s), if d { UNLABELLED } else { NORMAL })),
        );
        if let Err(e) = self.label_regions(start, width, height) {
            self.pixels.truncate(start);
            self.region_sizes.truncate(regions_before);
            return Err(e);
        }
        let defects = mask.iter().filter(|&&d| d).count();
        self.normal += (mask.len() - defects) as u64;
        self.images += 1;
        Ok(())
    }

    /// Replaces `UNLABELLED` in the image starting at `start` by new region ids, one per
    /// 8-connected defect region, by flood fill.
    fn label_regions(
        &mut self,
        start: usize,
        width: usize,
        height: usize,
    ) -> Result<(), MetricsError> {
        let img = &mut self.pixels[start..];
        for seed in 0..img.len() {
            if img[seed].1 != UNLABELLED {
                continue;
            }
            // Ids 1..UNLABELLED-1 are usable.
            let id = u32::try_from(self.region_sizes.len() + 1)
                .ok()
                .filter(|&id| id < UNLABELLED)
                .ok_or(MetricsError::TooManyRegions { image: self.images })?;
            img[seed].1 = id;
            let size = grow_region(seed, width, height, &mut self.stack, |q| {
                let joins = img[q].1 == UNLABELLED;
                if joins {
                    img[q].1 = id;
                }
                joins
            });
            self.region_sizes.push(size);
        }
        Ok(())
    }

    /// Pixels added so far.
    pub fn pixels(&self) -> usize {
        self.pixels.len()
    }

    /// Connected defect regions found so far, over all images.
    pub fn regions(&self) -> usize {
        self.region_sizes.len()
    }

    /// Sorts the pixels by score and computes every metric in one pass. AU-PRO follows the
    /// official MVTec AD code: at each distinct threshold FPR = anomaly-free pixels at or
    /// above it / all anomaly-free pixels and PRO = mean over regions of the region's share
    /// at or above it; the curve runs from (0, 0) to (1, 1) and is integrated by trapezoids
    /// up to the limit, interpolated linearly at the limit, and divided by the limit.
    pub fn finish(self, pro_limits: &[f64]) -> PixelReport {
        let PixelMetrics {
            mut pixels,
            region_sizes,
            normal,
            stack,
            ..
        } = self;
        drop(stack);
        pixels.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0));

        let total = pixels.len() as u64;
        let mut sweep = Sweep::new(total - normal, normal);
        let inverse_sizes: Vec<f64> = std::iter::once(0.0)
            .chain(region_sizes.iter().map(|&s| 1.0 / s as f64))
            .collect();
        let regions = region_sizes.len();
        let pro_defined = normal > 0 && regions > 0;
        let mut curves: Vec<ProIntegral> = pro_limits
            .iter()
            .map(|&limit| ProIntegral::new(limit))
            .collect();

        let (mut tp, mut fp) = (0u64, 0u64);
        // Sum over regions of (region pixels so far / region size), compensated (Neumaier)
        // because it adds up to 10^8 small terms.
        let (mut overlap, mut compensation) = (0.0f64, 0.0f64);
        for (k, &(score, region)) in pixels.iter().enumerate() {
            if region == NORMAL {
                fp += 1;
            } else {
                tp += 1;
                let term = inverse_sizes[region as usize];
                let t = overlap + term;
                compensation += if overlap.abs() >= term {
                    (overlap - t) + term
                } else {
                    (term - t) + overlap
                };
                overlap = t;
            }
            if pixels.get(k + 1).is_some_and(|next| next.0 == score) {
                continue;
            }
            sweep.step(tp, fp, score);
            if pro_defined {
                let fpr = fp as f64 / normal as f64;
                let pro = ((overlap + compensation) / regions as f64).min(1.0);
                for c in &mut curves {
                    c.point(fpr, pro);
                }
            }
        }
        let au_pro = curves
            .iter_mut()
            .map(|c| {
                c.point(1.0, 1.0);
                (c.limit, c.value().filter(|_| pro_defined))
            })
            .collect();
        PixelReport {
            auroc: sweep.auroc(),
            f1: sweep.f1(),
            au_pro,
        }
    }
}

/// The trapezoid area under one PRO curve up to `limit`, fed point by point in order of
/// rising FPR, starting from (0, 0).
struct ProIntegral {
    limit: f64,
    x: f64,
    y: f64,
    area: f64,
    /// The curve has passed the limit; later points do not count.
    done: bool,
}

impl ProIntegral {
    fn new(limit: f64) -> Self {
        Self {
            limit,
            x: 0.0,
            y: 0.0,
            area: 0.0,
            done: false,
        }
    }

    fn point(&mut self, x: f64, y: f64) {
        if self.done {
            return;
        }
        if x <= self.limit {
            self.area += 0.5 * (y + self.y) * (x - self.x);
            self.x = x;
            self.y = y;
        } else {
            // x > limit >= self.x, so the segment has width.
            let at_limit = self.y + (y - self.y) * (self.limit - self.x) / (x - self.x);
            self.area += 0.5 * (at_limit + self.y) * (self.limit - self.x);
            self.done = true;
        }
    }

    fn value(&self) -> Option<f64> {
        (self.limit > 0.0 && self.limit <= 1.0).then(|| self.area / self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn perfect_and_inverted_separation() {
        let scores = [0.1, 0.2, 0.8, 0.9];
        let labels = [false, false, true, true];
        assert_eq!(auroc(&scores, &labels), Some(1.0));
        let f1 = f1_max(&scores, &labels).unwrap();
        assert_eq!(f1.f1, 1.0);
        assert_eq!(f1.threshold, 0.8);
        let inverted = [true, true, false, false];
        assert_eq!(auroc(&scores, &inverted), Some(0.0));
        // Best is to flag everything: precision 1/2, recall 1.
        let f1 = f1_max(&scores, &inverted).unwrap();
        assert!(close(f1.f1, 2.0 / 3.0));
        assert_eq!(f1.threshold, 0.1);
    }

    #[test]
    fn one_class_or_bad_input_gives_none() {
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(auroc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(auroc(&[], &[]), None);
        assert_eq!(f1_max(&[0.1, 0.2], &[false, false]), None);
        // Only positives: F1 is defined (flag everything).
        assert_eq!(f1_max(&[0.1, 0.2], &[true, true]).unwrap().f1, 1.0);
        assert_eq!(auroc(&[0.1], &[true, false]), None);
        assert_eq!(auroc(&[f32::NAN, 0.2], &[true, false]), None);

        let mut m = PixelMetrics::new();
        m.add(&[0.1, 0.2, 0.3, 0.4], &[false; 4], 2, 2).unwrap();
        let r = m.finish(&[0.3]);
        assert_eq!(r.auroc, None);
        assert_eq!(r.f1, None);
        assert_eq!(r.au_pro, vec![(0.3, None)]);
    }

    #[test]
    fn signed_zeros_are_one_threshold() {
        let scores = [-0.0, 0.0, 1.0];
        let labels = [true, false, true];
        // Both zeros form one threshold: ROC (0, 0) → (0, 1/2) → (1, 1).
        assert_eq!(auroc(&scores, &labels), Some(0.75));
        let f1 = f1_max(&scores, &labels).unwrap();
        assert!(close(f1.f1, 0.8));
        assert!(
            f1.threshold.is_sign_negative(),
            "earliest sample's value, as sklearn"
        );
    }

    #[test]
    fn equal_f1_takes_the_lowest_threshold() {
        // At 0.9: tp 1, fp 0 → 2/3. At 0.5: tp 2, fp 2 → 2/3 as well.
        let scores = [0.9, 0.5, 0.5, 0.5];
        let labels = [true, true, false, false];
        let f1 = f1_max(&scores, &labels).unwrap();
        assert!(close(f1.f1, 2.0 / 3.0));
        assert_eq!(f1.threshold, 0.5);
    }

    #[test]
    fn regions_are_eight_connected_and_per_image() {
        // Two diagonal pixels are one region with 8-connectivity (4-connectivity: two).
        #[rustfmt::skip]
        let mask = [
            true,  false, false,
            false, true,  false,
            false, false, true,
        ];
        let map = [0.0; 9];
        let mut m = PixelMetrics::new();
        m.add(&map, &mask, 3, 3).unwrap();
        assert_eq!(m.regions(), 1);
        assert_eq!(m.region_sizes, vec![3]);
        // Not touching across rows' wrap-around: (2, 0) and (0, 1) are far apart.
        #[rustfmt::skip]
        let wrap = [
            false, false, true,
            true,  false, false,
        ];
        m.add(&[0.0; 6], &wrap, 3, 2).unwrap();
        assert_eq!(m.regions(), 3);
        assert_eq!(m.region_sizes, vec![3, 1, 1]);
        assert_eq!(m.pixels(), 15);
        let ids: Vec<u32> = m.pixels.iter().map(|p| p.1).collect();
        assert_eq!(ids, [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 2, 3, 0, 0]);
    }

    #[test]
    fn region_of_a_whole_image_and_of_one_pixel() {
        let mut m = PixelMetrics::new();
        m.add(&[0.5; 12], &[true; 12], 4, 3).unwrap();
        m.add(&[0.5], &[true], 1, 1).unwrap();
        m.add(&[], &[], 0, 7).unwrap();
        assert_eq!(m.region_sizes, vec![12, 1]);
    }

    #[test]
    fn size_mismatch_and_non_finite_are_refused_and_leave_nothing() {
        let mut m = PixelMetrics::new();
        m.add(&[0.1; 4], &[false; 4], 2, 2).unwrap();
        let e = m.add(&[0.1; 4], &[false; 3], 2, 2).unwrap_err();
        assert!(matches!(
            e,
            MetricsError::SizeMismatch {
                image: 1,
                expected: 4,
                map_len: 4,
                mask_len: 3,
                ..
            }
        ));
        let e = m.add(&[0.1; 4], &[false; 4], usize::MAX, 2).unwrap_err();
        assert!(matches!(
            e,
            MetricsError::SizeMismatch {
                image: 1,
                expected: usize::MAX,
                ..
            }
        ));
        let e = m
            .add(&[0.1, 0.2, f32::NAN, 0.3], &[true; 4], 2, 2)
            .unwrap_err();
        assert!(matches!(
            e,
            MetricsError::NonFinite {
                image: 1,
                x: 0,
                y: 1,
                ..
            }
        ));
        assert!(e.to_string().contains("image 1"), "{e}");
        let e = m.add(&[f32::INFINITY], &[true], 1, 1).unwrap_err();
        assert!(matches!(
            e,
            MetricsError::NonFinite {
                image: 1,
                x: 0,
                y: 0,
                ..
            }
        ));
        assert_eq!(m.pixels(), 4);
        assert_eq!(m.regions(), 0);
        assert_eq!(m.images, 1);
    }

    /// A fixed pseudo-random sequence, so the test needs no seeded RNG.
    fn lcg(n: usize, seed: u64) -> Vec<u64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s >> 33
            })
            .collect()
    }

    #[test]
    fn splitting_into_images_gives_the_flat_auroc_and_f1() {
        let r = lcg(600, 7);
        // Coarse scores for many ties; labels correlated with them.
        let scores: Vec<f32> = r.iter().map(|&v| (v % 17) as f32 / 4.0).collect();
        let labels: Vec<bool> = r.iter().map(|&v| (v % 17) + (v >> 8) % 9 > 12).collect();
        let flat_auc = auroc(&scores, &labels).unwrap();
        let flat_f1 = f1_max(&scores, &labels).unwrap();

        let mut m = PixelMetrics::new();
        for (s, l) in scores.chunks(60).zip(labels.chunks(60)) {
            m.add(s, l, 10, 6).unwrap();
        }
        let rep = m.finish(&[0.3]);
        assert!(close(rep.auroc.unwrap(), flat_auc));
        let f1 = rep.f1.unwrap();
        assert!(close(f1.f1, flat_f1.f1));
        assert_eq!(f1.threshold, flat_f1.threshold);
        assert!(rep.au_pro[0].1.is_some());
    }

    #[test]
    fn pro_of_a_perfect_map_is_one_and_limits_outside_are_none() {
        let map = [0.9, 0.8, 0.1, 0.2, 0.9, 0.3];
        let mask = [true, true, false, false, true, false];
        let mut m = PixelMetrics::new();
        m.add(&map, &mask, 3, 2).unwrap();
        let r = m.finish(&[0.3, 1.0, 0.0, 1.5, f64::NAN]);
        assert_eq!(r.auroc, Some(1.0));
        assert!(close(r.au_pro[0].1.unwrap(), 1.0));
        assert!(close(r.au_pro[1].1.unwrap(), 1.0));
        assert_eq!(r.au_pro[2].1, None);
        assert_eq!(r.au_pro[3].1, None);
        assert_eq!(r.au_pro[4].1, None);
    }

    #[test]
    fn pro_interpolates_at_the_limit() {
        // One region of 2 pixels, 4 normal pixels; thresholds 0.9 (1 region px), 0.5 (1
        // normal), 0.4 (other region px), 0.1 (3 normal).
        let map = [0.9, 0.4, 0.5, 0.1, 0.1, 0.1];
        let mask = [true, true, false, false, false, false];
        let mut m = PixelMetrics::new();
        m.add(&map, &mask, 6, 1).unwrap();
        let r = m.finish(&[0.1, 0.25, 0.5]);
        // Curve: (0,0) (0,.5) (.25,.5) (.25,1) (1,1) (1,1).
        assert!(close(r.au_pro[0].1.unwrap(), 0.5));
        assert!(close(r.au_pro[1].1.unwrap(), 0.5));
        assert!(close(r.au_pro[2].1.unwrap(), (0.125 + 0.25) / 0.5));
    }
}
