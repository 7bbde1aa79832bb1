//! What inspecting one frame gives ([`FrameInspection`]) and what is read from it: the map
//! at the frame's resolution, the largest defect region in source pixels (the station's
//! minimum area and its records) and the overlay a person looks at (`infer --out`, the
//! station's archive).

use image::RgbImage;

use crate::bundle::geometry::Roi;
use crate::imageio::{draw_rect_outline, heatmap_overlay, paint_pixels, ImageError, REGION_COLOUR, ROI_COLOUR};
use crate::infer::regions::{region_boxes, region_outlines};
use crate::model::kernels::resize::bilinear_align_corners_plane;

/// The result for one frame inspected with the bundle's geometry
/// ([`super::Detector::inspect_frame`]).
///
/// `map` is `width` x `height`, row-major, over the region of interest `roi` (source
/// pixels). Tiled (`tiles > 0`): in network pixels, one per `scale` source pixels (the ROI's
/// size divided by the scale, rounded), max-blended from the tiles, smoothed once, zero
/// where the ignore mask says not to inspect. Untiled: the ROI resized to the input, the
/// map `input_size` square exactly as [`super::Detector::infer`] gives it. Either way
/// [`Self::map_at_source`] gives it at the ROI's source size.
#[derive(Debug, Clone)]
pub struct FrameInspection {
    pub map: Vec<f32>,
    pub width: u32,
    pub height: u32,
    /// Where the map lies in the frame: the bundle's ROI, moved by the part's alignment.
    pub roi: Roi,
    /// Source pixels per network pixel for a tiled map (the geometry's); 1 when untiled.
    pub scale: f32,
    /// How many tiles were inspected; 0 when the ROI was resized to the input whole.
    pub tiles: usize,
    /// The image score (the bundle's rule, over the inspected pixels only).
    pub score: f32,
    /// Milliseconds spent cutting, scaling and normalising the frame into network input
    /// (the rest of the inspection is the networks, stitching, smoothing and scoring).
    pub prepare_ms: f64,
}

/// A connected region of map values above a pixel threshold, in the frame's source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DefectRegion {
    /// The region's bounding box (covering every map pixel of it, rounded outwards).
    pub bbox: Roi,
    /// The region's area: its map pixels times the source pixels each one covers.
    pub area_px: f64,
}

impl FrameInspection {
    /// The map resized (bilinear, as [`super::Inference::map_at`]) to the ROI's size in
    /// source pixels, for export and overlays: `roi.w * roi.h` values.
    pub fn map_at_source(&self) -> Vec<f32> {
        bilinear_align_corners_plane(
            &self.map,
            self.height as usize,
            self.width as usize,
            self.roi.h as usize,
            self.roi.w as usize,
        )
    }

    /// [`Self::map_at_source`] placed in a map of the whole `frame_w` x `frame_h` frame, zero
    /// outside the ROI (which was not inspected): what ground truth is compared with.
    pub fn map_in_frame(&self, frame_w: u32, frame_h: u32) -> Vec<f32> {
        let roi_map = self.map_at_source();
        let (fw, fh) = (frame_w as usize, frame_h as usize);
        let (x0, y0, w, h) = (self.roi.x as usize, self.roi.y as usize, self.roi.w as usize, self.roi.h as usize);
        if (x0, y0, w, h) == (0, 0, fw, fh) {
            return roi_map;
        }
        let mut map = vec![0f32; fw * fh];
        for (row, src) in roi_map.chunks_exact(w).enumerate().take(fh.saturating_sub(y0)) {
            let n = w.min(fw.saturating_sub(x0));
            let at = (y0 + row) * fw + x0;
            map[at..at + n].copy_from_slice(&src[..n]);
        }
        map
    }

    /// Source pixels covered by one map pixel, across and down.
    fn source_per_map_px(&self) -> (f64, f64) {
        (
            f64::from(self.roi.w) / f64::from(self.width.max(1)),
            f64::from(self.roi.h) / f64::from(self.height.max(1)),
        )
    }

    /// The largest 8-connected region of map values above `pixel_threshold` (non-finite
    /// values count as above), measured on the map itself (the stitched map at the
    /// geometry's scale, or the input-size map) and expressed in source pixels; none when
    /// no map pixel is above.
    pub fn largest_region(&self, pixel_threshold: f32) -> Option<DefectRegion> {
        let boxes = region_boxes(&self.map, self.width as usize, self.height as usize, pixel_threshold);
        // The first of equal-sized regions (row-major): the same one every time.
        let (b, size) = boxes.into_iter().rev().max_by_key(|(_, size)| *size)?;
        let (sx, sy) = self.source_per_map_px();
        let x0 = (b[0] as f64 * sx).floor() as u32;
        let y0 = (b[1] as f64 * sy).floor() as u32;
        let x1 = (((b[2] + 1) as f64 * sx).ceil() as u32).min(self.roi.w);
        let y1 = (((b[3] + 1) as f64 * sy).ceil() as u32).min(self.roi.h);
        Some(DefectRegion {
            bbox: Roi { x: self.roi.x + x0, y: self.roi.y + y0, w: x1 - x0, h: y1 - y0 },
            area_px: size as f64 * sx * sy,
        })
    }

