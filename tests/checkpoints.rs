//! Checkpoint loading on the real EfficientNet-Lite0 file: the legacy format as published,
//! the same tensors re-saved in PyTorch's zip format and as safetensors, and the errors a
//! user gets for a file that does not fit.

mod common;

use std::collections::HashMap;
use std::io::Write;

use candle_core::{DType, Device, Tensor};
use cdo_inspect::model::backbone::{BackboneKind, Expert, TrainableApprentice};
use cdo_inspect::model::checkpoint::{Checkpoint, CheckpointError, CheckpointFormat};
use cdo_inspect::model::layers::Mode;

fn legacy() -> Checkpoint {
    Checkpoint::load(&common::lite0_weights()).expect("legacy checkpoint loads")
}

/// Writes a state dict in torch's zip format (`archive/data.pkl` + `archive/data/<key>`),
/// as `torch.save` does since 1.6. Tensors named in `transposed` are stored column-major
/// (as `.t()` would leave them) to exercise strided storage.
fn write_torch_zip(path: &std::path::Path, tensors: &[(String, Tensor)], transposed: &[&str]) {
    fn unicode(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn int(out: &mut Vec<u8>, v: usize) {
        out.push(b'J');
        out.extend((v as i32).to_le_bytes());
    }
    fn tuple(out: &mut Vec<u8>, vs: &[usize]) {
        out.push(b'(');
        for &v in vs {
            int(out, v);
        }
        out.push(b't');
    }
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut pkl = vec![0x80, 0x02];
    pkl.extend(b"ccollections\nOrderedDict\n)R(");
    for (i, (name, t)) in tensors.iter().enumerate() {
        let key = i.to_string();
        let dims = t.dims().to_vec();
        let fortran = transposed.contains(&name.as_str()) && dims.len() == 2;
        let (data, stride): (Vec<f32>, Vec<usize>) = if fortran {
            let data = t
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            (data, vec![1, dims[0]])
        } else {
            let stride = t.stride().to_vec();
            (t.flatten_all().unwrap().to_vec1().unwrap(), stride)
        };
        unicode(&mut pkl, name);
        pkl.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        pkl.push(b'(');
        unicode(&mut pkl, "storage");
        pkl.extend(b"ctorch\nFloatStorage\n");
        unicode(&mut pkl, &key);
        unicode(&mut pkl, "cpu");
        int(&mut pkl, data.len());
        pkl.extend(b"tQ");
        int(&mut pkl, 0);
        tuple(&mut pkl, &dims);
        tuple(&mut pkl, &stride);
        pkl.push(0x89); // False: requires_grad
        pkl.extend(b"ccollections\nOrderedDict\n)R");
        pkl.extend(b"tR");
        zip.start_file(format!("archive/data/{key}"), opts).unwrap();
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        zip.write_all(&bytes).unwrap();
    }
    pkl.extend(b"u.");
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(&pkl).unwrap();
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

fn assert_same(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, ta) in &a.tensors {
        let tb = b
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(ta.dims(), tb.dims(), "{name}");
        let diff = (ta - tb)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name} differs");
    }
}

#[test]
fn legacy_file_loads_with_the_published_layout() {
    let ckpt = legacy();
    assert_eq!(ckpt.format, CheckpointFormat::PyTorchLegacy);
    assert_eq!(
        ckpt.sha256,
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    );
    // 296 entries, less the 49 integer num_batches_tracked buffers.
    assert_eq!(ckpt.tensors.len(), 296 - 49);
    assert_eq!(ckpt.tensors["_conv_stem.weight"].dims(), &[32, 3, 3, 3]);
    assert_eq!(
        ckpt.tensors["_blocks.15._depthwise_conv.weight"].dims(),
        &[1152, 1, 3, 3]
    );
    assert_eq!(ckpt.tensors["_fc.weight"].dims(), &[1000, 1280]);
    // Values read independently from the file's storage (Python's pickle + struct):
    // the bytes come from the right storage at the right offset.
    let var: Vec<f32> = ckpt.tensors["_bn0.running_var"].to_vec1().unwrap();
    assert_eq!(&var[..3], &[1.631_428_6, 70.371_574, 14.107_358]);
    assert_eq!(var[11], 0.0);
}

