//! The station file: schema, defaults, loading and validation.

pub mod schema;

pub use schema::*;