    /// The frame with the map as a heatmap over it (coloured between `lo` and `hi`), every
    /// region above `pixel_threshold` outlined in white and, when `show_roi`, the region of
    /// interest in green. `frame` must be the inspected frame.
    pub fn overlay(
        &self,
        frame: &RgbImage,
        pixel_threshold: f32,
        (lo, hi): (f32, f32),
        show_roi: bool,
    ) -> Result<RgbImage, ImageError> {
        let (w, h) = frame.dimensions();
        let map = self.map_in_frame(w, h);
        let mut out = heatmap_overlay(frame, &map, w, h, lo, hi)?;
        paint_pixels(&mut out, &region_outlines(&map, w as usize, h as usize, pixel_threshold), REGION_COLOUR);
        if show_roi {
            let r = self.roi;
            draw_rect_outline(&mut out, r.x, r.y, r.w, r.h, ROI_COLOUR);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspection(map: Vec<f32>, width: u32, height: u32, roi: Roi) -> FrameInspection {
        FrameInspection { map, width, height, roi, scale: 1.0, tiles: 0, score: 0.0, prepare_ms: 0.0 }
    }

    #[test]
    fn the_roi_map_lands_at_the_roi_in_the_frame_and_zero_elsewhere() {
        // A 2x2 network map over the ROI: bilinear (align corners) to the ROI's size.
        let ins = inspection(vec![1.0, 2.0, 3.0, 4.0], 2, 2, Roi { x: 3, y: 1, w: 2, h: 2 });
        let map = ins.map_in_frame(6, 4);
        #[rustfmt::skip]
        let want = [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 1.0, 2.0, 0.0,
            0.0, 0.0, 0.0, 3.0, 4.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0f32,
        ];
        assert_eq!(map, want);
        // An ROI that is the whole frame is the ROI's map itself.
        let whole = inspection(vec![1.0, 2.0, 3.0, 4.0], 2, 2, Roi { x: 0, y: 0, w: 2, h: 2 });
        assert_eq!(whole.map_in_frame(2, 2), whole.map_at_source());
    }

    #[test]
    fn the_largest_region_is_measured_in_source_pixels() {
        // A 4x4 map over a 40x20 ROI at (100, 50): each map pixel covers 10x5 source px.
        let mut map = vec![0.0f32; 16];
        map[5] = 0.9; // (1, 1): one pixel
        map[10] = 0.8; // (2, 2) and (3, 2): two pixels, the largest
        map[11] = f32::NAN; // non-finite counts as defective
        let i = inspection(map, 4, 4, Roi { x: 100, y: 50, w: 40, h: 20 });
        let r = i.largest_region(0.5).unwrap();
        // (1,1) touches (2,2) diagonally: one region of three pixels, x 1..=3, y 1..=2.
        assert_eq!(r.bbox, Roi { x: 110, y: 55, w: 30, h: 10 });
        assert_eq!(r.area_px, 3.0 * 50.0);
        assert!(i.largest_region(2.0).is_some(), "the NaN pixel is above any threshold");
        let clean = inspection(vec![0.1; 16], 4, 4, Roi { x: 0, y: 0, w: 4, h: 4 });
        assert_eq!(clean.largest_region(0.5), None);
    }

    #[test]
    fn the_bigger_of_two_separate_regions_is_chosen() {
        let mut map = vec![0.0f32; 25];
        map[0] = 1.0; // a single pixel in the corner
        for i in [13, 14, 18, 19] {
            map[i] = 1.0; // a 2x2 block at (3..=4, 2..=3)
        }
        let i = inspection(map, 5, 5, Roi { x: 0, y: 0, w: 5, h: 5 });
        let r = i.largest_region(0.5).unwrap();
        assert_eq!((r.bbox, r.area_px), (Roi { x: 3, y: 2, w: 2, h: 2 }, 4.0));
    }

    #[test]
    fn the_overlay_outlines_regions_and_the_roi() {
        let frame = RgbImage::from_pixel(8, 8, image::Rgb([0, 0, 0]));
        let mut map = vec![0.0f32; 16];
        map[5] = 1.0;
        let i = inspection(map, 4, 4, Roi { x: 2, y: 2, w: 4, h: 4 });
        let o = i.overlay(&frame, 0.5, (0.0, 1.0), true).unwrap();
        assert_eq!(o.get_pixel(2, 2).0, ROI_COLOUR, "the ROI's corner");
        assert_eq!(o.get_pixel(3, 3).0, REGION_COLOUR, "the region above the threshold");
        assert_ne!(o.get_pixel(0, 0).0, ROI_COLOUR, "outside the ROI");
    }
}
