//! From a decoded RGB frame to the network's input tensor.

use candle_core::{Device, Result, Tensor};
use image::{imageops::FilterType, RgbImage};

use crate::model::backbone::{IMAGENET_MEAN, IMAGENET_STD};

/// Resizes (bilinear, antialiased like PIL's) to `size` x `size` and normalises with the
/// ImageNet mean and std, straight into a CHW f32 buffer.
pub fn image_to_chw(img: &RgbImage, size: u32) -> Vec<f32> {
    let resized;
    let img = if img.width() == size && img.height() == size {
        img
    } else {
        resized = image::imageops::resize(img, size, size, FilterType::Triangle);
        &resized
    };
    let plane = (size * size) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}

/// A batch tensor (B x 3 x size x size) from already-normalised CHW buffers.
pub fn batch_tensor(chw: &[Vec<f32>], size: u32, device: &Device) -> Result<Tensor> {
    let s = size as usize;
    let flat: Vec<f32> = chw.iter().flat_map(|v| v.iter().copied()).collect();
    Tensor::from_vec(flat, (chw.len(), 3, s, s), device)
}
