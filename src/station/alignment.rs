//! Part alignment at the station: each frame against the bundle's reference frame
//! (`infer::align`), and the rule that turns an estimate into a move of the region of
//! interest or a fail-safe reject.

use std::path::Path;

use image::RgbImage;

use crate::bundle::BundleMeta;
use crate::config::AlignmentConfig;
use crate::imageio::load_rgb;
use crate::infer::align::{Alignment, Reference};

pub struct Aligner {
    reference: Reference,
    min_confidence: f32,
    max_shift_px: u32,
}

impl Aligner {
    /// The bundle's reference frame with the station's thresholds; None with alignment
    /// off. An error says what is missing or unreadable, naming the bundle and the file.
    pub fn load(bundle_dir: &Path, meta: &BundleMeta, cfg: &AlignmentConfig) -> Result<Option<Self>, String> {
        let AlignmentConfig { enabled, min_confidence, max_shift_px } = *cfg;
        if !enabled {
            return Ok(None);
        }
        let Some(name) = &meta.geometry.reference else {
            return Err(format!(
                "the bundle {} has no reference frame (alignment moves the region of interest: \
                 train the bundle with --roi, which saves one), or set alignment.enabled = false",
                bundle_dir.display()
            ));
        };
        let path = bundle_dir.join(name);
        let frame = load_rgb(&path).map_err(|e| format!("reference frame: {e}"))?;
        let reference = Reference::new(&frame).map_err(|e| format!("reference frame {}: {e}", path.display()))?;
        Ok(Some(Aligner { reference, min_confidence, max_shift_px }))
    }

    /// The reference frame's size: every frame must have it.
    pub fn frame_size(&self) -> (u32, u32) {
        self.reference.frame_size()
    }

    /// Where the part in `frame` is: the estimate (when one could be made) and either the
    /// move to apply to the region of interest, in whole source pixels, or why the part
    /// must be rejected.
    pub fn locate(&self, frame: &RgbImage) -> (Option<Alignment>, Result<(i32, i32), String>) {
        match self.reference.estimate(frame) {
            Ok(a) => (Some(a), judge(a, self.min_confidence, self.max_shift_px)),
            Err(e) => (None, Err(e.to_string())),
        }
    }
}

/// The move for an estimate, rounded to whole pixels, or why it cannot be trusted: a
/// confidence below `min_confidence`, or a move beyond `max_shift_px` on either axis.
pub fn judge(a: Alignment, min_confidence: f32, max_shift_px: u32) -> Result<(i32, i32), String> {
    // NaN fails this comparison too.
    if !(a.confidence >= min_confidence) {
        return Err(format!(
            "alignment confidence {:.2} is below alignment.min_confidence {min_confidence} \
             (part turned, damaged, missing, or not the part the model was trained on?)",
            a.confidence
        ));
    }
    let limit = max_shift_px as f32;
    if !(a.dx.abs() <= limit && a.dy.abs() <= limit) {
        return Err(format!(
            "part moved by ({:.1}, {:.1}) px, beyond alignment.max_shift_px {max_shift_px}: it is \
             not where the fixture holds it",
            a.dx, a.dy
        ));
    }
    Ok((a.dx.round() as i32, a.dy.round() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(dx: f32, dy: f32, confidence: f32) -> Alignment {
        Alignment { dx, dy, confidence }
    }

    #[test]
    fn a_confident_small_move_moves_the_roi_to_the_nearest_pixel() {
        assert_eq!(judge(at(3.4, -7.6, 0.9), 0.5, 64), Ok((3, -8)));
        assert_eq!(judge(at(-64.0, 64.0, 0.5), 0.5, 64), Ok((-64, 64)));
    }

    #[test]
    fn low_confidence_a_large_move_or_nan_is_refused_with_the_reason() {
        let e = judge(at(1.0, 1.0, 0.31), 0.5, 64).unwrap_err();
        assert!(e.starts_with("alignment confidence 0.31 is below alignment.min_confidence 0.5"), "{e}");
        let e = judge(at(70.2, 0.0, 0.9), 0.5, 64).unwrap_err();
        assert!(e.starts_with("part moved by (70.2, 0.0) px, beyond alignment.max_shift_px 64"), "{e}");
        assert!(judge(at(0.0, -64.5, 0.9), 0.5, 64).is_err());
        assert!(judge(at(f32::NAN, 0.0, 0.9), 0.5, 64).is_err());
        assert!(judge(at(0.0, 0.0, f32::NAN), 0.5, 64).is_err());
    }
}
