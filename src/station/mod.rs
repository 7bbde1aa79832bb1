//! The station daemon: trigger → light → capture → infer → decide → reject, one thread per
//! stage, bounded channels between them.

pub mod gpio_cdev;
pub mod hw;
