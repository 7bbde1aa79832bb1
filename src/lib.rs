//! cdo-inspect: CDO (Collaborative Discrepancy Optimization) anomaly detection for
//! inspection stations. The library holds everything; `main.rs` only parses arguments.

pub mod model;
