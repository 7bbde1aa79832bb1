//! The station inspects with the bundle's geometry: the real binary, a tiled bundle with a
//! region of interest (the tiny real-photograph model of `common::tiny`) and its reference
//! frame, part alignment on, the replay camera over real photographs.
//!
//! With the pixel threshold at 0 every inspected map pixel is "defective", so the largest
//! region is exactly the inspected region: its bounding box in the record shows where the
//! station put the region of interest (moved with the part), and its area that the map
//! covers the region at native resolution. The model's verdicts do not matter here.

mod common;

use std::path::Path;
use std::time::Duration;

use cdo_inspect::bundle::geometry::{Geometry, Roi, Tiles};
use cdo_inspect::imageio::ROI_COLOUR;
use common::tiny::{with_geometry, PHOTO, TILE};
use common::{station_log, wait_exit, whole_records};
use serde_json::Value;

/// The frames are 448 px crops of the photograph; the reference is the one at (32, 32).
const FRAME: u32 = 448;
const ROI: Roi = Roi { x: 96, y: 96, w: 256, h: 192 };

/// `FRAME`-square crop of `photo` at (x, y): the part as the camera sees it when it has
/// moved by (32 - x, 32 - y) from the reference.
fn crop(photo: &image::RgbImage, x: u32, y: u32, side: u32) -> image::RgbImage {
    image::imageops::crop_imm(photo, x, y, side, side).to_image()
}

fn aligned_bundle() -> std::path::PathBuf {
    let geometry = Geometry {
        roi: Some(ROI),
        tile: Some(Tiles { size: TILE, overlap: 16 }),
        reference: Some("reference.png".into()),
        ..Geometry::default()
    };
    let bundle = with_geometry("aligned", &geometry);
    crop(&common::photo(PHOTO), 32, 32, FRAME).save(bundle.join("reference.png")).unwrap();
    bundle
}

fn station_file(root: &Path, bundle: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"[station]
name = "geometry"
[model]
bundle = "{bundle}"
models_dir = "{models}"
batch = 6
[camera]
source = "replay"
[camera.replay]
folder = "line"
[trigger]
mode = "replay"
rate_hz = 4
[decision]
threshold = 2.0
pixel_threshold = 0.0
[alignment]
enabled = true
min_confidence = 0.5
max_shift_px = 20
[gpio]
backend = "simulated"
edge_log = "edges.jsonl"
[reject]
line = "gpiochip0:20"
delay_ms = 20000
[archive]
pass_every = 1
"#,
        bundle = bundle.display(),
        models = common::models_dir().display(),
    );
    let path = root.join("station.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn parts_are_inspected_in_the_region_of_interest_moved_with_the_part() {
    let bundle = aligned_bundle();
    let tmp = tempfile::tempdir().unwrap();
    let line = tmp.path().join("line");
    std::fs::create_dir_all(&line).unwrap();
    let photo = common::photo(PHOTO);
    let parts = [
        ("0001_home.png", crop(&photo, 32, 32, FRAME)),
        // Moved 7 px right and 5 px up.
        ("0002_moved.png", crop(&photo, 25, 37, FRAME)),
        // Another part altogether: nothing to align on.
        ("0003_other.png", crop(&common::photo("gravel.png"), 32, 32, FRAME)),
        // A frame of another size than the reference.
        ("0004_small.png", crop(&photo, 0, 0, 200)),
        // Moved 32 px right: beyond max_shift_px.
        ("0005_far.png", crop(&photo, 0, 32, FRAME)),
    ];
    for (name, img) in &parts {
        img.save(line.join(name)).unwrap();
    }
    let config = station_file(tmp.path(), &bundle);
    let check = common::cdo_verb("check-config").arg(&config).output().unwrap();
    let text = common::stdout(&check);
    assert_eq!(check.status.code(), Some(0), "{}", common::output_text(&check));
    assert!(
        text.contains("  inspect  the region 256x192 at (96, 96) in 64x64 px tiles (overlap 16) at 1 camera px per network px, reference frame reference.png, 6 tiles per batch"),
        "{text}"
    );
    assert!(text.contains("  align    on: minimum confidence 0.5, largest move 20 px"), "{text}");

    let mut child = common::cdo_verb("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut child, tmp.path(), Duration::from_secs(180)), 0, "{}", station_log(tmp.path()));
    let recs = whole_records(tmp.path());
    assert_eq!(recs.len(), parts.len(), "{}", station_log(tmp.path()));

    // The part at home: the region where the bundle says, every pixel of it inspected.
    let home = &recs[0];
    assert_eq!(home["fail_safe"], false, "{home}");
    assert_eq!(home["defect_bbox"], serde_json::json!([96, 96, 256, 192]), "{home}");
    assert_eq!(home["defect_area_px"], serde_json::json!(256.0 * 192.0), "{home}");
    let a = &home["alignment"];
    assert!(a["dx"].as_f64().unwrap().abs() < 0.5 && a["dy"].as_f64().unwrap().abs() < 0.5, "{home}");
    assert!(a["confidence"].as_f64().unwrap() > 0.8, "{home}");

    // The moved part: found 7 px right and 5 px up, the region moved with it.
    let moved = &recs[1];
    assert_eq!(moved["fail_safe"], false, "{moved}");
    let a = &moved["alignment"];
    assert!((a["dx"].as_f64().unwrap() - 7.0).abs() < 1.0, "{moved}");
    assert!((a["dy"].as_f64().unwrap() + 5.0).abs() < 1.0, "{moved}");
    assert_eq!(moved["defect_bbox"], serde_json::json!([103, 91, 256, 192]), "{moved}");
    // Its archived overlay outlines the moved region in green.
    let overlay = moved["archived"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).find(|p| p.ends_with("_overlay.png"));
    let overlay = image::open(overlay.expect("an overlay archived")).unwrap().to_rgb8();
    assert_eq!(overlay.dimensions(), (FRAME, FRAME));
    assert_eq!(overlay.get_pixel(103, 150).0, ROI_COLOUR);
    assert_eq!(overlay.get_pixel(103 + 255, 91 + 191).0, ROI_COLOUR);
    assert_ne!(overlay.get_pixel(96, 150).0, ROI_COLOUR, "the bundle's ROI, not moved, is not drawn");

    // The others are rejected fail-safe, each with its reason.
    let reason = |r: &Value| r["reason"].as_str().unwrap_or("").to_string();
    for r in &recs[2..] {
        assert_eq!((r["verdict"].as_str(), r["fail_safe"].as_bool()), (Some("reject"), Some(true)), "{r}");
        assert!(r["score"].is_null(), "not inspected: {r}");
    }
    assert!(reason(&recs[2]).starts_with("alignment confidence 0."), "{}", recs[2]);
    assert!(reason(&recs[2]).contains("below alignment.min_confidence 0.5"), "{}", recs[2]);
    assert!(
        reason(&recs[3]).contains("the frame is 200x200 px but the reference frame is 448x448 px"),
        "{}",
        recs[3]
    );
    // 32 px to within 0.2 px (0.18 px is the estimator's accuracy on real photographs).
    assert!(reason(&recs[4]).starts_with("part moved by (3"), "{}", recs[4]);
    assert!(reason(&recs[4]).contains(", 0.0) px, beyond alignment.max_shift_px 20"), "{}", recs[4]);
    assert!((recs[4]["alignment"]["dx"].as_f64().unwrap() - 32.0).abs() < 0.2, "{}", recs[4]);
}
