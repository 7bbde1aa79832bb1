//! Checks AUROC, F1-max and AU-PRO against the reference vectors in
//! `shared/testdata/metric_vectors.json` (scikit-learn and the official MVTec AD evaluation
//! code), and holds the memory/scale smoke test for a full category.

use cdo_inspect::eval::metrics::{auroc, f1_max, PixelMetrics};
use serde::Deserialize;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testdata/metric_vectors.json"
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

/// Peak resident memory of this process, from /proc (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A full MVTec AD category at native resolution: 100 images of 1024x1024. Prints time and
/// peak memory; run with `cargo test --release --test metric_vectors -- --ignored
/// --nocapture`. Uses the binary's allocator settings and lets the array grow by doubling
/// (no `with_capacity`), the worst case for memory.
#[test]
#[ignore = "scale smoke test: about 1 GB of memory and several seconds"]
fn scale_100_images_of_1024_squared() {
    const SIDE: usize = 1024;
    const IMAGES: usize = 100;
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
    let start = std::time::Instant::now();
    let mut metrics = PixelMetrics::new();
    let mut generate = std::time::Duration::ZERO;
    for i in 0..IMAGES {
        let t = std::time::Instant::now();
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
            // 24 random bits: mostly distinct scores, as smoothed maps have; defects score
            // higher on average.
            let noise = next() as f32 / (1u32 << 24) as f32;
            *s = if d { 0.3 + 0.7 * noise } else { noise * 0.8 };
        }
        generate += t.elapsed();
        metrics.add(&map, &mask, SIDE, SIDE).unwrap();
    }
    let added = start.elapsed();
    let pixels = metrics.pixels();
    let regions = metrics.regions();
    let t = std::time::Instant::now();
    let report = metrics.finish(&[0.3, 0.05, 1.0]);
    let finished = t.elapsed();
    println!(
        "{IMAGES} x {SIDE}^2 = {pixels} pixels, {regions} regions: add {:.2?} (of which \
         generating data {:.2?}), finish {:.2?}, total {:.2?}",
        added,
        generate,
        finished,
        start.elapsed()
    );
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM) {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS unavailable (no /proc/self/status)"),
    }
    println!("{report:?}");
    assert_eq!(pixels, IMAGES * SIDE * SIDE);
    assert!(report.auroc.is_some());
    assert!(report.au_pro.iter().all(|(_, v)| v.is_some()));
}
