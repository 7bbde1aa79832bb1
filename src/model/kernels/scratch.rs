//! Scratch buffers reused across calls, so the hot loop does not allocate (and fault in)
//! the same large buffers every frame.

use std::sync::Mutex;

/// A pool of buffers, not thread-locals, because rayon may run another task on a thread
/// that is waiting inside this one.
pub(crate) struct Pool<T>(Mutex<Vec<Vec<T>>>);

impl<T: Copy + Default> Pool<T> {
    pub(crate) const fn new() -> Self {
        Pool(Mutex::new(Vec::new()))
    }

    /// A buffer of at least `len` values with unspecified contents: the smallest pooled
    /// one that is long enough (never resized, so never cleared again), else a new one.
    pub(crate) fn take(&self, len: usize) -> Vec<T> {
        let Ok(mut pool) = self.0.lock() else {
            return vec![T::default(); len];
        };
        let best = (0..pool.len())
            .filter(|&i| pool[i].len() >= len)
            .min_by_key(|&i| pool[i].len());
        match best {
            Some(i) => pool.swap_remove(i),
            None => vec![T::default(); len],
        }
    }

    pub(crate) fn give(&self, v: Vec<T>) {
        if let Ok(mut p) = self.0.lock() {
            // Enough for both networks' chunks in flight; more would only hold memory.
            if p.len() < 16 {
                p.push(v);
            }
        }
    }
}
