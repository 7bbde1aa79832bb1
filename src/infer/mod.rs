//! Inspecting images with a trained pair: preprocessing, the detector (features, anomaly
//! map, smoothing, image score), the verdict rule and the map's defect regions.

pub mod align;
pub mod detector;
pub mod geometry;
pub mod inspection;
pub mod preprocess;
pub mod regions;
pub mod tiling;
pub mod verdict;

pub use detector::{default_models_dir, resolve_expert, Detector, InferError, Inference};
pub use inspection::{DefectRegion, FrameInspection};
