//! Inference with a trained pair: expert and apprentice features, the CDO anomaly map,
//! smoothing and the image score.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::bundle::{Bundle, BundleError, BundleMeta};
use crate::model::backbone::{BackboneKind, Expert, Network};
use crate::model::cdo::{anomaly_map, anomaly_maps_host};
use crate::model::checkpoint::{Checkpoint, CheckpointError, CheckpointFormat};
use crate::model::layers::Mode;
use crate::model::postprocess::gaussian_smooth_in_place;
use crate::model::kernels::resize::bilinear_align_corners_plane;
use crate::infer::preprocess::{batch_tensor, image_to_chw};
use crate::infer::geometry::{frame_roi_at, GeometryError, InspectionMask, Mask};
use crate::infer::inspection::FrameInspection;
use crate::infer::tiling::{finish_stitched, TileGrid};

/// Why a trained pair could not be loaded or run. Each message names the file and what to
/// do, and says its cause itself: no variant also returns it from `source()` (a chain
/// printed with anyhow's `{:#}` would show it twice).
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Weights(#[from] CheckpointError),
    #[error(
        "expert weights {path} have SHA-256 {found}, but the bundle {bundle} was trained with \
         {expected}: use the same expert file (or retrain)"
    )]
    ExpertMismatch {
        path: PathBuf,
        bundle: PathBuf,
        found: String,
        expected: String,
    },
    #[error("bundle {bundle} was trained with expert {file}, which is not in {searched}; {fix}, or name the file explicitly (--expert, or model.expert in a station file)")]
    ExpertNotFound {
        bundle: PathBuf,
        file: String,
        searched: String,
        /// How to get the file into the models folder (see [`weights_fix`]).
        fix: String,
    },
    #[error("bundle {bundle}: {error}; copy the bundle again, or retrain it with `cdo-inspect train`")]
    ApprenticeUnreadable {
        bundle: PathBuf,
        error: CheckpointError,
    },
    #[error("bundle {bundle}: apprentice weights do not fit the {backbone} backbone: {error}; retrain the bundle with `cdo-inspect train`")]
    Apprentice {
        bundle: PathBuf,
        backbone: BackboneKind,
        error: CheckpointError,
    },
    #[error("inference failed: {0}")]
    Compute(candle_core::Error),
    /// A frame the bundle's geometry cannot inspect, or its ignore mask unusable.
    #[error(transparent)]
    Geometry(#[from] GeometryError),
}

/// By hand rather than `#[from]`, which would also make the candle error the source.
impl From<candle_core::Error> for InferError {
    fn from(e: candle_core::Error) -> Self {
        InferError::Compute(e)
    }
}

/// A batch's raw anomaly maps, where they were computed.
pub enum RawMaps {
    /// One S*S row-major map per image, on the host.
    Host(Vec<Vec<f32>>),
    /// B x S x S on the GPU.
    #[cfg(feature = "cuda")]
    Device(Tensor),
}

impl RawMaps {
    /// The maps on the host (one copy from a GPU), for stitching tiles.
    pub fn into_host(self) -> Result<Vec<Vec<f32>>, InferError> {
        match self {
            RawMaps::Host(maps) => Ok(maps),
            #[cfg(feature = "cuda")]
            RawMaps::Device(maps) => Ok(maps.flatten_from(1)?.to_vec2()?),
        }
    }
}

/// The result for one image: the smoothed anomaly map at the model's input size, and the
/// image score.
#[derive(Debug, Clone)]
pub struct Inference {
    pub map: Vec<f32>,
    pub size: u32,
    pub score: f32,
}

impl Inference {
    /// The map resized (bilinear) to a source image's size, for export and overlays.
    pub fn map_at(&self, width: u32, height: u32) -> Vec<f32> {
        let s = self.size as usize;
        bilinear_align_corners_plane(&self.map, s, s, height as usize, width as usize)
    }
}

pub struct Detector {
    pub meta: BundleMeta,
    expert: Network,
    apprentice: Network,
    device: Device,
    /// The ignore mask named by `meta.geometry.mask`, read from the bundle folder.
    mask: Option<InspectionMask>,
}

/// Where model files live when not given explicitly: `$CDO_MODELS_DIR`, else `./models`.
pub fn default_models_dir() -> PathBuf {
    ModelsDir::choose(None, "--models-dir").path
}

