//! GPIO through the Linux GPIO character device (`/dev/gpiochipN`), with the `gpiocdev`
//! crate: uAPI v2 (kernel 5.10+) where the kernel has it, v1 otherwise. Works wherever the
//! kernel exposes gpiochips: Raspberry Pi (including the Pi 5's RP1), Jetson, x86 boards.
//!
//! Polarity is the kernel's active-low flag, so the backends here see only logical values:
//! `set(true)` asserts, and a rising event is the sensor becoming active.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::{Chip, Request};

use crate::platform::clock::{instant_from_monotonic_ns, monotonic_now_ns};
use super::boundary::{DigitalIn, DigitalOut, GpioError, InputEdge, InputEvent, LineSpec};

/// What one gpiochip is, for resolving line specs and for error messages.
#[derive(Debug, Clone, Default)]
struct ChipDesc {
    path: PathBuf,
    /// The kernel's name (`gpiochip0`).
    name: String,
    /// The driver's label (`pinctrl-rp1`, `tegra234-gpio`).
    label: String,
    num_lines: u32,
    /// Line names by offset (empty names for unnamed lines); filled only when needed.
    line_names: Vec<String>,
    /// Why the chip could not be read, if it could not.
    error: Option<String>,
}

impl ChipDesc {
    fn summary(&self) -> String {
        match &self.error {
            Some(e) => format!("{} ({e})", self.path.display()),
            None => format!(
                "{} (label {}, {} lines)",
                self.name, self.label, self.num_lines
            ),
        }
    }
}

/// A requested line: where it is, for messages.
struct Resolved {
    chip: PathBuf,
    offset: u32,
    /// `"gpiochip0 (label pinctrl-rp1) line 17"`, plus the line name when it has one.
    what: String,
}

fn gpio_err(spec: &LineSpec, message: impl Into<String>) -> GpioError {
    GpioError {
        line: spec.to_string(),
        message: message.into(),
    }
}

const PERMISSION_HINT: &str = "permission denied: run the daemon as a user in the group \
     that owns /dev/gpiochip* (usually `gpio`: `usermod -aG gpio USER`; where no such group \
     exists add a udev rule `SUBSYSTEM==\"gpio\", KERNEL==\"gpiochip*\", GROUP=\"gpio\", \
     MODE=\"0660\"`)";