#[test]
fn zip_format_gives_the_same_tensors() {
    let original = legacy();
    let tensors: Vec<(String, Tensor)> = original
        .tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lite0-zip.pth");
    write_torch_zip(&path, &tensors, &["_fc.weight"]);
    let zipped = Checkpoint::load(&path).unwrap();
    assert_eq!(zipped.format, CheckpointFormat::PyTorchZip);
    assert_same(&original, &zipped);
}

#[test]
fn safetensors_gives_the_same_tensors() {
    let original = legacy();
    let map: HashMap<String, Tensor> = original
        .tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // A misleading extension: the format is detected from the content.
    let path = dir.path().join("lite0.pth");
    candle_core::safetensors::save(&map, &path).unwrap();
    let st = Checkpoint::load(&path).unwrap();
    assert_eq!(st.format, CheckpointFormat::Safetensors);
    assert_same(&original, &st);
}

fn save_modified(
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> (tempfile::TempDir, std::path::PathBuf) {
    let mut map: HashMap<String, Tensor> = legacy().tensors.into_iter().collect();
    edit(&mut map);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.safetensors");
    candle_core::safetensors::save(&map, &path).unwrap();
    (dir, path)
}

fn expert_error(path: &std::path::Path) -> String {
    match Expert::load(BackboneKind::EfficientNetLite0, path, &Device::Cpu) {
        Ok(_) => panic!("{} should not load", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let (_d, path) = save_modified(|m| {
        m.insert(
            "_blocks.3._project_conv.weight".into(),
            Tensor::zeros((40, 100, 1, 1), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let err = expert_error(&path);
    assert!(err.contains("_blocks.3._project_conv.weight"), "{err}");
    assert!(
        err.contains("[40, 100, 1, 1]") && err.contains("[40, 144, 1, 1]"),
        "{err}"
    );
    assert!(err.contains("edited.safetensors"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let (_d, path) = save_modified(|m| {
        m.remove("_blocks.7._bn1.running_var");
    });
    let err = expert_error(&path);
    assert!(
        err.contains("_blocks.7._bn1.running_var") && err.contains("[480]"),
        "{err}"
    );
}

#[test]
fn extra_tensor_is_named() {
    let (_d, path) = save_modified(|m| {
        m.insert(
            "_blocks.4._se_reduce.weight".into(),
            Tensor::zeros((10, 240, 1, 1), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let err = expert_error(&path);
    assert!(err.contains("_blocks.4._se_reduce.weight"), "{err}");
}

#[test]
fn truncated_legacy_file_is_reported_not_misread() {
    let bytes = std::fs::read(common::lite0_weights()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.pth");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Checkpoint::load(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("truncated.pth"), "{err}");
}

/// torchvision-named ResNet checkpoints (which cannot be downloaded here) load and give
/// the three taps at strides 4, 8, 16; the file's layer4 and fc are accepted but unused.
#[test]
fn torchvision_resnets_load_and_tap_strides_4_8_16() {
    for kind in [BackboneKind::ResNet18, BackboneKind::WideResNet50_2] {
        let fresh = TrainableApprentice::new(kind, 1, 0.1, &Device::Cpu).unwrap();
        let mut map: HashMap<String, Tensor> = fresh.state_dict().into_iter().collect();
        map.insert(
            "fc.weight".into(),
            Tensor::zeros((1000, 8), DType::F32, &Device::Cpu).unwrap(),
        );
        map.insert(
            "layer4.0.conv1.weight".into(),
            Tensor::zeros((8, 8, 3, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(kind.default_weights_file());
        candle_core::safetensors::save(&map, &path).unwrap();
        let expert = Expert::load(kind, &path, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1., (1, 3, 64, 64), &Device::Cpu).unwrap();
        let taps = expert.net.features(&x, Mode::Eval).unwrap();
        let ch = kind.tap_channels();
        let dims: Vec<Vec<usize>> = taps.iter().map(|t| t.dims().to_vec()).collect();
        assert_eq!(
            dims,
            vec![
                vec![1, ch[0], 16, 16],
                vec![1, ch[1], 8, 8],
                vec![1, ch[2], 4, 4]
            ],
            "{kind}"
        );
    }
}