/// How the models folder was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelsDirSource {
    /// The setting named in [`ModelsDir::setting`] (`--models-dir`, `model.models_dir`).
    Setting,
    /// `$CDO_MODELS_DIR`.
    Env,
    /// Neither: `./models`, relative to the current directory.
    Default,
}

/// The folder expert weights are looked for in, and how it was chosen: every message about
/// a weights file missing from it says both, so a newcomer sees where it looked and how to
/// point it elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsDir {
    pub path: PathBuf,
    pub source: ModelsDirSource,
    /// The setting that chooses it where the folder is given: `--models-dir` for the
    /// verbs, `model.models_dir` in a station file.
    pub setting: &'static str,
}

impl ModelsDir {
    /// `explicit` (given by `setting`), else `$CDO_MODELS_DIR` (when set and not empty),
    /// else `./models`.
    pub fn choose(explicit: Option<&Path>, setting: &'static str) -> Self {
        let (path, source) = match explicit {
            Some(p) => (p.to_path_buf(), ModelsDirSource::Setting),
            None => match std::env::var_os("CDO_MODELS_DIR").filter(|v| !v.is_empty()) {
                Some(v) => (PathBuf::from(v), ModelsDirSource::Env),
                None => (PathBuf::from("models"), ModelsDirSource::Default),
            },
        };
        ModelsDir {
            path,
            source,
            setting,
        }
    }

    /// "the models folder models (/home/me/models: the default, ./models in the current
    /// directory; choose another with --models-dir or CDO_MODELS_DIR)".
    pub fn describe(&self) -> String {
        let shown = self.path.display();
        let absolute = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        let at = if absolute == self.path {
            String::new()
        } else {
            format!("{}: ", absolute.display())
        };
        let how = match self.source {
            ModelsDirSource::Setting => format!("given by {}", self.setting),
            ModelsDirSource::Env => format!(
                "from $CDO_MODELS_DIR; {} chooses another",
                self.setting
            ),
            ModelsDirSource::Default => format!(
                "the default, ./models in the current directory; choose another with {} or \
                 CDO_MODELS_DIR",
                self.setting
            ),
        };
        format!("the models folder {shown} ({at}{how})")
    }
}

/// How to get the weights file `file` into `dir`: the fetch script for the default
/// EfficientNet-Lite0 expert, torchvision's download for the ResNets (README, "Backbones
/// and weights").
pub fn weights_fix(file: &str, dir: &Path) -> String {
    // Absolute: the command is run from the source tree, not from where the verb ran.
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = dir.display();
    let torchvision = |file: &str| {
        format!(
            "download torchvision's {file} (https://download.pytorch.org/models/{file}) into {dir}"
        )
    };
    match file {
        f if f == BackboneKind::EfficientNetLite0.default_weights_file() => format!(
            "fetch it with `models/fetch.sh {dir}` (the script is in cdo-inspect's source \
             tree; the Debian package installs it as \
             /usr/share/cdo-inspect/fetch-expert-weights.sh)"
        ),
        f if f == BackboneKind::ResNet18.default_weights_file()
            || f == BackboneKind::WideResNet50_2.default_weights_file() =>
        {
            torchvision(f)
        }
        f => format!("put {f} in {dir}"),
    }
}

/// Where to look for the expert weights a bundle names.
pub fn resolve_expert(
    meta: &BundleMeta,
    bundle_dir: &Path,
    explicit: Option<&Path>,
    models_dir: &Path,
) -> Result<PathBuf, InferError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut candidates = vec![models_dir.join(&meta.expert_file)];
    if let Some(p) = &meta.training.config.expert_weights {
        candidates.push(p.clone());
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| InferError::ExpertNotFound {
            bundle: bundle_dir.to_path_buf(),
            file: meta.expert_file.clone(),
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            fix: weights_fix(&meta.expert_file, models_dir),
        })
}

/// A bundle's apprentice, read and fitted to its backbone (what [`Detector::load`] does
/// after the expert; also on its own, to check a bundle whose expert is not at hand).
pub fn load_apprentice(bundle: &Bundle, device: &Device) -> Result<Network, InferError> {
    let ckpt = Checkpoint::load(&bundle.weights_path()).map_err(|error| {
        InferError::ApprenticeUnreadable {
            bundle: bundle.dir.clone(),
            error,
        }
    })?;
    Network::from_checkpoint(bundle.meta.backbone, ckpt, &[], device).map_err(|error| {
        InferError::Apprentice {
            bundle: bundle.dir.clone(),
            backbone: bundle.meta.backbone,
            error,
        }
    })
}

