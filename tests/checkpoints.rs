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
        assert_eq!(common::max_abs_diff(ta, tb), 0.0, "{name} differs");
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

/// torchvision's ResNet as the paper and torchvision define it, written out here
/// independently of `model::resnet`: blocks per layer, and whether they are Bottlenecks
/// (1x1, 3x3, 1x1 with the stride on the 3x3, torchvision v1.5) with their width factor.
struct TorchvisionResNet {
    blocks: [usize; 4],
    bottleneck: bool,
    width_factor: usize,
}

const RESNET18: TorchvisionResNet = TorchvisionResNet {
    blocks: [2, 2, 2, 2],
    bottleneck: false,
    width_factor: 1,
};
const WIDE_RESNET50_2: TorchvisionResNet = TorchvisionResNet {
    blocks: [3, 4, 6, 3],
    bottleneck: true,
    width_factor: 2,
};

impl TorchvisionResNet {
    /// Every float tensor of torchvision's state dict up to layer3 (what CDO taps), by
    /// name and shape.
    fn tensors_up_to_layer3(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut conv_bn = |conv: String, bn: String, shape: Vec<usize>| {
            let c = shape[0];
            out.push((format!("{conv}.weight"), shape));
            for p in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{bn}.{p}"), vec![c]));
            }
        };
        conv_bn("conv1".into(), "bn1".into(), vec![64, 3, 7, 7]);
        let mut cin = 64;
        for (l, &n) in self.blocks[..3].iter().enumerate() {
            let planes = 64 << l;
            let cout = if self.bottleneck { planes * 4 } else { planes };
            for b in 0..n {
                let block = format!("layer{}.{b}", l + 1);
                let named = |i: usize| (format!("{block}.conv{i}"), format!("{block}.bn{i}"));
                if self.bottleneck {
                    let width = planes * self.width_factor;
                    let ((c1, b1), (c2, b2), (c3, b3)) = (named(1), named(2), named(3));
                    conv_bn(c1, b1, vec![width, cin, 1, 1]);
                    conv_bn(c2, b2, vec![width, width, 3, 3]);
                    conv_bn(c3, b3, vec![cout, width, 1, 1]);
                } else {
                    let ((c1, b1), (c2, b2)) = (named(1), named(2));
                    conv_bn(c1, b1, vec![planes, cin, 3, 3]);
                    conv_bn(c2, b2, vec![planes, planes, 3, 3]);
                }
                if b == 0 && (l > 0 || cin != cout) {
                    conv_bn(
                        format!("{block}.downsample.0"),
                        format!("{block}.downsample.1"),
                        vec![cout, cin, 1, 1],
                    );
                }
                cin = cout;
            }
        }
        out
    }

    /// The taps (after layer1, layer2, layer3) computed with candle's own operators from
    /// the state dict: convolutions, BatchNorm with its running statistics (eps 1e-5)
    /// unfolded, ReLU, and the 3x3/2 max-pool with padding 1.
    fn taps(&self, sd: &HashMap<String, Tensor>, x: &Tensor) -> Vec<Tensor> {
        let conv_bn = |x: &Tensor, conv: &str, bn: &str, stride: usize| -> Tensor {
            let w = &sd[&format!("{conv}.weight")];
            let pad = w.dim(3).unwrap() / 2;
            let y = x.conv2d(w, pad, stride, 1, 1).unwrap();
            let c = w.dim(0).unwrap();
            let p = |name: &str| sd[&format!("{bn}.{name}")].reshape((1, c, 1, 1)).unwrap();
            let scale = (p("running_var") + 1e-5).unwrap().sqrt().unwrap();
            y.broadcast_sub(&p("running_mean"))
                .unwrap()
                .broadcast_div(&scale)
                .unwrap()
                .broadcast_mul(&p("weight"))
                .unwrap()
                .broadcast_add(&p("bias"))
                .unwrap()
        };
        let h = conv_bn(x, "conv1", "bn1", 2).relu().unwrap();
        // Zero padding is the same as -inf padding after a ReLU.
        let mut h = h
            .pad_with_zeros(2, 1, 1)
            .unwrap()
            .pad_with_zeros(3, 1, 1)
            .unwrap()
            .max_pool2d_with_stride(3, 2)
            .unwrap();
        let mut taps = Vec::new();
        for (l, &n) in self.blocks[..3].iter().enumerate() {
            for b in 0..n {
                let block = format!("layer{}.{b}", l + 1);
                let stride = if b == 0 && l > 0 { 2 } else { 1 };
                let c = |i: usize| (format!("{block}.conv{i}"), format!("{block}.bn{i}"));
                let ((c1, b1), (c2, b2), (c3, b3)) = (c(1), c(2), c(3));
                let out = if self.bottleneck {
                    let o = conv_bn(&h, &c1, &b1, 1).relu().unwrap();
                    let o = conv_bn(&o, &c2, &b2, stride).relu().unwrap();
                    conv_bn(&o, &c3, &b3, 1)
                } else {
                    let o = conv_bn(&h, &c1, &b1, stride).relu().unwrap();
                    conv_bn(&o, &c2, &b2, 1)
                };
                let down = format!("{block}.downsample.0");
                let identity = if sd.contains_key(&format!("{down}.weight")) {
                    conv_bn(&h, &down, &format!("{block}.downsample.1"), stride)
                } else {
                    h.clone()
                };
                h = (out + identity).unwrap().relu().unwrap();
            }
            taps.push(h.clone());
        }
        taps
    }
}

