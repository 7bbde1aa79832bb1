//! Process-wide settings made once at start-up, before any work: thread pools and the
//! allocator.

/// Fixes the thread counts before any pool starts (call first, from the main thread).
///
/// - rayon (our kernels and the GEMMs): one worker per available core, and fixed, because
///   otherwise candle re-reads /proc/cpuinfo on every matmul.
/// - candle's elementwise ops run on a second pool of its own, whose caller spin-waits for
///   its workers. Next to rayon's workers that is more runnable threads than cores: a
///   descheduled worker leaves the caller spinning for a whole time slice (profiled: 45 %
///   of inference samples on two cores). Those ops are memory-bound and lose little on one
///   thread, so that pool gets none (`CANDLE_NUM_THREADS=1`).
///
/// Either variable set by the user is left alone.
pub fn tune_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

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
