//! Backbones, weight loading and the CDO expert/apprentice pair.

pub mod activation;
pub mod backbone;
pub mod batchnorm;
pub mod cdo;
pub mod checkpoint;
pub mod depthwise;
pub mod efficientnet_lite;
pub mod im2col;
pub mod layers;
pub mod maxpool;
pub mod postprocess;
pub mod resize;
pub mod resnet;