/// The message for an expert file missing from the models folder: where it looked, how
/// that folder was chosen, how to get the file, and `explicit` (how to name a file
/// instead: "pass --expert FILE", "set model.expert to the file").
pub fn expert_not_found(meta: &BundleMeta, bundle_dir: &Path, dir: &ModelsDir, searched: &str, explicit: &str) -> String {
    format!(
        "the bundle {} was trained with the expert weights {}, which are not in {}; looked \
         for {searched}; {}, or {explicit}",
        bundle_dir.display(),
        meta.expert_file,
        dir.describe(),
        weights_fix(&meta.expert_file, &dir.path),
    )
}

impl Detector {
    /// Loads a bundle and the expert it was trained against (checked by SHA-256).
    pub fn load(
        bundle_dir: &Path,
        expert: Option<&Path>,
        models_dir: &Path,
        device: &Device,
    ) -> Result<Self, InferError> {
        let bundle = Bundle::load_meta(bundle_dir)?;
        let expert_path = resolve_expert(&bundle.meta, bundle_dir, expert, models_dir)?;
        let expert_ckpt = Checkpoint::load(&expert_path)?;
        if expert_ckpt.sha256 != bundle.meta.expert_sha256 {
            return Err(InferError::ExpertMismatch {
                path: expert_path,
                bundle: bundle_dir.to_path_buf(),
                found: expert_ckpt.sha256,
                expected: bundle.meta.expert_sha256.clone(),
            });
        }
        let expert = Expert::from_checkpoint(bundle.meta.backbone, expert_ckpt, device)?;
        let apprentice = load_apprentice(&bundle, device)?;
        let mut detector = Self {
            meta: bundle.meta,
            expert: expert.net,
            apprentice,
            device: device.clone(),
            mask: None,
        };
        if let Some(name) = &detector.meta.geometry.mask {
            detector.set_mask(Some(Mask::load(&bundle_dir.join(name))?))?;
        }
        Ok(detector)
    }

    /// A detector from an expert and an apprentice state dict held in memory (used right
    /// after training, for calibration).
    pub fn from_state(
        meta: BundleMeta,
        expert: Network,
        apprentice_state: Vec<(String, Tensor)>,
        device: &Device,
    ) -> Result<Self, InferError> {
        let ckpt = Checkpoint {
            path: PathBuf::from("<apprentice in memory>"),
            format: CheckpointFormat::Safetensors,
            sha256: String::new(),
            tensors: apprentice_state.into_iter().collect(),
        };
        let apprentice = Network::from_checkpoint(meta.backbone, ckpt, &[], device)?;
        Ok(Self {
            meta,
            expert,
            apprentice,
            device: device.clone(),
            mask: None,
        })
    }

    /// Gives the detector the ignore mask its geometry names ([`Self::load`] reads it from
    /// the bundle; a detector from [`Self::from_state`] needs it given). A mask not the
    /// size of the geometry's ROI is refused (without an ROI it is checked per frame).
    pub fn set_mask(&mut self, mask: Option<Mask>) -> Result<(), InferError> {
        if let (Some(m), Some(roi)) = (&mask, &self.meta.geometry.roi) {
            m.check_covers(roi)?;
        }
        self.mask = mask.map(|m| InspectionMask::new(m, &self.meta.geometry));
        Ok(())
    }

