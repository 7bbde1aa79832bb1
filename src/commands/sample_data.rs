//! `cdo-inspect sample-data`: cut a small inspection dataset (good tiles, tiles with
//! painted defects and their masks, MVTec AD layout) out of a real texture photograph.

use std::path::PathBuf;

use anyhow::Result;

use crate::sample_data::{build_surface_dataset, SampleSpec, Split, DEFECT_TYPES};

#[derive(Debug, clap::Args)]
pub struct SampleDataArgs {
    /// A photograph of a surface (scripts/fetch-sample-images.sh fetches gravel.png).
    #[arg(long)]
    pub texture: PathBuf,
    /// Output directory (train/good, test/<type>, ground_truth/<type>).
    #[arg(long)]
    pub out: PathBuf,
    /// Tile side in pixels.
    #[arg(long, default_value_t = SampleSpec::default().tile)]
    pub tile: u32,
    #[arg(long, default_value_t = SampleSpec::default().train_good)]
    pub train_good: usize,
    #[arg(long, default_value_t = SampleSpec::default().test_good)]
    pub test_good: usize,
    /// Defective test tiles per defect type.
    #[arg(long, default_value_t = SampleSpec::default().test_defect)]
    pub test_defect: usize,
    #[arg(long, default_value_t = SampleSpec::default().seed)]
    pub seed: u64,
}

pub fn run(args: SampleDataArgs) -> Result<i32> {
    let spec = SampleSpec {
        tile: args.tile,
        train_good: args.train_good,
        test_good: args.test_good,
        test_defect: args.test_defect,
        seed: args.seed,
    };
    let summary = build_surface_dataset(&args.texture, &args.out, &spec)?;
    let defects: usize = DEFECT_TYPES
        .iter()
        .map(|t| summary.count(Split::Test, t))
        .sum();
    println!(
        "{}: {} good training tiles, {} good and {} defective test tiles ({}), {}x{} px",
        summary.root.display(),
        summary.count(Split::Train, "good"),
        summary.count(Split::Test, "good"),
        defects,
        DEFECT_TYPES.join(", "),
        summary.tile,
        summary.tile
    );
    Ok(0)
}
