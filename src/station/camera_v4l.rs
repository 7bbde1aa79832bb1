//! A V4L2 camera (`/dev/videoN`: USB UVC cameras, CSI cameras with a V4L2 driver) through
//! the `v4l` crate, which is what nokhwa's Linux backend wraps. nokhwa itself is not used:
//! its V4L2 `frame()` waits with no timeout (a stalled camera would hang the capture stage),
//! it opens devices by index only, and it hides the buffer timestamps needed to drop frames
//! exposed before the trigger; fixed exposure, gain and white balance need `v4l` anyway.
//!
//! An inspection camera runs with fixed settings: auto exposure and auto white balance are
//! switched off and the configured values set, each read back; a control the camera lacks
//! or ignores is logged as a warning naming it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;
use v4l::buffer::{Flags as BufFlags, Type as BufType};
use v4l::capability::Flags as CapFlags;
use v4l::control::{Control, Value};
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use crate::platform::clock::{instant_from_monotonic_ns, monotonic_now_ns};
use super::boundary::{CaptureError, Frame, FrameSource};

/// The pixel format asked of the camera; every one is decoded to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Motion JPEG: small frames, decoded on the CPU.
    Mjpeg,
    /// YUV 4:2:2 (YUYV / YUY2): uncompressed, needs more USB bandwidth.
    Yuyv,
    /// 8-bit grey (V4L2 `GREY`), from monochrome cameras.
    Gray,
    /// 24-bit RGB (V4L2 `RGB3`).
    Rgb,
}

impl PixelFormat {
    fn fourcc(self) -> FourCC {
        FourCC::new(match self {
            PixelFormat::Mjpeg => b"MJPG",
            PixelFormat::Yuyv => b"YUYV",
            PixelFormat::Gray => b"GREY",
            PixelFormat::Rgb => b"RGB3",
        })
    }

    /// Bytes per pixel of the uncompressed formats.
    fn bytes_per_pixel(self) -> Option<usize> {
        match self {
            PixelFormat::Mjpeg => None,
            PixelFormat::Yuyv => Some(2),
            PixelFormat::Gray => Some(1),
            PixelFormat::Rgb => Some(3),
        }
    }
}

impl FromStr for PixelFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mjpeg" | "mjpg" | "jpeg" => Ok(PixelFormat::Mjpeg),
            "yuyv" | "yuy2" => Ok(PixelFormat::Yuyv),
            "gray" | "grey" | "mono8" => Ok(PixelFormat::Gray),
            "rgb" | "rgb24" | "rgb3" => Ok(PixelFormat::Rgb),
            other => Err(format!(
                "unknown pixel format `{other}` (expected mjpeg, yuyv, gray or rgb)"
            )),
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::Mjpeg => "MJPEG",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Gray => "GREY",
            PixelFormat::Rgb => "RGB",
        })
    }
}

#[derive(Debug, Clone)]
pub struct CameraSettings {
    /// `/dev/video0` (or any path to the node, e.g. under /dev/v4l/by-id), an index `0`, or
    /// a substring of the camera's name as V4L2 reports it.
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: PixelFormat,
    /// Fixed exposure time; `None` leaves the camera's exposure as it is.
    pub exposure_us: Option<u32>,
    /// Fixed analogue gain, in the camera's own units; `None` leaves it.
    pub gain: Option<i64>,
    /// Fixed white balance in kelvin (auto white balance off); `None` leaves it.
    pub white_balance_k: Option<u32>,
    /// How long one frame may take to arrive before the camera counts as disconnected.
    pub timeout: Duration,
}

// V4L2 control ids (linux/v4l2-controls.h), spelled out so they are visible where used.
const CID_AUTO_WHITE_BALANCE: u32 = 0x0098_090c;
const CID_GAIN: u32 = 0x0098_0913;
const CID_WHITE_BALANCE_TEMPERATURE: u32 = 0x0098_091a;
const CID_EXPOSURE_AUTO: u32 = 0x009a_0901;
const CID_EXPOSURE_ABSOLUTE: u32 = 0x009a_0902;
/// The `exposure_auto` menu item for manual exposure (V4L2_EXPOSURE_MANUAL).
const EXPOSURE_MANUAL: i64 = 1;

