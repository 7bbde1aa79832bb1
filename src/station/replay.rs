//! A camera that replays real image files from a folder (subfolders included, in path
//! order), once or looping: the demo's and the tests' camera. A file that does not decode
//! is a corrupt frame, exactly as a damaged frame from a real camera would be; a
//! configured stall makes it stop delivering, as an unplugged camera would.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::boundary::{CaptureError, Frame, FrameSource};
use crate::imageio::{is_image_file, load_rgb};

pub struct ReplaySource {
    folder: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    looping: bool,
    delivered: u64,
    stall_after: Option<u64>,
    stall_for: Duration,
    /// Grab timeout: how long a stalled source blocks before reporting it.
    timeout: Duration,
    stalled_until: Option<Instant>,
}

impl ReplaySource {
    pub fn open(
        folder: &Path,
        looping: bool,
        stall_after: Option<u64>,
        stall_for: Duration,
        timeout: Duration,
    ) -> Result<Self, CaptureError> {
        let files = image_files_recursive(folder).map_err(|message| CaptureError::Disconnected {
            device: format!("replay {}", folder.display()),
            message,
        })?;
        Ok(ReplaySource {
            folder: folder.to_path_buf(),
            files,
            next: 0,
            looping,
            delivered: 0,
            stall_after,
            stall_for,
            timeout,
            stalled_until: None,
        })
    }

    /// How many files one pass replays.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The size of the frames it will deliver: that of the first file whose header reads
    /// (a corrupt frame among them is the station's to reject, not a start-up problem).
    pub fn frame_size(&self) -> Option<(u32, u32)> {
        self.files.iter().find_map(|f| image::image_dimensions(f).ok())
    }

    fn device(&self) -> String {
        format!("replay {}", self.folder.display())
    }
}

impl FrameSource for ReplaySource {
    fn grab(&mut self) -> Result<Frame, CaptureError> {
        if self.stall_after == Some(self.delivered) && self.stalled_until.is_none() {
            self.stalled_until = Some(Instant::now() + self.stall_for);
        }
        if let Some(until) = self.stalled_until {
            if Instant::now() < until {
                std::thread::sleep(self.timeout.min(until - Instant::now()));
                return Err(CaptureError::Disconnected {
                    device: self.device(),
                    message: format!("no frame within {} ms", self.timeout.as_millis()),
                });
            }
        }
        if self.next >= self.files.len() {
            if !self.looping {
                return Err(CaptureError::Exhausted {
                    folder: self.folder.display().to_string(),
                });
            }
            self.next = 0;
        }
        let path = self.files[self.next].clone();
        self.next += 1;
        self.delivered += 1;
        let origin = path
            .strip_prefix(&self.folder)
            .unwrap_or(&path)
            .display()
            .to_string();
        let captured_at = Instant::now();
        let captured_wall = SystemTime::now();
        match load_rgb(&path) {
            Ok(image) => Ok(Frame { image, captured_at, captured_wall, origin }),
            Err(e) => Err(CaptureError::CorruptFrame { origin, message: e.to_string() }),
        }
    }

    fn reopen(&mut self) -> Result<(), CaptureError> {
        match self.stalled_until {
            Some(until) if Instant::now() < until => Err(CaptureError::Disconnected {
                device: self.device(),
                message: "still not delivering".into(),
            }),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} images, {})",
            self.device(),
            self.files.len(),
            if self.looping { "looping" } else { "once" }
        )
    }
}

/// Image files under `folder`, recursively, sorted by path.
fn image_files_recursive(folder: &Path) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
                .path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if is_image_file(&path) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(folder, &mut files)?;
    if files.is_empty() {
        return Err(format!("no image files in {}", folder.display()));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The picture stored as `name`: every pixel different, and a first channel that
    /// differs from name to name, so a frame shows which file it was read from.
    fn picture(name: &str) -> image::RgbImage {
        let tag = name.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([tag, 30 * x as u8, 40 * y as u8]))
    }

    fn folder_with(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if name.contains("corrupt") {
                std::fs::write(&path, b"not a png").unwrap();
            } else {
                picture(name).save(&path).unwrap();
            }
        }
        dir
    }

    /// The frame is the file `name`: its origin, and the pixels written there (PNG is
    /// lossless, so exactly those).
    #[track_caller]
    fn assert_frame(got: Result<Frame, CaptureError>, name: &str) {
        let frame = got.unwrap_or_else(|e| panic!("expected frame {name}, got error {e}"));
        assert_eq!(frame.origin, name);
        assert!(frame.image == picture(name), "{name}: the pixels of another image");
    }

    #[track_caller]
    fn assert_corrupt(got: Result<Frame, CaptureError>, name: &str) {
        match got {
            Err(CaptureError::CorruptFrame { origin, .. }) => assert_eq!(origin, name),
            other => panic!("expected corrupt frame {name}, got {:?}", other.map(|f| f.origin)),
        }
    }

    #[test]
    fn replays_in_path_order_then_ends_or_loops() {
        let names = ["b.png", "a/x.png", "c_corrupt.png", "a.png"];
        // The pictures tell the files apart.
        assert!(picture("a.png") != picture("b.png") && picture("a/x.png") != picture("b.png"));
        let dir = folder_with(&names[..3]);
        let before = Instant::now();
        let mut once = ReplaySource::open(dir.path(), false, None, Duration::ZERO, Duration::ZERO)
            .unwrap();
        assert_eq!(once.len(), 3);
        let first = once.grab().unwrap();
        assert!(first.captured_at >= before && first.captured_at <= Instant::now());
        assert_frame(Ok(first), "a/x.png");
        assert_frame(once.grab(), "b.png");
        assert_corrupt(once.grab(), "c_corrupt.png");
        assert!(matches!(once.grab(), Err(CaptureError::Exhausted { .. })));
        assert!(matches!(once.grab(), Err(CaptureError::Exhausted { .. })));
        // Looping: the same order again from the first file, the corrupt one included.
        let mut looping =
            ReplaySource::open(dir.path(), true, None, Duration::ZERO, Duration::ZERO).unwrap();
        for _ in 0..2 {
            assert_frame(looping.grab(), "a/x.png");
            assert_frame(looping.grab(), "b.png");
            assert_corrupt(looping.grab(), "c_corrupt.png");
        }
    }

    #[test]
    fn a_stall_disconnects_until_it_is_over() {
        let dir = folder_with(&["a.png", "b.png"]);
        let stall = Duration::from_millis(150);
        let mut src =
            ReplaySource::open(dir.path(), true, Some(1), stall, Duration::from_millis(10))
                .unwrap();
        assert_frame(src.grab(), "a.png");
        assert!(matches!(src.grab(), Err(CaptureError::Disconnected { .. })));
        assert!(src.reopen().is_err());
        std::thread::sleep(stall);
        assert!(src.reopen().is_ok());
        // The stall skipped no file and repeats none: the next one comes, then the loop.
        assert_frame(src.grab(), "b.png");
        assert_frame(src.grab(), "a.png");
    }

    #[test]
    fn an_empty_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = ReplaySource::open(dir.path(), false, None, Duration::ZERO, Duration::ZERO)
            .err()
            .unwrap();
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }
}
