//! Backbones, weight loading and the CDO expert/apprentice pair.

pub mod backbone;
pub mod checkpoint;
pub mod depthwise;
pub mod efficientnet_lite;
pub mod layers;
pub mod resnet;