/// V4L2's `exposure_time_absolute` counts 100 µs units: rounded to the nearest, and at
/// least 1 (0 is out of range on every camera).
fn exposure_units(exposure_us: u32) -> i64 {
    ((i64::from(exposure_us) + 50) / 100).max(1)
}

/// What a device string means.
#[derive(Debug, PartialEq, Eq)]
enum DeviceSpec {
    Path(PathBuf),
    Index(usize),
    Name(String),
}

fn parse_device(s: &str) -> DeviceSpec {
    let s = s.trim();
    if s.contains('/') {
        DeviceSpec::Path(PathBuf::from(s))
    } else if let Ok(i) = s.parse::<usize>() {
        DeviceSpec::Index(i)
    } else {
        DeviceSpec::Name(s.to_string())
    }
}

/// The device node to open: a name substring picks the first capture node whose V4L2 name
/// contains it (case-insensitive; UVC cameras also have metadata nodes with the same name).
fn resolve_device(spec: &str) -> Result<PathBuf, CaptureError> {
    match parse_device(spec) {
        DeviceSpec::Path(p) => Ok(p),
        DeviceSpec::Index(i) => Ok(PathBuf::from(format!("/dev/video{i}"))),
        DeviceSpec::Name(name) => {
            let mut nodes = v4l::context::enum_devices();
            nodes.sort_by_key(|n| n.index());
            let want = name.to_lowercase();
            let mut seen = Vec::new();
            for node in &nodes {
                let node_name = node.name().unwrap_or_default();
                seen.push(format!("{} ({node_name})", node.path().display()));
                if !node_name.to_lowercase().contains(&want) {
                    continue;
                }
                let is_capture = Device::with_path(node.path())
                    .and_then(|d| d.query_caps())
                    .map(|c| c.capabilities.contains(CapFlags::VIDEO_CAPTURE))
                    .unwrap_or(false);
                if is_capture {
                    return Ok(node.path().to_path_buf());
                }
            }
            Err(CaptureError::Disconnected {
                device: spec.to_string(),
                message: format!(
                    "no video capture device whose name contains `{name}`; present: {}",
                    if seen.is_empty() {
                        "none".to_string()
                    } else {
                        seen.join(", ")
                    }
                ),
            })
        }
    }
}

struct V4lCamera {
    settings: CameraSettings,
    path: PathBuf,
    /// The card name V4L2 reports, for logs.
    card: String,
    /// What the driver agreed to.
    format: Format,
    fps: u32,
    /// Declared before `device` so the stream is dropped first.
    stream: Option<MmapStream<'static>>,
    device: Option<Device>,
    frames: u64,
}

impl V4lCamera {
    fn disconnected(&self, message: impl Into<String>) -> CaptureError {
        CaptureError::Disconnected {
            device: self.path.display().to_string(),
            message: message.into(),
        }
    }

    /// Opens the device, negotiates the format and frame rate, fixes the controls and
    /// starts streaming.
    fn open_device(&mut self) -> Result<(), CaptureError> {
        self.close();
        let s = self.settings.clone();
        let dev = Device::with_path(&self.path)
            .map_err(|e| self.disconnected(format!("cannot open: {e}")))?;
        let caps = dev
            .query_caps()
            .map_err(|e| self.disconnected(format!("not a V4L2 device: {e}")))?;
        if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE) {
            return Err(self.disconnected(format!(
                "{} ({}) is not a video capture device",
                caps.card, caps.driver
            )));
        }
        self.card = caps.card.clone();

        let want = Format::new(s.width, s.height, s.format.fourcc());
        let got = dev.set_format(&want).map_err(|e| {
            self.disconnected(format!(
                "setting {}x{} {}: {e}",
                s.width, s.height, s.format
            ))
        })?;
        if got.width != s.width || got.height != s.height || got.fourcc != want.fourcc {
            return Err(self.disconnected(format!(
                "asked for {}x{} {}, the camera offers {}x{} {} instead; its formats: {}",
                s.width,
                s.height,
                s.format,
                got.width,
                got.height,
                got.fourcc,
                list_formats(&dev)
            )));
        }
        self.format = got;

