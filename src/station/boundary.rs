//! The hardware boundary: a camera is a [`FrameSource`], a GPIO output a [`DigitalOut`], a
//! part sensor a [`DigitalIn`]. Each backend (V4L2 camera, replay folder, GPIO character
//! device, simulated GPIO) implements these; nothing above this module knows which one it
//! has.

use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;

pub use crate::config::LineSpec;

/// One captured frame, with when it was taken on both clocks.
pub struct Frame {
    pub image: RgbImage,
    /// Monotonic capture time, for latency and scheduling.
    pub captured_at: Instant,
    /// Wall-clock capture time, for records.
    pub captured_wall: SystemTime,
    /// Where it came from, for records and logs (a file name, or "camera frame 1234").
    pub origin: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// This frame is unusable (undecodable, truncated); the source itself still works.
    #[error("corrupt frame {origin}: {message}")]
    CorruptFrame { origin: String, message: String },
    /// The source stopped working (unplugged, driver error, timeout); it must be reopened.
    #[error("camera {device}: {message}")]
    Disconnected { device: String, message: String },
    /// A replay source that plays once has no frames left.
    #[error("replay {folder}: no frames left")]
    Exhausted { folder: String },
}

/// A camera, or anything that delivers frames on request.
pub trait FrameSource: Send {
    /// Captures one frame now (the light is already on). Blocks at most about one frame
    /// period plus the source's own timeout.
    fn grab(&mut self) -> Result<Frame, CaptureError>;
    /// Re-opens the source after [`CaptureError::Disconnected`].
    fn reopen(&mut self) -> Result<(), CaptureError>;
    /// A short description for logs ("/dev/video0 1280x960 MJPEG @ 30 fps").
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
#[error("GPIO {line}: {message}")]
pub struct GpioError {
    pub line: String,
    pub message: String,
}

/// An output line. `set(true)` asserts it: the backend applies the configured polarity
/// (active-low lines go low), so callers think only in asserted / released.
pub trait DigitalOut: Send {
    fn set(&mut self, asserted: bool) -> Result<(), GpioError>;
    fn name(&self) -> &str;
}

/// A logical edge of an input: `Asserted` when the sensor becomes active (after the
/// configured polarity), `Released` when it becomes inactive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEdge {
    Asserted,
    Released,
}

#[derive(Debug, Clone, Copy)]
pub struct InputEvent {
    pub edge: InputEdge,
    /// Monotonic time of the edge (from the kernel's event timestamp where available).
    pub at: Instant,
}

/// An input line (a part sensor), debounced by the backend.
pub trait DigitalIn: Send {
    /// Waits up to `timeout` for the next edge; `Ok(None)` on timeout.
    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<InputEvent>, GpioError>;
    fn name(&self) -> &str;
}
