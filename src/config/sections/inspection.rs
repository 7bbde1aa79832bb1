//! How a part is judged: `[model]` (the bundle and expert weights it runs) and
//! `[decision]` (the thresholds its scores are held to).

use crate::bundle::{Bundle, MAX_SCORE};
use crate::config::reader::{Reader, Section, CONFIDENCE, MM2, MM_PER_PX, PIXELS, SCORE, TILES};
use crate::config::schema::*;
use crate::platform::device::DeviceChoice;

pub(super) const MODEL_KEYS: &[&str] = &["bundle", "expert", "models_dir", "device", "batch"];
pub(super) const ALIGNMENT_KEYS: &[&str] = &["enabled", "min_confidence", "max_shift_px"];

/// Tiles per batch through the networks: one to 64 (a 64-tile batch of 256 px tiles is
/// about 3 GB of activations on the CPU).
const BATCH: (u32, u32) = (1, 64);
/// The largest shift alignment may accept, in source pixels.
const MAX_SHIFT_PX: (u32, u32) = (1, 4096);
pub(super) const DECISION_KEYS: &[&str] = &[
    "threshold",
    "pixel_threshold",
    "min_area_px",
    "min_area_mm2",
    "mm_per_px",
];

/// A minimum defect area in camera pixels: at most a whole frame of the largest size.
const MIN_AREA_PX: (u32, u32) = (1, super::hardware::FRAME_SIDE.1 * super::hardware::FRAME_SIDE.1);
/// A camera's scale: 1 µm per pixel (a macro lens) to 10 mm per pixel (a whole bumper in
/// a few hundred pixels).
const MM_PER_PX_RANGE: (f64, f64) = (0.001, 10.0);
/// A minimum defect area in mm²: one pixel at the finest scale to a square metre.
const MIN_AREA_MM2: (f64, f64) = (0.000001, 1_000_000.0);

impl Reader<'_> {
    pub(in crate::config) fn model(&mut self, root: &Section) -> ModelConfig {
        let s = self.section(root, "model", MODEL_KEYS);
        let bundle = self.path(&s, "bundle");
        match &bundle {
            Some(dir) if self.check_files => {
                if let Err(e) = Bundle::load_meta(dir) {
                    self.err(&s, "bundle", e.to_string());
                }
            }
            Some(_) => {}
            None if !s.has("bundle") => self.err(
                &s,
                "bundle",
                "required: the model bundle folder (written by `cdo-inspect train`)".into(),
            ),
            None => {}
        }
        let expert = self.path(&s, "expert");
        if let Some(p) = &expert {
            self.check_file(&s, "expert", p);
        }
        let models_dir = self.path(&s, "models_dir");
        if let Some(p) = &models_dir {
            self.check_dir(&s, "models_dir", p);
        }
        let device = match self.choice(&s, "device", &["cpu", "cuda"]) {
            Some("cuda") => DeviceChoice::Cuda,
            _ => DeviceChoice::Cpu,
        };
        let batch = self.u32(&s, "batch", TILES, BATCH.0, BATCH.1).unwrap_or(8);
        ModelConfig {
            bundle: bundle.unwrap_or_default(),
            expert,
            models_dir,
            device,
            batch,
        }
    }

    pub(in crate::config) fn alignment(&mut self, root: &Section) -> AlignmentConfig {
        let s = self.section(root, "alignment", ALIGNMENT_KEYS);
        let d = AlignmentConfig::default();
        AlignmentConfig {
            enabled: self.boolean(&s, "enabled").unwrap_or(d.enabled),
            min_confidence: self.f32(&s, "min_confidence", CONFIDENCE, 0.0, 1.0).unwrap_or(d.min_confidence),
            max_shift_px: self
                .u32(&s, "max_shift_px", PIXELS, MAX_SHIFT_PX.0, MAX_SHIFT_PX.1)
                .unwrap_or(d.max_shift_px),
        }
    }

    /// `camera`: where a minimum area larger than the whole frame is caught.
    pub(in crate::config) fn decision(&mut self, root: &Section, camera: &CameraConfig) -> DecisionConfig {
        let s = self.section(root, "decision", DECISION_KEYS);
        // Scores and map values lie in [0, 2] (bundle::MAX_SCORE): a threshold outside
        // can never work (above 2 every part passes).
        let threshold = self.f32(&s, "threshold", SCORE, 0.0, MAX_SCORE);
        let pixel_threshold = self.f32(&s, "pixel_threshold", SCORE, 0.0, MAX_SCORE);
        let px = self.u32(&s, "min_area_px", PIXELS, MIN_AREA_PX.0, MIN_AREA_PX.1);
        let (lo, hi) = MIN_AREA_MM2;
        let mm2 = self.float(&s, "min_area_mm2", MM2, lo, hi);
        let (lo, hi) = MM_PER_PX_RANGE;
        let mm_per_px = self.float(&s, "mm_per_px", MM_PER_PX, lo, hi);
        if s.has("min_area_px") && s.has("min_area_mm2") {
            let message = "set only one of min_area_px and min_area_mm2".to_string();
            self.err(&s, "min_area_mm2", message);
        }
        if s.has("min_area_mm2") && !s.has("mm_per_px") {
            let line = self.line_of(&s, "min_area_mm2");
            let message = "required with min_area_mm2 (the camera's scale)".to_string();
            self.push(s.path("mm_per_px"), line, message);
        }
        let min_area = match (px, mm2, mm_per_px) {
            (Some(px), _, _) => Some(MinArea::Pixels(px)),
            (None, Some(mm2), Some(mm_per_px)) => {
                Some(MinArea::SquareMillimetres { mm2, mm_per_px })
            }
            _ => None,
        };
        // A V4L2 camera delivers exactly width x height (a replayed image has its own
        // size): no defect can be larger than the frame, so no part would be rejected.
        if camera.source == CameraSource::V4l2 {
            let (w, h) = (camera.width, camera.height);
            let frame_px = f64::from(w) * f64::from(h);
            match min_area {
                Some(MinArea::Pixels(px)) if f64::from(px) > frame_px => {
                    let message = format!(
                        "must be <= the camera's frame ({w}x{h} = {frame_px} px; got {px}): no part could be rejected"
                    );
                    self.err(&s, "min_area_px", message);
                }
                Some(MinArea::SquareMillimetres { mm2, mm_per_px }) if mm2 > frame_px * mm_per_px * mm_per_px => {
                    let frame_mm2 = frame_px * mm_per_px * mm_per_px;
                    let message = format!(
                        "must be <= the camera's frame ({w}x{h} px at {mm_per_px} mm/px = {frame_mm2} mm²; got {mm2}): no part could be rejected"
                    );
                    self.err(&s, "min_area_mm2", message);
                }
                _ => {}
            }
        }
        DecisionConfig {
            threshold,
            min_area,
            pixel_threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_cases, Expected, BASE};

    /// Each bad file with exactly the errors expected: (line, key, part of the message).
    #[test]
    fn bad_station_files_report_every_error_with_line_and_key() {
        let cases: &[(&str, String, Expected)] = &[
            (
                "both minimum areas, and mm² without a scale",
                format!("{BASE}[decision]\nmin_area_px = 40\nmin_area_mm2 = 0.5\n"),
                &[
                    (
                        Some(7),
                        "decision.min_area_mm2",
                        "set only one of min_area_px and min_area_mm2",
                    ),
                    (Some(7), "decision.mm_per_px", "required with min_area_mm2"),
                ],
            ),
        ];
        assert_cases(cases);
    }
}