        self.fps = match dev.set_params(&Parameters::with_fps(s.fps.max(1))) {
            Ok(p) if p.interval.numerator > 0 => {
                let fps = p.interval.denominator / p.interval.numerator;
                if fps != s.fps {
                    log::warn!(
                        "camera {}: asked for {} fps, runs at {}/{} fps",
                        self.path.display(),
                        s.fps,
                        p.interval.denominator,
                        p.interval.numerator
                    );
                }
                fps
            }
            Ok(_) => s.fps,
            Err(e) => {
                log::warn!(
                    "camera {}: cannot set {} fps: {e}",
                    self.path.display(),
                    s.fps
                );
                s.fps
            }
        };

        apply_controls(&dev, &self.path, &s);

        let mut stream = MmapStream::with_buffers(&dev, BufType::VideoCapture, 4)
            .map_err(|e| self.disconnected(format!("allocating capture buffers: {e}")))?;
        // v4l keeps the timeout as i32 milliseconds and panics beyond that.
        stream.set_timeout(
            s.timeout
                .clamp(Duration::from_millis(1), Duration::from_secs(3600)),
        );
        self.stream = Some(stream);
        self.device = Some(dev);
        log::info!("camera {}", self.describe());
        Ok(())
    }

    fn close(&mut self) {
        if let Some(stream) = self.stream.take() {
            // v4l's stream panics in drop when STREAMOFF fails with anything but ENODEV; a
            // dying camera must not take the daemon with it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(stream))).is_err() {
                log::warn!("camera {}: stopping the stream failed", self.path.display());
            }
        }
        self.device = None;
    }
}

impl Drop for V4lCamera {
    fn drop(&mut self) {
        self.close();
    }
}

