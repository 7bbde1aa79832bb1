//! Part ids, and the write-ahead journal of parts in flight: `records/inflight.jsonl`.
//!
//! Every trigger takes the next id from [`Journal::begin`], which appends
//! `{"id":…,"trigger":…,"triggered":…}` to the journal before the part goes anywhere
//! else (before the actuator hears of it). Once the recorder has written the part's
//! record, [`Journal::recorded`] drops the id from the list of open parts kept in memory;
//! every [`COMPACT_BYTES`] of journal the file is rewritten (a new file renamed over the
//! old one) with a header line `{"next":…,"model_sha256":…,…}` and the parts still open.
//!
//! At start-up ([`recover`]), before the first trigger, every journalled id without a
//! record in `parts.jsonl` (or the rotated files) gets one: verdict reject, `fail_safe`,
//! reason [`CRASH_REASON`], no pulse (none went out: the actuator stopped with the
//! station), with the model, station file and version of the run that triggered it.
//!
//! Why this keeps the count exact: an id is in the journal file before its part exists
//! anywhere else, and it leaves the file only through a rewrite made after its record
//! was written. So at every instant, a `kill -9` included, every id ever handed out is in
//! the records or in the journal (in both when the crash fell between the record and the
//! next rewrite: the start-up finds the record and adds none). After the start-up check,
//! parts triggered = record lines, and the ids run 1, 2, 3… without a gap, so a missing
//! number would be a missing record. What it does not cover: a part whose journal write
//! failed (full disk; the station then raises the records fault and rejects every part,
//! and the journal is rewritten with every open part as soon as it can be) when the
//! station also crashes before the part's record is written; and a power loss, which
//! may drop writes still in the page cache (neither file is fsynced per part).
//!
//! Ids are one counter over the station's life, continued from the journal (its header
//! and entries) and the records at every start, rather than a run id plus a sequence:
//! one number is the key a plant's systems keep for a part, it sorts in trigger order
//! across restarts, a gap in it shows a lost record, and the archive's file names, which
//! contain it, cannot collide across restarts. Deleting the records folder (journal and
//! all) starts it at 1 again.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::decide::Verdict;
use super::identity::RunIdentity;
use super::records::{record_files, rfc3339, write_all, Disk, PartRecord, RealDisk, RecordError, RecordsHealth, Writer};
use crate::text::for_log;

pub const JOURNAL_FILE: &str = "inflight.jsonl";
/// The reason recorded for a part the station stopped (crashed) before recording.
pub const CRASH_REASON: &str = "station stopped before this part's verdict (crash?)";
/// The journal is rewritten with only the open parts once it is this large.
pub const COMPACT_BYTES: u64 = 256 * 1024;
/// After a failed write, how long the journal waits before it tries again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Header {
    next: u64,
    #[serde(flatten)]
    run: RunIdentity,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    id: u64,
    trigger: String,
    triggered: String,
}

/// A journalled part with no record, found at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Unrecorded {
    pub id: u64,
    pub trigger: String,
    pub triggered: String,
    /// The run that triggered it (its journal header; empty when there was none).
    pub run: RunIdentity,
}

impl Unrecorded {
    /// The record it gets: rejected, fail-safe, no pulse.
    pub fn record(&self, station: &str) -> PartRecord {
        PartRecord {
            id: self.id,
            station: station.to_string(),
            version: self.run.version.clone(),
            model_sha256: self.run.model_sha256.clone(),
            station_sha256: self.run.station_sha256.clone(),
            trigger: self.trigger.clone(),
            triggered: self.triggered.clone(),
            verdict: Some(Verdict::Reject),
            fail_safe: true,
            reason: Some(CRASH_REASON.into()),
            ..Default::default()
        }
    }
}

/// What the journal file holds.
#[derive(Debug, Default)]
struct Parsed {
    next: u64,
    entries: Vec<Unrecorded>,
}

/// Reads a journal: headers and entries, each entry with the run of the header before
/// it. A last line without its newline (cut off) is ignored: that write never completed,
/// so the part had not been announced to the actuator yet.
fn parse_journal(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut run = RunIdentity::default();
    let whole = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    for line in whole.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v.get("next").is_some() {
            if let Ok(h) = serde_json::from_value::<Header>(v) {
                parsed.next = parsed.next.max(h.next);
                run = h.run;
            }
        } else if let Ok(e) = serde_json::from_value::<Entry>(v) {
            parsed.entries.push(Unrecorded { id: e.id, trigger: e.trigger, triggered: e.triggered, run: run.clone() });
        }
    }
    parsed
}

