//! Scoring a trained model on one benchmark category, image by image: the map is
//! upsampled to the ground truth's resolution (the MVTec protocol), streamed into the pixel
//! metrics, optionally exported as float TIFF for third-party scoring, and the image scores
//! are kept for the image-level metrics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::dataset::{load_mask, Category};
use super::metrics::{auroc, f1_max, F1Max, PixelMetrics};
use crate::imageio::{load_rgb, write_f32_tiff};
use crate::infer::Detector;

/// Tiles per batch through the pair for a tiled bundle.
const INSPECT_BATCH: usize = 8;

/// AU-PRO is integrated up to this false-positive rate (the MVTec AD convention).
pub const PRO_LIMIT: f64 = 0.3;

/// Per-category figures, as fractions (the tables print percent).
#[derive(Debug, Clone, Serialize)]
pub struct CategoryResult {
    pub category: String,
    pub test_images: usize,
    pub defective_images: usize,
    pub image_auroc: Option<f64>,
    pub image_f1_max: Option<f64>,
    pub image_f1_threshold: Option<f32>,
    pub pixel_auroc: Option<f64>,
    pub au_pro: Option<f64>,
    pub pixel_f1_max: Option<f64>,
    pub pixel_f1_threshold: Option<f32>,
    /// Seconds spent training (benchmark mode) and scoring.
    pub train_seconds: Option<f64>,
    pub score_seconds: f64,
}

/// One scored test image, for callers that want to report or plot them.
#[derive(Debug, Clone, Serialize)]
pub struct ImageScore {
    pub defect: String,
    pub id: String,
    pub score: f32,
}

/// Where a map is exported: `<dir>/<category>/test/<defect>/<id>.tiff`, the layout the
/// official MVTec AD evaluation scripts read.
pub fn map_path(dir: &Path, category: &str, defect: &str, id: &str) -> PathBuf {
    dir.join(category)
        .join("test")
        .join(defect)
        .join(format!("{id}.tiff"))
}

/// Scores every test image of `category`; `on_image` is called after each (progress).
pub fn score_category(
    detector: &Detector,
    category: &Category,
    maps_out: Option<&Path>,
    on_image: &mut dyn FnMut(usize, usize),
) -> Result<(CategoryResult, Vec<ImageScore>)> {
    let started = Instant::now();
    // Sized from the first image (benchmark images share a size), so the per-pixel array
    // is allocated once instead of growing by doubling: the peak memory of a category.
    let mut pixels: Option<PixelMetrics> = None;
    let mut scores = Vec::with_capacity(category.test.len());
    let mut labels = Vec::with_capacity(category.test.len());
    let mut image_scores = Vec::with_capacity(category.test.len());
    for (i, sample) in category.test.iter().enumerate() {
        let img = load_rgb(&sample.image)?;
        let (w, h) = img.dimensions();
        // The bundle's inspection geometry (tiles, ROI, mask): for an untiled bundle this
        // is exactly `infer` on the whole image.
        let result = detector
            .inspect_frame(&img, INSPECT_BATCH)
            .with_context(|| format!("inference failed on {}", sample.image.display()))?;
        drop(img);
        let mask = load_mask(sample, w, h)?;
        let map = result.map_in_frame(w, h);
        pixels
            .get_or_insert_with(|| PixelMetrics::with_capacity(map.len() * category.test.len()))
            .add(&map, &mask, w as usize, h as usize)
            .with_context(|| format!("scoring {}", sample.image.display()))?;
        if let Some(dir) = maps_out {
            let path = map_path(dir, &category.name, &sample.defect, &sample.id);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            write_f32_tiff(&path, &map, w, h)?;
        }
        scores.push(result.score);
        labels.push(sample.defect != "good");
        image_scores.push(ImageScore {
            defect: sample.defect.clone(),
            id: sample.id.clone(),
            score: result.score,
        });
        on_image(i + 1, category.test.len());
    }
    let report = pixels.unwrap_or_default().finish(&[PRO_LIMIT]);
    let image_f1: Option<F1Max> = f1_max(&scores, &labels);
    let pixel_f1 = report.f1;
    Ok((
        CategoryResult {
            category: category.name.clone(),
            test_images: scores.len(),
            defective_images: labels.iter().filter(|&&l| l).count(),
            image_auroc: auroc(&scores, &labels),
            image_f1_max: image_f1.as_ref().map(|f| f.f1),
            image_f1_threshold: image_f1.as_ref().map(|f| f.threshold),
            pixel_auroc: report.auroc,
            au_pro: report.au_pro.first().and_then(|(_, v)| *v),
            pixel_f1_max: pixel_f1.as_ref().map(|f| f.f1),
            pixel_f1_threshold: pixel_f1.as_ref().map(|f| f.threshold),
            train_seconds: None,
            score_seconds: started.elapsed().as_secs_f64(),
        },
        image_scores,
    ))
}
