//! The expert is the real ImageNet network, not just a loadable file: with its classifier
//! head, EfficientNet-Lite0 must put the right ImageNet classes in its top 5 for real
//! photographs shipped in scikit-image (fetched by scripts/fetch-sample-images.sh).

mod common;

use candle_core::Device;
use cdo_inspect::model::backbone::load_lite0_classifier;
use cdo_inspect::infer::preprocess::{batch_tensor, image_to_chw};

fn top5(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
    idx.truncate(5);
    idx
}

#[test]
fn lite0_classifies_real_photographs() {
    let net = load_lite0_classifier(&common::lite0_weights(), &Device::Cpu)
        .expect("Lite0 weights load with every tensor used");
    // (photo, acceptable ImageNet classes, how many of them must be in the top 5)
    let cases: [(&str, &[usize], usize); 3] = [
        // 281 tabby, 282 tiger cat, 285 Egyptian cat
        ("chelsea.png", &[281, 282, 285], 2),
        // 967 espresso, 968 cup, 504 coffee mug
        ("coffee.png", &[967, 968, 504], 2),
        // 744 projectile, 657 missile, 812 space shuttle
        ("rocket.jpg", &[744, 657, 812], 2),
    ];
    let chw: Vec<Vec<f32>> = cases
        .iter()
        .map(|(name, _, _)| image_to_chw(&common::photo(name), 224))
        .collect();
    let logits = net
        .classify(&batch_tensor(&chw, 224, &Device::Cpu).unwrap())
        .unwrap();
    let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
    for ((name, classes, need), row) in cases.iter().zip(rows) {
        let top = top5(&row);
        let hits = classes.iter().filter(|c| top.contains(c)).count();
        assert!(
            hits >= *need,
            "{name}: top-5 {top:?}, expected {need} of {classes:?}"
        );
        assert!(
            classes.contains(&top[0]),
            "{name}: top-1 {} not in {classes:?} (top-5 {top:?})",
            top[0]
        );
    }
}