fn list_formats(dev: &Device) -> String {
    match dev.enum_formats() {
        Ok(formats) => formats
            .iter()
            .map(|f| {
                let sizes = dev
                    .enum_framesizes(f.fourcc)
                    .unwrap_or_default()
                    .into_iter()
                    // Not to_discrete(): a stepwise range can hold thousands of sizes.
                    .map(|fs| match fs.size {
                        FrameSizeEnum::Discrete(d) => format!("{}x{}", d.width, d.height),
                        FrameSizeEnum::Stepwise(s) => format!(
                            "{}..{}x{}..{}",
                            s.min_width, s.max_width, s.min_height, s.max_height
                        ),
                    })
                    .collect::<Vec<_>>();
                format!("{} [{}]", f.fourcc, sizes.join(" "))
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("(cannot list: {e})"),
    }
}

/// Sets one integer control within its range and reads it back; a warning names the
/// control when the camera lacks it, refuses it or keeps another value.
fn set_control(dev: &Device, path: &Path, id: u32, name: &str, value: i64) {
    let camera = path.display();
    let ranges = dev.query_controls().unwrap_or_default();
    let Some(desc) = ranges.iter().find(|d| d.id == id) else {
        log::warn!("camera {camera}: has no `{name}` control; {name} is not fixed");
        return;
    };
    let clamped = value.clamp(desc.minimum, desc.maximum);
    if clamped != value {
        log::warn!(
            "camera {camera}: {name} {value} is outside {}..={}; using {clamped}",
            desc.minimum,
            desc.maximum
        );
    }
    let v = if desc.typ == v4l::control::Type::Boolean {
        Value::Boolean(clamped != 0)
    } else {
        Value::Integer(clamped)
    };
    if let Err(e) = dev.set_control(Control { id, value: v }) {
        log::warn!("camera {camera}: setting {name} to {clamped}: {e}");
        return;
    }
    match dev.control(id).map(|c| c.value) {
        Ok(Value::Integer(got)) if got == clamped => {}
        Ok(Value::Boolean(got)) if got == (clamped != 0) => {}
        Ok(other) => {
            log::warn!("camera {camera}: ignored {name} = {clamped} (reads back {other:?})")
        }
        Err(e) => log::warn!("camera {camera}: cannot read {name} back: {e}"),
    }
}

/// Manual exposure, gain and white balance; the auto modes go off before the values are
/// set, since a camera ignores a value while its auto mode is on.
fn apply_controls(dev: &Device, path: &Path, s: &CameraSettings) {
    if let Some(us) = s.exposure_us {
        set_control(
            dev,
            path,
            CID_EXPOSURE_AUTO,
            "exposure_auto",
            EXPOSURE_MANUAL,
        );
        set_control(
            dev,
            path,
            CID_EXPOSURE_ABSOLUTE,
            "exposure_time_absolute",
            exposure_units(us),
        );
    }
    if let Some(gain) = s.gain {
        set_control(dev, path, CID_GAIN, "gain", gain);
    }
    if let Some(k) = s.white_balance_k {
        set_control(
            dev,
            path,
            CID_AUTO_WHITE_BALANCE,
            "white_balance_automatic",
            0,
        );
        set_control(
            dev,
            path,
            CID_WHITE_BALANCE_TEMPERATURE,
            "white_balance_temperature",
            i64::from(k),
        );
    }
}

/// BT.601 limited-range YUV to RGB in integer arithmetic (what UVC cameras send).
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = i32::from(y) - 16;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| (x >> 8).clamp(0, 255) as u8;
    [
        clamp(298 * c + 409 * e + 128),
        clamp(298 * c - 100 * d - 208 * e + 128),
        clamp(298 * c + 516 * d + 128),
    ]
}

/// Converts one uncompressed frame (`stride` bytes per row) to RGB; `None` when the buffer
/// is too short for the size.
fn raw_to_rgb(
    format: PixelFormat,
    data: &[u8],
    width: u32,
    height: u32,
    stride: usize,
) -> Option<RgbImage> {
    let bpp = format.bytes_per_pixel()?;
    let (w, h) = (width as usize, height as usize);
    let stride = stride.max(w * bpp);
    if h == 0
        || data.len() < stride * (h - 1) + w * bpp
        || (format == PixelFormat::Yuyv && w % 2 != 0)
    {
        return None;
    }
    let mut out = Vec::with_capacity(w * h * 3);
    for row in data.chunks(stride).take(h) {
        let row = &row[..w * bpp];
        match format {
            PixelFormat::Yuyv => {
                for px in row.chunks_exact(4) {
                    out.extend_from_slice(&yuv_to_rgb(px[0], px[1], px[3]));
                    out.extend_from_slice(&yuv_to_rgb(px[2], px[1], px[3]));
                }
            }
            PixelFormat::Gray => row.iter().for_each(|&g| out.extend_from_slice(&[g, g, g])),
            PixelFormat::Rgb => out.extend_from_slice(row),
            PixelFormat::Mjpeg => return None,
        }
    }
    RgbImage::from_raw(width, height, out)
}

/// Decodes one frame to RGB; the error is the reason, for [`CaptureError::CorruptFrame`].
fn decode(format: PixelFormat, data: &[u8], fmt: &Format) -> Result<RgbImage, String> {
    match format {
        PixelFormat::Mjpeg => {
            let img = image::load_from_memory_with_format(data, image::ImageFormat::Jpeg)
                .map_err(|e| format!("MJPEG decode: {e}"))?
                .to_rgb8();
            if img.dimensions() != (fmt.width, fmt.height) {
                return Err(format!(
                    "MJPEG frame is {}x{}, expected {}x{}",
                    img.width(),
                    img.height(),
                    fmt.width,
                    fmt.height
                ));
            }
            Ok(img)
        }
        _ => {
            raw_to_rgb(format, data, fmt.width, fmt.height, fmt.stride as usize).ok_or_else(|| {
                format!(
                    "{format} frame of {} bytes is too short for {}x{} (stride {})",
                    data.len(),
                    fmt.width,
                    fmt.height,
                    fmt.stride
                )
            })
        }
    }
}

impl FrameSource for V4lCamera {
    /// Returns the first frame taken after the call: frames the driver had queued before
    /// (up to the four buffers) are dropped, as they may predate the light. The light's
    /// settle time before `grab` must therefore cover the exposure time.
    fn grab(&mut self) -> Result<Frame, CaptureError> {
        let start = Instant::now();
        let start_ns = monotonic_now_ns();
        let path = self.path.display().to_string();
        let format = self.settings.format;
        let fmt = self.format;
        let Some(stream) = self.stream.as_mut() else {
            return Err(CaptureError::Disconnected {
                device: path,
                message: "not open (reopen failed earlier)".into(),
            });
        };
        // The four queued buffers plus one fresh frame.
        for _ in 0..5 {
            let (data, meta) = stream.next().map_err(|e| CaptureError::Disconnected {
                device: path.clone(),
                message: if e.kind() == std::io::ErrorKind::TimedOut {
                    format!("no frame within {:?}", self.settings.timeout)
                } else {
                    format!("capture: {e}")
                },
            })?;
            self.frames += 1;
            let origin = format!("camera frame {}", self.frames);
            let ts_ns = (meta.timestamp.sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.timestamp.usec as u64 * 1000);
            let monotonic = meta.flags.contains(BufFlags::TIMESTAMP_MONOTONIC);
            if monotonic && ts_ns < start_ns {
                continue;
            }
            let now = Instant::now();
            let captured_at = if monotonic {
                instant_from_monotonic_ns(ts_ns, monotonic_now_ns(), now)
            } else {
                now
            };
            if meta.flags.contains(BufFlags::ERROR) {
                return Err(CaptureError::CorruptFrame {
                    origin,
                    message: format!("the driver flagged the buffer as damaged ({path})"),
                });
            }
            let used = (meta.bytesused as usize).min(data.len());
            let image = decode(format, &data[..used], &fmt).map_err(|message| {
                CaptureError::CorruptFrame {
                    origin: origin.clone(),
                    message: format!("{path}: {message}"),
                }
            })?;
            let wall = SystemTime::now();
            let age = now.saturating_duration_since(captured_at);
            return Ok(Frame {
                image,
                captured_at,
                captured_wall: wall.checked_sub(age).unwrap_or(wall),
                origin,
            });
        }
        Err(CaptureError::Disconnected {
            device: path,
            message: format!(
                "only frames older than the grab arrived for {:?}",
                start.elapsed()
            ),
        })
    }

    fn reopen(&mut self) -> Result<(), CaptureError> {
        self.open_device()
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}) {}x{} {} @ {} fps",
            self.path.display(),
            self.card,
            self.format.width,
            self.format.height,
            self.settings.format,
            self.fps
        )
    }
}

