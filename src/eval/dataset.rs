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

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader};

use crate::imageio::{is_image_file, IMAGE_EXTENSIONS};
use crate::text::did_you_mean;

/// Which benchmark layout a dataset root follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetLayout {
    MvtecAd,
    Mvtec3dAd,
    Visa,
}

/// Defect name of normal test samples, whatever the layout.
pub const GOOD: &str = "good";

/// Defect name given to VisA anomalies (VisA's 1cls split has no defect types).
pub const VISA_ANOMALY: &str = "anomaly";

/// VisA's split file, relative to the dataset root.
pub const VISA_CSV: &str = "split_csv/1cls.csv";

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
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
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
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
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
        let rows = read_visa_csv(&csv)?;
        if !rows.iter().any(|r| r.object == category) {
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
        read_visa_csv(&csv)?.into_iter().map(|r| r.object).collect()
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
        DatasetLayout::MvtecAd => read_mvtec(&root.join(category), category, false)?,
        DatasetLayout::Mvtec3dAd => read_mvtec(&root.join(category), category, true)?,
        DatasetLayout::Visa => read_visa(root, category)?,
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

/// `dir/<base>.<ext>` for the first image extension that exists (png first, as in the
/// datasets), or `dir/<base>.png` as the path to name in the error.
fn find_mask(dir: &Path, base: &str) -> Result<PathBuf, PathBuf> {
    for ext in IMAGE_EXTENSIONS {
        let p = dir.join(format!("{base}.{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(dir.join(format!("{base}.png")))
}

/// MVTec AD (`rgb == false`) or MVTec 3D-AD (`rgb == true`: images in `<defect>/rgb/`,
/// masks in `<defect>/gt/` with the image's stem). Defect directories without images
/// are skipped; only a test split with no image at all is an error.
fn read_mvtec(
    dir: &Path,
    category: &str,
    rgb: bool,
) -> Result<(Vec<PathBuf>, Vec<TestSample>), DatasetError> {
    let sub = |p: PathBuf| if rgb { p.join("rgb") } else { p };
    let train_dir = sub(dir.join("train").join(GOOD));
    let train = images_in(&train_dir)?;
    if train.is_empty() {
        return Err(DatasetError::EmptyTrain {
            category: category.to_string(),
            path: train_dir,
        });
    }
    let test_dir = dir.join("test");
    let defects = if test_dir.is_dir() {
        subdirs(&test_dir)?
    } else {
        Vec::new()
    };
    let mut test = Vec::new();
    for defect in defects {
        for image in images_in(&sub(test_dir.join(&defect)))? {
            let id = stem(&image);
            let mask = if defect == GOOD {
                // 3D-AD ships all-black masks for good images; good means no defect anyway.
                None
            } else {
                let found = if rgb {
                    find_mask(&test_dir.join(&defect).join("gt"), &id)
                } else {
                    find_mask(
                        &dir.join("ground_truth").join(&defect),
                        &format!("{id}_mask"),
                    )
                };
                match found {
                    Ok(p) => Some(p),
                    Err(expected) => {
                        return Err(DatasetError::MissingMask {
                            image,
                            expected: Some(expected),
                        })
                    }
                }
            };
            test.push(TestSample {
                image,
                mask,
                defect: defect.clone(),
                id,
            });
        }
    }
    if test.is_empty() {
        return Err(DatasetError::EmptyTest {
            category: category.to_string(),
            path: test_dir,
        });
    }
    Ok((train, test))
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

/// One data line of VisA's split CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VisaRow {
    /// 1-based line in the file, for errors.
    line: usize,
    object: String,
    train: bool,
    normal: bool,
    image: String,
    mask: String,
}

/// Split one CSV line into fields: commas separate, double quotes enclose fields that
/// contain commas, `""` inside quotes is a quote. Fields spanning lines are not supported
/// (VisA has none).
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '"' if field.trim().is_empty() && !was_quoted => {
                    field.clear();
                    quoted = true;
                    was_quoted = true;
                }
                '"' => return Err("stray double quote inside a field".into()),
                _ if was_quoted && !c.is_whitespace() => {
                    return Err("text after a closing double quote".into())
                }
                _ if was_quoted => {}
                _ => field.push(c),
            }
        }
    }
    if quoted {
        return Err("unterminated double quote".into());
    }
    fields.push(field);
    Ok(fields)
}

