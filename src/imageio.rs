//! Image input/output for the inspection station: loading camera images of any of the
//! supported formats as 8-bit RGB, writing anomaly maps as 32-bit float TIFF, and
//! rendering heatmap overlays that an operator can read at a glance.
//!
//! Every error names the file it concerns, because at a station the first question is
//! always "which image?". Writers are atomic (temp file in the same directory, then
//! rename) so a crash or a full disk never leaves a half-written file that a downstream
//! tool would pick up.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::{ExtendedColorType, GrayImage, ImageEncoder, ImageReader, RgbImage};

/// File extensions (lower case) that [`is_image_file`] accepts.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// Everything that can go wrong reading or writing images; each variant names the file.
///
/// Each message says its cause itself (the OS error of `Unreadable` and `Unwritable`), so
/// `source()` returns nothing: an error that did both would print its cause twice in a
/// chain (anyhow's `{:#}`, which `main` prints). `Display` is written out by hand because
/// thiserror makes any field named `source` the source, and other modules build these
/// variants with that field name.
#[derive(Debug)]
pub enum ImageError {
    Unreadable { path: PathBuf, source: io::Error },
    Unwritable { path: PathBuf, source: io::Error },
    EmptyFile { path: PathBuf },
    UnsupportedFormat { path: PathBuf, detail: String },
    Corrupt { path: PathBuf, detail: String },
    ZeroSize {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    TooLarge { path: PathBuf, detail: String },
    NotADirectory { path: PathBuf },
    NoImages { path: PathBuf },
    Encode { path: PathBuf, detail: String },
    InvalidData { path: PathBuf, detail: String },
    SizeMismatch {
        map_w: u32,
        map_h: u32,
        len: usize,
        image_w: u32,
        image_h: u32,
    },
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ImageError::*;
        match self {
            Unreadable { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Unwritable { path, source } => write!(f, "cannot write {}: {source}", path.display()),
            EmptyFile { path } => write!(f, "{} is an empty file (0 bytes)", path.display()),
            UnsupportedFormat { path, detail } => write!(
                f,
                "{} is not an image in a supported format (png, jpeg, bmp, tiff): {detail}",
                path.display()
            ),
            Corrupt { path, detail } => {
                write!(f, "{} has corrupt or truncated image data: {detail}", path.display())
            }
            ZeroSize {
                path,
                width,
                height,
            } => write!(f, "{} has zero size ({width}x{height})", path.display()),
            TooLarge { path, detail } => {
                write!(f, "{} is too large to decode: {detail}", path.display())
            }
            NotADirectory { path } => {
                write!(f, "{} is not a directory (or does not exist)", path.display())
            }
            NoImages { path } => write!(
                f,
                "directory {} contains no images (looked for .png, .jpg, .jpeg, .bmp, .tif, .tiff)",
                path.display()
            ),
            Encode { path, detail } => write!(f, "cannot encode {}: {detail}", path.display()),
            InvalidData { path, detail } => write!(f, "{}: {detail}", path.display()),
            SizeMismatch {
                map_w,
                map_h,
                len,
                image_w,
                image_h,
            } => write!(
                f,
                "map is {map_w}x{map_h} ({len} values) but the image is {image_w}x{image_h}"
            ),
        }
    }
}

impl std::error::Error for ImageError {}

/// True when `path` has one of the supported image extensions (case-insensitive).
/// Deciding by extension keeps directory scans cheap and predictable.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            let e = e.to_ascii_lowercase();
            IMAGE_EXTENSIONS.contains(&e.as_str())
        })
        .unwrap_or(false)
}

/// The image files directly inside `dir`, sorted by path so that runs are reproducible.
/// Errors when `dir` is missing or holds no image, since either means a misconfiguration.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    if !dir.is_dir() {
        return Err(ImageError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let unreadable = |source| ImageError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if is_image_file(&path) && path.is_file() {
            out.push(path);
        }
    }
    if out.is_empty() {
        return Err(ImageError::NoImages {
            path: dir.to_path_buf(),
        });
    }
    out.sort();
    Ok(out)
}

