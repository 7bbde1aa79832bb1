//! Pass or reject from an anomaly map: the image score against the threshold and,
//! optionally, a minimum defect area (the largest 8-connected region of map pixels above
//! a pixel threshold), so that a tiny speck a line tolerates does not reject the part.

use crate::config::{DecisionConfig, MinArea};
use crate::infer::verdict::rejects;
use crate::infer::{DefectRegion, FrameInspection};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Reject,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decider {
    pub threshold: f32,
    pub pixel_threshold: f32,
    pub min_area: Option<MinArea>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The largest region of map pixels above the pixel threshold, in the frame's source
    /// pixels (none when no pixel is above): what a minimum area is held against, and
    /// where an engineer looks first.
    pub largest: Option<DefectRegion>,
    /// Why a part was rejected without a normal decision (a non-finite score).
    pub fail_safe: Option<String>,
}

impl Decider {
    /// The station's settings over the bundle's calibrated threshold.
    pub fn new(cfg: &DecisionConfig, calibrated_threshold: f32) -> Self {
        let threshold = cfg.threshold.unwrap_or(calibrated_threshold);
        Decider {
            threshold,
            pixel_threshold: cfg.pixel_threshold.unwrap_or(threshold),
            min_area: cfg.min_area,
        }
    }

    /// Areas are measured on the inspection's map, in source pixels (see
    /// [`FrameInspection::largest_region`]).
    pub fn decide(&self, inspection: &FrameInspection) -> Decision {
        if !inspection.score.is_finite() {
            return Decision {
                verdict: Verdict::Reject,
                largest: None,
                fail_safe: Some(format!("image score is {}", inspection.score)),
            };
        }
        let over = rejects(inspection.score, self.threshold);
        let largest = inspection.largest_region(self.pixel_threshold);
        let area_px = largest.map_or(0.0, |r| r.area_px);
        let big_enough = match self.min_area {
            None => true,
            Some(MinArea::Pixels(px)) => area_px >= f64::from(px),
            Some(MinArea::SquareMillimetres { mm2, mm_per_px }) => area_px * mm_per_px * mm_per_px >= mm2,
        };
        let verdict = if over && big_enough { Verdict::Reject } else { Verdict::Pass };
        Decision { verdict, largest, fail_safe: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::geometry::Roi;

    /// A `size`-square map over a `frame`-square frame (whole-frame geometry).
    fn inspection(map: Vec<f32>, size: u32, frame: u32, score: f32) -> FrameInspection {
        let roi = Roi { x: 0, y: 0, w: frame, h: frame };
        FrameInspection { map, width: size, height: size, roi, scale: 1.0, tiles: 0, score, prepare_ms: 0.0 }
    }

    #[test]
    fn threshold_and_minimum_area_both_decide() {
        let cfg = DecisionConfig { threshold: None, min_area: None, pixel_threshold: None };
        let plain = Decider::new(&cfg, 0.5);
        let mut map = vec![0.0f32; 16];
        map[5] = 0.9; // one hot map pixel
        let hot = inspection(map.clone(), 4, 4, 0.6);
        assert_eq!(plain.decide(&hot).verdict, Verdict::Reject);
        assert_eq!(plain.decide(&inspection(map.clone(), 4, 4, 0.4)).verdict, Verdict::Pass);

        // One map pixel of a 4x4 map over a 40x40 frame covers 100 source pixels.
        let hot = inspection(map.clone(), 4, 40, 0.6);
        let area = |px| Decider::new(
            &DecisionConfig { min_area: Some(MinArea::Pixels(px)), ..cfg.clone() },
            0.5,
        );
        let d = area(100).decide(&hot);
        let region = DefectRegion { bbox: Roi { x: 10, y: 10, w: 10, h: 10 }, area_px: 100.0 };
        assert_eq!((d.verdict, d.largest), (Verdict::Reject, Some(region)));
        assert_eq!(area(101).decide(&hot).verdict, Verdict::Pass);
        let mm = Decider::new(
            &DecisionConfig {
                min_area: Some(MinArea::SquareMillimetres { mm2: 1.0, mm_per_px: 0.1 }),
                ..cfg.clone()
            },
            0.5,
        );
        // 100 px at 0.1 mm/px = 1 mm².
        assert_eq!(mm.decide(&hot).verdict, Verdict::Reject);
        // The largest region is reported without a minimum area too.
        assert_eq!(plain.decide(&hot).largest, Some(region));
    }

    #[test]
    fn a_tiled_map_measures_areas_at_its_scale() {
        // A 4x2 tiled map at scale 2 over an 8x4 ROI at (100, 10): each map pixel is 2x2.
        let mut map = vec![0.0f32; 8];
        map[1] = 0.9;
        map[2] = 0.9;
        let roi = Roi { x: 100, y: 10, w: 8, h: 4 };
        let i = FrameInspection { map, width: 4, height: 2, roi, scale: 2.0, tiles: 1, score: 0.9, prepare_ms: 0.0 };
        let cfg = DecisionConfig { threshold: None, min_area: Some(MinArea::Pixels(8)), pixel_threshold: None };
        let d = Decider::new(&cfg, 0.5).decide(&i);
        assert_eq!(d.verdict, Verdict::Reject);
        assert_eq!(d.largest, Some(DefectRegion { bbox: Roi { x: 102, y: 10, w: 4, h: 2 }, area_px: 8.0 }));
        let cfg = DecisionConfig { min_area: Some(MinArea::Pixels(9)), ..cfg };
        assert_eq!(Decider::new(&cfg, 0.5).decide(&i).verdict, Verdict::Pass);
    }

    #[test]
    fn a_nan_score_is_a_fail_safe_reject() {
        let cfg = DecisionConfig { threshold: Some(0.5), min_area: None, pixel_threshold: None };
        let d = Decider::new(&cfg, 9.0).decide(&inspection(vec![0.0; 4], 2, 2, f32::NAN));
        assert_eq!(d.verdict, Verdict::Reject);
        assert!(d.fail_safe.unwrap().contains("NaN"));
    }
}
