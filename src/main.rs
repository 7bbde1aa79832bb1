//! `cdo-inspect`: argument parsing and dispatch only; the work lives in the library.

use clap::{Parser, Subcommand};

use cdo_inspect::commands;

#[derive(Parser)]
#[command(
    name = "cdo-inspect",
    version,
    about = "CDO anomaly detection for inspection stations"
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Train the apprentice from a folder of good images; writes a model bundle.
    Train(commands::train::TrainArgs),
    /// Score images with a model bundle; optionally write anomaly maps and heatmaps.
    Infer(commands::infer::InferArgs),
    /// Score models on an MVTec AD-layout dataset; --train for the benchmark, --ablation.
    Eval(commands::eval::EvalArgs),
    /// Cut a sample inspection dataset (good and defective tiles) from a texture photograph.
    SampleData(commands::sample_data::SampleDataArgs),
    /// Time every stage of an inspection, throughput and a training step; table and JSON.
    Bench(commands::bench::BenchArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    cdo_inspect::tune_threads();
    cdo_inspect::tune_allocator();
    let cli = Cli::parse();
    let result = match cli.verb {
        Verb::Train(args) => commands::train::run(args),
        Verb::Infer(args) => commands::infer::run(args),
        Verb::SampleData(args) => commands::sample_data::run(args),
        Verb::Eval(args) => commands::eval::run(args),
        Verb::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log::error!("{e:#}");
            std::process::exit(1);
        }
    }
}
