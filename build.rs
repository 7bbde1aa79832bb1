//! With the `cuda` feature: compiles the project's own CUDA kernels
//! (src/model/kernels/cuda/*.cu) to PTX with nvcc, once per target architecture, and writes
//! the table that src/model/kernels/cuda/mod.rs embeds. Without the feature it does nothing
//! (no nvcc needed).
//!
//! Architectures: `CDO_CUDA_ARCHS` (comma-separated compute capabilities, default
//! "87,90": Jetson Orin and H100). At run time the device loads the PTX of the highest
//! architecture it supports. nvcc is `$NVCC`, else `$CUDA_HOME/bin/nvcc`, else the PATH's.
//! PTX from a newer nvcc than the GPU's driver cannot be loaded: build with a toolkit no
//! newer than the driver's CUDA version.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const KERNEL_DIR: &str = "src/model/kernels/cuda";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CDO_CUDA_ARCHS");
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=CUDA_HOME");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo::rerun-if-changed={KERNEL_DIR}");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let archs = archs();
    let nvcc = nvcc();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(KERNEL_DIR)
        .unwrap_or_else(|e| panic!("cannot read {KERNEL_DIR}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    let mut table = String::from("&[\n");
    for src in &sources {
        let name = src.file_stem().unwrap().to_string_lossy().to_string();
        writeln!(table, "    ({name:?}, &[").unwrap();
        for &arch in &archs {
            let ptx = out.join(format!("{name}.sm_{arch}.ptx"));
            compile(&nvcc, src, arch, &ptx);
            writeln!(
                table,
                "        ({arch}, include_str!({:?})),",
                ptx.display()
            )
            .unwrap();
        }
        table.push_str("    ]),\n");
    }
    table.push(']');
    std::fs::write(out.join("cuda_ptx.rs"), table).expect("write cuda_ptx.rs");
}

/// The compute capabilities to build for, e.g. [87, 90].
fn archs() -> Vec<u32> {
    let spec = env::var("CDO_CUDA_ARCHS").unwrap_or_else(|_| "87,90".into());
    let archs: Vec<u32> = spec
        .split(',')
        .map(|a| {
            a.trim().parse().unwrap_or_else(|_| {
                panic!("CDO_CUDA_ARCHS: {a:?} is not a compute capability like 87 or 90")
            })
        })
        .collect();
    assert!(!archs.is_empty(), "CDO_CUDA_ARCHS is empty");
    archs
}

fn nvcc() -> PathBuf {
    if let Some(p) = env::var_os("NVCC") {
        return p.into();
    }
    if let Some(home) = env::var_os("CUDA_HOME") {
        let p = Path::new(&home).join("bin/nvcc");
        if p.exists() {
            return p;
        }
    }
    "nvcc".into()
}

fn compile(nvcc: &Path, src: &Path, arch: u32, ptx: &Path) {
    let status = Command::new(nvcc)
        .args([
            "-ptx",
            "-O3",
            "-std=c++17",
            &format!("-arch=sm_{arch}"),
            "-o",
        ])
        .arg(ptx)
        .arg(src)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "the `cuda` feature compiles {} with nvcc, which could not be run ({}: {e}); \
                 put CUDA's nvcc on the PATH or set CUDA_HOME",
                src.display(),
                nvcc.display()
            )
        });
    assert!(
        status.success(),
        "nvcc failed on {} for sm_{arch}",
        src.display()
    );
}
