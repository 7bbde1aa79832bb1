//! Checks AUROC, F1-max and AU-PRO against the reference vectors in
//! `tests/data/metric_vectors.json` (scikit-learn and the official MVTec AD evaluation
//! code), and the memory bound of the pixel metrics at native resolution.

use cdo_inspect::eval::metrics::{auroc, f1_max, PixelMetrics};
use serde::Deserialize;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/metric_vectors.json"
);
const TOL: f64 = 1e-6;

#[derive(Deserialize)]
struct AurocCase {
    name: String,
    labels: Vec<u8>,
    scores: Vec<f64>,
    auroc: f64,
    f1_max: f64,
    f1_threshold: f64,
}

#[derive(Deserialize)]
struct ProCase {
    limit: f64,
    au_pro: f64,
}

#[derive(Deserialize)]
struct Pro {
    shape: [usize; 3],
    maps: Vec<f64>,
    masks: Vec<u8>,
    cases: Vec<ProCase>,
    pixel_auroc: f64,
}

#[derive(Deserialize)]
struct Vectors {
    auroc_cases: Vec<AurocCase>,
    pro: Pro,
}

fn load() -> Vectors {
    let text =
        std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e}"));
    serde_json::from_str(&text).expect("metric_vectors.json parses")
}

fn assert_close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: got {got}, want {want} (diff {:e})",
        got - want
    );
}

#[test]
fn image_auroc_and_f1_max_match_sklearn() {
    let v = load();
    assert_eq!(v.auroc_cases.len(), 5);
    for c in &v.auroc_cases {
        let scores: Vec<f32> = c.scores.iter().map(|&s| s as f32).collect();
        let labels: Vec<bool> = c.labels.iter().map(|&l| l != 0).collect();
        let name = &c.name;
        let a = auroc(&scores, &labels).unwrap_or_else(|| panic!("{name}: auroc undefined"));
        assert_close(&format!("{name} auroc"), a, c.auroc);
        let f = f1_max(&scores, &labels).unwrap_or_else(|| panic!("{name}: f1 undefined"));
        assert_close(&format!("{name} f1_max"), f.f1, c.f1_max);
        assert_close(
            &format!("{name} f1_threshold"),
            f64::from(f.threshold),
            c.f1_threshold,
        );
    }
}

#[test]
fn signed_zero_threshold_is_kept_as_sklearn_reports_it() {
    // heavy_ties mixes -0.0 and 0.0; scikit-learn reports the earliest sample's value.
    let v = load();
    let c = v
        .auroc_cases
        .iter()
        .find(|c| c.name == "heavy_ties")
        .expect("heavy_ties case");
    let scores: Vec<f32> = c.scores.iter().map(|&s| s as f32).collect();
    let labels: Vec<bool> = c.labels.iter().map(|&l| l != 0).collect();
    let f = f1_max(&scores, &labels).unwrap();
    assert_eq!(f.threshold, 0.0);
    assert_eq!(
        f.threshold.is_sign_negative(),
        c.f1_threshold.is_sign_negative()
    );
}

#[test]
fn pixel_auroc_and_au_pro_match_mvtec_code() {
    let v = load();
    let p = &v.pro;
    let [n, h, w] = p.shape;
    assert_eq!(p.maps.len(), n * h * w);
    assert_eq!(p.masks.len(), n * h * w);
    let mut m = PixelMetrics::new();
    for i in 0..n {
        let range = i * h * w..(i + 1) * h * w;
        let map: Vec<f32> = p.maps[range.clone()].iter().map(|&s| s as f32).collect();
        let mask: Vec<bool> = p.masks[range].iter().map(|&l| l != 0).collect();
        m.add(&map, &mask, w, h).unwrap();
    }
    assert_eq!(m.pixels(), n * h * w);
    let limits: Vec<f64> = p.cases.iter().map(|c| c.limit).collect();
    assert_eq!(limits.len(), 3);
    let report = m.finish(&limits);
    assert_close("pixel auroc", report.auroc.unwrap(), p.pixel_auroc);
    assert!(report.f1.is_some());
    for (c, &(limit, value)) in p.cases.iter().zip(&report.au_pro) {
        assert_eq!(limit, c.limit);
        let value = value.unwrap_or_else(|| panic!("au_pro at {limit} undefined"));
        assert_close(&format!("au_pro at {limit}"), value, c.au_pro);
    }
}