/// Load any supported image (png/jpeg/bmp/tiff; grey, alpha, 16-bit or float) as 8-bit RGB,
/// the single layout the rest of the pipeline works with. Alpha is dropped.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let p = || path.to_path_buf();
    let meta = fs::metadata(path).map_err(|source| ImageError::Unreadable { path: p(), source })?;
    if meta.is_dir() {
        return Err(ImageError::Unreadable {
            path: p(),
            source: io::Error::other("is a directory"),
        });
    }
    if meta.len() == 0 {
        return Err(ImageError::EmptyFile { path: p() });
    }
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|source| ImageError::Unreadable { path: p(), source })?;
    if reader.format().is_none() {
        return Err(ImageError::UnsupportedFormat {
            path: p(),
            detail: "content not recognised and extension unknown".into(),
        });
    }
    let img = reader.decode().map_err(|e| map_decode_error(path, e))?;
    check_nonzero_size(path, img.width(), img.height())?;
    Ok(img.to_rgb8())
}

/// Translate the image crate's error into one that says what is wrong with which file.
fn map_decode_error(path: &Path, e: image::ImageError) -> ImageError {
    let path = path.to_path_buf();
    match e {
        image::ImageError::Unsupported(u) => ImageError::UnsupportedFormat {
            path,
            detail: u.to_string(),
        },
        image::ImageError::Limits(l) => ImageError::TooLarge {
            path,
            detail: l.to_string(),
        },
        image::ImageError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            ImageError::Corrupt {
                path,
                detail: "unexpected end of file (truncated?)".into(),
            }
        }
        image::ImageError::IoError(source) => ImageError::Unreadable { path, source },
        other => ImageError::Corrupt {
            path,
            detail: other.to_string(),
        },
    }
}

/// A temp path next to `path` (same directory, so the final rename is atomic).
fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp_name = format!(".{name}.{}.{n}.tmp", std::process::id());
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tmp_name),
        _ => PathBuf::from(tmp_name),
    }
}

