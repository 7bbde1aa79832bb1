//! Reading pretrained weights as published upstream: PyTorch `.pth` in the zip format
//! (torch >= 1.6), the legacy pre-zip format (a sequence of pickles followed by raw
//! storages), and safetensors. The format is detected from the file's first bytes, not
//! its extension, so a renamed file still loads.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

/// Errors while reading a weights file. Every variant names the file, and says its cause
/// in its own message: no variant returns a `source()` as well, so a printed chain
/// (anyhow's `{:#}`) shows each cause once.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read weights file {path}: {error}")]
    Io {
        path: PathBuf,
        /// Not named `source`: thiserror would return a field of that name from `source()`
        /// too, and the OS error would print twice.
        error: std::io::Error,
    },
    #[error("weights file {path} is not a PyTorch checkpoint (zip or legacy) nor safetensors")]
    UnknownFormat { path: PathBuf },
    #[error("weights file {path} is damaged or not a state dict: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("weights file {path} has no tensor `{name}` (expected shape {expected:?})")]
    Missing {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },
    #[error("weights file {path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("weights file {path} has tensors this architecture does not have: {names}")]
    Unexpected { path: PathBuf, names: String },
}

impl CheckpointError {
    /// The weights file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            CheckpointError::Io { path, .. }
            | CheckpointError::UnknownFormat { path }
            | CheckpointError::Corrupt { path, .. }
            | CheckpointError::Missing { path, .. }
            | CheckpointError::ShapeMismatch { path, .. }
            | CheckpointError::Unexpected { path, .. } => path,
        }
    }
}

/// The on-disk format a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    PyTorchZip,
    PyTorchLegacy,
    Safetensors,
}

/// A loaded state dict: tensor name -> tensor (f32, on the CPU), plus where it came from.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub format: CheckpointFormat,
    pub sha256: String,
    pub tensors: BTreeMap<String, Tensor>,
}

/// The first bytes of a legacy checkpoint: pickle protocol 2, then the torch magic number
/// 0x1950a86a20f9469cfc6c as a 10-byte LONG1.
const LEGACY_MAGIC: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// SHA-256 of a file, hex encoded (the bundle records the expert's hash).
pub fn sha256_file(path: &Path) -> Result<String, CheckpointError> {
    let io = |error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(format!("{:x}", hasher.finalize()))
}

