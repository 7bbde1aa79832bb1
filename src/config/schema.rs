//! The station file's typed form. Every field has the default a technician need not
//! touch; `config::load` fills these from TOML and validates them.

use std::path::PathBuf;
use std::time::Duration;

use crate::platform::device::DeviceChoice;
use crate::config::LineSpec;

#[derive(Debug, Clone, PartialEq)]
pub struct StationConfig {
    pub station: StationInfo,
    pub model: ModelConfig,
    pub camera: CameraConfig,
    pub light: LightConfig,
    pub trigger: TriggerConfig,
    pub decision: DecisionConfig,
    pub alignment: AlignmentConfig,
    pub gpio: GpioConfig,
    pub outputs: OutputsConfig,
    pub records: RecordsConfig,
    pub archive: ArchiveConfig,
    pub logging: LoggingConfig,
    pub pipeline: PipelineConfig,
    /// `[web]`, None when the table is absent (no server).
    pub web: Option<WebConfig>,
    /// `[mqtt]`, None when the table is absent (no broker).
    pub mqtt: Option<MqttConfig>,
}

/// `[station]`
#[derive(Debug, Clone, PartialEq)]
pub struct StationInfo {
    /// Appears in every log line's context and record. Default "station".
    pub name: String,
}

/// `[model]`
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Model bundle directory (required). Relative paths are relative to the station file.
    pub bundle: PathBuf,
    /// Expert weights; default: the bundle's expert file in `models_dir`.
    pub expert: Option<PathBuf>,
    /// Default: `$CDO_MODELS_DIR` or `./models`.
    pub models_dir: Option<PathBuf>,
    /// "cpu" (default) or "cuda".
    pub device: DeviceChoice,
    /// Tiles run through the networks together (a tiled bundle); default 8.
    pub batch: u32,
}

/// `[alignment]`: find how far each part moved on the fixture (against the bundle's
/// reference frame) and move the region of interest with it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignmentConfig {
    pub enabled: bool,
    /// Below this alignment confidence (0..=1) a part is rejected fail-safe.
    pub min_confidence: f32,
    /// A part moved further than this (on either axis, source pixels) is rejected
    /// fail-safe: it is not where the fixture holds it.
    pub max_shift_px: u32,
}

impl Default for AlignmentConfig {
    fn default() -> Self {
        AlignmentConfig { enabled: false, min_confidence: 0.5, max_shift_px: 64 }
    }
}

/// `[camera]`
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// "v4l2" (default) or "replay".
    pub source: CameraSource,
    /// V4L2: "/dev/video0", an index "0", or a substring of the camera's name.
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// "mjpeg" (default), "yuyv", "gray", "rgb".
    pub format: String,
    /// Fixed manual exposure in µs; None leaves the camera's setting.
    pub exposure_us: Option<u32>,
    pub gain: Option<i64>,
    /// Fixed white balance in kelvin; None leaves the camera's setting.
    pub white_balance_k: Option<u32>,
    /// A grab that takes longer is a camera fault. Default 2000 ms.
    pub timeout: Duration,
    /// First wait before reopening a lost camera; doubles up to `reconnect_max`.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// `[camera.replay]`, used when source = "replay".
    pub replay: ReplayConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraSource {
    V4l2,
    Replay,
}

/// `[camera.replay]`
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// Folder of images, replayed in file-name order (subfolders included).
    pub folder: PathBuf,
    /// Start again at the first image after the last (default false: play once).
    pub looping: bool,
    /// Simulated stall: after this many frames the source stops delivering (grab times
    /// out) for `stall_for`. For tests of camera faults; default none.
    pub stall_after: Option<u64>,
    pub stall_for: Duration,
}

