//! Pass or reject from an anomaly map: the image score against the threshold and,
//! optionally, a minimum defect area (the largest 8-connected region of map pixels above
//! a pixel threshold), so that a tiny speck a line tolerates does not reject the part.

use crate::config::{DecisionConfig, MinArea};
use crate::infer::regions::largest_region;
use crate::infer::verdict::rejects;
use crate::infer::Inference;

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
    /// Largest defect region in source-image pixels, when a minimum area is configured.
    pub defect_area_px: Option<f64>,
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

    /// `source_w`×`source_h` is the captured frame's size, which areas are measured in.
    pub fn decide(&self, inf: &Inference, source_w: u32, source_h: u32) -> Decision {
        if !inf.score.is_finite() {
            return Decision {
                verdict: Verdict::Reject,
                defect_area_px: None,
                fail_safe: Some(format!("image score is {}", inf.score)),
            };
        }
        let over = rejects(inf.score, self.threshold);
        let Some(min_area) = self.min_area else {
            let verdict = if over { Verdict::Reject } else { Verdict::Pass };
            return Decision { verdict, defect_area_px: None, fail_safe: None };
        };
        let s = inf.size as usize;
        let largest = largest_region(&inf.map, s, s, self.pixel_threshold);
        // Each map pixel covers this many source pixels.
        let scale = source_w as f64 * source_h as f64 / (s * s) as f64;
        let area_px = largest as f64 * scale;
        let big_enough = match min_area {
            MinArea::Pixels(px) => area_px >= px as f64,
            MinArea::SquareMillimetres { mm2, mm_per_px } => {
                area_px * mm_per_px * mm_per_px >= mm2
            }
        };
        let verdict = if over && big_enough { Verdict::Reject } else { Verdict::Pass };
        Decision { verdict, defect_area_px: Some(area_px), fail_safe: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inference(map: Vec<f32>, size: u32, score: f32) -> Inference {
        Inference { map, size, score }
    }

    #[test]
    fn threshold_and_minimum_area_both_decide() {
        let cfg = DecisionConfig { threshold: None, min_area: None, pixel_threshold: None };
        let plain = Decider::new(&cfg, 0.5);
        let mut map = vec![0.0f32; 16];
        map[5] = 0.9; // one hot map pixel
        let hot = inference(map.clone(), 4, 0.6);
        assert_eq!(plain.decide(&hot, 4, 4).verdict, Verdict::Reject);
        assert_eq!(plain.decide(&inference(map.clone(), 4, 0.4), 4, 4).verdict, Verdict::Pass);

        // One map pixel of a 4x4 map over a 40x40 frame covers 100 source pixels.
        let area = |px| Decider::new(
            &DecisionConfig { min_area: Some(MinArea::Pixels(px)), ..cfg.clone() },
            0.5,
        );
        let d = area(100).decide(&hot, 40, 40);
        assert_eq!((d.verdict, d.defect_area_px), (Verdict::Reject, Some(100.0)));
        assert_eq!(area(101).decide(&hot, 40, 40).verdict, Verdict::Pass);
        let mm = Decider::new(
            &DecisionConfig {
                min_area: Some(MinArea::SquareMillimetres { mm2: 1.0, mm_per_px: 0.1 }),
                ..cfg.clone()
            },
            0.5,
        );
        // 100 px at 0.1 mm/px = 1 mm².
        assert_eq!(mm.decide(&hot, 40, 40).verdict, Verdict::Reject);
    }

    #[test]
    fn a_nan_score_is_a_fail_safe_reject() {
        let cfg = DecisionConfig { threshold: Some(0.5), min_area: None, pixel_threshold: None };
        let d = Decider::new(&cfg, 9.0).decide(&inference(vec![0.0; 4], 2, f32::NAN), 2, 2);
        assert_eq!(d.verdict, Verdict::Reject);
        assert!(d.fail_safe.unwrap().contains("NaN"));
    }
}