/// Random values for every tensor of `names`, seeded: convolutions He-uniform, BatchNorm
/// weights, biases, means and variances each in their own range, so that a tensor read
/// into the wrong place (or a statistic ignored) changes the output.
fn random_state_dict(names: &[(String, Vec<usize>)], seed: u64) -> HashMap<String, Tensor> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    names
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let (lo, hi) = if name.ends_with("running_var") {
                (0.5, 2.0)
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                (-0.3, 0.3)
            } else if shape.len() == 1 {
                (0.5, 1.5)
            } else {
                let fan_in: usize = shape[1..].iter().product();
                let a = (6.0 / fan_in as f32).sqrt();
                (-a, a)
            };
            let v: Vec<f32> = (0..n).map(|_| rng.gen_range(lo..hi)).collect();
            let t = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap();
            (name.clone(), t)
        })
        .collect()
}

/// torchvision-named ResNet checkpoints (which cannot be downloaded here), written with
/// random values in torchvision's layout (ResNet18 in PyTorch's zip format, as torchvision
/// publishes it; WideResNet50-2 as safetensors with the integer `num_batches_tracked`
/// buffers), load with every tensor in its place: the expert's three taps, at strides 4,
/// 8 and 16, equal the taps computed from the file's values with candle's own operators.
/// The file's layer4 and fc are accepted but unused.
#[test]
fn torchvision_resnets_load_every_value_into_its_place() {
    let cases = [
        (BackboneKind::ResNet18, &RESNET18, 1),
        (BackboneKind::WideResNet50_2, &WIDE_RESNET50_2, 2),
    ];
    for (kind, arch, seed) in cases {
        let names = arch.tensors_up_to_layer3();
        // The network asks for exactly these tensors, in these shapes.
        let fresh = TrainableApprentice::new(kind, 1, 0.1, &Device::Cpu).unwrap();
        let mut ours: Vec<(String, Vec<usize>)> = fresh
            .state_dict()
            .into_iter()
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();
        let mut want = names.clone();
        ours.sort();
        want.sort();
        assert_eq!(ours, want, "{kind}: tensors up to layer3");

        let sd = random_state_dict(&names, seed);
        let mut file: Vec<(String, Tensor)> =
            sd.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        file.sort_by(|a, b| a.0.cmp(&b.0));
        file.push((
            "fc.weight".into(),
            Tensor::zeros((1000, 8), DType::F32, &Device::Cpu).unwrap(),
        ));
        file.push((
            "layer4.0.conv1.weight".into(),
            Tensor::zeros((8, 8, 3, 3), DType::F32, &Device::Cpu).unwrap(),
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(kind.default_weights_file());
        if kind == BackboneKind::ResNet18 {
            write_torch_zip(&path, &file, &[]);
        } else {
            let mut map: HashMap<String, Tensor> = file.into_iter().collect();
            for (name, _) in names.iter().filter(|(n, _)| n.ends_with(".running_var")) {
                let bn = name.trim_end_matches(".running_var");
                let count = Tensor::new(1000i64, &Device::Cpu).unwrap();
                map.insert(format!("{bn}.num_batches_tracked"), count);
            }
            candle_core::safetensors::save(&map, &path).unwrap();
        }
        let ckpt = Checkpoint::load(&path).unwrap();
        // The values read back are the values written.
        for (name, t) in &sd {
            assert_eq!(
                ckpt.tensors[name]
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{kind}: {name}"
            );
        }

        let expert = Expert::load(kind, &path, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, 64, 64), &Device::Cpu).unwrap();
        let taps = expert.net.features(&x, Mode::Eval).unwrap();
        let reference = arch.taps(&sd, &x);
        let ch = kind.tap_channels();
        let dims: Vec<Vec<usize>> = taps.iter().map(|t| t.dims().to_vec()).collect();
        assert_eq!(
            dims,
            vec![
                vec![2, ch[0], 16, 16],
                vec![2, ch[1], 8, 8],
                vec![2, ch[2], 4, 4]
            ],
            "{kind}"
        );
        for (i, (got, want)) in taps.iter().zip(&reference).enumerate() {
            let scale = common::max_abs(want);
            let diff = common::max_abs_diff(got, want);
            assert!(
                scale > 0.1,
                "{kind} tap {i}: a degenerate reference ({scale})"
            );
            assert!(
                diff <= 1e-4 * scale,
                "{kind} tap {i}: differs from the reference by {diff} (scale {scale})"
            );
        }
    }
}
