//! The station's start-up checks, short of taking the hardware: everything `run` needs to
//! start, checked the way `run` opens it. `check-config` prints these and `run` refuses to
//! start on any, so "OK" from `check-config` means the station will start.
//!
//! What is checked: the compute device opens; the model bundle loads and validates, with
//! its apprentice weights read and fitted to the backbone; the expert weights are found
//! (in the models folder, saying where it looked and how it was chosen), read, fitted and
//! match the bundle's SHA-256; a warm-up inference runs; there is a threshold; the replay
//! folder has frames, or the V4L2 device exists (it is not opened: a running station holds
//! it); every GPIO line resolves on its chip (not requested, for the same reason), or the
//! simulated edge log can be written; the records and archive folders can be created and
//! written. Every problem is reported, not just the first.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;

use super::alignment::Aligner;
use super::records::RECORD_FILE;
use super::replay::ReplaySource;
use crate::bundle::{Bundle, BundleMeta};
use crate::config::{CameraSource, GpioBackend, LightMode, StationConfig, TriggerMode};
use crate::imageio::IMAGE_EXTENSIONS;
use crate::infer::detector::{expert_not_found, load_apprentice, weights_fix, ModelsDir, ModelsDirSource};
use crate::infer::geometry::frame_roi;
use crate::infer::{resolve_expert, Detector, InferError};
use crate::model::checkpoint::CheckpointError;
use crate::platform::device::{open_device, DeviceError};

/// One thing that would stop the station from starting: the station-file key it concerns
/// (dotted, as in the file: `model.bundle`, `records.dir`) and what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Problem {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The outcome of the checks: the problems, and the detector when it loaded (warmed up, on
/// the station's device), for a caller that starts the station next and need not load it
/// again.
pub struct Checked {
    pub problems: Vec<Problem>,
    pub detector: Option<Detector>,
    /// The part aligner, with alignment on and its reference frame loaded.
    pub aligner: Option<Aligner>,
}

/// Every start-up check of `run`, short of taking the camera and GPIO lines; empty when the
/// station will start.
pub fn preflight(cfg: &StationConfig) -> Vec<Problem> {
    check(cfg).problems
}

/// [`preflight`], keeping the loaded detector.
pub fn check(cfg: &StationConfig) -> Checked {
    let mut problems = Vec::new();
    let detector = check_model(cfg, &mut problems);
    let frame_size = check_camera(cfg, &mut problems);
    let mut aligner = None;
    let detector = detector.and_then(|d| {
        aligner = check_geometry(cfg, &d, frame_size, &mut problems);
        warm_up(cfg, d, frame_size, &mut problems)
    });
    check_gpio(cfg, &mut problems);
    if let Err(e) = writable_dir(&cfg.records.dir, true) {
        problems.push(Problem::new("records.dir", e));
    } else if let Err(e) = appendable(&cfg.records.dir.join(RECORD_FILE)) {
        problems.push(Problem::new("records.dir", e));
    }
    if cfg.archive.rejects || cfg.archive.pass_every > 0 {
        if let Err(e) = writable_dir(&cfg.archive.dir, true) {
            problems.push(Problem::new("archive.dir", e));
        }
    }
    Checked { problems, detector, aligner }
}

