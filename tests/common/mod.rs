//! Shared helpers for the integration tests: where the fetched real files are.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The EfficientNet-Lite0 ImageNet weights fetched by models/fetch.sh.
pub fn lite0_weights() -> PathBuf {
    cdo_inspect::tune_allocator();
    let p = root().join("models/efficientnet-lite0-57934424.pth");
    assert!(
        p.is_file(),
        "{} missing: run models/fetch.sh (the test script does)",
        p.display()
    );
    p
}

/// A real photograph fetched by scripts/fetch-sample-images.sh.
pub fn photo_path(name: &str) -> PathBuf {
    let p = root().join("testdata/images").join(name);
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-sample-images.sh (the test script does)",
        p.display()
    );
    p
}

pub fn photo(name: &str) -> image::RgbImage {
    image::open(photo_path(name))
        .expect("sample photo decodes")
        .to_rgb8()
}
