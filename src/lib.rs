//! cdo-inspect: CDO (Collaborative Discrepancy Optimization) anomaly detection for
//! inspection stations. The library holds everything; `main.rs` only parses arguments.

pub mod bench;
pub mod bundle;
pub mod commands;
pub mod eval;
pub mod imageio;
pub mod infer;
pub mod model;
pub mod preprocess;
pub mod sample_data;
pub mod train;

/// Keeps freed large buffers in the heap for reuse. glibc hands every allocation above its
/// mmap threshold (at most 32 MiB) straight back to the kernel when freed, so each of the
/// network's large activations would be mapped, page-faulted and zeroed anew on every
/// step; that was a quarter of the training time. Call once at start-up.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