/// The device, bundle, expert and threshold, loaded as `run` loads them. On a device that
/// does not open, the model is still loaded on the CPU so its own problems are reported too.
fn check_model(cfg: &StationConfig, problems: &mut Vec<Problem>) -> Option<Detector> {
    let m = &cfg.model;
    let device = match open_device(m.device) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.push(Problem::new("model.device", device_advice(&e)));
            None
        }
    };
    let bundle = match Bundle::load_meta(&m.bundle) {
        Ok(b) => b,
        Err(e) => {
            problems.push(Problem::new("model.bundle", e.to_string()));
            return None;
        }
    };
    if cfg.decision.threshold.is_none() && bundle.meta.calibration.is_none() {
        problems.push(Problem::new(
            "decision.threshold",
            format!(
                "the bundle {} has no calibrated threshold (trained without held-out images): \
                 set decision.threshold",
                m.bundle.display()
            ),
        ));
    }
    let models_dir = ModelsDir::choose(m.models_dir.as_deref(), "model.models_dir");
    let expert_key = if m.expert.is_some() {
        "model.expert"
    } else {
        "model.models_dir"
    };
    let on = device.clone().unwrap_or(Device::Cpu);
    if let Err(e) = resolve_expert(&bundle.meta, &m.bundle, m.expert.as_deref(), &models_dir.path) {
        problems.push(Problem::new(expert_key, expert_missing(&e, &bundle.meta, &m.bundle, &models_dir)));
        // The bundle's own weights are still checked.
        if let Err(e) = load_apprentice(&bundle, &on) {
            problems.push(Problem::new("model.bundle", e.to_string()));
        }
        return None;
    }
    let detector = match Detector::load(&m.bundle, m.expert.as_deref(), &models_dir.path, &on) {
        Ok(d) => d,
        Err(e) => {
            let key = match &e {
                InferError::Weights(w) if w.path().starts_with(&m.bundle) => "model.bundle",
                InferError::Weights(_) | InferError::ExpertMismatch { .. } | InferError::ExpertNotFound { .. } => expert_key,
                InferError::Compute(_) => "model.device",
                _ => "model.bundle",
            };
            let mut message = e.to_string();
            match (&e, &m.expert) {
                (InferError::Weights(CheckpointError::Io { .. }), _) => {}
                (InferError::Weights(w), None) if !w.path().starts_with(&m.bundle) => {
                    let fix = weights_fix(&bundle.meta.expert_file, &models_dir.path);
                    message.push_str(&format!("; the file is damaged: delete it and {fix}"));
                }
                _ => {}
            }
            problems.push(Problem::new(key, message));
            return None;
        }
    };
    // Without the station's device the model was loaded on the CPU, only to check its files.
    device.as_ref()?;
    Some(detector)
}

