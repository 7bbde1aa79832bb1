//! CPU/CUDA parity: the same seeded networks and inputs on the CPU and on CUDA device 0 must
//! give the same taps, raw and smoothed maps and scores (batch 1 and 4), the same training
//! step (loss and apprentice gradients), for EfficientNet-Lite0 and ResNet18; and each of
//! the crate's CUDA kernels must match its CPU twin. An inference of the Lite0 pair must
//! stay under 300 GPU launches (a fall back to candle's per-group convolution would be
//! thousands).
//!
//! Its own harness (`harness = false` in Cargo.toml): without a CUDA device, or in a build
//! without the `cuda` feature, it prints why every check is skipped and counts them as
//! skipped, instead of passing checks that ran nothing. Run on a GPU with
//! `cargo test --release --features cuda --test cuda_parity` (or the built binary itself:
//! scripts/gpu-check/).

use std::panic::{catch_unwind, AssertUnwindSafe};

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use cdo_inspect::bundle::settings::TrainConfig;
use cdo_inspect::bundle::TrainingRecord;
use cdo_inspect::infer::Detector;
use cdo_inspect::model::backbone::{BackboneKind, Network, TrainableApprentice};
use cdo_inspect::model::cdo::cdo_loss;
use cdo_inspect::model::kernels::{activation, batchnorm, depthwise, maxpool};
use cdo_inspect::model::layers::{Act, Mode};
use cdo_inspect::train::bundle_meta;

/// The largest difference allowed: absolute for maps and scores (in [0, 2]), relative to
/// the largest CPU value for features, losses and gradients.
const TOL: f32 = 1e-3;

