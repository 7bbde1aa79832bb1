//! The station daemon: trigger → light → capture → infer → decide → reject, one thread per
//! stage, bounded channels between them.

#[cfg(feature = "camera")]
pub mod camera_v4l;
pub mod gpio_cdev;
pub mod boundary;
pub mod replay;
pub mod sim_gpio;
pub mod alignment;
pub mod archive;
pub mod decide;
pub mod lock;
pub mod records;
pub mod backlog;
pub mod identity;
pub mod journal;
pub mod notify;
pub mod counters;
pub mod part;
pub mod actuate;
pub mod stages;
pub mod outside;
pub mod recorder;
pub mod backends;
pub mod supervisor;
pub mod daemon;
pub mod preflight;
pub mod summary;
