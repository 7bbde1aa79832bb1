//! `cdo-inspect infer`: anomaly maps, scores and verdicts for image files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{check_detector, check_device, check_output_dir, ModelArgs, Problems};
use crate::imageio::{draw_rect_outline, load_rgb, save_png_atomic, write_f32_tiff, ROI_COLOUR};
use crate::infer::regions::outlined_overlay;
use crate::infer::verdict::rejects;
use crate::infer::Detector;

#[derive(Debug, clap::Args)]
pub struct InferArgs {
    /// Model bundle directory written by `train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Write `<stem>.tiff` (32-bit float anomaly map at the image's size, 0 outside the
    /// bundle's region of interest) and `<stem>_overlay.png` (heatmap over the image, the
    /// region of interest outlined in green and each region of map pixels above the
    /// threshold in white) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reject above this score instead of the bundle's calibrated threshold (an anomaly
    /// score: 0 to 2).
    #[arg(long, value_parser = crate::bundle::parse_threshold)]
    pub threshold: Option<f32>,
    /// Tiles run through the networks at a time, for a bundle that inspects frames in
    /// tiles (more: faster, more memory).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    #[command(flatten)]
    pub runtime: ModelArgs,
    /// Images to inspect.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub fn run(args: InferArgs) -> Result<i32> {
    // Every input, before any image is inspected: all problems in one report. An image
    // that exists but does not decode is not one of them: it is reported in its row.
    let mut problems = Problems::new("infer");
    let device = check_device(args.runtime.device, &mut problems);
    let detector = check_detector(
        &args.model,
        args.runtime.expert.as_deref(),
        &args.runtime.models_folder(),
        device.as_ref(),
        &mut problems,
    );
    let threshold = match (args.threshold, detector.as_ref().map(|d| &d.meta.calibration)) {
        (Some(t), _) => Some(t),
        (None, Some(Some(c))) => Some(c.threshold),
        (None, Some(None)) => {
            problems.push(format!(
                "bundle {} has no calibrated threshold (trained without held-out images): pass --threshold",
                args.model.display()
            ));
            None
        }
        (None, None) => None,
    };
    for path in &args.images {
        if let Err(e) = std::fs::metadata(path) {
            problems.push(format!("image {}: {e}", path.display()));
        }
    }
    if let Some(out) = &args.out {
        if let Err(e) = refuse_shared_stems(&args.images) {
            problems.push(e.to_string());
        }
        check_output_dir("--out", out, &mut problems);
    }
    problems.finish()?;
    let (Some(detector), Some(threshold)) = (detector, threshold) else {
        anyhow::bail!("infer: the model or its threshold was not checked");
    };
    let calibration = detector.meta.calibration.clone();
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    // Overlay colours: the calibrated normal mean is cold, the threshold is the middle.
    let lo = calibration
        .as_ref()
        .map(|c| c.mean)
        .unwrap_or(0.0)
        .min(threshold * 0.5);
    let hi = 2.0 * threshold - lo;

    let mut failures = 0;
    let mut rejects = 0;
    println!(
        "{:<40} {:>10} {:>8} verdict (threshold {threshold:.5})",
        "image", "score", "ms"
    );
    for path in &args.images {
        let started = std::time::Instant::now();
        match inspect_one(&detector, path, args.out.as_deref(), args.batch as usize, threshold, lo, hi) {
            Ok((score, reject)) => {
                rejects += reject as usize;
                let ms = started.elapsed().as_secs_f64() * 1e3;
                let verdict = if reject { "REJECT" } else { "pass" };
                println!("{:<40} {score:>10.5} {ms:>8.1} {verdict}", path.display());
            }
            Err(e) => {
                failures += 1;
                log::error!("{e:#}");
                println!("{:<40} {:>10} {:>8} ERROR", path.display(), "-", "-");
            }
        }
    }
    println!(
        "{} images: {} pass, {} reject, {} errors",
        args.images.len(),
        args.images.len() - rejects - failures,
        rejects,
        failures
    );
    Ok(if failures > 0 { 2 } else { 0 })
}

/// Maps are named after the image's stem: two inputs with one stem would overwrite each
/// other's files, so that is refused before any work is done.
fn refuse_shared_stems(images: &[PathBuf]) -> Result<()> {
    let mut seen: std::collections::HashMap<String, &PathBuf> = std::collections::HashMap::new();
    for path in images {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if let Some(first) = seen.insert(stem.clone(), path) {
            anyhow::bail!(
                "{} and {} share the name `{stem}`, so their maps would overwrite each other in --out; \
                 inspect them into separate --out folders",
                first.display(),
                path.display()
            );
        }
    }
    Ok(())
}

fn inspect_one(
    detector: &Detector,
    path: &Path,
    out: Option<&Path>,
    batch: usize,
    threshold: f32,
    lo: f32,
    hi: f32,
) -> Result<(f32, bool)> {
    let img = load_rgb(path)?;
    // The bundle's geometry: a tiled bundle inspects its region of interest at native
    // resolution; one without tiles resizes the whole frame, as `Detector::infer` does.
    let result = detector.inspect_frame(&img, batch)?;
    if let Some(out) = out {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let (w, h) = img.dimensions();
        let map = map_at_frame(&result.map_at_source(), result.roi, w, h);
        write_f32_tiff(&out.join(format!("{stem}.tiff")), &map, w, h)?;
        // The pixel threshold is the image threshold: each region of the map above it is
        // outlined, then the region of interest drawn over everything.
        let mut overlay = outlined_overlay(&img, &map, lo, hi, threshold)?;
        if detector.meta.geometry.roi.is_some() {
            let r = result.roi;
            draw_rect_outline(&mut overlay, r.x, r.y, r.w, r.h, ROI_COLOUR);
        }
        save_png_atomic(&out.join(format!("{stem}_overlay.png")), &overlay)?;
    }
    if !result.score.is_finite() {
        log::warn!("{}: score is {}, rejecting", path.display(), result.score);
    }
    Ok((result.score, rejects(result.score, threshold)))
}

/// The map of the region of interest (`roi.w * roi.h`, source pixels) placed in a
/// `width` x `height` frame, 0 outside the region. The region is the whole frame for a
/// bundle without one: the map itself.
fn map_at_frame(roi_map: &[f32], roi: crate::bundle::geometry::Roi, width: u32, height: u32) -> Vec<f32> {
    if (roi.x, roi.y, roi.w, roi.h) == (0, 0, width, height) {
        return roi_map.to_vec();
    }
    let (w, rw) = (width as usize, roi.w as usize);
    let mut map = vec![0.0f32; w * height as usize];
    for (r, src) in roi_map.chunks_exact(rw).enumerate() {
        let start = (roi.y as usize + r) * w + roi.x as usize;
        map[start..start + rw].copy_from_slice(src);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::geometry::Roi;

    #[test]
    fn the_roi_map_lands_in_the_frame_with_zeros_around_it() {
        let roi = Roi { x: 1, y: 2, w: 2, h: 1 };
        let m = map_at_frame(&[5.0, 6.0], roi, 4, 4);
        let mut want = vec![0.0f32; 16];
        want[2 * 4 + 1] = 5.0;
        want[2 * 4 + 2] = 6.0;
        assert_eq!(m, want);
        let whole = Roi { x: 0, y: 0, w: 2, h: 1 };
        assert_eq!(map_at_frame(&[5.0, 6.0], whole, 2, 1), vec![5.0, 6.0]);
    }
}