/// The part id of a record line: its first field, read without parsing the whole line
/// (start-up reads every line of the current records file); other lines are parsed.
pub fn record_id(line: &[u8]) -> Option<u64> {
    if let Some(rest) = line.strip_prefix(br#"{"id":"#) {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && matches!(rest.get(digits), Some(b',' | b'}')) {
            return std::str::from_utf8(&rest[..digits]).ok()?.parse().ok();
        }
    }
    serde_json::from_slice::<serde_json::Value>(line).ok()?.get("id")?.as_u64()
}

/// What a start-up found: the next id, and the journalled parts without a record, by id.
#[derive(Debug, Default)]
pub struct Recovered {
    pub next_id: u64,
    pub unrecorded: Vec<Unrecorded>,
}

/// Which journalled parts have no record, and where the ids go on: after every id in the
/// journal (header and entries) and in the records seen.
fn reconcile(journal: Parsed, recorded: &HashSet<u64>, records_max: u64) -> Recovered {
    let mut next_id = journal.next.max(records_max + 1).max(1);
    let mut unrecorded = BTreeMap::new();
    for e in journal.entries {
        next_id = next_id.max(e.id + 1);
        if !recorded.contains(&e.id) {
            unrecorded.entry(e.id).or_insert(e);
        }
    }
    Recovered { next_id, unrecorded: unrecorded.into_values().collect() }
}

/// Reads the journal and the records in `dir`: which journalled parts have no record,
/// and the next id. Record files are read newest first, only as far back as the oldest
/// journalled id (or, without a journal, to the first file holding a record).
pub fn recover(dir: &Path) -> Result<Recovered, RecordError> {
    let path = dir.join(JOURNAL_FILE);
    let text = match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(RecordError { path, error: source }),
    };
    let parsed = parse_journal(&text);
    let oldest = parsed.entries.iter().map(|e| e.id).min();
    let mut recorded = HashSet::new();
    let mut records_max = 0;
    for file in record_files(dir) {
        let err = |source| RecordError { path: file.clone(), error: source };
        let mut reader = std::io::BufReader::new(File::open(&file).map_err(err)?);
        let mut line = Vec::new();
        let mut file_min = u64::MAX;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(err)? == 0 {
                break;
            }
            let Some(id) = record_id(line.trim_ascii_end()) else { continue };
            records_max = records_max.max(id);
            file_min = file_min.min(id);
            if oldest.is_some_and(|o| id >= o) {
                recorded.insert(id);
            }
        }
        let done = match oldest {
            Some(o) => file_min < o,
            None => file_min != u64::MAX,
        };
        if done {
            break;
        }
    }
    Ok(reconcile(parsed, &recorded, records_max))
}

/// Tells `health` how a journal write went, with one log line when the journal starts or
/// stops failing (not one per part).
pub fn report(health: &RecordsHealth, result: &Result<(), String>) {
    if health.set(Writer::Journal, result.clone().err()) {
        match result {
            Err(e) => log::error!(
                "journal: cannot write {}; rejecting every part fail-safe until it can be written",
                for_log(e)
            ),
            Ok(()) => log::info!("journal writable again; it holds every part in flight"),
        }
    }
}

struct OpenPart {
    trigger: &'static str,
    triggered: SystemTime,
}

/// The journal of a running station; shared (behind a mutex) by the trigger stage, which
/// takes ids, and the recorder, which reports the parts recorded.
pub struct Journal {
    dir: PathBuf,
    file: Option<File>,
    /// Device and inode of the open file, to notice a removed one.
    ident: (u64, u64),
    bytes: u64,
    /// The size the last rewrite left.
    base_bytes: u64,
    next: u64,
    run: RunIdentity,
    open: BTreeMap<u64, OpenPart>,
    /// Set after a failed write: the file lacks open parts, and is rewritten whole at the
    /// next try (at most every [`RETRY_EVERY`]).
    stale: Option<String>,
    retry_at: Instant,
    disk: Box<dyn Disk>,
}

