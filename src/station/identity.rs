//! What a record says the part was inspected with: the model, the station file and the
//! software, each computed once (the station file again at each SIGHUP reload).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::{META_FILE, WEIGHTS_FILE};

/// The software version recorded with every part.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The run's identity, in every record and in the start-up log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// [`model_sha256`] of the bundle.
    pub model_sha256: String,
    /// SHA-256 of the station file's bytes, as started.
    pub station_sha256: Option<String>,
    pub version: String,
}

/// The model's identity: SHA-256 of the bundle's `model.toml` followed by its apprentice
/// weights, so a plant can check it with `cat model.toml apprentice.safetensors |
/// sha256sum`. The settings in `model.toml` (threshold, input size, backbone, expert
/// checksum) and the trained weights are what make two models decide alike.
pub fn model_sha256(bundle: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    for name in [META_FILE, WEIGHTS_FILE] {
        let path = bundle.join(name);
        let mut file = std::fs::File::open(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        std::io::copy(&mut file, &mut hasher)?;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// SHA-256 of a file's bytes, as `sha256sum` prints it.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_hash_is_sha256sum_of_the_two_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(META_FILE), b"abc").unwrap();
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"").unwrap();
        // SHA-256("abc"), the standard test vector.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(model_sha256(dir.path()).unwrap(), abc);
        std::fs::write(dir.path().join(META_FILE), b"a").unwrap();
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"bc").unwrap();
        assert_eq!(model_sha256(dir.path()).unwrap(), abc);
        assert_eq!(file_sha256(&dir.path().join(WEIGHTS_FILE)).unwrap().len(), 64);
        // A missing weights file is an error naming it.
        std::fs::remove_file(dir.path().join(WEIGHTS_FILE)).unwrap();
        let err = model_sha256(dir.path()).unwrap_err().to_string();
        assert!(err.contains(WEIGHTS_FILE), "{err}");
        assert!(VERSION.split('.').count() >= 3);
    }
}