    /// The ignore mask the geometry names, once given.
    pub fn mask(&self) -> Option<&InspectionMask> {
        self.mask.as_ref()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs a batch of decoded images (any size; resized to the model's input).
    pub fn infer(&self, images: &[RgbImage]) -> Result<Vec<Inference>, InferError> {
        let x = self.preprocess(images)?;
        self.infer_tensor(&x)
    }

    /// Runs a batch of already normalised CHW buffers at the model's input size.
    pub fn infer_chw(&self, chw: &[Vec<f32>]) -> Result<Vec<Inference>, InferError> {
        let x = batch_tensor(chw, self.meta.input_size, &self.device)?;
        self.infer_tensor(&x)
    }

    /// Inspects one camera frame with the bundle's geometry (`meta.geometry`).
    ///
    /// Untiled (every bundle before tiling): the ROI (the whole frame without one) resized
    /// to the input, exactly [`Self::infer`]'s map and score. Tiled: the ROI cropped,
    /// resized by 1/scale (the same antialiased bilinear resize as the input's), cut into
    /// the geometry's tiles, which run through the pair `batch` at a time; their raw maps
    /// are stitched into one map of the ROI (overlaps max-blended, see [`super::tiling`]),
    /// smoothed once at the bundle's sigma in network pixels, zeroed where the ignore mask
    /// says so, and scored by the bundle's rule over the inspected pixels. A frame that
    /// does not contain the ROI, or whose ROI is smaller than a tile, is refused.
    pub fn inspect_frame(&self, frame: &RgbImage, batch: usize) -> Result<FrameInspection, InferError> {
        self.inspect_frame_at(frame, batch, (0, 0))
    }

    /// [`Self::inspect_frame`] with the region of interest moved by `shift` source pixels
    /// (right, down): where part alignment found the part. The ignore mask moves with it;
    /// a region moved out of the frame is refused.
    pub fn inspect_frame_at(
        &self,
        frame: &RgbImage,
        batch: usize,
        shift: (i32, i32),
    ) -> Result<FrameInspection, InferError> {
        let started = std::time::Instant::now();
        let geometry = &self.meta.geometry;
        let size = self.meta.input_size;
        let roi = frame_roi_at(geometry, frame.width(), frame.height(), shift)?;
        let cropped;
        let src = if (roi.x, roi.y, roi.w, roi.h) == (0, 0, frame.width(), frame.height()) {
            frame
        } else {
            cropped = image::imageops::crop_imm(frame, roi.x, roi.y, roi.w, roi.h).to_image();
            &cropped
        };
        let Some(tiles) = geometry.tile else {
            let x = batch_tensor(&[image_to_chw(src, size)], size, &self.device)?;
            let prepare_ms = ms_since(started);
            let r = self.infer_tensor(&x)?.pop().expect("one map for one image");
            return Ok(FrameInspection {
                map: r.map,
                width: size,
                height: size,
                roi,
                scale: 1.0,
                tiles: 0,
                score: r.score,
                prepare_ms,
            });
        };
        let mask = match (&geometry.mask, &self.mask) {
            (None, _) => None,
            (Some(_), Some(m)) => Some(m),
            (Some(name), None) => {
                return Err(GeometryError::MaskNotLoaded {
                    name: name.display().to_string(),
                }
                .into())
            }
        };
        if let Some(m) = mask {
            m.source.check_covers(&roi)?;
        }
        let (nw, nh) = geometry.network_size(roi.w, roi.h);
        let resized;
        let scaled = if (nw, nh) == (roi.w, roi.h) {
            src
        } else {
            // The `image` crate's Triangle resize: what `image_to_chw` reproduces bit for bit.
            resized = image::imageops::resize(src, nw, nh, image::imageops::FilterType::Triangle);
            &resized
        };
        // `frame_roi` refused an ROI smaller than a tile, and the bundle's checks a
        // degenerate tile.
        let grid = TileGrid::new(nw, nh, tiles.size, tiles.overlap).ok_or(GeometryError::FrameSmallerThanTile {
            width: frame.width(),
            height: frame.height(),
            scale: geometry.scale,
            network_w: nw,
            network_h: nh,
            tile: tiles.size,
        })?;
        let origins = grid.origins();
        let mut raw = Vec::with_capacity(origins.len());
        let mut prepare_ms = ms_since(started);
        for chunk in origins.chunks(batch.max(1)) {
            use rayon::prelude::*;
            let cut = std::time::Instant::now();
            let chw: Vec<Vec<f32>> = chunk
                .par_iter()
                .map(|&(x, y)| {
                    let tile = image::imageops::crop_imm(scaled, x, y, tiles.size, tiles.size).to_image();
                    image_to_chw(&tile, size)
                })
                .collect();
            let x = batch_tensor(&chw, size, &self.device)?;
            prepare_ms += ms_since(cut);
            let (fe, fa) = self.features_pair(&x);
            raw.extend(self.raw_maps(&fe?, &fa?)?.into_host()?);
        }
        let mut map = grid.stitch(&raw);
        drop(raw);
        let score = finish_stitched(
            &mut map,
            nw as usize,
            nh as usize,
            self.meta.smoothing_sigma,
            mask.map(|m| m.at(nw, nh)),
            self.meta.score,
        );
        Ok(FrameInspection {
            map,
            width: nw,
            height: nh,
            roi,
            scale: geometry.scale,
            tiles: origins.len(),
            score,
            prepare_ms,
        })
    }

    fn infer_tensor(&self, x: &Tensor) -> Result<Vec<Inference>, InferError> {
        let (fe, fa) = self.features_pair(x);
        let (fe, fa) = (fe?, fa?);
        let raw = self.raw_maps(&fe, &fa)?;
        self.finish_all(raw)
    }

    // The stages below are what `infer` runs, one by one, so `bench` can time each.

    /// Resized, normalised input batch (B x 3 x S x S) on the detector's device.
    pub fn preprocess(&self, images: &[RgbImage]) -> Result<Tensor, InferError> {
        let size = self.meta.input_size;
        // Images resize independently: in parallel for a batch.
        use rayon::prelude::*;
        let chw: Vec<Vec<f32>> = images
            .par_iter()
            .map(|img| image_to_chw(img, size))
            .collect();
        Ok(batch_tensor(&chw, size, &self.device)?)
    }

    /// The expert's three feature maps for an input batch (B x 3 x S x S).
    pub fn expert_features(&self, x: &Tensor) -> Result<Vec<Tensor>, InferError> {
        Ok(self.expert.features(x, Mode::Eval)?)
    }

    /// The apprentice's three feature maps for an input batch.
    pub fn apprentice_features(&self, x: &Tensor) -> Result<Vec<Tensor>, InferError> {
        Ok(self.apprentice.features(x, Mode::Eval)?)
    }

    /// Both networks' features. On the CPU the two run at the same time: each network's
    /// single-threaded stretches (allocation, small layers, elementwise ops) then overlap
    /// with the other's parallel kernels instead of leaving a core idle. On a GPU they run
    /// one after the other on its queue.
    #[allow(clippy::type_complexity)]
    pub fn features_pair(
        &self,
        x: &Tensor,
    ) -> (
        Result<Vec<Tensor>, InferError>,
        Result<Vec<Tensor>, InferError>,
    ) {
        if self.device.is_cpu() {
            rayon::join(|| self.expert_features(x), || self.apprentice_features(x))
        } else {
            (self.expert_features(x), self.apprentice_features(x))
        }
    }

    /// The unsmoothed anomaly maps (discrepancy, upsampled to the input size): on the CPU
    /// one S*S row-major vector per image; on CUDA (f32 features) a B x S x S tensor left on
    /// the GPU for [`Detector::finish_all`] to smooth there.
    pub fn raw_maps(&self, fe: &[Tensor], fa: &[Tensor]) -> Result<RawMaps, InferError> {
        let (s, up) = (self.meta.input_size as usize, self.meta.upsampling);
        if self.device.is_cpu() {
            return Ok(RawMaps::Host(anomaly_maps_host(fe, fa, s, s, up)?));
        }
        #[cfg(feature = "cuda")]
        if self.device.is_cuda() && fe.iter().chain(fa).all(|t| t.dtype() == DType::F32) {
            return Ok(RawMaps::Device(crate::model::cdo::anomaly_maps_cuda(fe, fa, s, s, up)?));
        }
        let maps = anomaly_map(fe, fa, s, s, up)?.to_dtype(DType::F32)?;
        Ok(RawMaps::Host(maps.flatten_from(1)?.to_vec2()?))
    }

    /// `finish` for every map of a batch: on the host in parallel (one map's smoothing is
    /// too small to split well); maps on a GPU are smoothed there and copied to the host
    /// once, for the scores.
    pub fn finish_all(&self, raw: RawMaps) -> Result<Vec<Inference>, InferError> {
        use rayon::prelude::*;
        match raw {
            RawMaps::Host(maps) => Ok(maps.into_par_iter().map(|r| self.finish(r)).collect()),
            #[cfg(feature = "cuda")]
            RawMaps::Device(maps) => {
                let sigma = self.meta.smoothing_sigma;
                let smoothed = crate::model::kernels::cuda::map::gaussian_smooth(&maps, sigma)?;
                let host: Vec<Vec<f32>> = smoothed.flatten_from(1)?.to_vec2()?;
                Ok(host
                    .into_par_iter()
                    .map(|map| {
                        let score = self.meta.score.apply(&map);
                        Inference {
                            map,
                            size: self.meta.input_size,
                            score,
                        }
                    })
                    .collect())
            }
        }
    }

    /// Smoothing and the image score of one raw map.
    pub fn finish(&self, raw: Vec<f32>) -> Inference {
        let s = self.meta.input_size as usize;
        let mut map = raw;
        gaussian_smooth_in_place(&mut map, s, s, self.meta.smoothing_sigma);
        let score = self.meta.score.apply(&map);
        Inference {
            map,
            size: self.meta.input_size,
            score,
        }
    }
}

/// Milliseconds since `t`.
fn ms_since(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
