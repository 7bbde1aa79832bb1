//! MVTec AD and MVTec 3D-AD: one directory per category, training images in
//! `train/good`, test images in one directory per defect type, masks in
//! `ground_truth/<defect>` (MVTec AD) or `test/<defect>/gt` (MVTec 3D-AD).

use std::path::{Path, PathBuf};

use crate::imageio::IMAGE_EXTENSIONS;

use super::{images_in, stem, subdirs, DatasetError, TestSample, GOOD};

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
pub(super) fn read_mvtec(
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::fixtures::*;
    use super::super::{
        detect_layout, list_categories, load_category, load_mask, DatasetError, DatasetLayout,
    };

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
    }
}
