//! The per-part record log: one JSON line per part in `parts.jsonl`, rotated by size.
//!
//! Crash safety: each record is one append of a whole line to a file opened for
//! appending, with no buffering across records, so a `kill -9` loses at most the line
//! being written (and the journal, `journal.rs`, gives that part a record at the next
//! start).
//!
//! Whole lines only: a line that was cut off (by a crash, or by a write that failed part
//! way: a full disk takes what fits, then says ENOSPC) is removed, by truncating the file
//! back to its last whole line, before anything else is appended: at start-up, at once
//! after a failed write, and again before the next append if that truncation failed too.
//! A record therefore never glues onto a fragment, and every line of the file is whole
//! JSON. (Earlier versions closed a cut-off line with a newline and kept it.)
//!
//! A removed file or folder is noticed: before every append the path's device and inode
//! are compared with the open file's (one `stat` and one `fstat`). Writing to a file that
//! was unlinked "succeeds" and every record is lost, so when the file was removed or
//! replaced the folder and a new file are created, with a warning in the log.
//!
//! A failed write is returned to the caller and nothing else: the recorder
//! (`recorder.rs`) keeps the records in memory, raises the records fault through
//! [`RecordsHealth`] and retries.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::decide::Verdict;
use crate::text::{cap, for_log, MAX_TEXT_CHARS};

pub const RECORD_FILE: &str = "parts.jsonl";

/// What is recorded of each part. `None` fields are stages the part never reached.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PartRecord {
    /// Unique for the station's life (see `journal.rs`); always the first field.
    pub id: u64,
    /// The station's name, capped at [`MAX_TEXT_CHARS`] characters.
    pub station: String,
    /// The software version (`cdo-inspect --version`).
    pub version: String,
    /// The model's identity: SHA-256 of the bundle's `model.toml` followed by its
    /// apprentice weights (`cat model.toml apprentice.safetensors | sha256sum`).
    pub model_sha256: String,
    /// SHA-256 of the station file in effect for this part (updated by SIGHUP reloads);
    /// None when the station was not started from a file.
    pub station_sha256: Option<String>,
    /// "gpio", "timer" or "replay".
    pub trigger: String,
    /// Wall-clock times, RFC 3339 with milliseconds.
    pub triggered: String,
    pub captured: Option<String>,
    /// The frame's origin (replayed file name or camera frame number), also for a corrupt
    /// frame; capped at [`MAX_TEXT_CHARS`] characters.
    pub origin: Option<String>,
    pub score: Option<f32>,
    pub threshold: f32,
    /// The largest region of map pixels above the pixel threshold, in source pixels: its
    /// area and its bounding box `[x, y, w, h]` in the frame. None without such a region.
    pub defect_area_px: Option<f64>,
    pub defect_bbox: Option<[u32; 4]>,
    /// Where alignment found the part (with alignment on): its move in source pixels and
    /// how sure the estimate is.
    pub alignment: Option<AlignmentRecord>,
    /// What the station did: a fail-safe part is always "reject".
    pub verdict: Option<Verdict>,
    pub fail_safe: bool,
    /// Why the part was rejected without a normal verdict; each outside message in it is
    /// capped at [`MAX_TEXT_CHARS`] characters.
    pub reason: Option<String>,
    /// The model's verdict when it came too late to be acted on.
    pub late_verdict: Option<Verdict>,
    pub latency_ms: Latency,
    /// The pulse that went out for the part; None when none did (a pass without a pass
    /// output, or a part whose station stopped before its verdict).
    pub pulse: Option<PulseRecord>,
    pub archived: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AlignmentRecord {
    pub dx: f32,
    pub dy: f32,
    pub confidence: f32,
}