/// Write via `fill` into a temp file next to `path`, fsync, then rename over `path`.
/// On any failure the temp file is removed and `path` is left untouched.
fn write_atomic<F>(path: &Path, fill: F) -> Result<(), ImageError>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<(), ImageError>,
{
    let tmp = temp_path_for(path);
    let unwritable = |source| ImageError::Unwritable {
        path: path.to_path_buf(),
        source,
    };
    let result = (|| {
        let file = File::create(&tmp).map_err(unwritable)?;
        let mut w = BufWriter::new(file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| unwritable(e.into_error()))?;
        file.sync_all().map_err(unwritable)?;
        drop(file);
        fs::rename(&tmp, path).map_err(unwritable)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Refuses an image with no pixels, naming the file.
fn check_nonzero_size(path: &Path, width: u32, height: u32) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroSize {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    Ok(())
}

/// Write a single-channel 32-bit float TIFF (anomaly maps keep full precision, including
/// negative values, so downstream tools can re-threshold them). Atomic.
pub fn write_f32_tiff(
    path: &Path,
    data: &[f32],
    width: u32,
    height: u32,
) -> Result<(), ImageError> {
    check_nonzero_size(path, width, height)?;
    let expected = width as usize * height as usize;
    if data.len() != expected {
        return Err(ImageError::InvalidData {
            path: path.to_path_buf(),
            detail: format!(
                "{} values given for a {width}x{height} map (expected {expected})",
                data.len()
            ),
        });
    }
    write_atomic(path, |w| {
        let enc_err = |e: tiff::TiffError| ImageError::Encode {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let mut enc = tiff::encoder::TiffEncoder::new(&mut *w).map_err(enc_err)?;
        enc.write_image::<tiff::encoder::colortype::Gray32Float>(width, height, data)
            .map_err(enc_err)?;
        Ok(())
    })
}

/// Read back a TIFF written by [`write_f32_tiff`]: (values row-major, width, height).
pub fn read_f32_tiff(path: &Path) -> Result<(Vec<f32>, u32, u32), ImageError> {
    let p = || path.to_path_buf();
    let meta = fs::metadata(path).map_err(|source| ImageError::Unreadable { path: p(), source })?;
    if meta.len() == 0 {
        return Err(ImageError::EmptyFile { path: p() });
    }
    let file = File::open(path).map_err(|source| ImageError::Unreadable { path: p(), source })?;
    let tiff_err = |e: tiff::TiffError| match e {
        tiff::TiffError::IoError(source) if source.kind() != io::ErrorKind::UnexpectedEof => {
            ImageError::Unreadable { path: p(), source }
        }
        tiff::TiffError::UnsupportedError(u) => ImageError::UnsupportedFormat {
            path: p(),
            detail: u.to_string(),
        },
        tiff::TiffError::LimitsExceeded => ImageError::TooLarge {
            path: p(),
            detail: "TIFF decoder limits exceeded".into(),
        },
        other => ImageError::Corrupt {
            path: p(),
            detail: other.to_string(),
        },
    };
    let mut dec = tiff::decoder::Decoder::new(BufReader::new(file)).map_err(tiff_err)?;
    let (width, height) = dec.dimensions().map_err(tiff_err)?;
    check_nonzero_size(path, width, height)?;
    let colortype = dec.colortype().map_err(tiff_err)?;
    if colortype != tiff::ColorType::Gray(32) {
        return Err(ImageError::InvalidData {
            path: p(),
            detail: format!("expected a single-channel 32-bit float TIFF, found {colortype:?}"),
        });
    }
    match dec.read_image().map_err(tiff_err)? {
        tiff::decoder::DecodingResult::F32(v) => {
            if v.len() != width as usize * height as usize {
                return Err(ImageError::Corrupt {
                    path: p(),
                    detail: format!("{} values for a {width}x{height} image", v.len()),
                });
            }
            Ok((v, width, height))
        }
        _ => Err(ImageError::InvalidData {
            path: p(),
            detail: "expected 32-bit float samples, found integer samples".into(),
        }),
    }
}

/// Save an RGB image as PNG, atomically (temp file + rename) so readers never see a
/// partial file.
pub fn save_png_atomic(path: &Path, img: &RgbImage) -> Result<(), ImageError> {
    encode_png_atomic(
        path,
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )
}

/// Save an 8-bit single-channel image (e.g. a defect mask, 255 = defect) as PNG, atomically.
pub fn save_gray_png_atomic(path: &Path, img: &GrayImage) -> Result<(), ImageError> {
    encode_png_atomic(
        path,
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::L8,
    )
}

fn encode_png_atomic(
    path: &Path,
    raw: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
) -> Result<(), ImageError> {
    check_nonzero_size(path, width, height)?;
    write_atomic(path, |w| {
        image::codecs::png::PngEncoder::new(&mut *w)
            .write_image(raw, width, height, color)
            .map_err(|e| ImageError::Encode {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        w.flush().map_err(|source| ImageError::Unwritable {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Turbo colormap (Google, 2019; polynomial fit by Ruofei Du): perceptually ordered
/// dark blue -> cyan -> green -> yellow -> red, readable on any photograph.
/// `t` is clamped to [0, 1]; NaN maps to 0.
pub fn turbo(t: f32) -> [u8; 3] {
    let x = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) } as f64;
    let r = 0.135_721_38
        + x * (4.615_392_60
            + x * (-42.660_322_58
                + x * (132.131_082_34 + x * (-152.942_393_96 + x * 59.286_379_43))));
    let g = 0.091_402_61
        + x * (2.194_188_39
            + x * (4.842_966_58 + x * (-14.185_033_33 + x * (4.277_298_57 + x * 2.829_566_04))));
    let b = 0.106_673_30
        + x * (12.641_946_08
            + x * (-60.582_048_36
                + x * (110.362_767_71 + x * (-89.903_109_12 + x * 27.348_249_73))));
    let q = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [q(r), q(g), q(b)]
}

/// The colour an overlay draws the region of interest's rectangle in (pure green).
pub const ROI_COLOUR: [u8; 3] = [0, 255, 0];
/// The colour an overlay outlines each region above the pixel threshold in (white).
pub const REGION_COLOUR: [u8; 3] = [255, 255, 255];

/// Draws the one-pixel border of the rectangle `w` x `h` at (`x`, `y`) in `colour`; the
/// part outside the image is skipped.
pub fn draw_rect_outline(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: [u8; 3]) {
    if w == 0 || h == 0 {
        return;
    }
    let (iw, ih) = img.dimensions();
    let (x1, y1) = (x.saturating_add(w - 1), y.saturating_add(h - 1));
    let mut put = |px: u32, py: u32| {
        if px < iw && py < ih {
            img.put_pixel(px, py, image::Rgb(colour));
        }
    };
    for px in x..=x1.min(iw.saturating_sub(1)) {
        put(px, y);
        put(px, y1);
    }
    for py in y..=y1.min(ih.saturating_sub(1)) {
        put(x, py);
        put(x1, py);
    }
}

/// Sets the pixels at the row-major `indices` of `img` to `colour` (an index past the
/// image is skipped).
pub fn paint_pixels(img: &mut RgbImage, indices: &[usize], colour: [u8; 3]) {
    let w = img.width() as usize;
    let n = w * img.height() as usize;
    for &i in indices.iter().filter(|&&i| i < n) {
        img.put_pixel((i % w) as u32, (i / w) as u32, image::Rgb(colour));
    }
}

/// Colour an anomaly map (already at the image's size) with the turbo colormap,
/// normalised between `lo` and `hi` (clamped), and alpha-blend it over the image, more
/// opaque where the value is high, so a person sees where the anomaly is. A map of
/// another size is an error.
pub fn heatmap_overlay(
    image: &RgbImage,
    map: &[f32],
    map_w: u32,
    map_h: u32,
    lo: f32,
    hi: f32,
) -> Result<RgbImage, ImageError> {
    let (w, h) = image.dimensions();
    if map_w != w || map_h != h || map.len() != w as usize * h as usize {
        return Err(ImageError::SizeMismatch {
            map_w,
            map_h,
            len: map.len(),
            image_w: w,
            image_h: h,
        });
    }
    let span = hi - lo;
    let mut out = image.clone();
    for (px, &v) in out.pixels_mut().zip(map) {
        // Normalise to [0, 1]; a degenerate range marks only values above `lo`.
        let t = if v.is_nan() {
            0.0
        } else if span > 0.0 && span.is_finite() {
            ((v - lo) / span).clamp(0.0, 1.0)
        } else if v > lo {
            1.0
        } else {
            0.0
        };
        // Light blue tint where normal, nearly opaque red where anomalous: the eye goes
        // to the red. Turbo's near-black low end is skipped so normal areas stay bright.
        let alpha = 0.2 + 0.55 * t;
        let c = turbo(0.1 + 0.85 * t);
        for (ch, &cm) in px.0.iter_mut().zip(&c) {
            let base = *ch as f32;
            *ch = (base + alpha * (cm as f32 - base))
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb};

    #[test]
    fn tiff_f32_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.tiff");
        let (w, h) = (7u32, 5u32);
        let mut data: Vec<f32> = (0..w * h)
            .map(|i| (i as f32 - 17.0) * 0.123_456_7)
            .collect();
        data[0] = -1.0e-30;
        data[1] = f32::MAX;
        data[2] = f32::MIN;
        data[3] = -0.0;
        write_f32_tiff(&path, &data, w, h).unwrap();
        let (back, bw, bh) = read_f32_tiff(&path).unwrap();
        assert_eq!((bw, bh), (w, h));
        assert_eq!(back.len(), data.len());
        for (a, b) in back.iter().zip(&data) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn tiff_rejects_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.tiff");
        let err = write_f32_tiff(&path, &[1.0, 2.0], 2, 2).unwrap_err();
        assert!(matches!(err, ImageError::InvalidData { .. }));
        assert!(err.to_string().contains("bad.tiff"));
        assert!(!path.exists());
    }

    #[test]
    fn truncated_png_is_corrupt_and_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        let img = RgbImage::from_fn(64, 48, |x, y| Rgb([x as u8 * 3, y as u8 * 5, 7]));
        save_png_atomic(&good, &img).unwrap();
        let bytes = fs::read(&good).unwrap();
        let bad = dir.path().join("truncated_part.png");
        fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_rgb(&bad).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("truncated_part.png"), "{err}");
    }

    #[test]
    fn garbage_is_unsupported_or_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("notes.bin");
        fs::write(&bad, b"this is not an image at all").unwrap();
        let err = load_rgb(&bad).unwrap_err();
        assert!(
            matches!(err, ImageError::UnsupportedFormat { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("notes.bin"));
        let bad = dir.path().join("fake.jpg");
        fs::write(&bad, b"this is not an image at all").unwrap();
        let err = load_rgb(&bad).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("fake.jpg"));
    }

    #[test]
    fn zero_byte_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.png");
        fs::write(&path, b"").unwrap();
        let err = load_rgb(&path).unwrap_err();
        assert!(matches!(err, ImageError::EmptyFile { .. }));
        assert!(err.to_string().contains("empty.png"));
        let err = read_f32_tiff(&path).unwrap_err();
        assert!(matches!(err, ImageError::EmptyFile { .. }));
    }

    #[test]
    fn missing_file_is_unreadable() {
        let err = load_rgb(Path::new("/nonexistent/dir/cam0.png")).unwrap_err();
        assert!(matches!(err, ImageError::Unreadable { .. }));
        assert!(err.to_string().contains("cam0.png"));
        // The OS error is said once, also when printed as a chain (as `main` does).
        assert!(std::error::Error::source(&err).is_none());
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert_eq!(chain.matches("(os error 2)").count(), 1, "{chain}");
    }

    #[test]
    fn directory_without_images_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("readme.txt"), b"hi").unwrap();
        fs::create_dir(dir.path().join("sub.png")).unwrap(); // a directory, not an image
        let err = list_images(dir.path()).unwrap_err();
        assert!(matches!(err, ImageError::NoImages { .. }));
        let err = list_images(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, ImageError::NotADirectory { .. }));
        assert!(err.to_string().contains("missing"));
    }

    #[test]
    fn list_images_sorted_non_recursive_case_insensitive() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.PNG", "a.jpg", "c.TiF", "d.txt", "e.jpeg", "f.bmp"] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        fs::create_dir(dir.path().join("nested")).unwrap();
        fs::write(dir.path().join("nested/z.png"), b"x").unwrap();
        let names: Vec<String> = list_images(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.jpg", "b.PNG", "c.TiF", "e.jpeg", "f.bmp"]);
        assert!(!is_image_file(Path::new("noext")));
        assert!(is_image_file(Path::new("X.TIFF")));
    }

    #[test]
    fn grayscale_alpha_and_16bit_load_as_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let p8 = dir.path().join("gray8.png");
        let g8: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_fn(10, 6, |x, y| Luma([(x * 20 + y) as u8]));
        g8.save(&p8).unwrap();
        let rgb = load_rgb(&p8).unwrap();
        assert_eq!(rgb.dimensions(), (10, 6));
        for (x, y, px) in rgb.enumerate_pixels() {
            let v = (x * 20 + y) as u8;
            assert_eq!(px.0, [v, v, v]);
        }

        let p16 = dir.path().join("gray16.png");
        let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(4, 4, |_, _| Luma([65535]));
        g16.save(&p16).unwrap();
        assert!(load_rgb(&p16)
            .unwrap()
            .pixels()
            .all(|p| p.0 == [255, 255, 255]));

        let pa = dir.path().join("gray_alpha.png");
        let ga: ImageBuffer<LumaA<u8>, Vec<u8>> =
            ImageBuffer::from_fn(4, 4, |_, _| LumaA([100, 10]));
        ga.save(&pa).unwrap();
        assert!(load_rgb(&pa)
            .unwrap()
            .pixels()
            .all(|p| p.0 == [100, 100, 100]));

        let pb = dir.path().join("rgb.bmp");
        RgbImage::from_pixel(3, 2, Rgb([1, 2, 3]))
            .save(&pb)
            .unwrap();
        assert!(load_rgb(&pb).unwrap().pixels().all(|p| p.0 == [1, 2, 3]));
    }

    #[test]
    fn heatmap_overlay_highlights_high_values() {
        let img = RgbImage::from_pixel(4, 2, Rgb([128, 128, 128]));
        let mut map = vec![0.0f32; 8];
        map[5] = 10.0;
        let out = heatmap_overlay(&img, &map, 4, 2, 0.0, 1.0).unwrap();
        let hot = out.get_pixel(1, 1).0;
        let cold = out.get_pixel(0, 0).0;
        assert!(
            hot[0] > 128 && hot[0] > hot[2],
            "hot pixel should be red: {hot:?}"
        );
        assert!(cold[2] >= cold[0], "cold pixel should lean blue: {cold:?}");
        let err = heatmap_overlay(&img, &map, 2, 4, 0.0, 1.0).unwrap_err();
        assert!(matches!(err, ImageError::SizeMismatch { .. }));
        // A degenerate range and NaN values still give an image (NaN drawn as normal).
        let flat = heatmap_overlay(&img, &[f32::NAN; 8], 4, 2, 1.0, 1.0).unwrap();
        assert_eq!(flat.get_pixel(0, 0), out.get_pixel(0, 0));
    }

    #[test]
    fn turbo_endpoints() {
        let lo = turbo(0.0);
        let hi = turbo(1.0);
        let blue = turbo(0.1);
        let red = turbo(0.95);
        assert!(
            lo.iter().map(|&v| v as u32).sum::<u32>() < 120,
            "dark low end {lo:?}"
        );
        assert!(hi[0] > 100 && hi[0] > hi[2], "{hi:?}");
        assert!(blue[2] > blue[0] && blue[2] > 150, "{blue:?}");
        assert!(red[0] > 150 && red[0] > red[2], "{red:?}");
        assert_eq!(turbo(-5.0), lo);
        assert_eq!(turbo(f32::NAN), lo);
    }

    #[test]
    fn save_png_atomic_writes_loadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.png");
        let img = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8, y as u8, 9]));
        save_png_atomic(&path, &img).unwrap();
        assert_eq!(load_rgb(&path).unwrap(), img);
        let err = save_png_atomic(&dir.path().join("no/such/dir/o.png"), &img).unwrap_err();
        assert!(err.to_string().contains("o.png"));
    }

    #[test]
    fn rectangles_and_pixels_are_drawn_inside_the_image() {
        let mut img = RgbImage::new(6, 5);
        draw_rect_outline(&mut img, 1, 1, 3, 3, ROI_COLOUR);
        let lit: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0 == ROI_COLOUR)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(lit, vec![(1, 1), (2, 1), (3, 1), (1, 2), (3, 2), (1, 3), (2, 3), (3, 3)]);
        // Partly outside: clipped, no panic.
        draw_rect_outline(&mut img, 4, 3, 10, 10, REGION_COLOUR);
        assert_eq!(img.get_pixel(5, 3).0, REGION_COLOUR);
        assert_eq!(img.get_pixel(4, 4).0, REGION_COLOUR);
        paint_pixels(&mut img, &[0, 29, 30, 1000], [9, 9, 9]);
        assert_eq!((img.get_pixel(0, 0).0, img.get_pixel(5, 4).0), ([9, 9, 9], [9, 9, 9]));
    }
}
