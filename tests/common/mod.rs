//! Shared helpers for the integration tests: where the fetched real files are.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The EfficientNet-Lite0 ImageNet weights fetched by models/fetch.sh.
pub fn lite0_weights() -> PathBuf {
    cdo_inspect::platform::threads::tune_allocator();
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

/// The real binary as a `Command`. When the tests run under an emulator (the aarch64
/// build under qemu-user, see scripts/test-arm64.sh), child processes must go through it
/// too: `CDO_TEST_RUNNER` holds that command line (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`).
pub fn cdo_command() -> std::process::Command {
    let bin = env!("CARGO_BIN_EXE_cdo-inspect");
    let runner = std::env::var("CDO_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut c = std::process::Command::new(emulator);
            c.args(words).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}