/// Milliseconds spent per stage; `total` is trigger → verdict. `preprocess` is the
/// alignment (when on) and cutting the frame into network input; `infer` the networks,
/// stitching, smoothing and the score.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub queue: Option<f64>,
    pub capture: Option<f64>,
    pub preprocess: Option<f64>,
    pub infer: Option<f64>,
    pub decide: Option<f64>,
    pub total: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PulseRecord {
    /// "reject" or "pass".
    pub output: String,
    /// Planned start, ms after the trigger (the configured delay).
    pub due_ms: f64,
    /// How late the edge actually was, in µs (the timing jitter).
    pub late_us: f64,
    pub width_ms: f64,
}

/// Outside text for a record: capped (JSON escapes control characters itself).
pub fn record_text(s: &str) -> String {
    cap(s, MAX_TEXT_CHARS)
}

#[derive(Debug, thiserror::Error)]
#[error("records {path}: {error}")]
pub struct RecordError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// How a record's bytes reach the file: one `write` call, which may take only part of
/// them. The real disk is the file's own `write`; the tests stand in a disk that fills up.
pub trait Disk: Send {
    fn write(&mut self, file: &mut File, buf: &[u8]) -> std::io::Result<usize>;
}

pub struct RealDisk;

impl Disk for RealDisk {
    fn write(&mut self, file: &mut File, buf: &[u8]) -> std::io::Result<usize> {
        file.write(buf)
    }
}

