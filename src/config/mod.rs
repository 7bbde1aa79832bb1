//! The station file: schema, defaults, loading and validation.

pub mod line_spec;
pub mod load;
pub mod reload;
pub mod schema;

pub use line_spec::LineSpec;
pub use load::{load, load_with, parse, parse_with, ConfigError, ConfigErrors, LoadOptions};
pub use reload::reloadable_changes;
pub use schema::*;