/// The frames the camera will deliver against the bundle's geometry (they must hold its
/// region of interest, and have the reference frame's size for alignment), and the
/// aligner, loaded.
fn check_geometry(
    cfg: &StationConfig,
    detector: &Detector,
    frame_size: Option<(u32, u32, &'static str)>,
    problems: &mut Vec<Problem>,
) -> Option<Aligner> {
    let geometry = &detector.meta.geometry;
    if let Some((w, h, key)) = frame_size {
        if let Err(e) = frame_roi(geometry, w, h) {
            problems.push(Problem::new(key, format!("the bundle {}: {e}", cfg.model.bundle.display())));
        }
    }
    match Aligner::load(&cfg.model.bundle, &detector.meta, &cfg.alignment) {
        Ok(Some(a)) => {
            match frame_size {
                Some((w, h, key)) if (w, h) != a.frame_size() => {
                    let (rw, rh) = a.frame_size();
                    problems.push(Problem::new(
                        key,
                        format!(
                            "frames are {w}x{h} px, but the bundle's reference frame for \
                             alignment is {rw}x{rh} px: use the camera settings the bundle was \
                             trained with"
                        ),
                    ));
                    None
                }
                _ => Some(a),
            }
        }
        Ok(None) => None,
        Err(e) => {
            problems.push(Problem::new("alignment.enabled", e));
            None
        }
    }
}

/// The first inspection, as `run` does before READY, of a blank frame of the camera's
/// size (the input size when it is not known) with the station's batch: it allocates
/// everything, so the first part is not late because of it.
fn warm_up(
    cfg: &StationConfig,
    detector: Detector,
    frame_size: Option<(u32, u32, &'static str)>,
    problems: &mut Vec<Problem>,
) -> Option<Detector> {
    let size = detector.meta.input_size;
    let (w, h) = frame_size.map_or((size, size), |(w, h, _)| (w, h));
    match detector.inspect_frame(&image::RgbImage::new(w, h), cfg.model.batch as usize) {
        Ok(_) => Some(detector),
        // A frame the geometry refuses was reported above.
        Err(InferError::Geometry(_)) => Some(detector),
        Err(e) => {
            problems.push(Problem::new("model.device", format!("warm-up inference: {e}")));
            None
        }
    }
}

fn device_advice(e: &DeviceError) -> String {
    match e {
        DeviceError::CudaNotBuilt => format!(
            "{e}: set device = \"cpu\", or install the CUDA build (the cdo-inspect-jetson \
             package; cross/build-jetson.sh)"
        ),
        DeviceError::NoGpu(_) => format!(
            "{e}: check the NVIDIA driver (nvidia-smi, or tegrastats on a Jetson), or set \
             device = \"cpu\""
        ),
    }
}

/// The expert file missing: where it looked (the models folder, how it was chosen), how to
/// get the file.
fn expert_missing(e: &InferError, meta: &BundleMeta, bundle: &Path, dir: &ModelsDir) -> String {
    let InferError::ExpertNotFound { searched, .. } = e else {
        return e.to_string();
    };
    let mut message = expert_not_found(meta, bundle, dir, searched, "set model.expert to the file");
    if dir.source == ModelsDirSource::Default {
        message.push_str(
            " (the packaged systemd unit runs the station with \
             CDO_MODELS_DIR=/var/lib/cdo-inspect/models: set model.models_dir to check that \
             folder here)",
        );
    }
    message
}

/// The camera's frames exist; returns their size when it is known, with the key that sets
/// it.
fn check_camera(cfg: &StationConfig, problems: &mut Vec<Problem>) -> Option<(u32, u32, &'static str)> {
    let c = &cfg.camera;
    match c.source {
        CameraSource::Replay => {
            let r = &c.replay;
            match ReplaySource::open(&r.folder, r.looping, r.stall_after, r.stall_for, c.timeout) {
                Ok(src) if src.is_empty() => problems.push(Problem::new(
                    "camera.replay.folder",
                    format!(
                        "{} holds no images (looked for .{}, subfolders included)",
                        r.folder.display(),
                        IMAGE_EXTENSIONS.join(", .")
                    ),
                )),
                Ok(src) => return src.frame_size().map(|(w, h)| (w, h, "camera.replay.folder")),
                Err(e) => problems.push(Problem::new("camera.replay.folder", e.to_string())),
            }
            None
        }
        CameraSource::V4l2 => {
            if !cfg!(feature = "camera") {
                problems.push(Problem::new(
                    "camera.source",
                    "\"v4l2\", but this binary was built without the `camera` feature: \
                     install a build with it, or use source = \"replay\"",
                ));
            } else if let Err(e) = v4l2_device_exists(&c.device) {
                problems.push(Problem::new("camera.device", e));
            }
            Some((c.width, c.height, "camera.width"))
        }
    }
}

/// The camera's device node exists (a path, an index for `/dev/videoN`, or part of its
/// V4L2 name, looked up in sysfs). Not opened: a running station holds it.
fn v4l2_device_exists(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    let path = if spec.contains('/') {
        PathBuf::from(spec)
    } else if let Ok(i) = spec.parse::<usize>() {
        PathBuf::from(format!("/dev/video{i}"))
    } else {
        let want = spec.to_lowercase();
        let mut seen = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir("/sys/class/video4linux")
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            let node = e.file_name().unwrap_or_default().to_string_lossy().to_string();
            let name = std::fs::read_to_string(e.join("name")).unwrap_or_default();
            let name = name.trim();
            if name.to_lowercase().contains(&want) {
                return Ok(());
            }
            seen.push(format!("/dev/{node} ({name})"));
        }
        return Err(format!(
            "no video device whose name contains `{spec}`; present: {}",
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        ));
    };
    if path.exists() {
        Ok(())
    } else {
        let present: Vec<String> = std::fs::read_dir("/dev")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with("video"))
                    .map(|n| format!("/dev/{n}"))
                    .collect()
            })
            .unwrap_or_default();
        let mut present = present;
        present.sort();
        Err(format!(
            "{} does not exist (camera unplugged?); present: {}",
            path.display(),
            if present.is_empty() {
                "no /dev/video* devices".to_string()
            } else {
                present.join(", ")
            }
        ))
    }
}

