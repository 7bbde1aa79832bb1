//! Ground truth: reading one test sample's mask as a defect/no-defect grid.

use image::{DynamicImage, ImageReader};

use super::{DatasetError, TestSample};

/// Ground truth for one test sample at (width, height), row-major, `true` = defect: all
/// false for a good sample without a mask. Any mask pixel above zero is a defect, in any
/// channel but alpha, so 8-bit, 16-bit, 0/1 and RGB masks all work. `width` and `height`
/// are the image's size; a mask of another size is refused rather than resized, since
/// resizing would silently shift the ground truth.
pub fn load_mask(sample: &TestSample, width: u32, height: u32) -> Result<Vec<bool>, DatasetError> {
    let Some(path) = &sample.mask else {
        if sample.is_good() {
            return Ok(vec![false; width as usize * height as usize]);
        }
        return Err(DatasetError::MissingMask {
            image: sample.image.clone(),
            expected: None,
        });
    };
    let unreadable = |detail: String| DatasetError::UnreadableMask {
        path: path.clone(),
        detail,
    };
    let img = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| unreadable(e.to_string()))?
        .decode()
        .map_err(|e| unreadable(e.to_string()))?;
    if img.width() != width || img.height() != height {
        return Err(DatasetError::MaskSizeMismatch {
            mask: path.clone(),
            mask_width: img.width(),
            mask_height: img.height(),
            image: sample.image.clone(),
            width,
            height,
        });
    }
    Ok(match img {
        DynamicImage::ImageLuma8(m) => m.pixels().map(|p| p.0[0] > 0).collect(),
        DynamicImage::ImageLuma16(m) => m.pixels().map(|p| p.0[0] > 0).collect(),
        DynamicImage::ImageRgb8(m) => m.pixels().map(|p| p.0.iter().any(|&v| v > 0)).collect(),
        DynamicImage::ImageRgba8(m) => m
            .pixels()
            .map(|p| p.0[..3].iter().any(|&v| v > 0))
            .collect(),
        // Grey+alpha, 16-bit colour, float: the float conversion keeps any nonzero value
        // nonzero and drops alpha.
        other => other
            .to_rgb32f()
            .pixels()
            .map(|p| p.0.iter().any(|&v| v > 0.0))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use image::{ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

    use super::super::fixtures::*;
    use super::super::load_category;
    use super::*;

    #[test]
    fn defective_sample_without_mask_is_refused() {
        // A hand-made defective sample without mask.
        let sample = TestSample {
            image: PathBuf::from("/x/test/crack/007.png"),
            mask: None,
            defect: "crack".into(),
            id: "007".into(),
        };
        let (e, s) = err_text(load_mask(&sample, 4, 4));
        assert!(matches!(e, DatasetError::MissingMask { .. }), "{s}");
        assert!(s.contains("/x/test/crack/007.png"), "{s}");
    }

    #[test]
    fn wrong_size_and_unreadable_masks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let d = mvtec_ad(root, "bottle");
        let mask = d.join("ground_truth/hole/000_mask.png");
        write_mask(&mask, 9, 6, &[(0, 0)], 255);
        let (e, s) = err_text(load_category(root, "bottle"));
        assert!(matches!(e, DatasetError::MaskSizeMismatch { .. }), "{s}");
        assert!(s.contains(&mask.display().to_string()), "{s}");
        assert!(s.contains("9x6") && s.contains("8x6"), "{s}");

        let sample = TestSample {
            image: d.join("test/hole/000.png"),
            mask: Some(mask.clone()),
            defect: "hole".into(),
            id: "000".into(),
        };
        let (e, s) = err_text(load_mask(&sample, 8, 6));
        assert!(matches!(e, DatasetError::MaskSizeMismatch { .. }), "{s}");
        assert!(s.contains(&mask.display().to_string()), "{s}");
        assert_eq!(load_mask(&sample, 9, 6).unwrap().len(), 54);

        fs::write(&mask, b"not a png").unwrap();
        let (e, s) = err_text(load_category(root, "bottle"));
        assert!(matches!(e, DatasetError::UnreadableMask { .. }), "{s}");
        assert!(s.contains(&mask.display().to_string()), "{s}");
        let (e, s) = err_text(load_mask(&sample, 8, 6));
        assert!(matches!(e, DatasetError::UnreadableMask { .. }), "{s}");
        assert!(s.contains(&mask.display().to_string()), "{s}");

        let gone = TestSample {
            mask: Some(d.join("ground_truth/hole/gone.png")),
            ..sample
        };
        let (_, s) = err_text(load_mask(&gone, 8, 6));
        assert!(s.contains("gone.png"), "{s}");
    }

    #[test]
    fn sixteen_bit_rgb_and_alpha_masks_load() {
        let dir = tempfile::tempdir().unwrap();
        let sample = |name: &str| TestSample {
            image: dir.path().join("img.png"),
            mask: Some(dir.path().join(name)),
            defect: "crack".into(),
            id: "img".into(),
        };
        let (w, h) = (5, 3);

        let mut m16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::new(w, h);
        m16.put_pixel(1, 0, Luma([1])); // the smallest nonzero value still counts
        m16.put_pixel(4, 2, Luma([65535]));
        m16.save(dir.path().join("m16.png")).unwrap();
        assert_eq!(
            image::open(dir.path().join("m16.png")).unwrap().color(),
            image::ColorType::L16
        );
        let m = load_mask(&sample("m16.png"), w, h).unwrap();
        assert_eq!(on_pixels(&m, w), [(1, 0), (4, 2)]);

        let mut rgb = RgbImage::new(w, h);
        rgb.put_pixel(2, 1, Rgb([0, 0, 1]));
        rgb.put_pixel(0, 2, Rgb([255, 0, 0]));
        rgb.save(dir.path().join("rgb.png")).unwrap();
        let m = load_mask(&sample("rgb.png"), w, h).unwrap();
        assert_eq!(on_pixels(&m, w), [(2, 1), (0, 2)]);

        // Opaque black is not a defect: alpha is ignored.
        let mut rgba = RgbaImage::from_pixel(w, h, Rgba([0, 0, 0, 255]));
        rgba.put_pixel(3, 0, Rgba([255, 255, 255, 255]));
        rgba.save(dir.path().join("rgba.png")).unwrap();
        let m = load_mask(&sample("rgba.png"), w, h).unwrap();
        assert_eq!(on_pixels(&m, w), [(3, 0)]);

        let mut rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::new(w, h);
        rgb16.put_pixel(4, 1, Rgb([0, 1, 0]));
        rgb16.save(dir.path().join("rgb16.png")).unwrap();
        let m = load_mask(&sample("rgb16.png"), w, h).unwrap();
        assert_eq!(on_pixels(&m, w), [(4, 1)]);

        let mut la: ImageBuffer<image::LumaA<u8>, Vec<u8>> =
            ImageBuffer::from_pixel(w, h, image::LumaA([0, 255]));
        la.put_pixel(0, 0, image::LumaA([7, 255]));
        la.save(dir.path().join("la.png")).unwrap();
        let m = load_mask(&sample("la.png"), w, h).unwrap();
        assert_eq!(on_pixels(&m, w), [(0, 0)]);
    }
}
