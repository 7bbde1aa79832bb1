//! One daemon per station: an exclusive lock on the station's records folder, held for
//! the life of the process. Two daemons on one station would interleave records with
//! duplicate ids and overwrite each other's archive images.
//!
//! The lock is `flock` on `<records>/.station.lock`, which also holds the owner's PID for
//! the error message. The kernel releases it when the process ends in any way (`kill -9`
//! too), so a crash never leaves a stale lock behind; a PID left in the file by a dead
//! owner is only text.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = ".station.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "station records folder {dir} is in use by another cdo-inspect (PID {pid}); stop that \
         one first (`systemctl stop cdo-inspect`), or give this station its own records.dir"
    )]
    Held { dir: PathBuf, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or ending the process) releases it.
#[derive(Debug)]
pub struct StationLock {
    _file: File,
}

impl StationLock {
    /// Takes the lock on `dir` (created if missing), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own; it only changes the lock state.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(err));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let pid = text.trim();
            let pid = if pid.is_empty() || pid.len() > 20 || !pid.bytes().all(|b| b.is_ascii_digit()) {
                "unknown".to_string()
            } else {
                pid.to_string()
            };
            return Err(LockError::Held { dir: dir.to_path_buf(), pid });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StationLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("records");
        let first = StationLock::acquire(&records).unwrap();
        // flock conflicts between two open files even within one process.
        let err = StationLock::acquire(&records).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{text}");
        assert!(
            text.contains(&format!("in use by another cdo-inspect (PID {})", std::process::id())),
            "{text}"
        );
        drop(first);
        // Released with its holder: the next start gets it.
        StationLock::acquire(&records).unwrap();
    }

    #[test]
    fn a_pid_left_by_a_dead_owner_does_not_hold_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999\n").unwrap();
        let _lock = StationLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
