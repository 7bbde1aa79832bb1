//! The inspection geometry a bundle was trained with: which part of a camera frame is
//! inspected (the region of interest), at what scale, cut into which tiles, and which of its
//! pixels are never inspected (the ignore mask). Decided at training and kept in
//! `model.toml` as `[geometry]`; a bundle without one (every bundle written before tiling)
//! reads as the whole frame resized to the network's input, as inspection always did.
//!
//! Only the data and its checks live here (the bundle layer); cutting frames into tiles and
//! stitching their maps is `infer::geometry` and `infer::tiling`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The largest side of a region of interest, and the largest offset of one, in source
/// pixels (a 16384 px side is beyond any industrial camera's sensor).
pub const MAX_ROI_SIDE: u32 = 16384;
/// The largest scale: 16 source pixels per network pixel.
pub const MAX_SCALE: f32 = 16.0;

/// A rectangle of a camera frame, in source pixels: left column `x`, top row `y`, width `w`
/// and height `h`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Roi {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl std::fmt::Display for Roi {
    /// `400x300 at (10, 20)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{} at ({}, {})", self.w, self.h, self.x, self.y)
    }
}

/// Square tiles of the network's input size, `overlap` network pixels shared between
/// neighbours.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tiles {
    /// The tile's side in network pixels: must equal the bundle's `input_size`.
    pub size: u32,
    /// Network pixels shared by neighbouring tiles, below `size / 2`.
    pub overlap: u32,
}

/// How a frame is inspected. The default (no ROI, scale 1, no tiles, no mask) is today's
/// inspection: the whole frame resized to the input.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Geometry {
    /// The inspected rectangle of the frame, in source pixels; none = the whole frame.
    pub roi: Option<Roi>,
    /// Source pixels per network pixel (1 = native resolution, 2 halves the ROI before it
    /// is cut into tiles). Only with `tile`: without tiles the ROI is resized to the input.
    pub scale: f32,
    /// Cut the (scaled) ROI into tiles of the input size; none = resize the ROI to the
    /// input as one image.
    pub tile: Option<Tiles>,
    /// The ignore mask: a file in the bundle folder, a grayscale image of the ROI's size in
    /// SOURCE pixels (the whole frame's size without an ROI); nonzero = inspect, zero (black)
    /// = never inspect (the map is zero there and no score is taken from it). Only with
    /// `tile`.
    pub mask: Option<PathBuf>,
    /// The reference frame of part alignment: a file in the bundle folder, a good frame
    /// as the camera saw it at training (the first training frame). Only with `roi`:
    /// alignment moves the region of interest with the part.
    pub reference: Option<PathBuf>,
}

impl Default for Geometry {
    fn default() -> Self {
        Self {
            roi: None,
            scale: 1.0,
            tile: None,
            mask: None,
            reference: None,
        }
    }
}

impl Geometry {
    /// Today's inspection (nothing set): such a bundle is written without a `[geometry]`
    /// table, byte for byte as before.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// In a technician's words, for `check-config`: `input_size` is the bundle's.
    pub fn describe(&self, input_size: u32) -> String {
        let region = match &self.roi {
            Some(r) => format!("the region {r}"),
            None => "the whole frame".to_string(),
        };
        let mut out = match &self.tile {
            None => format!("{region} resized to {input_size}x{input_size}"),
            Some(t) => format!(
                "{region} in {}x{} px tiles (overlap {}) at {} camera px per network px",
                t.size, t.size, t.overlap, self.scale
            ),
        };
        if let Some(m) = &self.mask {
            out.push_str(&format!(", ignore mask {}", m.display()));
        }
        if let Some(r) = &self.reference {
            out.push_str(&format!(", reference frame {}", r.display()));
        }
        out
    }

    /// The size in network pixels of `w` x `h` source pixels at this scale: each side
    /// divided by the scale and rounded to the nearest pixel (at least 1).
    pub fn network_size(&self, w: u32, h: u32) -> (u32, u32) {
        let side = |s: u32| ((s as f64 / self.scale as f64).round() as u32).max(1);
        (side(w), side(h))
    }

