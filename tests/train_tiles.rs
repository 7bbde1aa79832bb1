//! `train --tile`: the inspection geometry decided at training and kept in the bundle,
//! training on tiles of real frames (cut from a real photograph), calibration on held-out
//! whole frames through `Detector::inspect_frame`, and the refusals and warnings around it.
//! Small settings (64 px tiles, one epoch) keep it to seconds.

mod common;

use std::path::Path;

use candle_core::Device;
use cdo_inspect::bundle::geometry::{Geometry, Tiles};
use cdo_inspect::bundle::Bundle;
use cdo_inspect::imageio::{list_images, load_rgb};
use cdo_inspect::infer::Detector;
use cdo_inspect::infer::geometry::tile_origins;

/// `n` frames of `w` x `h` cut from the brick photograph at different offsets.
fn frames(dir: &Path, n: u32, w: u32, h: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let photo = common::photo("brick.png");
    for i in 0..n {
        let x = (i * 37) % (photo.width() - w + 1);
        let y = (i * 53) % (photo.height() - h + 1);
        let mut f = image::imageops::crop_imm(&photo, x, y, w, h).to_image();
        if i % 2 == 1 {
            f = image::imageops::flip_horizontal(&f);
        }
        f.save(dir.join(format!("frame{i:02}.png"))).unwrap();
    }
}

fn train_cmd(data: &Path, out: &Path, config: &Path) -> std::process::Command {
    let mut c = common::cdo_verb("train");
    c.arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(config)
        .arg("--models-dir")
        .arg(common::models_dir())
        .args(["--epochs", "1", "--seed", "3"]);
    c
}

#[test]
fn tiled_training_records_the_geometry_counts_tiles_and_calibrates_on_whole_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("good");
    frames(&data, 6, 320, 256);
    let config = tmp.path().join("train.toml");
    // 6 frames, a third held out: 4 to train on, 2 to calibrate.
    std::fs::write(&config, "[train]\nholdout_fraction = 0.34\nlearning_rate = 3e-3\n").unwrap();
    let out = tmp.path().join("bundle");
    let o = train_cmd(&data, &out, &config)
        .args(["--tile", "64", "--overlap", "16"])
        .output()
        .unwrap();
    let text = common::output_text(&o);
    assert!(o.status.success(), "{text}");

    // The geometry is in model.toml.
    let meta = Bundle::load_meta(&out).unwrap().meta;
    assert_eq!(
        meta.geometry,
        Geometry { tile: Some(Tiles { size: 64, overlap: 16 }), ..Geometry::default() }
    );
    assert_eq!(meta.input_size, 64);
    let toml = std::fs::read_to_string(out.join(cdo_inspect::bundle::META_FILE)).unwrap();
    assert!(toml.contains("[geometry.tile]"), "{toml}");

    // The log counts tiles: every tile position of 4 frames, and as many shifted crops.
    let grid = tile_origins(320, 64, 16).len() * tile_origins(256, 64, 16).len();
    assert_eq!(grid, 35);
    let tiles = 4 * grid * 2;
    assert!(
        text.contains(&format!("4 training frames cut into {tiles} tiles of 64x64 per epoch")),
        "{text}"
    );
    assert!(text.contains("tiles of 4 frames this epoch"), "{text}");

    // The threshold is the frame rule over held-out frames scored by inspect_frame.
    let cal = meta.calibration.clone().expect("calibrated");
    assert_eq!(cal.count, 2);
    let detector = Detector::load(&out, None, &common::models_dir(), &Device::Cpu).unwrap();
    let mut frame_scores = Vec::new();
    for path in list_images(&data).unwrap() {
        let r = detector.inspect_frame(&load_rgb(&path).unwrap(), 8).unwrap();
        assert_eq!(r.tiles, grid);
        frame_scores.push(r.score);
    }
    let held: Vec<f32> = cal
        .scores
        .iter()
        .map(|&s| {
            *frame_scores
                .iter()
                .find(|&&f| (f - s).abs() <= 1e-5 * s.abs().max(1.0))
                .unwrap_or_else(|| panic!("calibration score {s} is no frame's: {frame_scores:?}"))
        })
        .collect();
    let n = held.len() as f64;
    let mean = held.iter().map(|&s| s as f64).sum::<f64>() / n;
    let std = (held.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let max = held.iter().cloned().fold(f32::MIN, f32::max);
    let want = ((mean + 3.0 * std) as f32).max(max);
    assert!((cal.threshold - want).abs() <= 1e-5 * want.abs().max(1.0), "{} vs {want}", cal.threshold);
    println!("tiled calibration: frame scores {frame_scores:?}, threshold {}", cal.threshold);
}

#[test]
fn an_roi_larger_than_the_frames_is_refused_before_training_with_both_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("good");
    frames(&data, 3, 320, 256);
    let config = tmp.path().join("train.toml");
    std::fs::write(&config, "[train]\n").unwrap();
    let out = tmp.path().join("bundle");
    let o = train_cmd(&data, &out, &config)
        .args(["--tile", "64", "--roi", "0,0,400,300"])
        .output()
        .unwrap();
    let text = common::output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("frame 320x256 is smaller than the bundle's region of interest 400x300 at (0, 0)"), "{text}");
    assert!(!text.contains("epoch 1/1"), "{text}");
    assert!(!out.exists());
}

#[test]
fn untiled_training_warns_when_it_shrinks_the_frames_more_than_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("good");
    frames(&data, 4, 512, 512);
    let config = tmp.path().join("train.toml");
    std::fs::write(&config, "[train]\nimage_size = 64\nholdout_fraction = 0.0\n").unwrap();
    let out = tmp.path().join("bundle");
    let o = train_cmd(&data, &out, &config).output().unwrap();
    let text = common::output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("training images are 512x512 and are resized to the 64x64 input, a 8.0x shrink: a defect narrower than ~16 source pixels will vanish")
            && text.contains("--tile 64"),
        "{text}"
    );
    assert!(Bundle::load_meta(&out).unwrap().meta.geometry.is_default());
}
