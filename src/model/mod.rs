//! Backbones, weight loading and the CDO expert/apprentice pair. The hand-written numeric
//! code they run on lives in [`kernels`].

pub mod backbone;
pub mod cdo;
pub mod checkpoint;
pub mod efficientnet_lite;
pub mod kernels;
pub mod layers;
pub mod postprocess;
pub mod resnet;
