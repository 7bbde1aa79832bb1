//! The verbs of the `cdo-inspect` binary. Each takes its parsed arguments and returns an
//! exit code; `main.rs` only parses and dispatches.

pub mod bench;
pub mod check_config;
pub mod demo;
pub mod eval;
pub mod infer;
pub mod run;
pub mod sample_data;
pub mod train;

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::bundle::Bundle;
use crate::imageio::{list_images, ImageError, IMAGE_EXTENSIONS};
use crate::infer::detector::{expert_not_found, load_apprentice, weights_fix, ModelsDir};
use crate::infer::{default_models_dir, resolve_expert, Detector, InferError};
use crate::platform::device::{open_device, DeviceChoice};
use crate::station::preflight::writable_dir;

/// Where the expert's weights are and what runs the model: shared by the verbs that load a
/// trained pair.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Expert weights file (default: the file the bundle names, in the models dir).
    #[arg(long)]
    pub expert: Option<PathBuf>,
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

impl ModelArgs {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }

    /// The models folder and how it was chosen, for messages.
    pub fn models_folder(&self) -> ModelsDir {
        ModelsDir::choose(self.models_dir.as_deref(), "--models-dir")
    }
}

/// Everything wrong with a verb's inputs, found before any long work and reported at once:
/// one line each, naming the flag or file and what to do.
pub struct Problems {
    verb: &'static str,
    list: Vec<String>,
}

impl Problems {
    pub fn new(verb: &'static str) -> Self {
        Problems {
            verb,
            list: Vec::new(),
        }
    }

    pub fn push(&mut self, problem: impl Into<String>) {
        self.list.push(problem.into());
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Keeps the value, or records the error (its whole chain, each cause once).
    pub fn take<T>(&mut self, r: anyhow::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(format!("{e:#}"));
                None
            }
        }
    }

    /// Ok when nothing was found; else one error listing every problem.
    pub fn finish(self) -> anyhow::Result<()> {
        match self.list.len() {
            0 => Ok(()),
            1 => anyhow::bail!("{} cannot start: {}", self.verb, self.list[0]),
            n => anyhow::bail!(
                "{} cannot start, {n} problems:\n  - {}",
                self.verb,
                self.list.join("\n  - ")
            ),
        }
    }
}

/// The compute device, or a problem saying why not.
pub fn check_device(choice: DeviceChoice, problems: &mut Problems) -> Option<Device> {
    match open_device(choice) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.push(format!("--device: {e}; use --device cpu"));
            None
        }
    }
}

/// A folder of images given by `flag`: it exists, is a folder, and holds at least `min`
/// image files (not recursive). Returns how many it holds.
pub fn check_image_folder(flag: &str, dir: &Path, min: usize, problems: &mut Problems) -> Option<usize> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            let at = if absolute == dir {
                String::new()
            } else {
                format!(" ({})", absolute.display())
            };
            problems.push(format!("{flag} {shown}: no such folder{at}"));
            return None;
        }
        Err(e) => {
            problems.push(format!("{flag} {shown}: {e}"));
            return None;
        }
        Ok(m) if !m.is_dir() => {
            problems.push(format!("{flag} {shown} is a file; give the folder that holds the images"));
            return None;
        }
        Ok(_) => {}
    }
    let n = match list_images(dir) {
        Ok(files) => files.len(),
        Err(ImageError::NoImages { .. }) => 0,
        Err(e) => {
            problems.push(format!("{flag} {shown}: {e}"));
            return None;
        }
    };
    if n < min {
        problems.push(format!(
            "{flag} {shown}: {} (looked for .{}, not in subfolders); at least {min} needed",
            match n {
                0 => "no images".to_string(),
                1 => "one image".to_string(),
                n => format!("{n} images"),
            },
            IMAGE_EXTENSIONS.join(", .")
        ));
        return None;
    }
    Some(n)
}

/// An output folder given by `flag` can be created (nothing is created here).
pub fn check_output_dir(flag: &str, dir: &Path, problems: &mut Problems) {
    if let Err(e) = writable_dir(dir, false) {
        problems.push(format!("{flag}: {e}"));
    }
}

/// An output file given by `flag` can be written: its folder can be created, and it is
/// not a folder itself.
pub fn check_output_file(flag: &str, file: &Path, problems: &mut Problems) {
    if file.is_dir() {
        problems.push(format!("{flag} {} is a folder; give a file name", file.display()));
        return;
    }
    let dir = match file.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p,
        None => Path::new("."),
    };
    if let Err(e) = writable_dir(dir, false) {
        problems.push(format!("{flag} {}: {e}", file.display()));
    }
}

/// An expert weights file: it opens. `given` says which setting named it (`--expert`);
/// None means the default file in the models folder, and then a missing file is reported
/// with where it looked, how that folder was chosen, and how to fetch the file.
pub fn check_weights_file(path: &Path, given: Option<&str>, dir: &ModelsDir, problems: &mut Problems) {
    let error = match std::fs::File::open(path) {
        Ok(_) if path.is_dir() => "is a folder, not a weights file".to_string(),
        Ok(_) => return,
        Err(e) => e.to_string(),
    };
    let file = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    match given {
        Some(setting) => problems.push(format!("{setting} {}: {error}", path.display())),
        None if path.exists() => problems.push(format!(
            "expert weights {}: {error}",
            path.display()
        )),
        None => problems.push(format!(
            "expert weights {}: {error}; looked in {}; {}, or pass --expert FILE",
            path.display(),
            dir.describe(),
            weights_fix(&file, &dir.path),
        )),
    }
}

/// A trained pair for `infer` and `eval --model`: the bundle valid, its expert found and
/// both weights files read and fitted. On `device` when it opened, else on the CPU only to
/// check the files (and then None is returned).
pub fn check_detector(
    bundle_dir: &Path,
    args_expert: Option<&Path>,
    dir: &ModelsDir,
    device: Option<&Device>,
    problems: &mut Problems,
) -> Option<Detector> {
    let bundle = match Bundle::load_meta(bundle_dir) {
        Ok(b) => b,
        Err(e) => {
            problems.push(format!("--model: {e}"));
            return None;
        }
    };
    if let Err(e) = resolve_expert(&bundle.meta, bundle_dir, args_expert, &dir.path) {
        let InferError::ExpertNotFound { searched, .. } = &e else {
            problems.push(e.to_string());
            return None;
        };
        problems.push(expert_not_found(&bundle.meta, bundle_dir, dir, searched, "pass --expert FILE"));
        // The bundle's own weights are still checked.
        if let Err(e) = load_apprentice(&bundle, &Device::Cpu) {
            problems.push(e.to_string());
        }
        return None;
    }
    if let Some(p) = args_expert {
        if !p.is_file() {
            problems.push(format!("--expert {}: no such file", p.display()));
            return None;
        }
    }
    let on = device.cloned().unwrap_or(Device::Cpu);
    match Detector::load(bundle_dir, args_expert, &dir.path, &on) {
        Ok(d) if device.is_some() => Some(d),
        Ok(_) => None,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    }
}