/// Parse VisA's split CSV: header `object,split,label,image,mask` (columns found by name,
/// so their order does not matter), then one row per image. Blank lines are skipped.
fn parse_visa_csv(path: &Path, text: &str) -> Result<Vec<VisaRow>, DatasetError> {
    let bad = |line: usize, detail: String| DatasetError::MalformedCsv {
        path: path.to_path_buf(),
        line,
        detail,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((hline, header)) = lines.next() else {
        return Err(bad(
            1,
            "empty file (expected header object,split,label,image,mask)".into(),
        ));
    };
    let header: Vec<String> = split_csv_line(header)
        .map_err(|e| bad(hline, e))?
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            bad(
                hline,
                format!("header lacks column {name:?} (expected object,split,label,image,mask)"),
            )
        })
    };
    let (c_obj, c_split, c_label, c_image, c_mask) = (
        col("object")?,
        col("split")?,
        col("label")?,
        col("image")?,
        col("mask")?,
    );
    let mut rows = Vec::new();
    for (line, text) in lines {
        let f = split_csv_line(text).map_err(|e| bad(line, e))?;
        if f.len() != header.len() {
            return Err(bad(
                line,
                format!("expected {} fields, found {}", header.len(), f.len()),
            ));
        }
        let get = |c: usize| f[c].trim().to_string();
        let object = get(c_obj);
        if !is_plain_name(&object) {
            return Err(bad(line, format!("invalid object name {object:?}")));
        }
        let train = match get(c_split).to_ascii_lowercase().as_str() {
            "train" => true,
            "test" => false,
            other => {
                return Err(bad(
                    line,
                    format!("split must be train or test, found {other:?}"),
                ))
            }
        };
        let normal = match get(c_label).to_ascii_lowercase().as_str() {
            "normal" => true,
            "anomaly" => false,
            other => {
                return Err(bad(
                    line,
                    format!("label must be normal or anomaly, found {other:?}"),
                ))
            }
        };
        let image = get(c_image);
        if image.is_empty() {
            return Err(bad(line, "empty image path".into()));
        }
        if train && !normal {
            return Err(bad(
                line,
                "anomaly in the train split (training uses normal images only)".into(),
            ));
        }
        rows.push(VisaRow {
            line,
            object,
            train,
            normal,
            image,
            mask: get(c_mask),
        });
    }
    Ok(rows)
}

fn read_visa_csv(path: &Path) -> Result<Vec<VisaRow>, DatasetError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    parse_visa_csv(path, &text)
}