/// Opens the camera with fixed settings and starts streaming.
pub fn open(settings: &CameraSettings) -> Result<Box<dyn FrameSource>, CaptureError> {
    let path = resolve_device(&settings.device)?;
    let mut cam = V4lCamera {
        settings: settings.clone(),
        path,
        card: String::new(),
        format: Format::new(settings.width, settings.height, settings.format.fourcc()),
        fps: settings.fps,
        stream: None,
        device: None,
        frames: 0,
    };
    cam.open_device()?;
    Ok(Box::new(cam))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(device: &str) -> CameraSettings {
        CameraSettings {
            device: device.into(),
            width: 640,
            height: 480,
            fps: 30,
            format: PixelFormat::Mjpeg,
            exposure_us: Some(2000),
            gain: None,
            white_balance_k: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn pixel_formats_parse_case_insensitively() {
        assert_eq!("mjpeg".parse::<PixelFormat>().unwrap(), PixelFormat::Mjpeg);
        assert_eq!("MJPG".parse::<PixelFormat>().unwrap(), PixelFormat::Mjpeg);
        assert_eq!("yuyv".parse::<PixelFormat>().unwrap(), PixelFormat::Yuyv);
        assert_eq!("YUY2".parse::<PixelFormat>().unwrap(), PixelFormat::Yuyv);
        assert_eq!("grey".parse::<PixelFormat>().unwrap(), PixelFormat::Gray);
        assert_eq!(" gray ".parse::<PixelFormat>().unwrap(), PixelFormat::Gray);
        assert_eq!("rgb".parse::<PixelFormat>().unwrap(), PixelFormat::Rgb);
        let e = "h264".parse::<PixelFormat>().unwrap_err();
        assert!(e.contains("`h264`"), "{e}");
        assert_eq!(PixelFormat::Yuyv.fourcc().repr, *b"YUYV");
    }

    #[test]
    fn exposure_converts_to_100_us_units() {
        assert_eq!(exposure_units(2000), 20);
        assert_eq!(exposure_units(2049), 20);
        assert_eq!(exposure_units(2050), 21);
        assert_eq!(exposure_units(10), 1);
        assert_eq!(exposure_units(0), 1);
        assert_eq!(exposure_units(u32::MAX), 42_949_673);
    }

    #[test]
    fn device_strings_are_paths_indices_or_names() {
        assert_eq!(
            parse_device("/dev/video2"),
            DeviceSpec::Path("/dev/video2".into())
        );
        assert_eq!(parse_device(" 0 "), DeviceSpec::Index(0));
        assert_eq!(
            parse_device("HD USB Camera"),
            DeviceSpec::Name("HD USB Camera".into())
        );
        assert_eq!(resolve_device("3").unwrap(), PathBuf::from("/dev/video3"));
    }

    #[test]
    fn yuyv_converts_to_rgb() {
        // Hand-computed with the BT.601 integer formulas: Y=81 U=90 V=240 is pure red,
        // Y=16 black and Y=235 white at neutral chroma.
        assert_eq!(yuv_to_rgb(81, 90, 240), [255, 0, 0]);
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        // Y=126 U=128 V=128: (298*110 + 128) >> 8 = 128.
        assert_eq!(yuv_to_rgb(126, 128, 128), [128, 128, 128]);
        // 2x2 YUYV with a padded stride of 6 bytes: each pair shares U and V.
        let data = [81, 90, 16, 240, 0xEE, 0xEE, 235, 128, 126, 128, 0xEE, 0xEE];
        let img = raw_to_rgb(PixelFormat::Yuyv, &data, 2, 2, 6).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, yuv_to_rgb(16, 90, 240));
        assert_eq!(img.get_pixel(0, 1).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1, 1).0, [128, 128, 128]);
        assert!(raw_to_rgb(PixelFormat::Yuyv, &data[..9], 2, 2, 6).is_none());
    }

    #[test]
    fn gray_and_short_frames() {
        let img = raw_to_rgb(PixelFormat::Gray, &[7, 200], 2, 1, 2).unwrap();
        assert_eq!(img.get_pixel(1, 0).0, [200, 200, 200]);
        let fmt = Format::new(2, 2, PixelFormat::Gray.fourcc());
        let e = decode(PixelFormat::Gray, &[1, 2, 3], &fmt).unwrap_err();
        assert!(e.contains("too short for 2x2"), "{e}");
        let e = decode(PixelFormat::Mjpeg, b"not a jpeg", &fmt).unwrap_err();
        assert!(e.starts_with("MJPEG decode:"), "{e}");
    }

    #[test]
    fn a_missing_device_is_disconnected_and_named() {
        let Err(e) = open(&settings("/dev/video-does-not-exist")) else {
            panic!("opened a device that does not exist");
        };
        match e {
            CaptureError::Disconnected { device, message } => {
                assert_eq!(device, "/dev/video-does-not-exist");
                assert!(message.starts_with("cannot open:"), "{message}");
            }
            other => panic!("expected Disconnected, got {other}"),
        }
        let Err(e) = open(&settings("No Such Camera Model")) else {
            panic!("found a camera that does not exist");
        };
        assert!(
            e.to_string().starts_with(
                "camera No Such Camera Model: no video capture device whose name contains"
            ),
            "{e}"
        );
    }
}
