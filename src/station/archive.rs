//! Images and heatmap overlays of rejected parts (and a sample of passes), with a
//! retention limit in files and bytes: the oldest go first. A failed write (full disk)
//! is reported to the caller and leaves no partial file; the station goes on.
//!
//! Names never collide: the recorder names a part's files after its capture time (to the
//! millisecond) and its id, which is unique for the station's life, and [`Archive::store`]
//! still adds `-2`, `-3`… when a name is taken (a records folder reset to id 1, a clock
//! set back), so no stored image is ever overwritten.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::imageio::save_png_atomic;

pub struct Archive {
    dir: PathBuf,
    max_files: u64,
    max_bytes: u64,
    /// Oldest first.
    entries: VecDeque<(PathBuf, u64)>,
    bytes: u64,
}

impl Archive {
    /// Opens (creates) the folder and takes stock of what earlier runs left there.
    pub fn open(dir: &Path, max_files: u64, max_bytes: u64) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("archive {}: cannot create: {e}", dir.display()))?;
        let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
            .map_err(|e| format!("archive {}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let name = e.file_name();
                // Leftover temporary files of a crashed write are not archive entries.
                let keep = meta.is_file() && !name.to_string_lossy().starts_with('.');
                keep.then(|| (e.path(), meta.len()))
            })
            .collect();
        // Names start with a timestamp and the part id, so name order is age order.
        files.sort();
        let bytes = files.iter().map(|(_, n)| n).sum();
        let mut archive = Archive {
            dir: dir.to_path_buf(),
            max_files,
            max_bytes,
            entries: files.into(),
            bytes,
        };
        archive.enforce_limits();
        Ok(archive)
    }

    /// Stores a part's frame and overlay under `stem` (or `stem-2`, `stem-3`… when that
    /// name is taken); returns the files written.
    pub fn store(
        &mut self,
        stem: &str,
        frame: &RgbImage,
        overlay: Option<&RgbImage>,
    ) -> Result<Vec<PathBuf>, String> {
        let taken = |s: &str| {
            [format!("{s}.png"), format!("{s}_overlay.png")]
                .iter()
                .any(|n| std::fs::symlink_metadata(self.dir.join(n)).is_ok())
        };
        let mut stem = stem.to_string();
        if taken(&stem) {
            let free = (2..10_000).map(|i| format!("{stem}-{i}")).find(|s| !taken(s));
            stem = free.ok_or_else(|| format!("archive: no free name for {stem}"))?;
        }
        let mut written = Vec::new();
        let mut items = vec![(self.dir.join(format!("{stem}.png")), frame)];
        if let Some(o) = overlay {
            items.push((self.dir.join(format!("{stem}_overlay.png")), o));
        }
        for (path, img) in items {
            if let Err(e) = save_png_atomic(&path, img) {
                // Keep the pair together: drop the half already written.
                for p in &written {
                    let _ = std::fs::remove_file(p);
                }
                return Err(format!("archive: {e}"));
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.entries.push_back((path.clone(), size));
            self.bytes += size;
            written.push(path);
        }
        self.enforce_limits();
        Ok(written)
    }

    fn enforce_limits(&mut self) {
        while self.entries.len() as u64 > self.max_files || self.bytes > self.max_bytes {
            let Some((path, size)) = self.entries.pop_front() else { break };
            if let Err(e) = std::fs::remove_file(&path) {
                log::warn!("archive: cannot delete {}: {e}", crate::text::for_log(&path.display().to_string()));
            }
            self.bytes -= size;
        }
    }

    pub fn files(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_drops_the_oldest_by_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::new(16, 16);
        let mut archive = Archive::open(dir.path(), 3, u64::MAX).unwrap();
        for i in 0..4 {
            archive.store(&format!("t{i}"), &img, Some(&img)).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["t2_overlay.png", "t3.png", "t3_overlay.png"]);
        // Re-opened with a byte limit of one file, only the newest stays.
        let one = std::fs::metadata(dir.path().join("t3.png")).unwrap().len();
        let reopened = Archive::open(dir.path(), 100, one).unwrap();
        assert_eq!(reopened.files(), 1);
        assert!(reopened.bytes() <= one);
    }

    #[test]
    fn a_taken_name_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path(), 100, u64::MAX).unwrap();
        let a = RgbImage::new(4, 4);
        let b = RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 0]));
        let first = archive.store("p", &a, Some(&a)).unwrap();
        let second = archive.store("p", &b, None).unwrap();
        let third = archive.store("p", &b, Some(&b)).unwrap();
        let names = |v: &[PathBuf]| -> Vec<String> {
            v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names(&first), ["p.png", "p_overlay.png"]);
        assert_eq!(names(&second), ["p-2.png"]);
        assert_eq!(names(&third), ["p-3.png", "p-3_overlay.png"]);
        assert_eq!(crate::imageio::load_rgb(&first[0]).unwrap(), a);
        assert_eq!(archive.files(), 5);
    }

    #[test]
    fn a_failed_write_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path(), 10, u64::MAX).unwrap();
        std::fs::remove_dir_all(dir.path()).unwrap();
        let img = RgbImage::new(4, 4);
        let err = archive.store("p1", &img, Some(&img)).unwrap_err();
        assert!(err.contains("p1.png"), "{err}");
        assert_eq!(archive.files(), 0);
    }
}
