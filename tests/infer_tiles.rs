//! `infer` and `bench` with a tiled bundle: `infer --out` writes the map at the frame's
//! source size (zero outside the region of interest) and an overlay with the ROI's
//! rectangle and each region above the threshold outlined; a frame smaller than the ROI is
//! an error row naming both sizes; `bench --frame --tile` times whole frames, and its
//! stage-by-stage path scores exactly as `Detector::inspect_frame`.
//!
//! The bundle is the tiny one of `tests/tiling.rs` (64 px tiles of a photograph, 2 epochs),
//! with a geometry written into a copy of its `model.toml`.

mod common;

use common::tiny::{model, with_geometry, PHOTO, TILE};

use std::path::{Path, PathBuf};

use candle_core::Device;
use cdo_inspect::bench::{run_frame, Frame};
use cdo_inspect::bundle::geometry::{Geometry, Roi, Tiles};
use cdo_inspect::imageio::{load_rgb, read_f32_tiff, REGION_COLOUR, ROI_COLOUR};
use cdo_inspect::infer::regions::region_outlines;
use cdo_inspect::infer::tiling::TileGrid;
use cdo_inspect::infer::Detector;
use image::RgbImage;

const ROI: Roi = Roi { x: 16, y: 24, w: 256, h: 192 };
/// The painted defect, in frame pixels: 12x12 at (130, 110), inside the ROI.
const DEFECT: (u32, u32, u32) = (130, 110, 12);

fn tiled_bundle() -> PathBuf {
    with_geometry(
        "tiled",
        &Geometry {
            roi: Some(ROI),
            scale: 1.0,
            tile: Some(Tiles { size: TILE, overlap: 16 }),
            ..Geometry::default()
        },
    )
}

/// A 320x256 frame of the photograph with a bright magenta square painted in the ROI.
fn painted_frame() -> RgbImage {
    let photo = common::photo(PHOTO);
    let mut f = image::imageops::crop_imm(&photo, 0, 0, 320, 256).to_image();
    let (dx, dy, side) = DEFECT;
    for y in dy..dy + side {
        for x in dx..dx + side {
            f.put_pixel(x, y, image::Rgb([255, 0, 255]));
        }
    }
    f
}