/// A field of /proc/self/status in KiB (`VmRSS`, `VmHWM`; Linux only).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The memory bound of `PixelMetrics` at MVTec AD's native resolution: 8 bytes per pixel
/// (sized up front with `with_capacity`, as the benchmark's scoring does) and no second
/// copy in `finish`, on 8 images of 1024x1024 (8.4 M pixels, 64 MiB; a full category is
/// 100 such images, 800 MiB, the same code). The metrics are checked against their exact
/// values for the generated score distributions.
#[test]
fn native_1024_squared_images_stay_within_8_bytes_per_pixel() {
    const SIDE: usize = 1024;
    const IMAGES: usize = 8;
    cdo_inspect::platform::threads::tune_allocator();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40
    };
    let mut map = vec![0f32; SIDE * SIDE];
    let mut mask = vec![false; SIDE * SIDE];
    let rss_before = status_kib("VmRSS:");
    let mut metrics = PixelMetrics::with_capacity(IMAGES * SIDE * SIDE);
    for i in 0..IMAGES {
        mask.fill(false);
        // Two of three images have defects: a few rectangles each.
        if i % 3 != 0 {
            for _ in 0..1 + next() % 4 {
                let (x0, y0) = (next() as usize % SIDE, next() as usize % SIDE);
                let (rw, rh) = (8 + next() as usize % 120, 8 + next() as usize % 120);
                for y in y0..(y0 + rh).min(SIDE) {
                    mask[y * SIDE + x0..y * SIDE + (x0 + rw).min(SIDE)].fill(true);
                }
            }
        }
        for (s, &d) in map.iter_mut().zip(&mask) {
            // 24 random bits: mostly distinct scores, as smoothed maps have. Normal pixels
            // are uniform on [0, 0.8), defects uniform on [0.3, 1).
            let noise = next() as f32 / (1u32 << 24) as f32;
            *s = if d { 0.3 + 0.7 * noise } else { noise * 0.8 };
        }
        metrics.add(&map, &mask, SIDE, SIDE).unwrap();
    }
    let pixels = metrics.pixels();
    assert_eq!(pixels, IMAGES * SIDE * SIDE);
    assert!(metrics.regions() >= 5, "{metrics:?}");
    let report = metrics.finish(&[0.3]);
    if let (Some(before), Some(peak)) = (rss_before, status_kib("VmHWM:")) {
        let grown = (peak.saturating_sub(before) * 1024) as f64;
        // 8 bytes per pixel, 10% and 24 MiB for everything else (allocator, rayon's
        // threads, the flood-fill stack, an emulator's code cache). A second copy of the
        // array (16 bytes per pixel) does not fit.
        let bound = 8.0 * pixels as f64 * 1.1 + 24.0 * 1048576.0;
        assert!(
            grown <= bound,
            "peak RSS grew by {:.1} MiB for {pixels} pixels ({:.1} bytes per pixel; bound \
             {:.1} MiB)",
            grown / 1048576.0,
            grown / pixels as f64,
            bound / 1048576.0
        );
    }
    // AUROC = P(defect score > normal score) = 1 - (0.5^2 / 2) / (0.8 * 0.7) = 0.77679.
    // Every region is uniform on [0.3, 1), so its PRO at FPR f (threshold 0.8 - 0.8 f) is
    // (0.2 + 0.8 f) / 0.7, and AU-PRO up to 0.3 is (0.2 * 0.3 + 0.4 * 0.3^2) / 0.7 / 0.3.
    let auroc = report.auroc.unwrap();
    assert!((auroc - (1.0 - 0.125 / 0.56)).abs() < 0.01, "{report:?}");
    let au_pro = report.au_pro[0].1.unwrap();
    assert!((au_pro - 0.096 / 0.21).abs() < 0.01, "{report:?}");
}