/// Opens a chip; the error says why, with the group hint for permission problems (checked
/// with a plain open first, because gpiocdev's error does not expose the io error kind).
fn open_chip(path: &Path) -> Result<Chip, String> {
    if let Err(e) = std::fs::File::open(path) {
        return Err(match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                format!("{}: {PERMISSION_HINT}", path.display())
            }
            std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
            _ => format!("{}: {e}", path.display()),
        });
    }
    Chip::from_path(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads one chip's description; `with_names` also reads every line's name.
fn describe_chip(path: &Path, with_names: bool) -> ChipDesc {
    let mut desc = ChipDesc {
        path: path.to_path_buf(),
        ..Default::default()
    };
    let chip = match open_chip(path) {
        Ok(c) => c,
        Err(e) => {
            desc.error = Some(e);
            return desc;
        }
    };
    match chip.info() {
        Ok(info) => {
            desc.name = info.name;
            desc.label = info.label;
            desc.num_lines = info.num_lines;
        }
        Err(e) => {
            desc.error = Some(format!("cannot read chip info: {e}"));
            return desc;
        }
    }
    if with_names {
        desc.line_names = (0..desc.num_lines)
            .map(|o| chip.line_info(o).map(|li| li.name).unwrap_or_default())
            .collect();
    }
    desc
}

/// Every gpiochip in /dev, in name order.
fn all_chips(with_names: bool) -> Vec<ChipDesc> {
    gpiocdev::chip::chips()
        .unwrap_or_default()
        .iter()
        .map(|p| describe_chip(p, with_names))
        .collect()
}

fn chip_list(chips: &[ChipDesc]) -> String {
    if chips.is_empty() {
        "no /dev/gpiochip* devices".to_string()
    } else {
        chips
            .iter()
            .map(ChipDesc::summary)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One line per gpiochip (`gpiochip0 (label pinctrl-rp1, 54 lines)`), for `check-config`
/// and error messages; empty when the machine has none.
pub fn describe_chips() -> Vec<String> {
    all_chips(false).iter().map(ChipDesc::summary).collect()
}

/// The chip a `chip:offset` spec means: by kernel name first, then by label.
fn find_chip<'a>(chips: &'a [ChipDesc], want: &str) -> Option<&'a ChipDesc> {
    chips
        .iter()
        .find(|c| c.name == want)
        .or_else(|| chips.iter().find(|c| c.label == want))
}

/// Every (chip index, offset) whose line is named `name`.
fn find_line(chips: &[ChipDesc], name: &str) -> Vec<(usize, u32)> {
    let mut found = Vec::new();
    for (ci, chip) in chips.iter().enumerate() {
        for (offset, n) in chip.line_names.iter().enumerate() {
            if n == name {
                found.push((ci, offset as u32));
            }
        }
    }
    found
}

fn resolve_in(spec: &LineSpec, chips: &[ChipDesc]) -> Result<Resolved, GpioError> {
    let (chip, offset) = match spec {
        LineSpec::ChipOffset { chip, offset } => {
            let desc = if chip.contains('/') {
                let path = Path::new(chip);
                if !path.exists() {
                    return Err(gpio_err(
                        spec,
                        format!("chip {chip} does not exist; present: {}", chip_list(chips)),
                    ));
                }
                // A path may be a symlink (udev) or a chip this user cannot list: read it
                // directly rather than matching it against the list.
                describe_chip(path, false)
            } else {
                match find_chip(chips, chip) {
                    Some(c) => c.clone(),
                    None => {
                        return Err(gpio_err(
                            spec,
                            format!(
                                "no gpiochip named or labelled `{chip}`; present: {}",
                                chip_list(chips)
                            ),
                        ))
                    }
                }
            };
            if let Some(e) = &desc.error {
                return Err(gpio_err(spec, e.clone()));
            }
            if *offset >= desc.num_lines {
                return Err(gpio_err(
                    spec,
                    format!(
                        "offset {offset} out of range: {} (label {}) has {} lines (0..={})",
                        desc.name,
                        desc.label,
                        desc.num_lines,
                        desc.num_lines.saturating_sub(1)
                    ),
                ));
            }
            (desc, *offset)
        }
        LineSpec::Name(name) => {
            let found = find_line(chips, name);
            let Some(&(ci, offset)) = found.first() else {
                let unreadable = chips.iter().any(|c| c.error.is_some());
                return Err(gpio_err(
                    spec,
                    format!(
                        "line name {name} not found on any of {}{}",
                        chip_list(chips),
                        if unreadable {
                            " (some chips could not be read)"
                        } else {
                            ""
                        }
                    ),
                ));
            };
            if found.len() > 1 {
                log::warn!(
                    "GPIO {spec}: the name is on {} lines; using {} line {offset}",
                    found.len(),
                    chips[ci].name
                );
            }
            (chips[ci].clone(), offset)
        }
    };
    let line_name = chip
        .line_names
        .get(offset as usize)
        .filter(|n| !n.is_empty());
    Ok(Resolved {
        what: format!(
            "{} (label {}) line {offset}{}",
            chip.name,
            chip.label,
            line_name.map(|n| format!(" `{n}`")).unwrap_or_default()
        ),
        chip: chip.path,
        offset,
    })
}

fn resolve(spec: &LineSpec) -> Result<Resolved, GpioError> {
    let with_names = matches!(spec, LineSpec::Name(_));
    resolve_in(spec, &all_chips(with_names))
}

/// Finds the line a spec means without requesting it (a running station holds its lines):
/// for the start-up checks (`preflight`). Returns what it is, e.g. `"gpiochip0 (label
/// pinctrl-rp1) line 17"`.
pub fn resolve_line(spec: &LineSpec) -> Result<String, GpioError> {
    resolve(spec).map(|r| r.what)
}

/// Refuses a line another process holds, naming that process's consumer label (the kernel
/// would only say "busy").
fn check_free(spec: &LineSpec, line: &Resolved) -> Result<(), GpioError> {
    let chip = open_chip(&line.chip).map_err(|e| gpio_err(spec, e))?;
    match chip.line_info(line.offset) {
        Ok(info) if info.used => Err(gpio_err(
            spec,
            format!(
                "{} is already in use (consumer `{}`)",
                line.what,
                if info.consumer.is_empty() {
                    "?"
                } else {
                    &info.consumer
                }
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(gpio_err(
            spec,
            format!("{}: cannot read line info: {e}", line.what),
        )),
    }
}

struct CdevOut {
    name: String,
    req: Request,
    offset: u32,
}

impl DigitalOut for CdevOut {
    fn set(&mut self, asserted: bool) -> Result<(), GpioError> {
        let value = if asserted {
            Value::Active
        } else {
            Value::Inactive
        };
        self.req
            .set_value(self.offset, value)
            .map_err(|e| GpioError {
                line: self.name.clone(),
                message: format!(
                    "setting it {}: {e}",
                    if asserted { "asserted" } else { "released" }
                ),
            })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Requests `spec` as an output, initially released. `active_low` uses the kernel's flag,
/// so `set(true)` drives the line low on an active-low output.
pub fn open_output(
    spec: &LineSpec,
    active_low: bool,
    consumer: &str,
) -> Result<Box<dyn DigitalOut>, GpioError> {
    let line = resolve(spec)?;
    check_free(spec, &line)?;
    let mut builder = Request::builder();
    builder
        .on_chip(&line.chip)
        .with_consumer(consumer)
        .with_line(line.offset)
        .as_output(Value::Inactive);
    if active_low {
        builder.as_active_low();
    }
    let req = builder
        .request()
        .map_err(|e| gpio_err(spec, format!("requesting {} as output: {e}", line.what)))?;
    log::info!(
        "GPIO {spec}: output on {}{}",
        line.what,
        if active_low { ", active low" } else { "" }
    );
    Ok(Box::new(CdevOut {
        name: spec.to_string(),
        req,
        offset: line.offset,
    }))
}

/// The software debounce used when the kernel refuses one: an edge closer than `period`
/// to the last accepted one is dropped, and so is an edge that repeats the last state. A
/// dropped edge may have left the line in the other state, so once the period has passed
/// the caller reads the level and [`SoftDebounce::settle`] reports the change, if any.
struct SoftDebounce {
    period: Duration,
    last: Option<(InputEdge, Instant)>,
    /// An edge was dropped inside the period: the level must be checked when it ends.
    pending: bool,
}

impl SoftDebounce {
    fn new(period: Duration) -> Self {
        SoftDebounce {
            period,
            last: None,
            pending: false,
        }
    }

    fn accept(&mut self, edge: InputEdge, at: Instant) -> Option<InputEvent> {
        if self.last.map(|(e, _)| e) == Some(edge) {
            return None;
        }
        self.last = Some((edge, at));
        self.pending = false;
        Some(InputEvent { edge, at })
    }

    /// An edge as the kernel reported it.
    fn offer(&mut self, edge: InputEdge, at: Instant) -> Option<InputEvent> {
        if let Some((_, last_at)) = self.last {
            if at.saturating_duration_since(last_at) < self.period {
                self.pending = true;
                return None;
            }
        }
        self.accept(edge, at)
    }

    /// When the level must be read to settle a dropped edge.
    fn settle_at(&self) -> Option<Instant> {
        match (self.pending, self.last) {
            (true, Some((_, at))) => Some(at + self.period),
            _ => None,
        }
    }

    /// The level read after the period: an event if it differs from the last one reported.
    fn settle(&mut self, asserted: bool, now: Instant) -> Option<InputEvent> {
        self.pending = false;
        let edge = if asserted {
            InputEdge::Asserted
        } else {
            InputEdge::Released
        };
        self.accept(edge, now)
    }
}

struct CdevIn {
    name: String,
    req: Request,
    offset: u32,
    /// Set when the kernel refused the debounce period.
    soft: Option<SoftDebounce>,
}

impl CdevIn {
    fn err(&self, message: String) -> GpioError {
        GpioError {
            line: self.name.clone(),
            message,
        }
    }
}

impl DigitalIn for CdevIn {
    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<InputEvent>, GpioError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let settle_at = self.soft.as_ref().and_then(SoftDebounce::settle_at);
            if settle_at.is_some_and(|at| at <= now) {
                let value = self
                    .req
                    .value(self.offset)
                    .map_err(|e| self.err(format!("reading the level: {e}")))?;
                let asserted = value == Value::Active;
                if let Some(ev) = self.soft.as_mut().and_then(|s| s.settle(asserted, now)) {
                    return Ok(Some(ev));
                }
                continue;
            }
            if now >= deadline {
                return Ok(None);
            }
            let until = settle_at.map_or(deadline, |s| s.min(deadline));
            let ready = self
                .req
                .wait_edge_event(until - now)
                .map_err(|e| self.err(format!("waiting for an edge: {e}")))?;
            if !ready {
                continue;
            }
            let ev = self
                .req
                .read_edge_event()
                .map_err(|e| self.err(format!("reading an edge event: {e}")))?;
            let at = instant_from_monotonic_ns(ev.timestamp_ns, monotonic_now_ns(), Instant::now());
            // Rising is inactive → active after the kernel applied active-low.
            let edge = match ev.kind {
                EdgeKind::Rising => InputEdge::Asserted,
                EdgeKind::Falling => InputEdge::Released,
            };
            match self.soft.as_mut() {
                Some(soft) => {
                    if let Some(ev) = soft.offer(edge, at) {
                        return Ok(Some(ev));
                    }
                }
                None => return Ok(Some(InputEvent { edge, at })),
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

fn input_request(
    line: &Resolved,
    active_low: bool,
    debounce: Duration,
    consumer: &str,
) -> gpiocdev::Result<Request> {
    let mut builder = Request::builder();
    builder
        .on_chip(&line.chip)
        .with_consumer(consumer)
        .with_line(line.offset)
        .as_input()
        .with_edge_detection(EdgeDetection::BothEdges);
    if active_low {
        builder.as_active_low();
    }
    if !debounce.is_zero() {
        builder.with_debounce_period(debounce);
    }
    builder.request()
}

/// Requests `spec` as an input with edge events on both edges. The kernel debounces where
/// it can (uAPI v2); where it refuses (uAPI v1, or a driver without it) the edges are
/// debounced here instead. Event times are the kernel's CLOCK_MONOTONIC timestamps.
pub fn open_input(
    spec: &LineSpec,
    active_low: bool,
    debounce: Duration,
    consumer: &str,
) -> Result<Box<dyn DigitalIn>, GpioError> {
    let line = resolve(spec)?;
    check_free(spec, &line)?;
    let (req, soft) = match input_request(&line, active_low, debounce, consumer) {
        Ok(req) => (req, None),
        Err(e) if !debounce.is_zero() => {
            log::warn!(
                "GPIO {spec}: the kernel refused a {debounce:?} debounce ({e}); debouncing in software"
            );
            let req = input_request(&line, active_low, Duration::ZERO, consumer)
                .map_err(|e| gpio_err(spec, format!("requesting {} as input: {e}", line.what)))?;
            (req, Some(SoftDebounce::new(debounce)))
        }
        Err(e) => {
            return Err(gpio_err(
                spec,
                format!("requesting {} as input: {e}", line.what),
            ))
        }
    };
    log::info!(
        "GPIO {spec}: input on {}{}, debounce {debounce:?}{}",
        line.what,
        if active_low { ", active low" } else { "" },
        if soft.is_some() { " (software)" } else { "" }
    );
    Ok(Box::new(CdevIn {
        name: spec.to_string(),
        req,
        offset: line.offset,
        soft,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chip(name: &str, label: &str, lines: &[&str]) -> ChipDesc {
        ChipDesc {
            path: PathBuf::from(format!("/dev/{name}")),
            name: name.into(),
            label: label.into(),
            num_lines: lines.len() as u32,
            line_names: lines.iter().map(|s| s.to_string()).collect(),
            error: None,
        }
    }

    fn fake_chips() -> Vec<ChipDesc> {
        vec![
            chip("gpiochip0", "tegra234-gpio", &["PA.00", "PQ.05", ""]),
            chip("gpiochip1", "tegra234-gpio-aon", &["PAA.00", "PQ.05"]),
        ]
    }

    #[test]
    fn chips_resolve_by_name_then_label() {
        let chips = fake_chips();
        assert_eq!(
            find_chip(&chips, "gpiochip1").unwrap().label,
            "tegra234-gpio-aon"
        );
        assert_eq!(
            find_chip(&chips, "tegra234-gpio").unwrap().name,
            "gpiochip0"
        );
        assert!(find_chip(&chips, "pinctrl-rp1").is_none());

        let spec: LineSpec = "tegra234-gpio-aon:1".parse().unwrap();
        let line = resolve_in(&spec, &chips).unwrap();
        assert_eq!(line.chip, PathBuf::from("/dev/gpiochip1"));
        assert_eq!(line.offset, 1);
        assert_eq!(
            line.what,
            "gpiochip1 (label tegra234-gpio-aon) line 1 `PQ.05`"
        );
    }

    #[test]
    fn line_names_resolve_to_the_first_chip_that_has_them() {
        let chips = fake_chips();
        let line = resolve_in(&LineSpec::Name("PQ.05".into()), &chips).unwrap();
        assert_eq!(
            (line.chip, line.offset),
            (PathBuf::from("/dev/gpiochip0"), 1)
        );
        let line = resolve_in(&LineSpec::Name("PAA.00".into()), &chips).unwrap();
        assert_eq!(
            (line.chip, line.offset),
            (PathBuf::from("/dev/gpiochip1"), 0)
        );
    }

    #[test]
    fn resolution_errors_name_the_spec_and_list_what_exists() {
        let chips = fake_chips();
        let e = resolve_in(&LineSpec::Name("GPIO17".into()), &chips)
            .err()
            .unwrap();
        assert_eq!(e.line, "GPIO17");
        assert_eq!(
            e.message,
            "line name GPIO17 not found on any of gpiochip0 (label tegra234-gpio, 3 lines), \
             gpiochip1 (label tegra234-gpio-aon, 2 lines)"
        );

        let e = resolve_in(&"pinctrl-rp1:4".parse().unwrap(), &chips)
            .err()
            .unwrap();
        assert_eq!(e.line, "pinctrl-rp1:4");
        assert!(e.message.starts_with("no gpiochip named or labelled `pinctrl-rp1`; present: gpiochip0 (label tegra234-gpio"), "{}", e.message);

        let e = resolve_in(&"gpiochip1:2".parse().unwrap(), &chips)
            .err()
            .unwrap();
        assert_eq!(
            e.message,
            "offset 2 out of range: gpiochip1 (label tegra234-gpio-aon) has 2 lines (0..=1)"
        );

        let e = resolve_in(&LineSpec::Name("X".into()), &[]).err().unwrap();
        assert_eq!(
            e.message,
            "line name X not found on any of no /dev/gpiochip* devices"
        );
    }

    #[test]
    fn unreadable_chips_are_listed_with_the_reason() {
        let mut chips = fake_chips();
        // What describe_chip leaves for a chip it cannot open.
        chips[1] = ChipDesc {
            path: "/dev/gpiochip1".into(),
            error: Some(format!("/dev/gpiochip1: {PERMISSION_HINT}")),
            ..Default::default()
        };
        let e = resolve_in(&LineSpec::Name("PAA.00".into()), &chips)
            .err()
            .unwrap();
        assert!(
            e.message
                .contains("/dev/gpiochip1 (/dev/gpiochip1: permission denied"),
            "{}",
            e.message
        );
        assert!(
            e.message.ends_with("(some chips could not be read)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_missing_chip_path_is_an_error_naming_it() {
        // Goes through the real open functions: no chip is touched, because the path is
        // checked before anything is opened.
        let spec: LineSpec = "/dev/gpiochip99:3".parse().unwrap();
        let e = open_output(&spec, false, "cdo-inspect-test").err().unwrap();
        assert_eq!(e.line, "/dev/gpiochip99:3");
        assert!(
            e.message
                .starts_with("chip /dev/gpiochip99 does not exist; present: "),
            "{}",
            e.message
        );
        let e = open_input(&spec, true, Duration::from_millis(5), "cdo-inspect-test")
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("GPIO /dev/gpiochip99:3: chip /dev/gpiochip99 does not exist"),
            "{e}"
        );
    }

    #[test]
    fn unknown_chip_labels_and_line_names_fail_on_this_machine_too() {
        let e = open_output(&"no-such-gpio-label:0".parse().unwrap(), false, "t")
            .err()
            .unwrap();
        assert!(
            e.message
                .starts_with("no gpiochip named or labelled `no-such-gpio-label`"),
            "{}",
            e.message
        );
        let e = open_input(
            &LineSpec::Name("NO_SUCH_LINE_NAME".into()),
            false,
            Duration::ZERO,
            "t",
        )
        .err()
        .unwrap();
        assert!(
            e.message
                .starts_with("line name NO_SUCH_LINE_NAME not found on any of "),
            "{}",
            e.message
        );
    }

    #[test]
    fn soft_debounce_drops_bounces_and_settles_on_the_level() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = SoftDebounce::new(ms(10));
        let ev = d.offer(InputEdge::Asserted, t0).unwrap();
        assert_eq!((ev.edge, ev.at), (InputEdge::Asserted, t0));
        // Contact bounce inside the period: dropped, level check scheduled.
        assert!(d.offer(InputEdge::Released, t0 + ms(2)).is_none());
        assert!(d.offer(InputEdge::Asserted, t0 + ms(3)).is_none());
        assert_eq!(d.settle_at(), Some(t0 + ms(10)));
        // Settled asserted: no change to report.
        assert!(d.settle(true, t0 + ms(10)).is_none());
        assert_eq!(d.settle_at(), None);
        // A real release after the period comes through.
        let ev = d.offer(InputEdge::Released, t0 + ms(50)).unwrap();
        assert_eq!(ev.edge, InputEdge::Released);
        // A short pulse inside the period that ends asserted is reported at settle time.
        assert!(d.offer(InputEdge::Asserted, t0 + ms(55)).is_none());
        let ev = d.settle(true, t0 + ms(60)).unwrap();
        assert_eq!((ev.edge, ev.at), (InputEdge::Asserted, t0 + ms(60)));
        // The same edge twice (a lost opposite edge) is not reported twice.
        assert!(d.offer(InputEdge::Asserted, t0 + ms(100)).is_none());
    }
}
