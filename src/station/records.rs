//! The per-part record log: one JSON line per part in `parts.jsonl`, rotated by size.
//!
//! Crash safety: each record is one `write` of a whole line to a file opened for
//! appending, with no buffering across records, so a `kill -9` loses at most the line
//! being written. At start-up a torn last line (no newline) is closed with one, so the
//! first new record never glues onto it and every earlier line stays parseable.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decide::Verdict;

pub const RECORD_FILE: &str = "parts.jsonl";

/// What is recorded of each part. `None` fields are stages the part never reached.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PartRecord {
    pub id: u64,
    pub station: String,
    /// "gpio", "timer" or "replay".
    pub trigger: String,
    /// Wall-clock times, RFC 3339 with milliseconds.
    pub triggered: String,
    pub captured: Option<String>,
    /// The frame's origin (replayed file name or camera frame number).
    pub origin: Option<String>,
    pub score: Option<f32>,
    pub threshold: f32,
    pub defect_area_px: Option<f64>,
    /// What the station did: a fail-safe part is always "reject".
    pub verdict: Option<Verdict>,
    pub fail_safe: bool,
    pub reason: Option<String>,
    /// The model's verdict when it came too late to be acted on.
    pub late_verdict: Option<Verdict>,
    pub latency_ms: Latency,
    pub pulse: Option<PulseRecord>,
    pub archived: Vec<String>,
}

/// Milliseconds spent per stage; `total` is trigger → verdict.
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

#[derive(Debug, thiserror::Error)]
#[error("records {path}: {source}")]
pub struct RecordError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub struct RecordLog {
    dir: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl RecordLog {
    pub fn open(dir: &Path, max_bytes: u64, keep: u32) -> Result<Self, RecordError> {
        let path = dir.join(RECORD_FILE);
        let err = |source| RecordError { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(err)?;
        let file = open_append(&path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        let mut log = RecordLog { dir: dir.to_path_buf(), file, size, max_bytes, keep };
        if size > 0 && !ends_with_newline(&mut log.file).map_err(err)? {
            log::warn!("{}: the last record was cut off (crash?); closing it", path.display());
            log.file.write_all(b"\n").map_err(err)?;
            log.size += 1;
        }
        Ok(log)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }

    pub fn append(&mut self, record: &PartRecord) -> Result<(), RecordError> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file
            .write_all(&line)
            .map_err(|source| RecordError { path: self.path(), source })?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Flushes the kernel's copy to disk (at shutdown; per-record fsync would cost a
    /// disk write per part for protection against power loss only).
    pub fn sync(&self) -> Result<(), RecordError> {
        self.file.sync_data().map_err(|source| RecordError { path: self.path(), source })
    }

    /// parts.jsonl → parts.1.jsonl → parts.2.jsonl …, dropping the oldest beyond `keep`.
    fn rotate(&mut self) -> Result<(), RecordError> {
        let rotated = |i: u32| self.dir.join(format!("parts.{i}.jsonl"));
        let err = |path: PathBuf| move |source| RecordError { path, source };
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
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).read(true).open(path)
}

fn ends_with_newline(file: &mut File) -> std::io::Result<bool> {
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> PartRecord {
        PartRecord { id, station: "s".into(), verdict: Some(Verdict::Pass), ..Default::default() }
    }

    fn ids(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn a_torn_last_line_is_closed_and_earlier_lines_survive() {
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
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(serde_json::from_str::<serde_json::Value>(lines[0]).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(lines[1]).is_err());
        assert_eq!(serde_json::from_str::<serde_json::Value>(lines[2]).unwrap()["id"], 3);
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
    }
}
