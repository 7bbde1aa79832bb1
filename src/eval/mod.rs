//! Evaluation on MVTec AD-style benchmarks: dataset readers, exact metrics, scoring with
//! map export, and the result tables.

pub mod dataset;
pub mod metrics;
pub mod report;
pub mod scoring;