/// Writes all of `buf` through `disk`, as `write_all` does.
pub(crate) fn write_all(disk: &mut dyn Disk, file: &mut File, buf: &[u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match disk.write(file, &buf[done..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub struct RecordLog {
    dir: PathBuf,
    file: File,
    /// Device and inode of the open file, to notice a removed or replaced one.
    ident: (u64, u64),
    /// Bytes of whole lines in the file.
    size: u64,
    /// A failed write may have left part of a line after `size` that is not cut off yet.
    torn: bool,
    max_bytes: u64,
    keep: u32,
    disk: Box<dyn Disk>,
}

impl RecordLog {
    pub fn open(dir: &Path, max_bytes: u64, keep: u32) -> Result<Self, RecordError> {
        Self::open_with(dir, max_bytes, keep, Box::new(RealDisk))
    }

    /// [`RecordLog::open`] writing through `disk`.
    pub fn open_with(dir: &Path, max_bytes: u64, keep: u32, disk: Box<dyn Disk>) -> Result<Self, RecordError> {
        let path = dir.join(RECORD_FILE);
        let err = |source| RecordError { path: path.clone(), error: source };
        std::fs::create_dir_all(dir).map_err(err)?;
        let file = open_append(&path).map_err(err)?;
        let mut log = RecordLog {
            dir: dir.to_path_buf(),
            file,
            ident: (0, 0),
            size: 0,
            torn: false,
            max_bytes,
            keep,
            disk,
        };
        log.adopt_open_file().map_err(err)?;
        Ok(log)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of whole lines in the current file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The line a record is written as, newline included.
    pub fn line_of(record: &PartRecord) -> Vec<u8> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        line
    }

    pub fn append(&mut self, record: &PartRecord) -> Result<(), RecordError> {
        self.append_line(&Self::line_of(record))
    }

    /// Appends one whole line (ending in a newline). On failure nothing of it stays in
    /// the file (or, when even the truncation failed, it is cut off before the next one).
    pub fn append_line(&mut self, line: &[u8]) -> Result<(), RecordError> {
        debug_assert!(line.ends_with(b"\n"));
        self.check_file().map_err(|source| RecordError { path: self.path(), error: source })?;
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if let Err(source) = write_all(self.disk.as_mut(), &mut self.file, line) {
            // A full disk may have taken part of the line: cut it off now if possible.
            self.torn = true;
            let _ = self.cut_back();
            return Err(RecordError { path: self.path(), error: source });
        }
        self.size += line.len() as u64;
        Ok(())
    }

    /// Before an append: the path still names the open file (else a new one is opened),
    /// and the file holds only whole lines.
    fn check_file(&mut self) -> std::io::Result<()> {
        let path = self.path();
        let same = match std::fs::metadata(&path) {
            Ok(m) => (m.dev(), m.ino()) == self.ident,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !same {
            log::warn!(
                "records: {} was removed or replaced while the station had it open (folder removed?); starting a new file there",
                for_log(&path.display().to_string())
            );
            std::fs::create_dir_all(&self.dir)?;
            self.file = open_append(&path)?;
            self.torn = false;
            return self.adopt_open_file();
        }
        let len = self.file.metadata()?.len();
        if self.torn && len >= self.size {
            self.cut_back()?;
        } else if len != self.size {
            // Changed by someone else (truncated, or written to): take it as it is.
            self.torn = false;
            self.adopt_open_file()?;
        }
        Ok(())
    }

    /// Takes stock of the file just opened: identity, size, and a cut-off last line,
    /// which is removed.
    fn adopt_open_file(&mut self) -> std::io::Result<()> {
        let meta = self.file.metadata()?;
        self.ident = (meta.dev(), meta.ino());
        self.size = meta.len();
        if let Some((removed, start)) = truncate_torn_tail(&self.file, self.size)? {
            log::warn!(
                "records: {}: removed a cut-off last line of {removed} bytes (crash or full disk?): {}",
                for_log(&self.path().display().to_string()),
                for_log(&String::from_utf8_lossy(&start))
            );
            self.size -= removed;
        }
        Ok(())
    }

    fn cut_back(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.size)?;
        self.torn = false;
        Ok(())
    }

    /// Flushes the kernel's copy to disk (at shutdown; per-record fsync would cost a
    /// disk write per part for protection against power loss only).
    pub fn sync(&self) -> Result<(), RecordError> {
        self.file.sync_data().map_err(|source| RecordError { path: self.path(), error: source })
    }

    /// parts.jsonl → parts.1.jsonl → parts.2.jsonl …, dropping the oldest beyond `keep`.
    fn rotate(&mut self) -> Result<(), RecordError> {
        let rotated = |i: u32| rotated_file(&self.dir, i);
        let err = |path: PathBuf| move |source| RecordError { path, error: source };
        let _ = self.file.sync_data();
        if self.keep == 0 {
            std::fs::remove_file(self.path()).map_err(err(self.path()))?;
        } else {
            let _ = std::fs::remove_file(rotated(self.keep));
            for i in (1..self.keep).rev() {
                if rotated(i).exists() {
                    std::fs::rename(rotated(i), rotated(i + 1)).map_err(err(rotated(i)))?;
                }
            }
            std::fs::rename(self.path(), rotated(1)).map_err(err(self.path()))?;
        }
        self.file = open_append(&self.path()).map_err(err(self.path()))?;
        self.adopt_open_file().map_err(err(self.path()))?;
        Ok(())
    }
}

fn rotated_file(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("parts.{i}.jsonl"))
}

/// The record files in `dir`, newest first: `parts.jsonl`, then `parts.1.jsonl`, … as
/// far as they go.
pub fn record_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Some(dir.join(RECORD_FILE)).into_iter().filter(|p| p.is_file()).collect();
    files.extend((1..).map(|i| rotated_file(dir, i)).take_while(|p| p.is_file()));
    files
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).read(true).open(path)
}

/// When the file (`len` bytes) does not end in a newline, truncates it after its last
/// one (to nothing when it has none); returns how many bytes went and the first of them.
pub(crate) fn truncate_torn_tail(file: &File, len: u64) -> std::io::Result<Option<(u64, Vec<u8>)>> {
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    // Back to the last newline, a chunk at a time.
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut keep = 0;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    let mut start = vec![0u8; (len - keep).min(120) as usize];
    file.read_exact_at(&mut start, keep)?;
    file.set_len(keep)?;
    Ok(Some((len - keep, start)))
}

/// Which writer of the records is failing: the record log, or the journal of parts in
/// flight (`journal.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Records = 0,
    Journal = 1,
}