/// One VisA object from the split CSV; every listed file must exist.
fn read_visa(root: &Path, category: &str) -> Result<(Vec<PathBuf>, Vec<TestSample>), DatasetError> {
    let csv = root.join(VISA_CSV);
    let rows = read_visa_csv(&csv)?;
    let mut train = Vec::new();
    let mut test = Vec::new();
    for r in rows.into_iter().filter(|r| r.object == category) {
        let image = root.join(&r.image);
        if !image.is_file() {
            return Err(DatasetError::MissingFile {
                path: image,
                csv,
                line: r.line,
            });
        }
        if r.train {
            train.push(image);
            continue;
        }
        let mask = if r.normal {
            None
        } else if r.mask.is_empty() {
            return Err(DatasetError::MissingMask {
                image,
                expected: None,
            });
        } else {
            let mask = root.join(&r.mask);
            if !mask.is_file() {
                return Err(DatasetError::MissingMask {
                    image,
                    expected: Some(mask),
                });
            }
            Some(mask)
        };
        test.push(TestSample {
            id: stem(&image),
            image,
            mask,
            defect: if r.normal { GOOD } else { VISA_ANOMALY }.to_string(),
        });
    }
    if train.is_empty() {
        return Err(DatasetError::EmptyTrain {
            category: category.to_string(),
            path: csv,
        });
    }
    if test.is_empty() {
        return Err(DatasetError::EmptyTest {
            category: category.to_string(),
            path: csv,
        });
    }
    train.sort();
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

    fn mkdirs(p: &Path) {
        fs::create_dir_all(p).unwrap();
    }

    fn write_rgb(path: &Path, w: u32, h: u32) {
        mkdirs(path.parent().unwrap());
        RgbImage::from_pixel(w, h, Rgb([90, 120, 150]))
            .save(path)
            .unwrap();
    }

    /// 8-bit mask with `value` at the given pixels, 0 elsewhere.
    fn write_mask(path: &Path, w: u32, h: u32, on: &[(u32, u32)], value: u8) {
        mkdirs(path.parent().unwrap());
        let mut m = GrayImage::new(w, h);
        for &(x, y) in on {
            m.put_pixel(x, y, Luma([value]));
        }
        m.save(path).unwrap();
    }

    fn on_pixels(mask: &[bool], w: u32) -> Vec<(u32, u32)> {
        mask.iter()
            .enumerate()
            .filter(|(_, &v)| v)
            .map(|(i, _)| (i as u32 % w, i as u32 / w))
            .collect()
    }

    /// A minimal MVTec AD category: 3 train, good 000/001, crack 000/001 (masks), and
    /// another defect "hole" with one image; sizes 8x6.
    fn mvtec_ad(root: &Path, cat: &str) -> PathBuf {
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

    fn ids(c: &Category) -> Vec<(String, String)> {
        c.test
            .iter()
            .map(|s| (s.defect.clone(), s.id.clone()))
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T, DatasetError>) -> (DatasetError, String) {
        let e = r.unwrap_err();
        let s = e.to_string();
        (e, s)
    }

    #[test]
    fn mvtec_ad_is_detected_read_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let d = mvtec_ad(root, "bottle");
        mvtec_ad(root, "cable");
        fs::write(root.join("license.txt"), "x").unwrap();
        mkdirs(&root.join("not_a_category/stuff"));
        // A macOS resource fork must not be taken for an image.
        fs::write(d.join("test/crack/._000.png"), "junk").unwrap();

        assert_eq!(list_categories(root).unwrap(), ["bottle", "cable"]);
        assert_eq!(
            detect_layout(root, "bottle").unwrap(),
            DatasetLayout::MvtecAd
        );
        let c = load_category(root, "bottle").unwrap();
        assert_eq!(c.name, "bottle");
        assert_eq!(c.layout, DatasetLayout::MvtecAd);
        assert_eq!(
            c.train,
            (0..3)
                .map(|i| d.join(format!("train/good/{i:03}.png")))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            ids(&c),
            pairs(&[
                ("good", "000"),
                ("good", "001"),
                ("crack", "000"),
                ("crack", "001"),
                ("hole", "000"),
            ])
        );
        for s in &c.test {
            assert_eq!(
                s.image,
                d.join("test").join(&s.defect).join(format!("{}.png", s.id))
            );
            if s.is_good() {
                assert_eq!(s.mask, None);
                assert!(load_mask(s, 8, 6).unwrap().iter().all(|&v| !v));
            } else {
                assert_eq!(
                    s.mask.as_deref(),
                    Some(
                        d.join("ground_truth")
                            .join(&s.defect)
                            .join(format!("{}_mask.png", s.id))
                            .as_path()
                    )
                );
                let i: u32 = s.id.parse().unwrap();
                let m = load_mask(s, 8, 6).unwrap();
                assert_eq!(m.len(), 48);
                assert_eq!(on_pixels(&m, 8), [(i, 1), (7, 5)]);
            }
        }
    }

    #[test]
    fn mvtec_3d_ad_is_detected_and_validation_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let d = root.join("cookie");
        for i in 0..2 {
            write_rgb(&d.join(format!("train/good/rgb/{i:03}.png")), 10, 7);
            mkdirs(&d.join("train/good/xyz"));
        }
        write_rgb(&d.join("validation/good/rgb/000.png"), 10, 7);
        write_rgb(&d.join("test/good/rgb/000.png"), 10, 7);
        // 3D-AD ships all-black masks for good images; they are not used.
        write_mask(&d.join("test/good/gt/000.png"), 10, 7, &[], 255);
        for defect in ["hole", "crack"] {
            write_rgb(&d.join(format!("test/{defect}/rgb/000.png")), 10, 7);
            write_mask(
                &d.join(format!("test/{defect}/gt/000.png")),
                10,
                7,
                &[(3, 4)],
                255,
            );
            mkdirs(&d.join(format!("test/{defect}/xyz")));
        }

        assert_eq!(list_categories(root).unwrap(), ["cookie"]);
        assert_eq!(
            detect_layout(root, "cookie").unwrap(),
            DatasetLayout::Mvtec3dAd
        );
        let c = load_category(root, "cookie").unwrap();
        assert_eq!(c.layout, DatasetLayout::Mvtec3dAd);
        assert_eq!(
            c.train,
            [
                d.join("train/good/rgb/000.png"),
                d.join("train/good/rgb/001.png")
            ]
        );
        assert_eq!(
            ids(&c),
            pairs(&[("good", "000"), ("crack", "000"), ("hole", "000")])
        );
        assert_eq!(c.test[0].mask, None);
        assert_eq!(c.test[1].image, d.join("test/crack/rgb/000.png"));
        assert_eq!(
            c.test[1].mask.as_deref(),
            Some(d.join("test/crack/gt/000.png").as_path())
        );
        assert_eq!(
            on_pixels(&load_mask(&c.test[2], 10, 7).unwrap(), 10),
            [(3, 4)]
        );
    }

    /// A VisA root with two objects; masks use VisA's 0/1 values.
    fn visa(root: &Path, csv: &str) {
        for (obj, n) in [("pcb1", 2), ("candle", 1)] {
            for i in 0..n {
                write_rgb(
                    &root.join(format!("{obj}/Data/Images/Normal/{i:04}.JPG.png")),
                    9,
                    5,
                );
            }
            write_rgb(
                &root.join(format!("{obj}/Data/Images/Normal/0100.png")),
                9,
                5,
            );
            write_rgb(
                &root.join(format!("{obj}/Data/Images/Anomaly/000.png")),
                9,
                5,
            );
            write_mask(
                &root.join(format!("{obj}/Data/Masks/Anomaly/000.png")),
                9,
                5,
                &[(8, 4)],
                1,
            );
        }
        mkdirs(&root.join("split_csv"));
        fs::write(root.join(VISA_CSV), csv).unwrap();
    }

    const VISA_CSV_TEXT: &str = "\u{feff}object,split,label,image,mask\r\n\
        pcb1,train,normal,pcb1/Data/Images/Normal/0001.JPG.png,\r\n\
        pcb1,train,normal,\"pcb1/Data/Images/Normal/0000.JPG.png\",\r\n\
        \r\n\
        pcb1,test,anomaly,pcb1/Data/Images/Anomaly/000.png,pcb1/Data/Masks/Anomaly/000.png\r\n\
        pcb1,test,normal,pcb1/Data/Images/Normal/0100.png,\r\n\
        candle,train,normal,candle/Data/Images/Normal/0000.JPG.png,\n\
        candle,test,normal,candle/Data/Images/Normal/0100.png,\n\
        candle,test,anomaly,candle/Data/Images/Anomaly/000.png,candle/Data/Masks/Anomaly/000.png\n";

    #[test]
    fn visa_is_detected_and_read_from_the_csv() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        visa(root, VISA_CSV_TEXT);
        assert_eq!(list_categories(root).unwrap(), ["candle", "pcb1"]);
        assert_eq!(detect_layout(root, "pcb1").unwrap(), DatasetLayout::Visa);
        let c = load_category(root, "pcb1").unwrap();
        assert_eq!(c.layout, DatasetLayout::Visa);
        assert_eq!(
            c.train,
            [
                root.join("pcb1/Data/Images/Normal/0000.JPG.png"),
                root.join("pcb1/Data/Images/Normal/0001.JPG.png")
            ]
        );
        assert_eq!(ids(&c), pairs(&[("good", "0100"), ("anomaly", "000")]));
        assert_eq!(c.test[0].mask, None);
        assert_eq!(
            c.test[1].mask.as_deref(),
            Some(root.join("pcb1/Data/Masks/Anomaly/000.png").as_path())
        );
        // VisA masks hold 0/1, not 0/255.
        assert_eq!(
            on_pixels(&load_mask(&c.test[1], 9, 5).unwrap(), 9),
            [(8, 4)]
        );
        assert_eq!(load_category(root, "candle").unwrap().test.len(), 2);
    }

    #[test]
    fn csv_fields_quotes_and_columns() {
        assert_eq!(split_csv_line("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split_csv_line(r#""x, y","say ""hi""",z"#).unwrap(),
            ["x, y", r#"say "hi""#, "z"]
        );
        assert_eq!(split_csv_line(r#" "q" ,r"#).unwrap(), ["q", "r"]);
        assert!(split_csv_line(r#""open,b"#).is_err());
        assert!(split_csv_line(r#"a"b,c"#).is_err());
        assert!(split_csv_line(r#""a"b,c"#).is_err());

        // Columns are found by name, in any order.
        let p = Path::new("/d/split_csv/1cls.csv");
        let rows = parse_visa_csv(
            p,
            "image,mask,label,split,object\nx/1.png,,normal,train,fryum\n",
        )
        .unwrap();
        assert_eq!(
            rows,
            [VisaRow {
                line: 2,
                object: "fryum".into(),
                train: true,
                normal: true,
                image: "x/1.png".into(),
                mask: String::new(),
            }]
        );
    }

    #[test]
    fn malformed_csv_lines_are_reported_with_path_and_line() {
        let p = Path::new("/d/split_csv/1cls.csv");
        let head = "object,split,label,image,mask\n";
        let ok = "a,train,normal,a/0.png,\n";
        for (body, line, what) in [
            (
                format!("{head}{ok}a,test,normal\n"),
                3,
                "expected 5 fields, found 3",
            ),
            (format!("{head}{ok}{ok}a,val,normal,x.png,\n"), 4, "split"),
            (format!("{head}a,test,bad,x.png,\n"), 2, "label"),
            (format!("{head}a,test,normal,,\n"), 2, "empty image"),
            (
                format!("{head}a,train,anomaly,x.png,m.png\n"),
                2,
                "train split",
            ),
            (format!("{head}a,test,normal,\"x.png,\n"), 2, "unterminated"),
            (
                format!("{head}../up,test,normal,x.png,\n"),
                2,
                "object name",
            ),
            ("object,split,label,image\n".to_string(), 1, "\"mask\""),
            (String::new(), 1, "empty file"),
        ] {
            let e = parse_visa_csv(p, &body).unwrap_err();
            assert!(
                matches!(e, DatasetError::MalformedCsv { line: l, .. } if l == line),
                "{e}"
            );
            let s = e.to_string();
            assert!(s.contains(&format!("/d/split_csv/1cls.csv:{line}:")), "{s}");
            assert!(s.contains(what), "{s}");
        }
    }

    #[test]
    fn visa_file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        visa(root, VISA_CSV_TEXT);
        let csv_path = root.join(VISA_CSV);
        let edit = |from: &str, to: &str| {
            fs::write(&csv_path, VISA_CSV_TEXT.replace(from, to)).unwrap();
        };

        // Anomaly without mask.
        edit(",pcb1/Data/Masks/Anomaly/000.png", ",");
        let (e, s) = err_text(load_category(root, "pcb1"));
        assert!(matches!(e, DatasetError::MissingMask { .. }), "{s}");
        assert!(s.contains("Anomaly/000.png"), "{s}");

        // Mask listed but absent.
        edit("Masks/Anomaly/000.png", "Masks/Anomaly/404.png");
        let (_, s) = err_text(load_category(root, "pcb1"));
        assert!(s.contains("pcb1/Data/Masks/Anomaly/404.png"), "{s}");

        // Listed image absent (line 6: the blank line 4 counts).
        edit("Normal/0100.png", "Normal/0404.png");
        let (e, s) = err_text(load_category(root, "pcb1"));
        assert!(
            matches!(e, DatasetError::MissingFile { line: 6, .. }),
            "{s}"
        );
        assert!(
            s.contains("Normal/0404.png") && s.contains("1cls.csv:6"),
            "{s}"
        );

        // Unknown object, with a suggestion.
        edit("", "");
        let (e, s) = err_text(load_category(root, "pcb"));
        assert!(matches!(e, DatasetError::CategoryNotFound { .. }), "{s}");
        assert!(s.contains("1cls.csv") && s.contains("candle, pcb1"), "{s}");
        assert!(s.contains("did you mean \"pcb1\""), "{s}");

        // No test rows for an object.
        fs::write(
            &csv_path,
            "object,split,label,image,mask\ncandle,train,normal,candle/Data/Images/Normal/0000.JPG.png,\n",
        )
        .unwrap();
        let (e, s) = err_text(load_category(root, "candle"));
        assert!(matches!(e, DatasetError::EmptyTest { .. }), "{s}");
        assert!(s.contains("1cls.csv"), "{s}");
        fs::write(
            &csv_path,
            "object,split,label,image,mask\ncandle,test,normal,candle/Data/Images/Normal/0000.JPG.png,\n",
        )
        .unwrap();
        let (e, s) = err_text(load_category(root, "candle"));
        assert!(matches!(e, DatasetError::EmptyTrain { .. }), "{s}");
        assert!(s.contains("1cls.csv"), "{s}");
    }

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
    fn empty_splits_and_missing_masks_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();

        let d = mvtec_ad(root, "a");
        for f in fs::read_dir(d.join("train/good")).unwrap() {
            fs::remove_file(f.unwrap().path()).unwrap();
        }
        let (e, s) = err_text(load_category(root, "a"));
        assert!(matches!(e, DatasetError::EmptyTrain { .. }), "{s}");
        assert!(
            s.contains(&d.join("train/good").display().to_string()),
            "{s}"
        );

        let d = mvtec_ad(root, "b");
        fs::remove_dir_all(d.join("test")).unwrap();
        let (e, s) = err_text(load_category(root, "b"));
        assert!(matches!(e, DatasetError::EmptyTest { .. }), "{s}");
        assert!(s.contains(&d.join("test").display().to_string()), "{s}");

        let d = mvtec_ad(root, "c");
        fs::remove_file(d.join("ground_truth/crack/001_mask.png")).unwrap();
        let (e, s) = err_text(load_category(root, "c"));
        assert!(matches!(e, DatasetError::MissingMask { .. }), "{s}");
        assert!(
            s.contains(&d.join("test/crack/001.png").display().to_string()),
            "{s}"
        );
        assert!(s.contains("ground_truth/crack/001_mask.png"), "{s}");

        // 3D-AD: empty train and a missing gt.
        let d = root.join("tire");
        mkdirs(&d.join("train/good/rgb"));
        write_rgb(&d.join("test/cut/rgb/000.png"), 4, 4);
        let (e, s) = err_text(load_category(root, "tire"));
        assert!(matches!(e, DatasetError::EmptyTrain { .. }), "{s}");
        assert!(s.contains("train/good/rgb"), "{s}");
        write_rgb(&d.join("train/good/rgb/000.png"), 4, 4);
        let (e, s) = err_text(load_category(root, "tire"));
        assert!(matches!(e, DatasetError::MissingMask { .. }), "{s}");
        assert!(s.contains("test/cut/gt/000.png"), "{s}");

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
