//! cdo-inspect: CDO (Collaborative Discrepancy Optimization) anomaly detection for
//! inspection stations. The library holds everything; `main.rs` only parses arguments.
//!
//! # Layers
//!
//! Dependencies point one way, from the top of this list to the bottom; a module may use
//! its own layer and any layer below it, never one above. `tests/layering.rs` reads every
//! `crate::` path in `src/` and fails on one that breaks this, naming the file and line.
//!
//! ```text
//! commands                     the verbs: argument structs, printing, exit codes
//! station                      the daemon: stages, hardware boundary and backends
//! config                       the station file: schema, reader, checks, reload
//! train  eval  bench           training, benchmark scoring, speed
//!   sample_data                sample datasets cut from photographs (no other layer's code)
//! infer                        detector, preprocessing, the verdict rule, defect regions
//! bundle                       a trained model on disk, and the training settings it records
//! model                        backbones, checkpoints, the CDO loss and map; model::kernels
//! platform  imageio  text      leaf helpers: threads, clock, memory, device; image files;
//!                              did-you-mean
//! ```
//!
//! Modules on one line are peers and do not use each other (`train`, `eval` and `bench`
//! each stand alone on `infer`; `bench` times a training step through `train`, so `bench`
//! sits above `train`). `main.rs` uses `commands` only, and nothing uses `commands`.

pub mod bench;
pub mod bundle;
pub mod commands;
pub mod config;
pub mod eval;
pub mod imageio;
pub mod infer;
pub mod model;
pub mod platform;
pub mod sample_data;
pub mod station;
pub mod text;
pub mod train;

#[cfg(test)]
pub(crate) mod test_util;