    /// Every value out of range, through `bad(field, problem)` with fields named
    /// `geometry.<field>`. `input_size` is the bundle's (tiles must be that size).
    pub fn problems(&self, input_size: u32, bad: &mut impl FnMut(&str, String)) {
        let scale = self.scale;
        let scale_ok = scale.is_finite() && (1.0..=MAX_SCALE).contains(&scale);
        if !scale_ok {
            bad(
                "geometry.scale",
                format!("must be a finite number of source pixels per network pixel in [1, {MAX_SCALE}], got {scale}"),
            );
        } else if scale != 1.0 && self.tile.is_none() {
            bad(
                "geometry.scale",
                format!("applies to tiles only (without geometry.tile the ROI is resized to the input), got {scale}"),
            );
        }
        let mut roi_ok = true;
        if let Some(r) = &self.roi {
            for (field, v) in [("w", r.w), ("h", r.h)] {
                if !(1..=MAX_ROI_SIDE).contains(&v) {
                    roi_ok = false;
                    bad(
                        &format!("geometry.roi.{field}"),
                        format!("must be a side of source pixels from 1 to {MAX_ROI_SIDE}, got {v}"),
                    );
                }
            }
            for (field, v) in [("x", r.x), ("y", r.y)] {
                if v > MAX_ROI_SIDE {
                    roi_ok = false;
                    bad(
                        &format!("geometry.roi.{field}"),
                        format!("must be an offset in source pixels from 0 to {MAX_ROI_SIDE}, got {v}"),
                    );
                }
            }
        }
        if let Some(t) = &self.tile {
            let mut tile_ok = true;
            if t.size != input_size {
                tile_ok = false;
                bad(
                    "geometry.tile.size",
                    format!("must be the bundle's input_size ({input_size}), got {}", t.size),
                );
            }
            // Below half a tile, every pixel is inside at most two tiles per axis and the
            // stride (size - overlap) is more than half a tile.
            if t.overlap.saturating_mul(2) >= t.size {
                tile_ok = false;
                bad(
                    "geometry.tile.overlap",
                    format!(
                        "must be below half the tile size ({}), got {}",
                        t.size.div_ceil(2),
                        t.overlap
                    ),
                );
            }
            if let (Some(r), true, true, true) = (&self.roi, roi_ok, scale_ok, tile_ok) {
                let (nw, nh) = self.network_size(r.w, r.h);
                if nw < t.size || nh < t.size {
                    bad(
                        "geometry.roi",
                        format!(
                            "{}x{} source px at scale {scale} is {nw}x{nh} network px, smaller than one {}x{} tile",
                            r.w, r.h, t.size, t.size
                        ),
                    );
                }
            }
        }
        // Each file the geometry names is a plain name in the bundle folder, and goes with
        // the setting it needs (field, file, what it needs, whether that is set).
        let files = [
            ("reference", &self.reference, "a region of interest only: set geometry.roi too", self.roi.is_some()),
            ("mask", &self.mask, "tiles only: set geometry.tile too", self.tile.is_some()),
        ];
        for (field, file, needs, has) in files {
            let Some(file) = file else { continue };
            let name = file.to_string_lossy();
            let problem = if !super::is_plain_file_name(&name) {
                format!(
                    "must be a plain file name in the bundle folder (no folder, no `..`), got \"{}\"",
                    name.escape_debug()
                )
            } else if !has {
                format!("applies to {needs} ({field} \"{}\")", name.escape_debug())
            } else {
                continue;
            };
            bad(&format!("geometry.{field}"), problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{example_meta, Bundle, BundleMeta, META_FILE, WEIGHTS_FILE};

    fn tiled() -> BundleMeta {
        let mut m = example_meta();
        m.geometry = Geometry {
            roi: Some(Roi { x: 100, y: 40, w: 1024, h: 768 }),
            scale: 2.0,
            tile: Some(Tiles { size: 256, overlap: 32 }),
            mask: Some("mask.png".into()),
            reference: Some("reference.png".into()),
        };
        m
    }

    #[test]
    fn an_old_bundle_reads_as_the_whole_frame_and_a_default_one_is_written_as_before() {
        let old = toml::to_string(&example_meta()).unwrap();
        assert!(!old.contains("geometry"), "{old}");
        let back: BundleMeta = toml::from_str(&old).unwrap();
        assert_eq!(back.geometry, Geometry::default());
        assert!(back.geometry.is_default());

        let text = toml::to_string_pretty(&tiled()).unwrap();
        assert!(text.contains("[geometry]") && text.contains("[geometry.tile]"), "{text}");
        assert_eq!(toml::from_str::<BundleMeta>(&text).unwrap(), tiled());
        // Keys left out take their defaults; unknown keys are refused.
        let g: Geometry = toml::from_str("tile = { size = 256, overlap = 0 }").unwrap();
        assert_eq!((g.scale, g.roi, g.mask), (1.0, None, None));
        let e = toml::from_str::<Geometry>("tiles = { size = 256, overlap = 0 }").unwrap_err();
        assert!(e.to_string().contains("unknown field `tiles`"), "{e}");
    }

    #[test]
    fn a_tiled_geometry_and_the_edges_of_its_ranges_pass() {
        assert_eq!(tiled().problems(), Vec::<String>::new());
        type Edit = fn(&mut Geometry);
        let edges: &[(&str, Edit)] = &[
            ("scale 16", |g| {
                g.scale = 16.0;
                g.roi = Some(Roi { x: 0, y: 0, w: 4096, h: 4096 });
            }),
            ("overlap 127", |g| g.tile.as_mut().unwrap().overlap = 127),
            ("roi of exactly one tile", |g| g.roi = Some(Roi { x: 0, y: 0, w: 512, h: 512 })),
            ("roi 16384 at 16384", |g| g.roi = Some(Roi { x: 16384, y: 16384, w: 16384, h: 16384 })),
            ("no roi", |g| {
                g.roi = None;
                g.reference = None;
            }),
            ("no reference", |g| g.reference = None),
            ("no mask", |g| g.mask = None),
            ("an roi without tiles", |g| {
                g.tile = None;
                g.scale = 1.0;
                g.mask = None;
            }),
        ];
        for (name, edit) in edges {
            let mut m = tiled();
            edit(&mut m.geometry);
            assert_eq!(m.problems(), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn every_bad_geometry_value_is_refused_naming_its_field() {
        type Edit = fn(&mut Geometry);
        let cases: &[(&str, Edit)] = &[
            ("geometry.roi.w: must be a side of source pixels from 1 to 16384, got 0", |g| g.roi.as_mut().unwrap().w = 0),
            ("geometry.roi.h: must be a side of source pixels from 1 to 16384, got 16385", |g| g.roi.as_mut().unwrap().h = 16385),
            ("geometry.roi.x: must be an offset in source pixels from 0 to 16384, got 4294967295", |g| g.roi.as_mut().unwrap().x = u32::MAX),
            ("geometry.roi: 1024x500 source px at scale 2 is 512x250 network px, smaller than one 256x256 tile", |g| g.roi.as_mut().unwrap().h = 500),
            ("geometry.scale: must be a finite number of source pixels per network pixel in [1, 16], got 0.5", |g| g.scale = 0.5),
            ("geometry.reference: applies to a region of interest only: set geometry.roi too (reference \"reference.png\")", |g| g.roi = None),
            ("geometry.reference: must be a plain file name in the bundle folder (no folder, no `..`), got \"../ref.png\"", |g| g.reference = Some("../ref.png".into())),
            ("geometry.scale: must be a finite number of source pixels per network pixel in [1, 16], got NaN", |g| g.scale = f32::NAN),
            ("geometry.scale: must be a finite number of source pixels per network pixel in [1, 16], got 17", |g| g.scale = 17.0),
            ("geometry.scale: applies to tiles only", |g| {
                g.tile = None;
                g.mask = None;
            }),
            ("geometry.tile.size: must be the bundle's input_size (256), got 128", |g| g.tile.as_mut().unwrap().size = 128),
            ("geometry.tile.overlap: must be below half the tile size (128), got 128", |g| g.tile.as_mut().unwrap().overlap = 128),
            ("geometry.mask: must be a plain file name in the bundle folder", |g| g.mask = Some("../mask.png".into())),
            ("geometry.mask: must be a plain file name in the bundle folder", |g| g.mask = Some("/etc/mask.png".into())),
            ("geometry.mask: applies to tiles only", |g| {
                g.tile = None;
                g.scale = 1.0;
            }),
        ];
        for (expected, edit) in cases {
            let mut m = tiled();
            edit(&mut m.geometry);
            let problems = m.problems();
            assert_eq!(problems.len(), 1, "{expected}: {problems:?}");
            assert!(problems[0].starts_with(expected), "{expected}: {problems:?}");
        }
    }

    /// A hand-edited geometry is refused when the bundle is read, naming the file and field.
    #[test]
    fn load_meta_refuses_a_bad_geometry() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = tiled();
        m.geometry.tile.as_mut().unwrap().overlap = 200;
        std::fs::write(tmp.path().join(META_FILE), toml::to_string(&m).unwrap()).unwrap();
        std::fs::write(tmp.path().join(WEIGHTS_FILE), b"").unwrap();
        let err = Bundle::load_meta(tmp.path()).err().unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "{}: geometry.tile.overlap: must be below half the tile size (128), got 200",
                tmp.path().join(META_FILE).display()
            )
        );
    }
}
