//! Where the station writes: `[records]` (one line per part) and `[archive]` (images of
//! rejected and sampled parts).

use crate::config::reader::{Reader, Section, COUNT, MIB};
use crate::config::schema::*;

pub(super) const RECORDS_KEYS: &[&str] = &["dir", "max_mib", "keep"];
pub(super) const ARCHIVE_KEYS: &[&str] = &["dir", "rejects", "pass_every", "max_files", "max_mib"];

impl Reader<'_> {
    pub(in crate::config) fn records(&mut self, root: &Section) -> RecordsConfig {
        let s = self.section(root, "records", RECORDS_KEYS);
        RecordsConfig {
            dir: self
                .path(&s, "dir")
                .unwrap_or_else(|| self.base.join("records")),
            // One parts.jsonl up to 4 GiB, at most 1000 rotated ones kept: the records
            // can never take more than a few TB, and a small disk is the real limit.
            max_bytes: self.mib(&s, "max_mib", 4096).unwrap_or(64 * MIB),
            keep: self.u32(&s, "keep", COUNT, 0, 1000).unwrap_or(10),
        }
    }

    pub(in crate::config) fn archive(&mut self, root: &Section) -> ArchiveConfig {
        let s = self.section(root, "archive", ARCHIVE_KEYS);
        ArchiveConfig {
            dir: self
                .path(&s, "dir")
                .unwrap_or_else(|| self.base.join("archive")),
            rejects: self.boolean(&s, "rejects").unwrap_or(true),
            // Every passed part to one in a million.
            pass_every: self.u32(&s, "pass_every", COUNT, 0, 1_000_000).unwrap_or(0),
            // The archive's index of files is kept in memory: a million entries at most.
            max_files: self.u64(&s, "max_files", COUNT, 1, 1_000_000).unwrap_or(5000),
            // Up to 1 TiB of images.
            max_bytes: self.mib(&s, "max_mib", 1_048_576).unwrap_or(2048 * MIB),
        }
    }
}