/// `[light]`
#[derive(Debug, Clone, PartialEq)]
pub struct LightConfig {
    /// "none" (default), "strobe" (on for each capture) or "always_on".
    pub mode: LightMode,
    pub output: Option<OutputLine>,
    /// Strobe: time between switching the light on and capturing. Default 5 ms.
    pub settle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LightMode {
    None,
    Strobe,
    AlwaysOn,
}

/// `[trigger]`
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConfig {
    /// "gpio" (part sensor), "free_run" (timer) or "replay" (one part per replayed frame).
    pub mode: TriggerMode,
    /// gpio: the sensor input.
    pub input: Option<InputLine>,
    /// free_run and replay: triggers per second. Default 2.
    pub rate_hz: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    Gpio,
    FreeRun,
    Replay,
}

/// `[decision]`
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    /// Image-score threshold; None = the bundle's calibrated one.
    pub threshold: Option<f32>,
    /// Minimum defect area: when set, a part is rejected only if it also has a connected
    /// region of map pixels above `pixel_threshold` at least this large.
    pub min_area: Option<MinArea>,
    /// Map value above which a pixel counts as defective; None = the image threshold.
    pub pixel_threshold: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinArea {
    Pixels(u32),
    /// Square millimetres, with the camera's scale in mm per pixel.
    SquareMillimetres { mm2: f64, mm_per_px: f64 },
}

/// `[gpio]`
#[derive(Debug, Clone, PartialEq)]
pub struct GpioConfig {
    /// "cdev" (default: the Linux GPIO character device) or "simulated". The only key that
    /// picks the backend: `edge_log` and `inject_ms` are errors unless it is "simulated".
    pub backend: GpioBackend,
    /// Simulated: every output edge is appended here with a monotonic timestamp.
    pub edge_log: Option<PathBuf>,
    /// Simulated: trigger-input edges to inject, in ms after the model is loaded.
    pub inject_ms: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpioBackend {
    Cdev,
    Simulated,
}

/// An output line and its polarity.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputLine {
    pub line: LineSpec,
    pub active_low: bool,
}

/// An input line, its polarity and debounce.
#[derive(Debug, Clone, PartialEq)]
pub struct InputLine {
    pub line: LineSpec,
    pub active_low: bool,
    pub debounce: Duration,
}

/// `[reject]` and `[outputs]`
#[derive(Debug, Clone, PartialEq)]
pub struct OutputsConfig {
    /// The reject actuator (required).
    pub reject: OutputLine,
    /// From the part's trigger to the start of its reject pulse: the part's travel time
    /// to the rejector. Also the deadline for its verdict.
    pub reject_delay: Duration,
    pub reject_pulse: Duration,
    /// Optional pass/OK pulse at the same time a reject would start.
    pub pass: Option<OutputLine>,
    pub pass_pulse: Duration,
    /// High while the station is inspecting (after start-up, before shutdown).
    pub ready: Option<OutputLine>,
    /// High while a fault is active (camera lost, stage stalled).
    pub fault: Option<OutputLine>,
}

/// `[records]`
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsConfig {
    /// Folder for `parts.jsonl` and its rotated files.
    pub dir: PathBuf,
    /// Rotate when the current file reaches this size. Default 64 MiB.
    pub max_bytes: u64,
    /// Rotated files kept. Default 10.
    pub keep: u32,
}

/// `[archive]`
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveConfig {
    /// Folder for images and heatmap overlays of rejected parts.
    pub dir: PathBuf,
    pub rejects: bool,
    /// Also archive every Nth passed part (0 = none).
    pub pass_every: u32,
    /// Oldest entries are deleted beyond either limit.
    pub max_files: u64,
    pub max_bytes: u64,
}

/// `[logging]`
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    /// env_logger filter when RUST_LOG is not set. Default "info".
    pub level: String,
    /// Counters are logged this often (and at exit). Default 60 s.
    pub counters_every: Duration,
}

/// `[pipeline]`
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Parts waiting between two stages; a part that finds its queue full is rejected.
    pub queue_depth: usize,
    /// SIGTERM: time to finish parts in flight before exiting anyway. Default 10 s.
    pub drain_timeout: Duration,
    /// A stage that has work but makes no progress for this long is stalled: the
    /// watchdog stops being fed and the fault output is set. Default 5 s.
    pub stall_timeout: Duration,
    /// Test hook: extra delay added to each inference (default 0).
    pub inject_infer_delay: Duration,
}

/// `[web]`: the operator view and `/metrics` (off unless the table is in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    /// Address and port to listen on. Default 127.0.0.1:8080 (this machine only).
    pub listen: std::net::SocketAddr,
    /// The token the one write (resetting the counters) needs; None: no writes at all.
    pub reset_token: Option<String>,
    /// Parts whose images are kept in memory for the page. Default 50.
    pub recent_parts: usize,
    /// Scores in the page's trend. Default 300.
    pub trend_parts: usize,
}

/// `[mqtt]`: each part's record and the station's state to a broker (off unless the
/// table is in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub host: String,
    /// Default 1883 (8883 with `ca_file`).
    pub port: u16,
    /// Default "cdo-inspect-<station name>".
    pub client_id: String,
    /// Records go to `<prefix>/parts`, the retained state to `<prefix>/state`. Default
    /// "cdo-inspect/<station name>".
    pub topic_prefix: String,
    /// 0, 1 (default) or 2.
    pub qos: u8,
    pub username: Option<String>,
    /// The password: inline (refused in a world-readable file) or read from a file.
    pub password: Option<MqttPassword>,
    /// TLS: the broker's CA certificate (PEM); TLS is on when it is set.
    pub ca_file: Option<PathBuf>,
    /// TLS client authentication: certificate and key (PEM), both or neither.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Records held while the broker is away; beyond it they are dropped and counted.
    pub buffer_parts: usize,
    pub keep_alive: Duration,
}

#[derive(Clone, PartialEq)]
pub enum MqttPassword {
    Inline(String),
    File(PathBuf),
}

/// Never prints an inline password (a config is logged in debug output and test failures).
impl std::fmt::Debug for MqttPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MqttPassword::Inline(_) => f.write_str("Inline(***)"),
            MqttPassword::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}
