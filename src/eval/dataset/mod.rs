//! Readers for the public anomaly-detection benchmarks, so that the evaluation code sees
//! one shape (a [`Category`] of training paths and labelled test samples) whichever
//! dataset it is pointed at:
//!
//! ```text
//! MVTec AD      <root>/<cat>/train/good/*.png
//!               <root>/<cat>/test/<defect>/*.png          (defect "good" = normal)
//!               <root>/<cat>/ground_truth/<defect>/<id>_mask.png   (none for good)
//! MVTec 3D-AD   <root>/<cat>/{train,validation,test}/<defect>/rgb/*.png  (RGB only)
//!               <root>/<cat>/test/<defect>/gt/<id>.png
//! VisA          <root>/split_csv/1cls.csv: object,split,label,image,mask
//!               (paths relative to <root>; label normal/anomaly; mask empty if normal)
//! ```
//!
//! MVTec 3D-AD's `validation/good` is ignored: the benchmark protocol trains on
//! `train/good` only, and mixing validation images in would make numbers incomparable.
//!
//! Loading a category checks everything that would otherwise fail half-way through a
//! long evaluation: every defective test image has a mask, masks have their image's
//! size (headers only, so this is cheap) and no two test images share an id (their
//! exported maps would overwrite each other). Every error names the offending path.
//!
//! One file per job: `mvtec.rs` reads MVTec AD and MVTec 3D-AD, `visa.rs` VisA's split
//! CSV and `mask.rs` ground truth; this file holds the shared types, layout detection and
//! the checks every layout goes through.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::imageio::is_image_file;
use crate::text::did_you_mean;

mod mask;
mod mvtec;
mod visa;

pub use mask::load_mask;
pub use visa::{VISA_ANOMALY, VISA_CSV};

/// Which benchmark layout a dataset root follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetLayout {
    MvtecAd,
    Mvtec3dAd,
    Visa,
}

/// Defect name of normal test samples, whatever the layout.
pub const GOOD: &str = "good";

/// One labelled test image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSample {
    pub image: PathBuf,
    /// Ground-truth mask; `None` for normal samples (which are all-good by definition).
    pub mask: Option<PathBuf>,
    /// `"good"` for normal samples, otherwise the defect type.
    pub defect: String,
    /// The image's file stem, unique within `defect`, so maps can be exported as
    /// `DIR/<category>/test/<defect>/<id>.tiff`.
    pub id: String,
}

impl TestSample {
    /// True for normal (defect-free) samples.
    pub fn is_good(&self) -> bool {
        self.defect == GOOD
    }
}

/// Everything the evaluation needs about one category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    pub layout: DatasetLayout,
    /// Good training images, sorted by path.
    pub train: Vec<PathBuf>,
    /// Sorted by (defect, id), with `"good"` first.
    pub test: Vec<TestSample>,
}

/// Errors of the dataset readers; each names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset root {} does not exist or is not a directory", path.display())]
    RootNotFound { path: PathBuf },
    #[error(
        "no categories under {}: expected <root>/<category>/train/good (MVTec AD, MVTec 3D-AD) or <root>/{VISA_CSV} (VisA){}",
        path.display(),
        root_is_category_hint(path)
    )]
    NoCategories { path: PathBuf },
    #[error(
        "category {category:?} not found: {} {}{}",
        path.display(),
        if path.ends_with(VISA_CSV) { "does not list it" } else { "does not exist" },
        categories_hint(found, suggestion.as_deref())
    )]
    CategoryNotFound {
        category: String,
        /// The directory looked for, or VisA's CSV.
        path: PathBuf,
        found: Vec<String>,
        suggestion: Option<String>,
    },
    #[error("{} is not a known dataset layout: expected train/good/ (MVTec AD) or train/good/rgb/ (MVTec 3D-AD)", path.display())]
    UnknownLayout { path: PathBuf },
    #[error("category {category:?}: no training images in {}", path.display())]
    EmptyTrain { category: String, path: PathBuf },
    #[error("category {category:?}: no test images in {}", path.display())]
    EmptyTest { category: String, path: PathBuf },
    #[error("defective test image {} has no ground-truth mask{}", image.display(), match expected {
        Some(p) => format!(" (expected {})", p.display()),
        None => String::new(),
    })]
    MissingMask {
        image: PathBuf,
        expected: Option<PathBuf>,
    },
    #[error(
        "mask {} is {mask_width}x{mask_height} but its image {} is {width}x{height}",
        mask.display(),
        image.display()
    )]
    MaskSizeMismatch {
        mask: PathBuf,
        mask_width: u32,
        mask_height: u32,
        image: PathBuf,
        width: u32,
        height: u32,
    },
    #[error("cannot read mask {}: {detail}", path.display())]
    UnreadableMask { path: PathBuf, detail: String },
    #[error("cannot read test image {}: {detail}", path.display())]
    UnreadableImage { path: PathBuf, detail: String },
    #[error("{}:{line}: {detail}", path.display())]
    MalformedCsv {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("{}:{line}: {} does not exist", csv.display(), path.display())]
    MissingFile {
        path: PathBuf,
        csv: PathBuf,
        line: usize,
    },
    #[error(
        "test images {} and {} have the same id {id:?} and defect {defect:?}; their anomaly maps would overwrite each other",
        first.display(),
        second.display()
    )]
    DuplicateId {
        first: PathBuf,
        second: PathBuf,
        defect: String,
        id: String,
    },
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

