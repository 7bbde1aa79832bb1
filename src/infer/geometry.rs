//! A bundle's inspection geometry applied to frames: the region of interest of a frame, the
//! tiles that cover it, and the ignore mask. Pure functions on sizes and pixels; the
//! networks are run by `Detector::inspect_frame` and the tile maps stitched by
//! [`super::tiling`].
//!
//! Coordinates: *source* pixels are the camera frame's; *network* pixels are the ROI's
//! after dividing by the geometry's scale (`Geometry::network_size`), the pixels tiles are
//! cut from and the stitched map is in.

use std::path::{Path, PathBuf};

use crate::bundle::geometry::{Geometry, Roi};
use crate::imageio::load_rgb;

/// Why a frame cannot be inspected with a bundle's geometry, or its ignore mask cannot be
/// used. Each message names the sizes involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    #[error(
        "frame {width}x{height} is smaller than the bundle's region of interest {roi} (it needs a \
         frame of at least {}x{}): use the camera settings the bundle was trained with, or \
         retrain it for this camera",
        u64::from(roi.x) + u64::from(roi.w),
        u64::from(roi.y) + u64::from(roi.h)
    )]
    FrameSmallerThanRoi { width: u32, height: u32, roi: Roi },
    #[error(
        "the part moved by ({dx}, {dy}) px: the region of interest {roi} moved with it leaves \
         the {width}x{height} frame (the part is not where the fixture holds it)"
    )]
    ShiftedOutOfFrame { width: u32, height: u32, roi: Roi, dx: i32, dy: i32 },
    #[error(
        "frame {width}x{height} at scale {scale} is {network_w}x{network_h} network px, smaller \
         than one {tile}x{tile} tile of the bundle"
    )]
    FrameSmallerThanTile {
        width: u32,
        height: u32,
        scale: f32,
        network_w: u32,
        network_h: u32,
        tile: u32,
    },
    #[error(
        "ignore mask {path} is {mask_w}x{mask_h} px, but the region it covers is {roi_w}x{roi_h} \
         source px: the mask must be the region of interest's size (the frame's without one)"
    )]
    MaskSize {
        path: PathBuf,
        mask_w: u32,
        mask_h: u32,
        roi_w: u32,
        roi_h: u32,
    },
    #[error("ignore mask {path}: {message}; put the mask image named in geometry.mask into the bundle folder")]
    MaskUnreadable { path: PathBuf, message: String },
    #[error("ignore mask {path} is black everywhere: nothing would be inspected")]
    MaskEmpty { path: PathBuf },
    #[error(
        "the bundle's geometry names the ignore mask {name}, but this detector has none: \
         load the bundle with Detector::load (or give the mask with Detector::set_mask)"
    )]
    MaskNotLoaded { name: String },
}

/// Tile origins along one axis of `extent` pixels: the first at 0, then every
/// `tile - overlap` pixels, and the last at `extent - tile`, aligned to the edge, so that
/// the tiles cover `[0, extent)` completely without one pixel outside it (the last tile may
/// overlap its neighbour by more than `overlap`). An extent smaller than a tile, a tile of 0
/// or an overlap of a whole tile has no covering: empty (the caller reports it; a bundle's
/// geometry is checked to avoid the last two).
pub fn tile_origins(extent: u32, tile: u32, overlap: u32) -> Vec<u32> {
    if tile == 0 || overlap >= tile || extent < tile {
        return Vec::new();
    }
    let stride = tile - overlap;
    let last = extent - tile;
    let mut out: Vec<u32> = (0..)
        .map(|i: u32| i * stride)
        .take_while(|&o| o < last)
        .collect();
    out.push(last);
    out
}

/// The region of a `width` x `height` frame that `geometry` inspects, in source pixels:
/// its ROI (refused when the frame does not contain it), else the whole frame. With tiles,
/// a region smaller than one tile at the geometry's scale is refused too.
pub fn frame_roi(geometry: &Geometry, width: u32, height: u32) -> Result<Roi, GeometryError> {
    frame_roi_at(geometry, width, height, (0, 0))
}