impl Journal {
    /// Starts the run's journal in `dir` (after [`recover`] and the records it asked
    /// for): a new file holding only the header, ids from `next_id`.
    pub fn start(dir: &Path, run: RunIdentity, next_id: u64) -> Result<Journal, RecordError> {
        Self::start_with(dir, run, next_id, Box::new(RealDisk))
    }

    /// [`Journal::start`] writing through `disk`.
    pub fn start_with(dir: &Path, run: RunIdentity, next_id: u64, disk: Box<dyn Disk>) -> Result<Journal, RecordError> {
        let mut j = Journal {
            dir: dir.to_path_buf(),
            file: None,
            ident: (0, 0),
            bytes: 0,
            base_bytes: 0,
            next: next_id.max(1),
            run,
            open: BTreeMap::new(),
            stale: None,
            retry_at: Instant::now(),
            disk,
        };
        j.rewrite().map_err(|source| RecordError { path: j.path(), error: source })?;
        Ok(j)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// The id the next part will get.
    pub fn next_id(&self) -> u64 {
        self.next
    }

    /// Parts triggered and not recorded yet.
    pub fn open_parts(&self) -> usize {
        self.open.len()
    }

    /// A trigger: its id, journalled. The id is handed out even when the journal cannot
    /// be written (the error says why; the part must then be rejected).
    pub fn begin(&mut self, trigger: &'static str, triggered: SystemTime) -> (u64, Result<(), String>) {
        let id = self.next;
        self.next += 1;
        self.open.insert(id, OpenPart { trigger, triggered });
        (id, self.write_entry(id))
    }

    /// The part's record is written: it leaves the journal (at the next rewrite).
    pub fn recorded(&mut self, id: u64) -> Result<(), String> {
        self.open.remove(&id);
        match &self.stale {
            Some(e) => Err(e.clone()),
            // Past the size, and at least twice what the last rewrite left (so that many
            // parts open, while the records fail, do not make every part a rewrite).
            None if self.bytes > COMPACT_BYTES.max(2 * self.base_bytes) => self.rewrite_or_fail(),
            None => Ok(()),
        }
    }

    /// After a failed write, tries again when it is time: None when there is nothing to
    /// do yet, else whether the journal is whole again.
    pub fn retry(&mut self) -> Option<Result<(), String>> {
        if self.stale.is_none() || Instant::now() < self.retry_at {
            return None;
        }
        Some(self.rewrite_or_fail())
    }

    /// Rewrites the file now with only the open parts (at a clean stop: none).
    pub fn compact(&mut self) -> Result<(), String> {
        self.rewrite_or_fail()
    }

    /// Whether the journal file holds every open part.
    pub fn is_whole(&self) -> bool {
        self.stale.is_none()
    }

    fn write_entry(&mut self, id: u64) -> Result<(), String> {
        if let Some(e) = &self.stale {
            if Instant::now() < self.retry_at {
                return Err(e.clone());
            }
            return self.rewrite_or_fail();
        }
        match std::fs::metadata(self.path()) {
            Ok(m) if (m.dev(), m.ino()) == self.ident => {}
            Ok(_) | Err(_) => {
                log::warn!(
                    "journal {} was removed or replaced while the station had it open (folder removed?); writing it again with the {} parts in flight",
                    for_log(&self.path().display().to_string()),
                    self.open.len()
                );
                return self.rewrite_or_fail();
            }
        }
        let line = self.entry_line(id);
        let Some(file) = self.file.as_mut() else { return self.rewrite_or_fail() };
        match write_all(self.disk.as_mut(), file, &line) {
            Ok(()) => {
                self.bytes += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Leave no fragment; the next try rewrites the file whole anyway.
                let _ = file.set_len(self.bytes);
                Err(self.failed(e))
            }
        }
    }

    fn entry_line(&self, id: u64) -> Vec<u8> {
        let p = &self.open[&id];
        let entry = Entry { id, trigger: p.trigger.into(), triggered: rfc3339(p.triggered) };
        let mut line = serde_json::to_vec(&entry).expect("journal entries serialise");
        line.push(b'\n');
        line
    }

    fn rewrite_or_fail(&mut self) -> Result<(), String> {
        self.rewrite().map_err(|e| self.failed(e))
    }

    fn failed(&mut self, e: std::io::Error) -> String {
        let message = format!("{}: {e}", self.path().display());
        self.stale = Some(message.clone());
        self.retry_at = Instant::now() + RETRY_EVERY;
        message
    }

    /// Writes a new file (the header, then every open part) and renames it over the old.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{JOURNAL_FILE}.tmp"));
        let mut buf = serde_json::to_vec(&Header { next: self.next, run: self.run.clone() })
            .expect("journal headers serialise");
        buf.push(b'\n');
        for id in self.open.keys() {
            buf.extend(self.entry_line(*id));
        }
        let written = (|| {
            std::fs::create_dir_all(&self.dir)?;
            let mut f = OpenOptions::new().create(true).append(true).read(true).open(&tmp)?;
            f.set_len(0)?;
            write_all(self.disk.as_mut(), &mut f, &buf)?;
            std::fs::rename(&tmp, self.path())?;
            Ok(f)
        })();
        match written {
            Ok(f) => {
                let m = f.metadata()?;
                self.ident = (m.dev(), m.ino());
                self.bytes = m.len();
                self.base_bytes = m.len();
                self.file = Some(f);
                self.stale = None;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::records::tests::{record, FillingDisk};
    use crate::station::records::{RecordLog, RECORD_FILE};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn run(tag: &str) -> RunIdentity {
        RunIdentity { model_sha256: format!("m-{tag}"), station_sha256: Some(format!("s-{tag}")), version: "0.1.0".into() }
    }

    fn t() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn journal_lines(dir: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(JOURNAL_FILE))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn record_ids_are_read_from_the_first_field_or_parsed() {
        assert_eq!(record_id(br#"{"id":42,"station":"s"}"#), Some(42));
        assert_eq!(record_id(br#"{"id":7}"#), Some(7));
        assert_eq!(record_id(br#"{"station":"s","id":9}"#), Some(9));
        assert_eq!(record_id(br#"{"id":12"#), None, "a cut-off id is no id");
        assert_eq!(record_id(b"garbage"), None);
        let line = RecordLog::line_of(&record(123_456));
        assert_eq!(record_id(line.trim_ascii_end()), Some(123_456));
    }

    #[test]
    fn journalled_parts_without_a_record_are_found_and_ids_continue() {
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n{{\"id\":16,\"trig",
            r#"{"next":10,"model_sha256":"m-a","station_sha256":"s-a","version":"0.1.0"}"#,
            r#"{"id":10,"trigger":"gpio","triggered":"2024-01-01T00:00:00.000Z"}"#,
            r#"{"id":11,"trigger":"gpio","triggered":"2024-01-01T00:00:01.000Z"}"#,
            r#"{"id":12,"trigger":"gpio","triggered":"2024-01-01T00:00:02.000Z"}"#,
            r#"{"id":11,"trigger":"gpio","triggered":"2024-01-01T00:00:01.000Z"}"#,
        );
        let parsed = parse_journal(&text);
        assert_eq!(parsed.next, 10);
        assert_eq!(parsed.entries.len(), 4, "the cut-off last line is not an entry");
        let recorded: HashSet<u64> = [10].into();
        let r = reconcile(parsed, &recorded, 10);
        let ids: Vec<u64> = r.unrecorded.iter().map(|u| u.id).collect();
        assert_eq!(ids, [11, 12], "each missing once, by id");
        assert_eq!(r.next_id, 13);
        assert_eq!(r.unrecorded[0].run, run("a"));
        let rec = r.unrecorded[0].record("line 3");
        assert_eq!((rec.verdict, rec.fail_safe, rec.reason.as_deref()), (Some(Verdict::Reject), true, Some(CRASH_REASON)));
        assert_eq!((rec.model_sha256.as_str(), rec.triggered.as_str()), ("m-a", "2024-01-01T00:00:01.000Z"));
        assert!(rec.pulse.is_none());
        // Ids continue after the records when they are ahead of the journal, and from 1
        // with nothing at all.
        assert_eq!(reconcile(parse_journal(""), &HashSet::new(), 99).next_id, 100);
        assert_eq!(reconcile(parse_journal(""), &HashSet::new(), 0).next_id, 1);
    }

    #[test]
    fn a_crash_leaves_every_part_recorded_or_journalled() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut records = RecordLog::open(d, 1 << 20, 3).unwrap();
        let mut j = Journal::start(d, run("a"), 1).unwrap();
        // Five triggers; parts 1, 2 and 4 recorded; then the station is killed.
        let ids: Vec<u64> = (0..5).map(|_| j.begin("gpio", t()).0).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        for id in [1, 2, 4] {
            records.append(&record(id)).unwrap();
            j.recorded(id).unwrap();
        }
        drop(j);
        let r = recover(d).unwrap();
        assert_eq!(r.unrecorded.iter().map(|u| u.id).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(r.next_id, 6);
        assert_eq!(r.unrecorded[0].triggered, rfc3339(t()));
        // The next start writes their records, then a fresh journal: a second start
        // finds nothing missing, and parts = records.
        for u in &r.unrecorded {
            records.append(&u.record("s")).unwrap();
        }
        let j = Journal::start(d, run("b"), r.next_id).unwrap();
        assert_eq!(journal_lines(d).len(), 1);
        drop(j);
        let again = recover(d).unwrap();
        assert!(again.unrecorded.is_empty());
        assert_eq!(again.next_id, 6);
        let mut all = crate::station::records::tests::ids(&d.join(RECORD_FILE));
        all.sort();
        assert_eq!(all, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn without_a_journal_ids_continue_from_the_newest_records() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let one = RecordLog::line_of(&record(1)).len() as u64;
        let mut records = RecordLog::open(d, 3 * one, 5).unwrap();
        for id in 1..=7 {
            records.append(&record(id)).unwrap();
        }
        assert_eq!(recover(d).unwrap().next_id, 8);
        // Just rotated: the current file is empty, the newest records are in parts.1.
        std::fs::write(d.join(RECORD_FILE), b"").unwrap();
        assert_eq!(recover(d).unwrap().next_id, 7);
    }

    #[test]
    fn the_journal_is_rewritten_with_the_open_parts_once_large() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut j = Journal::start(d, run("a"), 1).unwrap();
        let last = loop {
            let (id, r) = j.begin("timer", t());
            r.unwrap();
            let before = j.bytes;
            if id > 3 {
                j.recorded(id).unwrap();
            }
            if j.bytes < before {
                break id;
            }
            assert!(before <= COMPACT_BYTES + 200, "not rewritten at {before} bytes");
        };
        let lines = journal_lines(d);
        assert_eq!(lines[0]["next"], last + 1);
        assert_eq!(lines[0]["model_sha256"], "m-a");
        let open: Vec<u64> = lines[1..].iter().map(|l| l["id"].as_u64().unwrap()).collect();
        assert_eq!(open, [1, 2, 3]);
        assert!(!d.join(format!("{JOURNAL_FILE}.tmp")).exists());
    }

    #[test]
    fn a_full_disk_fails_the_journal_until_a_rewrite_holds_every_open_part() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let room = Arc::new(AtomicU64::new(u64::MAX));
        let mut j = Journal::start_with(d, run("a"), 1, Box::new(FillingDisk { room: room.clone() })).unwrap();
        assert!(j.begin("gpio", t()).1.is_ok());
        room.store(10, Ordering::Relaxed);
        let (id2, r) = j.begin("gpio", t());
        assert!(r.unwrap_err().contains("No space left"));
        // No fragment left behind, and no retry before its time.
        assert_eq!(journal_lines(d).len(), 2);
        room.store(u64::MAX, Ordering::Relaxed);
        let (id3, r) = j.begin("gpio", t());
        assert!(r.is_err() && !j.is_whole());
        assert_eq!(j.retry(), None);
        j.retry_at = Instant::now();
        assert_eq!(j.retry(), Some(Ok(())));
        let ids: Vec<u64> = journal_lines(d)[1..].iter().map(|l| l["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [1, id2, id3]);
        assert!(j.begin("gpio", t()).1.is_ok());
    }

    #[test]
    fn a_removed_journal_is_written_again_with_the_parts_in_flight() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("records");
        let mut j = Journal::start(&d, run("a"), 40).unwrap();
        j.begin("gpio", t()).1.unwrap();
        j.begin("gpio", t()).1.unwrap();
        j.recorded(40).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        assert!(j.begin("gpio", t()).1.is_ok());
        let lines = journal_lines(&d);
        assert_eq!(lines[0]["next"], 43);
        let ids: Vec<u64> = lines[1..].iter().map(|l| l["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [41, 42]);
    }
}