/// "; categories found: a, b; did you mean "x"?" (or a note that none were found).
fn categories_hint(found: &[String], suggestion: Option<&str>) -> String {
    let mut s = if found.is_empty() {
        "; no categories found there".to_string()
    } else {
        format!("; categories found: {}", found.join(", "))
    };
    if let Some(x) = suggestion {
        s.push_str(&format!("; did you mean {x:?}?"));
    }
    s
}

/// A common mistake is passing a category directory as the root; say so.
fn root_is_category_hint(root: &Path) -> String {
    if root.join("train").join("good").is_dir() {
        format!(
            " ({} looks like a category itself: pass its parent as the root)",
            root.display()
        )
    } else {
        String::new()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DatasetError + '_ {
    move |error| DatasetError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn category_not_found(root: &Path, category: &str, path: PathBuf) -> DatasetError {
    let found = list_categories(root).unwrap_or_default();
    let suggestion = did_you_mean(category, found.iter().map(String::as_str)).map(str::to_string);
    DatasetError::CategoryNotFound {
        category: category.to_string(),
        path,
        found,
        suggestion,
    }
}

fn check_root(root: &Path) -> Result<(), DatasetError> {
    if root.is_dir() {
        Ok(())
    } else {
        Err(DatasetError::RootNotFound {
            path: root.to_path_buf(),
        })
    }
}

/// A category name must be one path component, so it cannot escape the root.
fn is_plain_name(category: &str) -> bool {
    !category.is_empty() && category != "." && category != ".." && !category.contains(['/', '\\'])
}

/// The layout of `category` under `root`. A root with VisA's split CSV is VisA; otherwise
/// the category directory decides (`train/good/rgb` means MVTec 3D-AD).
pub fn detect_layout(root: &Path, category: &str) -> Result<DatasetLayout, DatasetError> {
    check_root(root)?;
    let csv = root.join(VISA_CSV);
    if csv.is_file() {
        if !visa::objects(&csv)?.contains(category) {
            return Err(category_not_found(root, category, csv));
        }
        return Ok(DatasetLayout::Visa);
    }
    let dir = root.join(category);
    if !is_plain_name(category) || !dir.is_dir() {
        return Err(category_not_found(root, category, dir));
    }
    let good = dir.join("train").join(GOOD);
    if good.join("rgb").is_dir() {
        Ok(DatasetLayout::Mvtec3dAd)
    } else if good.is_dir() {
        Ok(DatasetLayout::MvtecAd)
    } else {
        Err(DatasetError::UnknownLayout { path: dir })
    }
}

/// The categories under `root`, sorted: for VisA the objects of its split CSV, otherwise
/// the directories holding `train/good` (which skips MVTec's licence and readme files).
pub fn list_categories(root: &Path) -> Result<Vec<String>, DatasetError> {
    check_root(root)?;
    let csv = root.join(VISA_CSV);
    let names: BTreeSet<String> = if csv.is_file() {
        visa::objects(&csv)?
    } else {
        let mut names = BTreeSet::new();
        for entry in fs::read_dir(root).map_err(io_err(root))? {
            let path = entry.map_err(io_err(root))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.starts_with('.') && path.join("train").join(GOOD).is_dir() {
                names.insert(name.to_string());
            }
        }
        names
    };
    if names.is_empty() {
        return Err(DatasetError::NoCategories {
            path: root.to_path_buf(),
        });
    }
    Ok(names.into_iter().collect())
}

/// Read one category: training paths and sorted, validated test samples.
pub fn load_category(root: &Path, category: &str) -> Result<Category, DatasetError> {
    let layout = detect_layout(root, category)?;
    let (train, test) = match layout {
        DatasetLayout::MvtecAd => mvtec::read_mvtec(&root.join(category), category, false)?,
        DatasetLayout::Mvtec3dAd => mvtec::read_mvtec(&root.join(category), category, true)?,
        DatasetLayout::Visa => visa::read_visa(root, category)?,
    };
    let test = finish_test(test)?;
    Ok(Category {
        name: category.to_string(),
        layout,
        train,
        test,
    })
}

/// Image files directly in `dir`, sorted; empty when `dir` does not exist. Dot files are
/// skipped (macOS leaves `._000.png` resource forks in copied datasets).
fn images_in(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let hidden = path
            .file_name()
            .map(|n| n.to_string_lossy().starts_with('.'))
            .unwrap_or(true);
        if !hidden && is_image_file(&path) && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Subdirectory names of `dir`, sorted.
fn subdirs(dir: &Path) -> Result<Vec<String>, DatasetError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            if !name.starts_with('.') && path.is_dir() {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Sort (good first, then by defect and id), refuse duplicate ids, and check that every
/// mask has its image's size, reading headers only.
fn finish_test(mut test: Vec<TestSample>) -> Result<Vec<TestSample>, DatasetError> {
    test.sort_by(|a, b| {
        (!a.is_good(), &a.defect, &a.id, &a.image).cmp(&(!b.is_good(), &b.defect, &b.id, &b.image))
    });
    for w in test.windows(2) {
        if w[0].defect == w[1].defect && w[0].id == w[1].id {
            return Err(DatasetError::DuplicateId {
                first: w[0].image.clone(),
                second: w[1].image.clone(),
                defect: w[0].defect.clone(),
                id: w[0].id.clone(),
            });
        }
    }
    for s in &test {
        if let Some(mask) = &s.mask {
            let (width, height) =
                image::image_dimensions(&s.image).map_err(|e| DatasetError::UnreadableImage {
                    path: s.image.clone(),
                    detail: e.to_string(),
                })?;
            let (mask_width, mask_height) =
                image::image_dimensions(mask).map_err(|e| DatasetError::UnreadableMask {
                    path: mask.clone(),
                    detail: e.to_string(),
                })?;
            if (mask_width, mask_height) != (width, height) {
                return Err(DatasetError::MaskSizeMismatch {
                    mask: mask.clone(),
                    mask_width,
                    mask_height,
                    image: s.image.clone(),
                    width,
                    height,
                });
            }
        }
    }
    Ok(test)
}

/// Test fixtures shared by the layouts' tests: small datasets written to temporary
/// directories, and helpers to look at masks and errors.
#[cfg(test)]
mod fixtures {
    use std::fs;
    use std::path::{Path, PathBuf};

    use image::{GrayImage, Luma, Rgb, RgbImage};

    use super::{Category, DatasetError};

    pub(super) fn mkdirs(p: &Path) {
        fs::create_dir_all(p).unwrap();
    }

    pub(super) fn write_rgb(path: &Path, w: u32, h: u32) {
        mkdirs(path.parent().unwrap());
        RgbImage::from_pixel(w, h, Rgb([90, 120, 150]))
            .save(path)
            .unwrap();
    }

    /// 8-bit mask with `value` at the given pixels, 0 elsewhere.
    pub(super) fn write_mask(path: &Path, w: u32, h: u32, on: &[(u32, u32)], value: u8) {
        mkdirs(path.parent().unwrap());
        let mut m = GrayImage::new(w, h);
        for &(x, y) in on {
            m.put_pixel(x, y, Luma([value]));
        }
        m.save(path).unwrap();
    }

    pub(super) fn on_pixels(mask: &[bool], w: u32) -> Vec<(u32, u32)> {
        mask.iter()
            .enumerate()
            .filter(|(_, &v)| v)
            .map(|(i, _)| (i as u32 % w, i as u32 / w))
            .collect()
    }

    /// A minimal MVTec AD category: 3 train, good 000/001, crack 000/001 (masks), and
    /// another defect "hole" with one image; sizes 8x6.
    pub(super) fn mvtec_ad(root: &Path, cat: &str) -> PathBuf {
        let d = root.join(cat);
        for i in [2, 0, 1] {
            write_rgb(&d.join(format!("train/good/{i:03}.png")), 8, 6);
        }
        write_rgb(&d.join("test/good/001.png"), 8, 6);
        write_rgb(&d.join("test/good/000.png"), 8, 6);
        for (defect, n) in [("crack", 2), ("hole", 1)] {
            for i in (0..n).rev() {
                write_rgb(&d.join(format!("test/{defect}/{i:03}.png")), 8, 6);
                write_mask(
                    &d.join(format!("ground_truth/{defect}/{i:03}_mask.png")),
                    8,
                    6,
                    &[(i, 1), (7, 5)],
                    255,
                );
            }
        }
        d
    }

    pub(super) fn ids(c: &Category) -> Vec<(String, String)> {
        c.test
            .iter()
            .map(|s| (s.defect.clone(), s.id.clone()))
            .collect()
    }

    pub(super) fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    pub(super) fn err_text<T: std::fmt::Debug>(
        r: Result<T, DatasetError>,
    ) -> (DatasetError, String) {
        let e = r.unwrap_err();
        let s = e.to_string();
        (e, s)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn missing_root_and_category_name_the_path_and_suggest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let missing = root.join("nowhere");
        for e in [
            detect_layout(&missing, "x").unwrap_err(),
            list_categories(&missing).unwrap_err(),
            load_category(&missing, "x").unwrap_err(),
        ] {
            assert!(matches!(e, DatasetError::RootNotFound { .. }), "{e}");
            assert!(e.to_string().contains("nowhere"), "{e}");
        }

        // An empty root has no categories.
        let (e, s) = err_text(list_categories(root));
        assert!(matches!(e, DatasetError::NoCategories { .. }), "{s}");
        assert!(s.contains(&root.display().to_string()), "{s}");

        mvtec_ad(root, "bottle");
        mvtec_ad(root, "capsule");
        let (e, s) = err_text(load_category(root, "botle"));
        assert!(matches!(e, DatasetError::CategoryNotFound { .. }), "{s}");
        assert!(s.contains(&root.join("botle").display().to_string()), "{s}");
        assert!(s.contains("categories found: bottle, capsule"), "{s}");
        assert!(s.contains("did you mean \"bottle\"?"), "{s}");
        // Case slips are suggested too; far-off names are not.
        let (_, s) = err_text(load_category(root, "Capsule"));
        assert!(s.contains("did you mean \"capsule\"?"), "{s}");
        let (_, s) = err_text(load_category(root, "transistor"));
        assert!(!s.contains("did you mean"), "{s}");
        // A name that is not one path component is never looked up.
        let (e, _) = err_text(load_category(root, "../bottle"));
        assert!(matches!(e, DatasetError::CategoryNotFound { .. }));

        // Passing a category as the root says so.
        let (_, s) = err_text(list_categories(&root.join("bottle")));
        assert!(s.contains("looks like a category itself"), "{s}");

        // A directory in neither layout.
        mkdirs(&root.join("misc/docs"));
        let (e, s) = err_text(load_category(root, "misc"));
        assert!(matches!(e, DatasetError::UnknownLayout { .. }), "{s}");
        assert!(s.contains("misc"), "{s}");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let d = mvtec_ad(root, "bottle");
        write_rgb(&d.join("test/good/000.bmp"), 8, 6);
        let (e, s) = err_text(load_category(root, "bottle"));
        assert!(matches!(e, DatasetError::DuplicateId { .. }), "{s}");
        assert!(s.contains("000.bmp") && s.contains("000.png"), "{s}");
    }
}
