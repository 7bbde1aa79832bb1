//! The station daemon: trigger → light → capture → infer → decide → reject, one thread per
//! stage, bounded channels between them.

#[cfg(feature = "camera")]
pub mod camera_v4l;
pub mod gpio_cdev;
pub mod hw;
