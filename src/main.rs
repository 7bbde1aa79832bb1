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
    /// Run the station daemon: trigger, capture, inspect, reject (under systemd).
    Run(commands::run::RunArgs),
    /// A whole station on one machine: replayed real parts, simulated GPIO, CPU.
    Demo(commands::demo::DemoArgs),
    /// Train the apprentice from a folder of good images; writes a model bundle.
    Train(commands::train::TrainArgs),
    /// Score images with a model bundle; optionally write anomaly maps and heatmaps.
    Infer(commands::infer::InferArgs),
    /// Score models on an MVTec AD-layout dataset; --train for the benchmark, --ablation.
    Eval(commands::eval::EvalArgs),
    /// Cut a sample inspection dataset (good and defective tiles) from a texture photograph.
    SampleData(commands::sample_data::SampleDataArgs),
    /// Validate a station file and explain every error.
    CheckConfig(commands::check_config::CheckConfigArgs),
    /// Time every stage of an inspection, throughput and a training step; table and JSON.
    Bench(commands::bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let filter = match &cli.verb {
        Verb::Run(args) => commands::run::log_filter(args),
        _ => "info".to_string(),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format_timestamp_millis()
        .init();
    cdo_inspect::platform::threads::tune_threads();
    cdo_inspect::platform::threads::tune_allocator();
    let result = match cli.verb {
        Verb::Run(args) => commands::run::run(args),
        Verb::Demo(args) => commands::demo::run(args),
        Verb::Train(args) => commands::train::run(args),
        Verb::Infer(args) => commands::infer::run(args),
        Verb::SampleData(args) => commands::sample_data::run(args),
        Verb::Eval(args) => commands::eval::run(args),
        Verb::CheckConfig(args) => commands::check_config::run(args),
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
