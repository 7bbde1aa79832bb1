//! The station file: schema, defaults, loading and validation.

pub mod line_spec;
pub mod load;
mod reader;
pub mod reload;
pub mod schema;
mod sections;
#[cfg(test)]
mod testing;

pub use line_spec::LineSpec;
pub use load::{load, load_with, parse, parse_with, LoadOptions};
pub use reader::{ConfigError, ConfigErrors};
pub use reload::changes_needing_restart;
pub use schema::*;