fn check_gpio(cfg: &StationConfig, problems: &mut Vec<Problem>) {
    match cfg.gpio.backend {
        GpioBackend::Simulated => {
            if let Some(log) = &cfg.gpio.edge_log {
                let dir = match log.parent().filter(|d| !d.as_os_str().is_empty()) {
                    Some(d) => d.to_path_buf(),
                    None => PathBuf::from("."),
                };
                let result = writable_dir(&dir, true).and_then(|()| {
                    if log.is_dir() {
                        Err(format!("{} is a folder, not a file", log.display()))
                    } else if log.exists() {
                        appendable(log)
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = result {
                    problems.push(Problem::new("gpio.edge_log", e));
                }
            }
        }
        GpioBackend::Cdev => {
            let o = &cfg.outputs;
            let mut lines = vec![("reject.line", &o.reject.line)];
            for (key, out) in [
                ("outputs.pass.line", &o.pass),
                ("outputs.ready.line", &o.ready),
                ("outputs.fault.line", &o.fault),
            ] {
                if let Some(out) = out {
                    lines.push((key, &out.line));
                }
            }
            if let (mode, Some(out)) = (cfg.light.mode, &cfg.light.output) {
                if mode != LightMode::None {
                    lines.push(("light.line", &out.line));
                }
            }
            if let (TriggerMode::Gpio, Some(input)) = (cfg.trigger.mode, &cfg.trigger.input) {
                lines.push(("trigger.line", &input.line));
            }
            for (key, spec) in lines {
                if let Err(e) = super::gpio_cdev::resolve_line(spec) {
                    problems.push(Problem::new(key, e.message));
                }
            }
        }
    }
}

/// That `dir` is (or, with `create`, can be made) a folder this process can write in: with
/// `create` it is created and a probe file written in it and removed; without, nothing is
/// created: the nearest existing folder on its path must be writable (probed the same
/// way). The error names the path and the cause (a file in the way, no permission).
pub fn writable_dir(dir: &Path, create: bool) -> Result<(), String> {
    let display = dir.display();
    // The nearest part of the path that exists: a file there blocks the folder.
    let existing = dir.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists());
    if let Some(a) = existing {
        if !a.is_dir() {
            return Err(if a == dir {
                format!("{display} is a file, not a folder")
            } else {
                format!("cannot create {display}: {} is a file, not a folder", a.display())
            });
        }
    }
    let probe_in = if create {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(format!("cannot create {display}: {e}{}", permission_hint(&e)));
        }
        dir.to_path_buf()
    } else {
        match existing {
            Some(a) => a.to_path_buf(),
            None => PathBuf::from("."),
        }
    };
    let probe = probe_in.join(format!(".cdo-inspect-probe-{}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe\n"));
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(()) => Ok(()),
        Err(e) if probe_in == dir => Err(format!(
            "cannot write in {display}: {e}{}",
            permission_hint(&e)
        )),
        Err(e) => Err(format!(
            "cannot create {display}: cannot write in {}: {e}{}",
            probe_in.display(),
            permission_hint(&e)
        )),
    }
}

/// An existing file can be opened for appending (nothing is written).
fn appendable(file: &Path) -> Result<(), String> {
    if !file.exists() {
        return Ok(());
    }
    OpenOptions::new()
        .append(true)
        .open(file)
        .map(drop)
        .map_err(|e| format!("cannot append to {}: {e}{}", file.display(), permission_hint(&e)))
}

fn permission_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (it must be writable by the user the station runs as: cdo-inspect under the \
         packaged systemd unit)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::device::DeviceChoice;

    #[test]
    fn writable_dir_creates_and_probes_or_names_the_file_in_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        // Without `create`: nothing is made.
        writable_dir(&dir, false).unwrap();
        assert!(!dir.exists());
        writable_dir(&dir, true).unwrap();
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the probe is removed");

        let file = tmp.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        for create in [false, true] {
            let err = writable_dir(&file.join("records"), create).unwrap_err();
            assert!(err.contains(&format!("{} is a file", file.display())), "{err}");
            let err = writable_dir(&file, create).unwrap_err();
            assert!(err.contains("is a file, not a folder"), "{err}");
        }
    }

    #[test]
    fn a_device_spec_that_names_no_node_is_refused() {
        let err = v4l2_device_exists("/dev/video-does-not-exist").unwrap_err();
        assert!(err.contains("/dev/video-does-not-exist does not exist"), "{err}");
        let err = v4l2_device_exists("no camera has this name 1234").unwrap_err();
        assert!(err.contains("no video device whose name contains"), "{err}");
    }

    #[test]
    fn cuda_on_a_cpu_build_says_what_to_do() {
        if candle_core::utils::cuda_is_available() {
            return;
        }
        let e = open_device(DeviceChoice::Cuda).unwrap_err();
        assert!(device_advice(&e).contains("device = \"cpu\""));
    }
}
