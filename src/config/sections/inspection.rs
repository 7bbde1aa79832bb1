//! How a part is judged: `[model]` (the bundle and expert weights it runs) and
//! `[decision]` (the thresholds its scores are held to).

use crate::bundle::Bundle;
use crate::config::reader::{Reader, Section, MM2, MM_PER_PX, PIXELS, SCORE};
use crate::config::schema::*;
use crate::platform::device::DeviceChoice;

pub(super) const MODEL_KEYS: &[&str] = &["bundle", "expert", "models_dir", "device"];
pub(super) const DECISION_KEYS: &[&str] = &[
    "threshold",
    "pixel_threshold",
    "min_area_px",
    "min_area_mm2",
    "mm_per_px",
];

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
        ModelConfig {
            bundle: bundle.unwrap_or_default(),
            expert,
            models_dir,
            device,
        }
    }

    pub(in crate::config) fn decision(&mut self, root: &Section) -> DecisionConfig {
        let s = self.section(root, "decision", DECISION_KEYS);
        let threshold = self.f32(&s, "threshold", SCORE);
        let pixel_threshold = self.f32(&s, "pixel_threshold", SCORE);
        let px = self.u32(&s, "min_area_px", PIXELS, 1);
        let mm2 = self.float(&s, "min_area_mm2", MM2, true);
        let mm_per_px = self.float(&s, "mm_per_px", MM_PER_PX, true);
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