/// [`frame_roi`] with the region moved by `shift` source pixels (right, down), where part
/// alignment found the part; a moved region that leaves the frame is refused.
pub fn frame_roi_at(geometry: &Geometry, width: u32, height: u32, shift: (i32, i32)) -> Result<Roi, GeometryError> {
    let roi = match geometry.roi {
        Some(r) => {
            let fits = u64::from(r.x) + u64::from(r.w) <= u64::from(width)
                && u64::from(r.y) + u64::from(r.h) <= u64::from(height);
            if !fits {
                return Err(GeometryError::FrameSmallerThanRoi { width, height, roi: r });
            }
            r
        }
        None => Roi { x: 0, y: 0, w: width, h: height },
    };
    let roi = if shift == (0, 0) {
        roi
    } else {
        let x = i64::from(roi.x) + i64::from(shift.0);
        let y = i64::from(roi.y) + i64::from(shift.1);
        let inside = x >= 0
            && y >= 0
            && x + i64::from(roi.w) <= i64::from(width)
            && y + i64::from(roi.h) <= i64::from(height);
        if !inside {
            return Err(GeometryError::ShiftedOutOfFrame { width, height, roi, dx: shift.0, dy: shift.1 });
        }
        Roi { x: x as u32, y: y as u32, ..roi }
    };
    if let Some(t) = geometry.tile {
        let (nw, nh) = geometry.network_size(roi.w, roi.h);
        if nw < t.size || nh < t.size {
            return Err(GeometryError::FrameSmallerThanTile {
                width,
                height,
                scale: geometry.scale,
                network_w: nw,
                network_h: nh,
                tile: t.size,
            });
        }
    }
    Ok(roi)
}

/// An ignore mask at source resolution: `true` = inspect.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Row-major, `width * height`.
    pub inspect: Vec<bool>,
}

