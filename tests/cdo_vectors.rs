//! Checks the CDO loss, anomaly map, smoothing and scores against the reference vectors in
//! `tests/data/cdo_vectors.json` (computed with the authors' PyTorch formulas).

use candle_core::{DType, Device, Tensor};
use cdo_inspect::model::cdo::{anomaly_map, anomaly_maps_host, cdo_loss, LossConfig};
use cdo_inspect::model::kernels::resize::Upsampling;
use cdo_inspect::model::postprocess::{gaussian_smooth, max_value, top_fraction_mean};
use serde::Deserialize;

/// The reference's placement of the levels: the vectors were computed with torch.
const AC: Upsampling = Upsampling::AlignCorners;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cdo_vectors.json");

#[derive(Deserialize)]
struct Arr {
    shape: Vec<usize>,
    data: Vec<f64>,
}

#[derive(Deserialize)]
struct LossCase {
    name: String,
    gamma: f64,
    oom: bool,
    mom: bool,
    loss: f64,
    per_level: Vec<f64>,
}

#[derive(Deserialize)]
struct Vectors {
    expert: Vec<Arr>,
    apprentice: Vec<Arr>,
    mask: Arr,
    loss_cases: Vec<LossCase>,
    map_raw: Arr,
    map_smoothed: Arr,
    score_top1pct: Vec<f64>,
    score_max: Vec<f64>,
}

fn load() -> Vectors {
    let text =
        std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e}"));
    serde_json::from_str(&text).expect("cdo_vectors.json parses")
}

fn tensor(a: &Arr, dt: DType) -> Tensor {
    Tensor::from_vec(a.data.clone(), a.shape.as_slice(), &Device::Cpu)
        .unwrap()
        .to_dtype(dt)
        .unwrap()
}

fn tensors(v: &[Arr], dt: DType) -> Vec<Tensor> {
    v.iter().map(|a| tensor(a, dt)).collect()
}

fn assert_rel(got: f64, want: f64, rel: f64, what: &str) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        err <= rel,
        "{what}: got {got}, want {want} (rel err {err:.3e} > {rel:.0e})"
    );
}

fn assert_map(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= 1e-5 * w.abs() + 1e-7,
            "{what}[{i}]: got {g}, want {w} (abs err {err:.3e})"
        );
    }
}

fn check_losses(dt: DType, rel: f64) {
    let v = load();
    let (e, a, m) = (
        tensors(&v.expert, dt),
        tensors(&v.apprentice, dt),
        tensor(&v.mask, dt),
    );
    assert_eq!(v.loss_cases.len(), 5);
    for case in &v.loss_cases {
        let cfg = LossConfig {
            gamma: case.gamma,
            mom: case.mom,
            oom: case.oom,
        };
        let out = cdo_loss(&e, &a, Some(&m), &cfg).unwrap();
        let total = out
            .total
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let name = format!("{} ({dt:?})", case.name);
        assert_rel(total, case.loss, rel, &format!("{name} total"));
        assert_eq!(out.per_level.len(), case.per_level.len(), "{name} levels");
        for (l, (&g, &w)) in out.per_level.iter().zip(&case.per_level).enumerate() {
            assert_rel(g, w, rel, &format!("{name} level {l}"));
        }
        assert!(out.mean_normal_d > 0.0);
        assert!(
            out.mean_synthetic_d.is_some(),
            "the vector mask has synthetic pixels"
        );
    }
}

#[test]
fn loss_cases_f64() {
    check_losses(DType::F64, 1e-5);
}

#[test]
fn loss_cases_f32() {
    check_losses(DType::F32, 1e-4);
}

#[test]
fn anomaly_map_smoothing_and_scores() {
    let v = load();
    let (b, h, w) = (v.map_raw.shape[0], v.map_raw.shape[1], v.map_raw.shape[2]);
    assert_eq!(v.map_smoothed.shape, v.map_raw.shape);
    let plane = h * w;

    for dt in [DType::F64, DType::F32] {
        let map = anomaly_map(&tensors(&v.expert, dt), &tensors(&v.apprentice, dt), h, w, AC).unwrap();
        assert_eq!(map.dims(), &[b, h, w]);
        let raw: Vec<f32> = map
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_map(&raw, &v.map_raw.data, &format!("map_raw ({dt:?})"));
        // The host path CPU inference takes: the same maps.
        let host = anomaly_maps_host(&tensors(&v.expert, dt), &tensors(&v.apprentice, dt), h, w, AC)
            .unwrap();
        assert_eq!(host.len(), b);
        assert_map(&host.concat(), &v.map_raw.data, &format!("host map_raw ({dt:?})"));

        for i in 0..b {
            let smooth = gaussian_smooth(&raw[i * plane..(i + 1) * plane], h, w, 4.0);
            let want = &v.map_smoothed.data[i * plane..(i + 1) * plane];
            assert_map(&smooth, want, &format!("map_smoothed[{i}] ({dt:?})"));
            let top = top_fraction_mean(&smooth, 0.01) as f64;
            assert_rel(
                top,
                v.score_top1pct[i],
                1e-5,
                &format!("score_top1pct[{i}]"),
            );
            let mx = max_value(&smooth) as f64;
            assert_rel(mx, v.score_max[i], 1e-5, &format!("score_max[{i}]"));
        }
    }
}

#[test]
fn smoothing_of_reference_raw_map() {
    // Isolates the Gaussian from the map computation: smooth the reference raw map itself.
    let v = load();
    let (b, h, w) = (v.map_raw.shape[0], v.map_raw.shape[1], v.map_raw.shape[2]);
    let plane = h * w;
    for i in 0..b {
        let raw: Vec<f32> = v.map_raw.data[i * plane..(i + 1) * plane]
            .iter()
            .map(|&x| x as f32)
            .collect();
        let smooth = gaussian_smooth(&raw, h, w, 4.0);
        assert_map(
            &smooth,
            &v.map_smoothed.data[i * plane..(i + 1) * plane],
            &format!("smoothed reference map[{i}]"),
        );
    }
}