impl Checkpoint {
    /// Reads every tensor of a checkpoint file into memory as f32.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let io = |error| CheckpointError::Io {
            path: path.to_path_buf(),
            error,
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let mut head = [0u8; 16];
        let mut file = std::fs::File::open(path).map_err(io)?;
        let n = read_up_to(&mut file, &mut head).map_err(io)?;
        let head = &head[..n];
        let (format, raw) = if head.starts_with(b"PK\x03\x04") {
            let raw = candle_core::pickle::read_all(path).map_err(|e| corrupt(e.to_string()))?;
            (CheckpointFormat::PyTorchZip, raw)
        } else if head.starts_with(&LEGACY_MAGIC) {
            let raw = read_legacy(path).map_err(corrupt)?;
            (CheckpointFormat::PyTorchLegacy, raw)
        } else if looks_like_safetensors(head) {
            let map = candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| corrupt(e.to_string()))?;
            (CheckpointFormat::Safetensors, map.into_iter().collect())
        } else {
            return Err(CheckpointError::UnknownFormat {
                path: path.to_path_buf(),
            });
        };
        let mut tensors = BTreeMap::new();
        for (name, tensor) in raw {
            // Integer buffers (num_batches_tracked) carry no weights.
            if !tensor.dtype().is_float() {
                continue;
            }
            let tensor = tensor
                .to_dtype(DType::F32)
                .map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
            tensors.insert(name, tensor);
        }
        if tensors.is_empty() {
            return Err(corrupt("no floating-point tensors found".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            sha256: sha256_file(path)?,
            tensors,
        })
    }

    /// Takes a tensor out by name, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, CheckpointError> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| CheckpointError::Missing {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
            })?;
        if tensor.dims() != shape {
            return Err(CheckpointError::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: tensor.dims().to_vec(),
            });
        }
        Ok(tensor)
    }

    /// After a model took what it needs: anything left must belong to the layers after
    /// the last tap (listed by `ignored_prefixes`), otherwise the file is for another
    /// architecture and we say which tensors do not fit.
    pub fn finish(self, ignored_prefixes: &[&str]) -> Result<(), CheckpointError> {
        let extra: Vec<&String> = self
            .tensors
            .keys()
            .filter(|name| !ignored_prefixes.iter().any(|p| name.starts_with(p)))
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        let mut names = extra
            .iter()
            .take(8)
            .map(|n| format!("`{n}` {:?}", self.tensors[*n].dims()))
            .collect::<Vec<_>>()
            .join(", ");
        if extra.len() > 8 {
            names.push_str(&format!(" and {} more", extra.len() - 8));
        }
        Err(CheckpointError::Unexpected {
            path: self.path,
            names,
        })
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// safetensors: 8-byte little-endian header length, then a JSON object.
fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{'
}

/// Reads the legacy (pre-zip) torch.save format:
/// pickle(magic) pickle(protocol) pickle(sys_info) pickle(state dict with persistent ids)
/// pickle(list of storage keys), then for each key in that order: u64 element count and the
/// raw little-endian storage bytes.
fn read_legacy(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(file);
    // The magic number is a 10-byte integer that candle's LONG1 cannot hold: skip it raw,
    // it was already checked by the caller. Then the STOP opcode.
    let mut magic = [0u8; LEGACY_MAGIC.len() + 1];
    r.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if magic[LEGACY_MAGIC.len()] != b'.' {
        return Err("bad magic-number pickle".into());
    }
    let protocol = read_pickle(&mut r)?;
    if !matches!(protocol, Object::Int(1001)) {
        return Err(format!("unsupported legacy protocol {protocol:?}"));
    }
    let sys_info = read_pickle(&mut r)?;
    if let Object::Dict(entries) = &sys_info {
        let little = entries.iter().any(|(k, v)| {
            *k == Object::Unicode("little_endian".into()) && *v == Object::Bool(true)
        });
        if !little {
            return Err("big-endian checkpoints are not supported".into());
        }
    }
    let state = read_pickle(&mut r)?;
    let state = unwrap_state_dict(state)?;
    let keys = match read_pickle(&mut r)? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| k.unicode().map_err(|o| format!("bad storage key {o:?}")))
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(format!("expected the storage key list, found {other:?}")),
    };

    // Element size of each storage, from the storage class of the tensors using it.
    let elem_sizes: HashMap<String, usize> = state
        .iter()
        .filter_map(|(_, value)| {
            let info = value
                .clone()
                .into_tensor_info(Object::Unicode(String::new()), Path::new(""))
                .ok()??;
            Some((
                info.path.trim_start_matches('/').to_string(),
                info.dtype.size_in_bytes(),
            ))
        })
        .collect();
    // Storages follow in key order; remember each one's data offset and element count.
    let mut storages: HashMap<String, (u64, usize)> = HashMap::new();
    let mut pos = r.stream_position().map_err(|e| e.to_string())?;
    let file_len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    for key in keys {
        let mut len = [0u8; 8];
        r.read_exact(&mut len)
            .map_err(|e| format!("storage {key}: {e}"))?;
        let numel = u64::from_le_bytes(len);
        pos += 8;
        storages.insert(key.clone(), (pos, numel as usize));
        let elem = *elem_sizes.get(&key).unwrap_or(&4);
        let bytes = numel
            .checked_mul(elem as u64)
            .ok_or_else(|| format!("storage {key}: size overflow"))?;
        pos += bytes;
        if pos > file_len {
            return Err(format!(
                "storage {key} runs past the end of the file (truncated?)"
            ));
        }
        r.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
    }

    let mut out = Vec::new();
    let mut file = r.into_inner();
    for (name, value) in state {
        let name = match name.unicode() {
            Ok(n) => n,
            Err(_) => continue,
        };
        let info = match value.into_tensor_info(Object::Unicode(name.clone()), Path::new("")) {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(e) => return Err(format!("tensor `{name}`: {e}")),
        };
        let key = info.path.trim_start_matches('/').to_string();
        let (offset, numel) = *storages
            .get(&key)
            .ok_or_else(|| format!("tensor `{name}` refers to missing storage {key}"))?;
        let layout = &info.layout;
        let elem = info.dtype.size_in_bytes();
        let count = layout.shape().elem_count();
        let start = layout.start_offset(); // already in bytes
        if start / elem + count > numel {
            return Err(format!("tensor `{name}` is larger than its storage"));
        }
        // Weights converted from other frameworks are often stored as a permutation of
        // the logical layout (TensorFlow's HWIO, a transposed Linear): read the storage in
        // its physical order, then permute to the logical one.
        let dims = layout.shape().dims().to_vec();
        let (physical, order) = dense_permutation(&dims, layout.stride()).ok_or_else(|| {
            format!(
                "tensor `{name}` has a strided layout with gaps ({:?} strides {:?})",
                dims,
                layout.stride()
            )
        })?;
        file.seek(SeekFrom::Start(offset + start as u64))
            .map_err(|e| e.to_string())?;
        let mut bytes = vec![0u8; count * elem];
        file.read_exact(&mut bytes)
            .map_err(|e| format!("tensor `{name}`: {e}"))?;
        let tensor = Tensor::from_raw_buffer(&bytes, info.dtype, &physical, &Device::Cpu)
            .and_then(|t| t.permute(order)?.contiguous())
            .map_err(|e| format!("tensor `{name}`: {e}"))?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// For a dense tensor stored in some dimension order: the shape in storage order, and the
/// permutation taking it back to the logical order. None if the strides leave gaps.
fn dense_permutation(dims: &[usize], strides: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let n = dims.len();
    let mut perm: Vec<usize> = (0..n).collect();
    // Outermost first; size-1 dimensions can sit anywhere, put them outside.
    perm.sort_by_key(|&i| std::cmp::Reverse(if dims[i] == 1 { usize::MAX } else { strides[i] }));
    let mut acc = 1;
    for &i in perm.iter().rev() {
        if dims[i] > 1 && strides[i] != acc {
            return None;
        }
        acc *= dims[i];
    }
    let physical = perm.iter().map(|&i| dims[i]).collect();
    let mut order = vec![0; n];
    for (pos, &i) in perm.iter().enumerate() {
        order[i] = pos;
    }
    Some((physical, order))
}

fn read_pickle(r: &mut impl BufRead) -> Result<Object, String> {
    let mut stack = Stack::empty();
    stack.read_loop(r).map_err(|e| e.to_string())?;
    stack.finalize().map_err(|e| e.to_string())
}

/// Accepts a bare state dict or a dict holding one under `state_dict` / `model`.
fn unwrap_state_dict(obj: Object) -> Result<Vec<(Object, Object)>, String> {
    let entries = match obj {
        Object::Dict(entries) => entries,
        other => {
            return Err(format!(
                "top-level object is not a dict: {:.80}",
                format!("{other:?}")
            ))
        }
    };
    for wrapper in ["state_dict", "model"] {
        if let Some((_, Object::Dict(inner))) = entries
            .iter()
            .find(|(k, _)| *k == Object::Unicode(wrapper.into()))
        {
            return Ok(inner.clone());
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permuted_storage_orders_are_recovered() {
        // Contiguous: identity.
        assert_eq!(
            dense_permutation(&[2, 3], &[3, 1]),
            Some((vec![2, 3], vec![0, 1]))
        );
        // A transposed matrix: stored as 3x2.
        assert_eq!(
            dense_permutation(&[2, 3], &[1, 2]),
            Some((vec![3, 2], vec![1, 0]))
        );
        // TensorFlow HWIO conv weight viewed as OIHW (the Lite0 file's layout).
        let (phys, order) = dense_permutation(&[32, 3, 3, 3], &[1, 32, 288, 96]).unwrap();
        assert_eq!(phys, vec![3, 3, 3, 32]);
        let t = Tensor::arange(0f32, 864., &Device::Cpu)
            .unwrap()
            .reshape(phys)
            .unwrap();
        let logical = t.permute(order).unwrap();
        assert_eq!(logical.dims(), &[32, 3, 3, 3]);
        // element [o=5, i=1, h=2, w=0] sits at 5*1 + 1*32 + 2*288 + 0*96.
        let v: f32 = logical
            .get(5)
            .unwrap()
            .get(1)
            .unwrap()
            .get(2)
            .unwrap()
            .get(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(v, (5 + 32 + 576) as f32);
        // Gaps are refused.
        assert_eq!(dense_permutation(&[2, 3], &[4, 1]), None);
    }

    #[test]
    fn unknown_format_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.pth");
        std::fs::write(&path, b"this is not a checkpoint at all").unwrap();
        let err = Checkpoint::load(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::UnknownFormat { .. }));
        assert!(err.to_string().contains("weights.pth"), "{err}");
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = Checkpoint::load(Path::new("/nonexistent/expert.pth")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/expert.pth"), "{err}");
        // The OS error is in the message, so it is not also the source: printed as a
        // chain (what `main` does), it appears once.
        assert!(std::error::Error::source(&err).is_none());
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert_eq!(chain.matches("(os error 2)").count(), 1, "{chain}");
    }

    #[test]
    fn take_reports_both_shapes() {
        let mut ckpt = Checkpoint {
            path: PathBuf::from("x.safetensors"),
            format: CheckpointFormat::Safetensors,
            sha256: String::new(),
            tensors: [(
                "a.weight".to_string(),
                Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap(),
            )]
            .into_iter()
            .collect(),
        };
        let err = ckpt.take("a.weight", &[3, 2]).unwrap_err().to_string();
        assert!(
            err.contains("a.weight") && err.contains("[2, 3]") && err.contains("[3, 2]"),
            "{err}"
        );
        let err = ckpt.take("b.weight", &[1]).unwrap_err().to_string();
        assert!(
            err.contains("b.weight") && err.contains("x.safetensors"),
            "{err}"
        );
    }
}