fn infer(bundle: &Path, out: &Path, threshold: &str, images: &[&Path]) -> std::process::Output {
    common::cdo_verb("infer")
        .arg("--model")
        .arg(bundle)
        .arg("--out")
        .arg(out)
        .args(["--threshold", threshold, "--batch", "4"])
        .args(images)
        .env("CDO_MODELS_DIR", common::models_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

#[test]
fn infer_writes_the_map_at_source_size_and_outlines_the_roi_and_the_defect() {
    let bundle = tiled_bundle();
    let tmp = tempfile::tempdir().unwrap();
    let frame = painted_frame();
    let path = tmp.path().join("part.png");
    frame.save(&path).unwrap();

    // First pass with the highest threshold: nothing outlined; the map itself.
    let o = infer(&bundle, &tmp.path().join("a"), "2", &[&path]);
    assert_eq!(o.status.code(), Some(0), "{}", common::output_text(&o));
    let (map, w, h) = read_f32_tiff(&tmp.path().join("a/part.tiff")).unwrap();
    assert_eq!((w, h), (320, 256));
    let inside = |x: u32, y: u32| x >= ROI.x && x < ROI.x + ROI.w && y >= ROI.y && y < ROI.y + ROI.h;
    for y in 0..h {
        for x in 0..w {
            let v = map[(y * w + x) as usize];
            if inside(x, y) {
                assert!(v.is_finite() && v > 0.0, "({x}, {y}) = {v}");
            } else {
                assert_eq!(v, 0.0, "({x}, {y}) outside the ROI");
            }
        }
    }
    // The same map as the detector's, placed at the ROI.
    let d = Detector::load(&bundle, None, &common::models_dir(), &Device::Cpu).unwrap();
    let i = d.inspect_frame(&frame, 4).unwrap();
    assert_eq!((i.tiles, i.roi), (20, ROI));
    let src = i.map_at_source();
    let worst = (0..src.len())
        .map(|k| {
            let (x, y) = (k as u32 % ROI.w + ROI.x, k as u32 / ROI.w + ROI.y);
            (src[k] - map[(y * w + x) as usize]).abs()
        })
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "TIFF vs inspect_frame: {worst}");

    // Second pass with a threshold just under the map's peak near the defect: the region
    // holding that peak is outlined there.
    let (dx, dy, side) = DEFECT;
    let (cx, cy) = (dx + side / 2, dy + side / 2);
    let near = |x: u32, y: u32| x.abs_diff(cx) <= 16 && y.abs_diff(cy) <= 16;
    let peak = (0..map.len())
        .filter(|&k| near(k as u32 % w, k as u32 / w))
        .map(|k| map[k])
        .fold(f32::MIN, f32::max);
    let threshold = format!("{}", peak - 1e-4);
    let o = infer(&bundle, &tmp.path().join("b"), &threshold, &[&path]);
    assert_eq!(o.status.code(), Some(0), "{}", common::output_text(&o));
    let (map, _, _) = read_f32_tiff(&tmp.path().join("b/part.tiff")).unwrap();
    let overlay = load_rgb(&tmp.path().join("b/part_overlay.png")).unwrap();
    assert_eq!(overlay.dimensions(), (320, 256));
    // The ROI's rectangle: every border pixel in its colour.
    let on_border = |x: u32, y: u32| {
        inside(x, y) && (x == ROI.x || y == ROI.y || x == ROI.x + ROI.w - 1 || y == ROI.y + ROI.h - 1)
    };
    for y in 0..h {
        for x in 0..w {
            if on_border(x, y) {
                assert_eq!(overlay.get_pixel(x, y).0, ROI_COLOUR, "ROI border ({x}, {y})");
            }
        }
    }
    // Each region above the threshold outlined (the ROI's border drawn over it).
    let t: f32 = threshold.parse().unwrap();
    let outline = region_outlines(&map, w as usize, h as usize, t);
    assert!(!outline.is_empty());
    for &k in &outline {
        let (x, y) = (k as u32 % w, k as u32 / w);
        if !on_border(x, y) {
            assert_eq!(overlay.get_pixel(x, y).0, REGION_COLOUR, "outline ({x}, {y})");
        }
    }
    let around_defect = outline
        .iter()
        .filter(|&&k| near(k as u32 % w, k as u32 / w))
        .count();
    assert!(around_defect > 0, "no outline near the defect at ({cx}, {cy})");
    // Below the threshold and off the ROI's border, no pixel is outlined in white by us:
    // the heatmap never blends to pure white.
    let white = overlay
        .enumerate_pixels()
        .filter(|(x, y, p)| p.0 == REGION_COLOUR && !on_border(*x, *y))
        .count();
    assert_eq!(white, outline.iter().filter(|&&k| !on_border(k as u32 % w, k as u32 / w)).count());
}

#[test]
fn a_frame_smaller_than_the_roi_is_an_error_row_naming_both_sizes() {
    let bundle = tiled_bundle();
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.png");
    painted_frame().save(&good).unwrap();
    let small = tmp.path().join("small.png");
    image::imageops::crop_imm(&painted_frame(), 0, 0, 200, 150).to_image().save(&small).unwrap();
    let o = infer(&bundle, &tmp.path().join("maps"), "1", &[&good, &small]);
    assert_eq!(o.status.code(), Some(2), "{}", common::output_text(&o));
    let out = common::stdout(&o);
    let row = out.lines().find(|l| l.contains("small.png")).unwrap();
    assert!(row.ends_with("ERROR"), "{out}");
    assert!(out.contains("2 images: ") && out.contains("1 errors"), "{out}");
    let err = common::stderr(&o);
    assert!(
        err.contains("frame 200x150 is smaller than the bundle's region of interest 256x192 at (16, 24) (it needs a frame of at least 272x216)"),
        "{err}"
    );
    assert!(tmp.path().join("maps/good.tiff").is_file());
    assert!(!tmp.path().join("maps/small.tiff").exists());
}

#[test]
fn the_bench_stage_path_scores_exactly_as_inspect_frame() {
    let frame = painted_frame();
    let mut bytes = Vec::new();
    frame
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    let f = Frame { bytes, source: "painted".into() };
    for bundle in [tiled_bundle(), model().bundle.clone()] {
        let d = Detector::load(&bundle, None, &common::models_dir(), &Device::Cpu).unwrap();
        let want = d.inspect_frame(&frame, 3).unwrap();
        let run = run_frame(&d, &f, 3, 0, 1).unwrap();
        assert_eq!(run.tiles, want.tiles);
        assert_eq!((run.map_width, run.map_height), (want.width, want.height));
        assert_eq!(run.score.to_bits(), want.score.to_bits(), "{} vs {}", run.score, want.score);
    }
}

#[test]
fn bench_frame_with_tiles_reports_tiles_per_frame_and_the_share_outside_the_networks() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let o = common::cdo_verb("bench")
        .args(["--frame", "320x256", "--tile", "64", "--overlap", "16"])
        .args(["--iterations", "3", "--train-iterations", "0", "--json"])
        .arg(&json)
        .env("CDO_MODELS_DIR", common::models_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs");
    assert!(o.status.success(), "{}", common::output_text(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["input_size"], 64);
    assert_eq!((r["frame"]["width"].as_u64(), r["frame"]["height"].as_u64()), (Some(320), Some(256)));
    let f = &r["frame_run"];
    let grid = TileGrid::new(320, 256, 64, 16).unwrap();
    assert_eq!(f["tiles"].as_u64(), Some(grid.len() as u64));
    assert_eq!((f["map_width"].as_u64(), f["map_height"].as_u64()), (Some(320), Some(256)));
    let share = f["outside_networks_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{share}");
    let ms = f["ms_per_frame"].as_f64().unwrap();
    let tps = f["tiles_per_s"].as_f64().unwrap();
    assert!(ms > 0.0 && (tps - grid.len() as f64 * 1e3 / ms).abs() < 1e-6 * tps);
    let names: Vec<&str> = f["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(names, cdo_inspect::bench::FRAME_STAGES);
    assert!(f["tiled_over_images"].as_f64().unwrap() > 0.0);
    assert!(common::stdout(&o).contains("tiles/s"));
}