/// Whether the records can be written now. The recorder and the journal set it; the
/// actuator rejects every part while it fails (a part whose record may be lost must not
/// pass) and the supervisor raises the fault output and drops ready.
#[derive(Default)]
pub struct RecordsHealth {
    failing: AtomicBool,
    why: Mutex<[Option<String>; 2]>,
    /// Records still unwritten when the recorder stopped (their parts are in the journal).
    pub unwritten: AtomicU64,
}

impl RecordsHealth {
    /// Sets one writer's state: `Some(error)` while it fails. Returns true when the
    /// writer went from working to failing or back (one log line per change, not per
    /// part); while it keeps failing, the first error stays the reason.
    pub fn set(&self, writer: Writer, failure: Option<String>) -> bool {
        if failure.is_none() && !self.failing() {
            return false;
        }
        let mut why = self.why.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut why[writer as usize];
        let changed = slot.is_some() != failure.is_some();
        if changed {
            *slot = failure;
        }
        self.failing.store(why.iter().any(Option::is_some), Ordering::Relaxed);
        changed
    }

    /// Whether any writer fails (cheap: one atomic load, for every part).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Why records cannot be written now; None while they can.
    pub fn fault(&self) -> Option<String> {
        if !self.failing() {
            return None;
        }
        let why = self.why.lock().unwrap_or_else(|p| p.into_inner());
        let parts: Vec<&str> = why.iter().flatten().map(String::as_str).collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    pub(crate) fn record(id: u64) -> PartRecord {
        PartRecord { id, station: "s".into(), verdict: Some(Verdict::Pass), ..Default::default() }
    }

    pub(crate) fn ids(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_u64().unwrap())
            .collect()
    }

    /// A disk with `room` bytes left, shared with the test: a write takes what fits (a
    /// short write, really written to the file) and fails with ENOSPC when nothing does,
    /// as a full filesystem does. `u64::MAX` is a disk with room.
    pub(crate) struct FillingDisk {
        pub room: Arc<AtomicU64>,
    }