impl Mask {
    /// Reads a mask image (any format `imageio` reads; grey or colour): a pixel with any
    /// nonzero channel is inspected, black is not. A mask with nothing to inspect is
    /// refused.
    pub fn load(path: &Path) -> Result<Self, GeometryError> {
        let img = load_rgb(path).map_err(|e| GeometryError::MaskUnreadable {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let inspect: Vec<bool> = img.pixels().map(|p| p.0 != [0, 0, 0]).collect();
        Self::new(path.to_path_buf(), img.width(), img.height(), inspect)
    }

    /// A mask from its pixels (`inspect.len()` must be `width * height`).
    pub fn new(path: PathBuf, width: u32, height: u32, inspect: Vec<bool>) -> Result<Self, GeometryError> {
        assert_eq!(inspect.len(), width as usize * height as usize, "mask pixels");
        if !inspect.iter().any(|&b| b) {
            return Err(GeometryError::MaskEmpty { path });
        }
        Ok(Self { path, width, height, inspect })
    }

    /// Refuses a mask that is not `roi`'s size.
    pub fn check_covers(&self, roi: &Roi) -> Result<(), GeometryError> {
        if (self.width, self.height) == (roi.w, roi.h) {
            Ok(())
        } else {
            Err(GeometryError::MaskSize {
                path: self.path.clone(),
                mask_w: self.width,
                mask_h: self.height,
                roi_w: roi.w,
                roi_h: roi.h,
            })
        }
    }

    /// The mask in network pixels (`net_w` x `net_h` over the same region): a network pixel
    /// is inspected when ANY source pixel under it is. Fail-safe: a pixel half on the part is
    /// inspected, never dropped because its other half was masked (draw masks with a margin
    /// of a network pixel around what they hide).
    pub fn at_network(&self, net_w: u32, net_h: u32) -> Vec<bool> {
        let (sw, sh) = (self.width as u64, self.height as u64);
        let (nw, nh) = (net_w as u64, net_h as u64);
        // Source span [floor(i*s/n), ceil((i+1)*s/n)) of network pixel i, never empty.
        let span = |i: u64, s: u64, n: u64| {
            let a = (i * s / n).min(s - 1);
            let b = ((i + 1) * s).div_ceil(n).clamp(a + 1, s);
            (a as usize, b as usize)
        };
        let cols: Vec<(usize, usize)> = (0..nw).map(|x| span(x, sw, nw)).collect();
        let mut out = vec![false; (nw * nh) as usize];
        for y in 0..nh {
            let (y0, y1) = span(y, sh, nh);
            for (x, &(x0, x1)) in cols.iter().enumerate() {
                out[y as usize * nw as usize + x] = (y0..y1).any(|sy| {
                    let row = &self.inspect[sy * self.width as usize..][..self.width as usize];
                    row[x0..x1].iter().any(|&b| b)
                });
            }
        }
        out
    }
}

/// An ignore mask ready for inspection: the mask, and its form in network pixels that
/// zeroes the stitched map. The ROI is the mask's size, so that form is the same for
/// every frame and is computed once (at scale 1 on 2048x1536 it costs 12 ms on this
/// machine's CPU: nothing beside the networks on a CPU, more beside a GPU's).
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionMask {
    pub source: Mask,
    pub network_width: u32,
    pub network_height: u32,
    /// Row-major, `network_width * network_height`; `true` = inspect.
    pub network: Vec<bool>,
}

impl InspectionMask {
    pub fn new(source: Mask, geometry: &Geometry) -> Self {
        let (network_width, network_height) = geometry.network_size(source.width, source.height);
        let network = source.at_network(network_width, network_height);
        Self { source, network_width, network_height, network }
    }

    /// The network-pixel mask for a stitched map of `width` x `height`, which
    /// [`Mask::check_covers`] has made this size.
    pub fn at(&self, width: u32, height: u32) -> &[bool] {
        assert_eq!((width, height), (self.network_width, self.network_height), "mask at network size");
        &self.network
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::geometry::Tiles;

    /// Every pixel of [0, extent) is in some tile, none outside it.
    fn covers(origins: &[u32], extent: u32, tile: u32) -> bool {
        let mut seen = vec![false; extent as usize];
        for &o in origins {
            if o + tile > extent {
                return false;
            }
            seen[o as usize..(o + tile) as usize].fill(true);
        }
        seen.iter().all(|&s| s)
    }

    #[test]
    fn tile_origins_cover_exactly_and_align_the_last_to_the_edge() {
        assert_eq!(tile_origins(64, 64, 16), vec![0]);
        assert_eq!(tile_origins(112, 64, 16), vec![0, 48]);
        // 384 = 64 + 7 * 48 + 32: the last at 320, overlapping its neighbour by 48.
        assert_eq!(tile_origins(384, 64, 16), vec![0, 48, 96, 144, 192, 240, 288, 320]);
        assert_eq!(tile_origins(320, 64, 16), vec![0, 48, 96, 144, 192, 240, 256]);
        assert_eq!(tile_origins(256, 64, 0), vec![0, 64, 128, 192]);
        assert_eq!(tile_origins(65, 64, 0), vec![0, 1]);
        for extent in 64..700 {
            for (tile, overlap) in [(64, 0), (64, 16), (64, 31), (256, 32), (100, 7)] {
                if extent < tile {
                    continue;
                }
                let o = tile_origins(extent, tile, overlap);
                assert!(covers(&o, extent, tile), "{extent} {tile} {overlap}: {o:?}");
                assert_eq!(o[0], 0);
                assert_eq!(*o.last().unwrap(), extent - tile);
                // Strictly increasing; neighbours share at least `overlap` pixels, and only
                // the last pair more.
                for (i, w) in o.windows(2).enumerate() {
                    assert!(w[1] > w[0]);
                    let shared = w[0] + tile - w[1];
                    if i + 2 < o.len() {
                        assert_eq!(shared, overlap, "{extent} {tile} {overlap}: {o:?}");
                    } else {
                        assert!(shared >= overlap && shared < tile, "{extent} {tile} {overlap}: {o:?}");
                    }
                }
            }
        }
        assert!(tile_origins(63, 64, 16).is_empty());
        assert!(tile_origins(100, 0, 0).is_empty());
        assert!(tile_origins(100, 64, 64).is_empty());
    }

    fn tiled(roi: Option<Roi>, scale: f32) -> Geometry {
        Geometry {
            roi,
            scale,
            tile: Some(Tiles { size: 64, overlap: 16 }),
            ..Geometry::default()
        }
    }

    #[test]
    fn the_roi_of_a_frame_and_the_errors_name_both_sizes() {
        let roi = Roi { x: 10, y: 20, w: 400, h: 300 };
        let g = tiled(Some(roi), 1.0);
        assert_eq!(frame_roi(&g, 410, 320), Ok(roi));
        assert_eq!(frame_roi(&g, 1280, 960), Ok(roi));
        for (w, h) in [(409, 320), (410, 319), (320, 240)] {
            let e = frame_roi(&g, w, h).unwrap_err().to_string();
            assert!(e.starts_with(&format!("frame {w}x{h} is smaller than the bundle's region of interest 400x300 at (10, 20) (it needs a frame of at least 410x320)")), "{e}");
        }
        // Without an ROI the whole frame, which must hold one tile at the scale.
        let whole = tiled(None, 2.0);
        assert_eq!(frame_roi(&whole, 640, 480), Ok(Roi { x: 0, y: 0, w: 640, h: 480 }));
        assert_eq!(frame_roi(&whole, 128, 128), Ok(Roi { x: 0, y: 0, w: 128, h: 128 }));
        let e = frame_roi(&whole, 200, 100).unwrap_err().to_string();
        assert_eq!(e, "frame 200x100 at scale 2 is 100x50 network px, smaller than one 64x64 tile of the bundle");
        // Today's geometry takes any frame whole.
        assert_eq!(frame_roi(&Geometry::default(), 7, 5), Ok(Roi { x: 0, y: 0, w: 7, h: 5 }));
        // Offsets near u32::MAX do not overflow.
        let far = Geometry { roi: Some(Roi { x: u32::MAX, y: 0, w: 10, h: 10 }), ..Geometry::default() };
        assert!(frame_roi(&far, 100, 100).unwrap_err().to_string().contains("at least 4294967305x10"));
    }

    #[test]
    fn an_aligned_roi_moves_with_the_part_and_may_not_leave_the_frame() {
        let roi = Roi { x: 10, y: 20, w: 400, h: 300 };
        let g = tiled(Some(roi), 1.0);
        assert_eq!(frame_roi_at(&g, 640, 480, (-10, 5)), Ok(Roi { x: 0, y: 25, ..roi }));
        assert_eq!(frame_roi_at(&g, 640, 480, (230, 160)), Ok(Roi { x: 240, y: 180, ..roi }));
        for shift in [(-11, 0), (0, -21), (231, 0), (0, 161)] {
            let e = frame_roi_at(&g, 640, 480, shift).unwrap_err().to_string();
            let want = format!("the part moved by ({}, {}) px: the region of interest 400x300 at (10, 20)", shift.0, shift.1);
            assert!(e.starts_with(&want), "{e}");
            assert!(e.contains("640x480 frame"), "{e}");
        }
        // Without an ROI any move leaves the frame.
        let whole = tiled(None, 1.0);
        assert!(frame_roi_at(&whole, 640, 480, (1, 0)).is_err());
        assert!(frame_roi_at(&whole, 640, 480, (0, 0)).is_ok());
    }

    #[test]
    fn a_mask_is_any_nonzero_and_any_source_pixel_inspects_its_network_pixel() {
        // 4x2 source: only pixel (3, 1) inspected.
        let mut px = vec![false; 8];
        px[7] = true;
        let m = Mask::new("m.png".into(), 4, 2, px).unwrap();
        assert_eq!(m.at_network(4, 2), m.inspect);
        // Halved: the network pixel over source (2..4, 0..2) is inspected.
        assert_eq!(m.at_network(2, 1), vec![false, true]);
        // Enlarged spans never come out empty.
        assert_eq!(m.at_network(8, 4).iter().filter(|&&b| b).count(), 4);
        assert_eq!(
            Mask::new("black.png".into(), 2, 2, vec![false; 4]).unwrap_err().to_string(),
            "ignore mask black.png is black everywhere: nothing would be inspected"
        );
        let roi = Roi { x: 0, y: 0, w: 4, h: 3 };
        assert_eq!(
            m.check_covers(&roi).unwrap_err().to_string(),
            "ignore mask m.png is 4x2 px, but the region it covers is 4x3 source px: the mask must be the region of interest's size (the frame's without one)"
        );
    }

    #[test]
    fn an_inspection_mask_is_the_mask_at_the_geometrys_network_size() {
        let mut px = vec![false; 8];
        px[7] = true;
        let m = Mask::new("m.png".into(), 4, 2, px).unwrap();
        let halved = Geometry { scale: 2.0, ..Geometry::default() };
        let im = InspectionMask::new(m.clone(), &halved);
        assert_eq!((im.network_width, im.network_height), (2, 1));
        assert_eq!(im.at(2, 1), m.at_network(2, 1));
        let native = InspectionMask::new(m.clone(), &Geometry::default());
        assert_eq!(native.at(4, 2), m.inspect);
    }

    #[test]
    fn a_mask_image_is_read_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.png");
        let img = image::GrayImage::from_fn(5, 3, |x, _| image::Luma([if x < 2 { 0 } else { 255 }]));
        img.save(&path).unwrap();
        let m = Mask::load(&path).unwrap();
        assert_eq!((m.width, m.height), (5, 3));
        assert_eq!(m.inspect.iter().filter(|&&b| b).count(), 9);
        assert!(!m.inspect[0] && m.inspect[2]);
        let e = Mask::load(&dir.path().join("none.png")).unwrap_err().to_string();
        assert!(e.starts_with(&format!("ignore mask {}: cannot read", dir.path().join("none.png").display())), "{e}");
    }
}
