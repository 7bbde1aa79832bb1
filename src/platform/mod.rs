//! Leaf helpers about the machine and the process: thread pools and the allocator, the
//! monotonic clock, memory use, the compute device. Nothing here imports the rest of the
//! crate.

pub mod clock;
pub mod device;
pub mod memory;
pub mod threads;