    impl Disk for FillingDisk {
        fn write(&mut self, file: &mut File, buf: &[u8]) -> std::io::Result<usize> {
            let room = self.room.load(Ordering::Relaxed);
            if room == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(room.min(usize::MAX as u64) as usize);
            let n = file.write(&buf[..n])?;
            if room != u64::MAX {
                self.room.fetch_sub(n as u64, Ordering::Relaxed);
            }
            Ok(n)
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_earlier_lines_survive() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordLog::open(dir.path(), 1 << 20, 3).unwrap();
        log.append(&record(1)).unwrap();
        drop(log);
        // What a kill -9 in the middle of a write leaves.
        let path = dir.path().join(RECORD_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":2,"stat"#).unwrap();
        let mut log = RecordLog::open(dir.path(), 1 << 20, 3).unwrap();
        log.append(&record(3)).unwrap();
        // The fragment is gone, not closed: every line is whole JSON.
        assert_eq!(ids(&path), vec![1, 3]);
        // A file that is nothing but a fragment is emptied.
        std::fs::write(&path, b"{\"id\":4").unwrap();
        let log = RecordLog::open(dir.path(), 1 << 20, 3).unwrap();
        assert_eq!((log.size(), std::fs::read(&path).unwrap().len()), (0, 0));
    }

    #[test]
    fn a_torn_tail_longer_than_a_chunk_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut text = b"{\"id\":1}\n".to_vec();
        text.resize(text.len() + 200_000, b'x');
        std::fs::write(&path, &text).unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let (removed, start) = truncate_torn_tail(&f, text.len() as u64).unwrap().unwrap();
        assert_eq!((removed, start.len()), (200_000, 120));
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"id\":1}\n");
        assert!(truncate_torn_tail(&f, 9).unwrap().is_none());
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&record(0)).unwrap().len() as u64 + 1;
        // Two records per file.
        let mut log = RecordLog::open(dir.path(), 2 * one + 1, 2).unwrap();
        for id in 0..7 {
            log.append(&record(id)).unwrap();
        }
        assert_eq!(ids(&dir.path().join(RECORD_FILE)), vec![6]);
        assert_eq!(ids(&dir.path().join("parts.1.jsonl")), vec![4, 5]);
        assert_eq!(ids(&dir.path().join("parts.2.jsonl")), vec![2, 3]);
        assert!(!dir.path().join("parts.3.jsonl").exists());
        let names: Vec<String> = record_files(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["parts.jsonl", "parts.1.jsonl", "parts.2.jsonl"]);
    }

    #[test]
    fn a_full_disk_fails_the_append_and_leaves_no_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let room = Arc::new(AtomicU64::new(u64::MAX));
        let disk = FillingDisk { room: room.clone() };
        let mut log = RecordLog::open_with(dir.path(), 1 << 20, 3, Box::new(disk)).unwrap();
        log.append(&record(1)).unwrap();
        // Room for half a record: the disk takes that much, then refuses the rest.
        let half = RecordLog::line_of(&record(2)).len() as u64 / 2;
        room.store(half, Ordering::Relaxed);
        let err = log.append(&record(2)).unwrap_err();
        assert_eq!(err.error.raw_os_error(), Some(libc::ENOSPC), "{err}");
        let path = dir.path().join(RECORD_FILE);
        assert_eq!(ids(&path), vec![1], "the half line was cut off at once");
        // Still full: fails again, the file unchanged.
        assert!(log.append(&record(2)).is_err());
        assert_eq!(ids(&path), vec![1]);
        // Space again: the record goes after the last whole line.
        room.store(u64::MAX, Ordering::Relaxed);
        log.append(&record(2)).unwrap();
        log.append(&record(3)).unwrap();
        assert_eq!(ids(&path), vec![1, 2, 3]);
        assert_eq!(log.size(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_torn_line_that_could_not_be_cut_at_once_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordLog::open(dir.path(), 1 << 20, 3).unwrap();
        log.append(&record(1)).unwrap();
        // As if a failed write left a fragment and the truncation after it failed too.
        let path = dir.path().join(RECORD_FILE);
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\":2,").unwrap();
        log.torn = true;
        log.append(&record(3)).unwrap();
        assert_eq!(ids(&path), vec![1, 3]);
    }

    #[test]
    fn a_removed_folder_is_noticed_and_recreated() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("records");
        let mut log = RecordLog::open(&dir, 1 << 20, 3).unwrap();
        log.append(&record(1)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        log.append(&record(2)).unwrap();
        let path = dir.join(RECORD_FILE);
        assert_eq!(ids(&path), vec![2]);
        // Replaced by another file (moved away and a new one put there): the new one is
        // written to, after its own whole lines.
        std::fs::rename(&path, dir.join("old.jsonl")).unwrap();
        std::fs::write(&path, b"{\"id\":7}\n{\"id\":8,\"x").unwrap();
        log.append(&record(3)).unwrap();
        assert_eq!(ids(&path), vec![7, 3]);
        assert_eq!(ids(&dir.join("old.jsonl")), vec![2]);
    }

    #[test]
    fn health_changes_state_once_per_failure_and_keeps_the_first_reason() {
        let h = RecordsHealth::default();
        assert!(!h.failing() && h.fault().is_none());
        assert!(h.set(Writer::Records, Some("disk full".into())));
        assert!(!h.set(Writer::Records, Some("other".into())), "still failing: no change");
        assert!(h.set(Writer::Journal, Some("journal: gone".into())));
        assert_eq!(h.fault().as_deref(), Some("disk full; journal: gone"));
        assert!(h.set(Writer::Records, None));
        assert!(h.failing());
        assert!(!h.set(Writer::Records, None));
        assert!(h.set(Writer::Journal, None));
        assert!(!h.failing() && h.fault().is_none());
    }

    #[test]
    fn outside_text_in_a_record_is_capped() {
        let long = "é".repeat(100_000);
        let mut r = record(1);
        r.origin = Some(record_text(&long));
        let line = RecordLog::line_of(&r);
        assert!(line.len() < 2000, "{}", line.len());
    }
}
