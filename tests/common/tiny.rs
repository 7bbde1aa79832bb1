//! A tiny bundle trained in-process once per test binary (64-px tiles of a real
//! photograph at native scale, 2 epochs: seconds), and copies of it with an inspection
//! geometry written into their `model.toml`. Its verdicts do not matter; its maps are
//! real.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use candle_core::Device;
use cdo_inspect::bundle::geometry::Geometry;
use cdo_inspect::bundle::META_FILE;
use cdo_inspect::sample_data::{build_surface_dataset, SampleSpec};
use cdo_inspect::train::{train, TrainConfig, TrainData, TrainJob};

/// The photograph the tiny model is trained on, and its tile (= input) size.
pub const PHOTO: &str = "brick.png";
pub const TILE: u32 = 64;

pub struct Model {
    pub dir: tempfile::TempDir,
    pub bundle: PathBuf,
}

pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let spec = SampleSpec { tile: TILE, train_good: 8, test_good: 1, test_defect: 1, seed: 3 };
        build_surface_dataset(&super::photo_path(PHOTO), &data, &spec).unwrap();
        let bundle = dir.path().join("model");
        let job = TrainJob {
            data: TrainData::Folder(data.join("train/good")),
            out: bundle.clone(),
            config: TrainConfig {
                image_size: TILE,
                epochs: 2,
                holdout_fraction: 0.25,
                seed: 5,
                ..Default::default()
            },
            models_dir: super::models_dir(),
            restart: false,
            device: Device::Cpu,
        };
        train(&job, &AtomicBool::new(false), &mut |_| {}).unwrap();
        Model { dir, bundle }
    })
}

/// A copy of the tiny bundle named `name` with `geometry` in its `model.toml` (made once;
/// a later call with the same name returns the same copy).
pub fn with_geometry(name: &str, geometry: &Geometry) -> PathBuf {
    let m = model();
    let out = m.dir.path().join(name);
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&m.bundle).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
    }
    #[derive(serde::Serialize)]
    struct G<'a> {
        geometry: &'a Geometry,
    }
    let text = std::fs::read_to_string(out.join(META_FILE)).unwrap();
    assert!(!text.contains("[geometry]"), "the trained bundle has no geometry");
    let table = toml::to_string(&G { geometry }).unwrap();
    std::fs::write(out.join(META_FILE), format!("{text}\n{table}")).unwrap();
    out
}
