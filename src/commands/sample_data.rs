//! `cdo-inspect sample-data`: cut a small inspection dataset (good tiles, tiles with
//! painted defects and their masks, MVTec AD layout) out of a real texture photograph, or
//! with `--frame` a production line's frames of one part (for tiled inspection).

use std::path::PathBuf;

use anyhow::Result;

use super::bench::parse_frame_size;
use crate::sample_data::{build_line_dataset, build_surface_dataset, LineSpec, SampleSpec, Split, DEFECT_TYPES};

#[derive(Debug, clap::Args)]
pub struct SampleDataArgs {
    /// A photograph of a surface (scripts/fetch-sample-images.sh fetches gravel.png).
    #[arg(long)]
    pub texture: PathBuf,
    /// Output directory (train/good, test/<type>, ground_truth/<type>).
    #[arg(long)]
    pub out: PathBuf,
    /// Tile side in pixels.
    #[arg(long, default_value_t = SampleSpec::default().tile, conflicts_with = "frame")]
    pub tile: u32,
    /// A line of one part instead of texture tiles: frames of WxH cut at native resolution
    /// around the photograph's centre, each moved by up to --jitter px, with its own light
    /// level and camera noise; a defect painted anywhere in the defective ones.
    #[arg(long, value_name = "WxH", value_parser = parse_frame_size)]
    pub frame: Option<(u32, u32)>,
    /// With --frame: the part's play in its fixture, in pixels.
    #[arg(long, default_value_t = 16, requires = "frame")]
    pub jitter: u32,
    /// With --frame: the smallest defect to paint, in pixels (smaller draws are painted
    /// again).
    #[arg(long, default_value_t = 0, requires = "frame")]
    pub min_defect_px: usize,
    /// With --frame: paint dark spots only (burn marks, oil), no light ones (stress
    /// whitening, which on the brick photograph looks like its white mortar).
    #[arg(long, requires = "frame")]
    pub dark_spots: bool,
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
    let summary = match args.frame {
        Some((width, height)) => build_line_dataset(
            &args.texture,
            &args.out,
            &LineSpec {
                width,
                height,
                jitter: args.jitter,
                train_good: args.train_good,
                test_good: args.test_good,
                test_defect: args.test_defect,
                min_defect_px: args.min_defect_px,
                light_spots: !args.dark_spots,
                seed: args.seed,
            },
        )?,
        None => build_surface_dataset(
            &args.texture,
            &args.out,
            &SampleSpec {
                tile: args.tile,
                train_good: args.train_good,
                test_good: args.test_good,
                test_defect: args.test_defect,
                seed: args.seed,
            },
        )?,
    };
    let defects: usize = DEFECT_TYPES
        .iter()
        .map(|t| summary.count(Split::Test, t))
        .sum();
    println!(
        "{}: {} good training images, {} good and {} defective test images ({}), {}x{} px",
        summary.root.display(),
        summary.count(Split::Train, "good"),
        summary.count(Split::Test, "good"),
        defects,
        DEFECT_TYPES.join(", "),
        summary.size.0,
        summary.size.1
    );
    Ok(0)
}