type Check = (&'static str, fn(&Device));

fn main() {
    let checks: Vec<Check> = vec![
        (
            "depthwise_forward_and_gradients",
            depthwise_forward_and_gradients,
        ),
        ("depthwise_bias_act_epilogue", depthwise_bias_act_epilogue),
        ("relu6_and_bias_act", relu6_and_bias_act),
        ("batchnorm_train_forward_backward_stats", batchnorm_train),
        ("maxpool_forward_backward", maxpool_forward_backward),
        ("anomaly_map_and_smoothing", anomaly_map_and_smoothing),
        ("lite0_pair_batch_1_and_4", lite0_pair),
        ("resnet18_pair_batch_1_and_4", resnet18_pair),
        ("lite0_training_step", lite0_training_step),
        ("resnet18_training_step", resnet18_training_step),
        ("lite0_launches_per_inference", lite0_launches),
    ];
    let gpu = match cuda_device() {
        Ok(d) => d,
        Err(why) => {
            for (name, _) in &checks {
                println!("test {name} ... skipped");
            }
            println!("cuda_parity: every check skipped: {why}");
            println!("0 passed, 0 failed, {} skipped", checks.len());
            return;
        }
    };
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, check) in &checks {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            skipped += 1;
            continue;
        }
        let t = std::time::Instant::now();
        match catch_unwind(AssertUnwindSafe(|| check(&gpu))) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// CUDA device 0, or why there is none.
fn cuda_device() -> Result<Device, String> {
    if !cfg!(feature = "cuda") {
        return Err("built without the `cuda` feature (cargo test --features cuda)".into());
    }
    // The error's first line: candle appends a backtrace when RUST_BACKTRACE is set.
    Device::new_cuda(0).map_err(|e| {
        let e = e.to_string();
        format!("no CUDA device ({})", e.lines().next().unwrap_or_default())
    })
}

fn rand_tensor(seed: u64, dims: &[usize], lo: f32, hi: f32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(lo..hi)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn host(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Max |a - b| over two equally long value lists.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "different sizes");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `gpu` against `cpu` within TOL times max(1, the largest |cpu| value).
fn assert_close(what: &str, cpu: &Tensor, gpu: &Tensor, scaled: bool) {
    assert_eq!(cpu.dims(), gpu.dims(), "{what}: shapes differ");
    let (c, g) = (host(cpu), host(gpu));
    assert!(
        g.iter().all(|v| v.is_finite()) == c.iter().all(|v| v.is_finite()),
        "{what}: non-finite values differ"
    );
    let scale = if scaled {
        c.iter().fold(1f32, |m, v| m.max(v.abs()))
    } else {
        1.0
    };
    let d = max_diff(&c, &g);
    println!("  {what}: max |cpu - gpu| = {d:.3e} (scale {scale:.3e})");
    assert!(
        d <= TOL * scale,
        "{what}: differs by {d} (allowed {})",
        TOL * scale
    );
}

fn var(t: &Tensor, dev: &Device) -> Var {
    Var::from_tensor(&t.to_device(dev).unwrap()).unwrap()
}

/// The gradients of sum(f(inputs) * probe) with respect to each input, on `dev`.
fn grads(
    dev: &Device,
    inputs: &[&Tensor],
    probe: &Tensor,
    f: &dyn Fn(&[Tensor]) -> Tensor,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs.iter().map(|t| var(t, dev)).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&ts);
    let g = (&out * probe.to_device(dev).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gs = vars
        .iter()
        .map(|v| g.get(v).expect("gradient").clone())
        .collect();
    (out, gs)
}

/// f on the CPU and on the GPU: the outputs and the gradients of every input must agree.
fn compare_with_grads(
    what: &str,
    gpu: &Device,
    inputs: &[&Tensor],
    probe: &Tensor,
    f: &dyn Fn(&[Tensor]) -> Tensor,
) {
    let (oc, gc) = grads(&Device::Cpu, inputs, probe, f);
    let (og, gg) = grads(gpu, inputs, probe, f);
    assert!(og.device().is_cuda(), "{what}: ran off the GPU");
    assert_close(&format!("{what} output"), &oc, &og, true);
    for (i, (c, g)) in gc.iter().zip(&gg).enumerate() {
        assert_close(&format!("{what} gradient {i}"), c, g, true);
    }
}

fn depthwise_forward_and_gradients(gpu: &Device) {
    // (b, c, h, w, k, stride, pad): Lite0's shapes (3x3 and 5x5, stride 1 and 2) and odd sizes.
    for (i, &(b, c, h, w, k, s, p)) in [
        (2, 8, 16, 16, 3, 1, 1),
        (1, 6, 17, 15, 3, 2, 1),
        (3, 4, 20, 18, 5, 2, 2),
        (2, 5, 9, 11, 5, 1, 2),
    ]
    .iter()
    .enumerate()
    {
        let x = rand_tensor(10 + i as u64, &[b, c, h, w], -2.0, 2.0);
        let wt = rand_tensor(20 + i as u64, &[c, 1, k, k], -1.0, 1.0);
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let probe = rand_tensor(30 + i as u64, &[b, c, oh, ow], -1.0, 1.0);
        compare_with_grads(
            &format!("depthwise {k}x{k}/{s} on {b}x{c}x{h}x{w}"),
            gpu,
            &[&x, &wt],
            &probe,
            &|t| depthwise::depthwise_conv2d(&t[0], &t[1], s, p).unwrap(),
        );
    }
}

fn depthwise_bias_act_epilogue(gpu: &Device) {
    let (b, c, h, w) = (2, 6, 14, 13);
    let x = rand_tensor(1, &[b, c, h, w], -3.0, 3.0);
    let wt = rand_tensor(2, &[c, 1, 3, 3], -2.0, 2.0);
    let bias = rand_tensor(3, &[c], -1.0, 1.0);
    for act in [Act::None, Act::Relu, Act::Relu6] {
        for s in [1, 2] {
            let run = |d: &Device| {
                let f = |t: &Tensor| t.to_device(d).unwrap();
                depthwise::depthwise_conv2d_bias_act(&f(&x), &f(&wt), &f(&bias), act, s, 1).unwrap()
            };
            assert_close(
                &format!("depthwise + bias + {act:?}, stride {s}"),
                &run(&Device::Cpu),
                &run(gpu),
                true,
            );
        }
    }
}

fn relu6_and_bias_act(gpu: &Device) {
    let x = rand_tensor(4, &[2, 3, 7, 9], -3.0, 9.0);
    let probe = rand_tensor(5, &[2, 3, 7, 9], -1.0, 1.0);
    compare_with_grads("relu6", gpu, &[&x], &probe, &|t| {
        activation::relu6(&t[0]).unwrap()
    });
    let bias = rand_tensor(6, &[3], -2.0, 2.0);
    for act in [Act::None, Act::Relu, Act::Relu6] {
        let run = |d: &Device| {
            let y = x.to_device(d).unwrap().copy().unwrap();
            activation::bias_act_in_place(y, &bias.to_device(d).unwrap(), act).unwrap()
        };
        assert_close(
            &format!("bias + {act:?} in place"),
            &run(&Device::Cpu),
            &run(gpu),
            false,
        );
    }
}

fn batchnorm_train(gpu: &Device) {
    let x = rand_tensor(7, &[4, 6, 9, 10], -1.0, 3.0);
    let gamma = rand_tensor(8, &[6], 0.5, 1.5);
    let beta = rand_tensor(9, &[6], -0.5, 0.5);
    let probe = rand_tensor(10, &[4, 6, 9, 10], -1.0, 1.0);
    for act in [Act::None, Act::Relu, Act::Relu6] {
        compare_with_grads(
            &format!("batchnorm + {act:?}"),
            gpu,
            &[&x, &gamma, &beta],
            &probe,
            &|t| {
                batchnorm::batch_norm_train(&t[0], &t[1], &t[2], 1e-3, act)
                    .unwrap()
                    .y
            },
        );
        let stats = |d: &Device| {
            let f = |t: &Tensor| t.to_device(d).unwrap();
            let o = batchnorm::batch_norm_train(&f(&x), &f(&gamma), &f(&beta), 1e-3, act).unwrap();
            (o.mean, o.var)
        };
        let ((mc, vc), (mg, vg)) = (stats(&Device::Cpu), stats(gpu));
        assert!(mg.device().is_cuda(), "batch statistics left the GPU");
        assert_close("batch mean", &mc, &mg, true);
        assert_close("batch variance", &vc, &vg, true);
    }
}

fn maxpool_forward_backward(gpu: &Device) {
    // Ties included: values on a coarse grid, so first-maximum order matters.
    let x = (rand_tensor(11, &[2, 3, 13, 12], 0.0, 8.0).floor().unwrap() / 2.0).unwrap();
    let probe = rand_tensor(12, &[2, 3, 7, 6], -1.0, 1.0);
    compare_with_grads("max-pool 3x3/2 pad 1", gpu, &[&x], &probe, &|t| {
        maxpool::max_pool2d(&t[0], 3, 2, 1).unwrap()
    });
}

#[cfg(feature = "cuda")]
fn anomaly_map_and_smoothing(gpu: &Device) {
    use cdo_inspect::model::cdo::{anomaly_maps_cuda, anomaly_maps_host};
    use cdo_inspect::model::kernels::resize::Upsampling;
    use cdo_inspect::model::kernels::cuda::map::gaussian_smooth;
    use cdo_inspect::model::postprocess::gaussian_smooth as smooth_host;
    let b = 3;
    let dims = [(24, 32, 32), (40, 16, 16), (112, 8, 8)];
    let level = |seed: u64| -> Vec<Tensor> {
        dims.iter()
            .enumerate()
            .map(|(i, &(c, h, w))| rand_tensor(seed + i as u64, &[b, c, h, w], -1.0, 2.0))
            .collect()
    };
    let (fe, fa) = (level(100), level(200));
    let to_gpu = |v: &[Tensor]| {
        v.iter()
            .map(|t| t.to_device(gpu).unwrap())
            .collect::<Vec<_>>()
    };
    let s = 128;
    // The reference's placement of the levels, then the receptive field's (the default).
    let up = [Upsampling::AlignCorners, Upsampling::ReceptiveField];
    for up in up {
        let cpu = anomaly_maps_host(&fe, &fa, s, s, up).unwrap().concat();
        let gpu = anomaly_maps_cuda(&to_gpu(&fe), &to_gpu(&fa), s, s, up).unwrap();
        let d = max_diff(&cpu, &host(&gpu));
        println!("  raw map ({up:?}): max |cpu - gpu| = {d:.3e}");
        assert!(d <= TOL, "raw maps ({up:?}) differ by {d}");
    }
    let cpu_raw = anomaly_maps_host(&fe, &fa, s, s, Upsampling::ReceptiveField).unwrap();
    let gpu_raw = anomaly_maps_cuda(&to_gpu(&fe), &to_gpu(&fa), s, s, Upsampling::ReceptiveField).unwrap();
    for sigma in [4.0f32, 1.5] {
        let cpu_s: Vec<f32> = cpu_raw
            .iter()
            .flat_map(|m| smooth_host(m, s, s, sigma))
            .collect();
        let gpu_s = host(&gaussian_smooth(&gpu_raw, sigma).unwrap());
        let d = max_diff(&cpu_s, &gpu_s);
        println!("  smoothed map (sigma {sigma}): max |cpu - gpu| = {d:.3e}");
        assert!(d <= TOL, "smoothed maps differ by {d}");
    }
}

#[cfg(not(feature = "cuda"))]
fn anomaly_map_and_smoothing(_: &Device) {
    unreachable!("cuda_device() refuses a build without the `cuda` feature")
}

/// The detector `bench` times for a fresh pair: a seeded frozen expert and a seeded
/// apprentice, at input size `size`.
fn detector(kind: BackboneKind, size: u32, dev: &Device) -> Detector {
    let cfg = TrainConfig {
        backbone: kind,
        image_size: size,
        seed: 3,
        ..TrainConfig::default()
    };
    let record = TrainingRecord::untrained(cfg.clone());
    let meta = bundle_meta(&cfg, std::path::Path::new("random"), "", record);
    let expert = Network::fresh_frozen(kind, 7, dev).unwrap();
    let apprentice = TrainableApprentice::new(kind, cfg.seed, cfg.bn_momentum, dev).unwrap();
    Detector::from_state(meta, expert, apprentice.state_dict(), dev).unwrap()
}

/// Taps, raw and smoothed maps and scores of the pair on both devices, batch 1 and 4.
fn pair(kind: BackboneKind, gpu: &Device) {
    let size = 128u32;
    let (dc, dg) = (
        detector(kind, size, &Device::Cpu),
        detector(kind, size, gpu),
    );
    for batch in [1usize, 4] {
        let x = rand_tensor(
            40 + batch as u64,
            &[batch, 3, size as usize, size as usize],
            -2.0,
            2.0,
        );
        let (xc, xg) = (x.clone(), x.to_device(gpu).unwrap());
        let (ec, ac) = dc.features_pair(&xc);
        let (eg, ag) = dg.features_pair(&xg);
        let (ec, ac, eg, ag) = (ec.unwrap(), ac.unwrap(), eg.unwrap(), ag.unwrap());
        for (l, (c, g)) in ec.iter().zip(&eg).enumerate() {
            assert_close(&format!("{kind} b{batch} expert tap {l}"), c, g, true);
        }
        for (l, (c, g)) in ac.iter().zip(&ag).enumerate() {
            assert_close(&format!("{kind} b{batch} apprentice tap {l}"), c, g, true);
        }
        let raw_c = dc.raw_maps(&ec, &ac).unwrap().into_host().unwrap().concat();
        let raw_g = dg.raw_maps(&eg, &ag).unwrap().into_host().unwrap().concat();
        let d = max_diff(&raw_c, &raw_g);
        println!("  {kind} b{batch} raw map: max |cpu - gpu| = {d:.3e}");
        assert!(d <= TOL, "raw maps differ by {d}");
        let chw: Vec<Vec<f32>> = host(&x)
            .chunks(3 * (size * size) as usize)
            .map(<[f32]>::to_vec)
            .collect();
        let (ic, ig) = (dc.infer_chw(&chw).unwrap(), dg.infer_chw(&chw).unwrap());
        for (i, (c, g)) in ic.iter().zip(&ig).enumerate() {
            let d = max_diff(&c.map, &g.map);
            let ds = (c.score - g.score).abs();
            println!(
                "  {kind} b{batch} image {i}: smoothed map {d:.3e}, score {} vs {} ({ds:.3e})",
                c.score, g.score
            );
            assert!(
                d <= TOL && ds <= TOL,
                "image {i}: map differs by {d}, score by {ds}"
            );
        }
    }
}

fn lite0_pair(gpu: &Device) {
    pair(BackboneKind::EfficientNetLite0, gpu)
}

fn resnet18_pair(gpu: &Device) {
    pair(BackboneKind::ResNet18, gpu)
}

/// One training step's loss and apprentice gradients on both devices.
fn training_step(kind: BackboneKind, gpu: &Device) {
    let (b, s) = (2usize, 96usize);
    let x = rand_tensor(50, &[b, 3, s, s], -2.0, 2.0);
    // A synthetic-anomaly mask: a rectangle in each image.
    let mut m = vec![0f32; b * s * s];
    for (i, img) in m.chunks_mut(s * s).enumerate() {
        for y in 20 + 5 * i..50 + 5 * i {
            img[y * s + 30..y * s + 60]
                .iter_mut()
                .for_each(|v| *v = 1.0);
        }
    }
    let mask = Tensor::from_vec(m, (b, 1, s, s), &Device::Cpu).unwrap();
    let loss_cfg = TrainConfig::default().loss();
    let step = |dev: &Device| {
        let expert = Network::fresh_frozen(kind, 7, dev).unwrap();
        let app = TrainableApprentice::new(kind, 3, 0.1, dev).unwrap();
        let x = x.to_device(dev).unwrap();
        let fe = expert.features(&x, Mode::Eval).unwrap();
        let fa = app.net.features(&x, Mode::Train).unwrap();
        let out = cdo_loss(&fe, &fa, Some(&mask.to_device(dev).unwrap()), &loss_cfg).unwrap();
        let g = out.total.backward().unwrap();
        let grads: Vec<(String, Tensor)> = app
            .params
            .iter()
            .map(|(n, v)| (n.clone(), g.get(v).expect("apprentice gradient").clone()))
            .collect();
        (out.total, grads)
    };
    let (lc, gc) = step(&Device::Cpu);
    let (lg, gg) = step(gpu);
    assert_close(&format!("{kind} loss"), &lc, &lg, true);
    let mut worst = (0f32, String::new());
    for ((name, c), (_, g)) in gc.iter().zip(&gg) {
        let (c, g) = (host(c), host(g));
        let scale = c.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let rel = max_diff(&c, &g) / scale;
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
    }
    println!(
        "  {kind}: {} apprentice gradients, worst relative difference {:.3e} ({})",
        gc.len(),
        worst.0,
        worst.1
    );
    assert!(
        worst.0 <= 10.0 * TOL,
        "{kind}: gradient {} differs by {} (relative)",
        worst.1,
        worst.0
    );
}

fn lite0_training_step(gpu: &Device) {
    training_step(BackboneKind::EfficientNetLite0, gpu)
}

fn resnet18_training_step(gpu: &Device) {
    training_step(BackboneKind::ResNet18, gpu)
}

/// One Lite0 pair inference at batch 1, input to scores: launches counted.
fn lite0_launches(gpu: &Device) {
    use cdo_inspect::model::kernels::{candle_ops_on_gpu, cuda_launches};
    let d = detector(BackboneKind::EfficientNetLite0, 256, gpu);
    let chw = vec![host(&rand_tensor(60, &[3, 256, 256], -2.0, 2.0))];
    d.infer_chw(&chw).unwrap(); // loads the modules
    let (own0, ops0) = (cuda_launches().unwrap(), candle_ops_on_gpu());
    d.infer_chw(&chw).unwrap();
    let (own, ops) = (cuda_launches().unwrap() - own0, candle_ops_on_gpu() - ops0);
    println!("  Lite0 pair, batch 1: {own} own kernel launches + {ops} candle ops");
    // Per network: 11 depthwise layers, each one launch; a fall back would be thousands.
    assert!(
        own >= 22,
        "the depthwise layers did not run the crate's kernels ({own} launches)"
    );
    assert!(
        own + ops < 300,
        "{own} + {ops} launches per inference (goal: under 300)"
    );
}
