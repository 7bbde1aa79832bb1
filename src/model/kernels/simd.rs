//! Element-wise loops shared by preprocessing and post-processing, built for AVX2 where
//! the CPU has it (the binary itself targets baseline x86-64).

use std::ops::{AddAssign, Mul};

/// `acc += src * k`, element by element (`src` widened to `acc`'s type first): the inner
/// loop of the resize's vertical pass and of both smoothing passes. With AVX2 the same
/// loop runs twice as many lanes as with SSE2; it is a separate multiply and add either
/// way, so the results are the same bits.
pub(crate) fn add_scaled<A, S>(acc: &mut [A], src: &[S], k: A)
where
    A: Copy + AddAssign + Mul<Output = A> + From<S>,
    S: Copy,
{
    #[inline(always)]
    fn lanes<A, S>(acc: &mut [A], src: &[S], k: A)
    where
        A: Copy + AddAssign + Mul<Output = A> + From<S>,
        S: Copy,
    {
        for (a, &s) in acc.iter_mut().zip(src) {
            *a += A::from(s) * k;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<A, S>(acc: &mut [A], src: &[S], k: A)
        where
            A: Copy + AddAssign + Mul<Output = A> + From<S>,
            S: Copy,
        {
            lanes(acc, src, k)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(acc, src, k) };
        }
    }
    lanes(acc, src, k)
}

/// `out[j] = Σ_t kernel[t] · base[starts[t] + j]` for every `j < out.len()`, the taps summed
/// in order from zero with a separate multiply and add (the same bits as adding one tap at
/// a time over the whole row). Thirty-two outputs at a time stay in registers across all
/// the taps (eight AVX2 vectors: enough independent sums to cover the add latency; sixteen
/// measured 1.5x slower), so each tap costs loads only, not a load and store of the row.
/// The 1-D convolution of both smoothing passes: `starts` is `0, 1, 2, …` along a padded
/// row, or the offsets of the rows above and below along a column.
///
/// Panics if a tap's run `base[starts[t]..starts[t] + out.len()]` is out of bounds
/// (callers size them); taps past the shorter of `starts` and `kernel` are not summed.
pub(crate) fn weighted_taps(out: &mut [f64], base: &[f64], starts: &[usize], kernel: &[f64]) {
    #[inline(always)]
    fn lanes(out: &mut [f64], base: &[f64], starts: &[usize], kernel: &[f64]) {
        const BLOCK: usize = 32;
        let n = out.len();
        let full = n - n % BLOCK;
        for x0 in (0..full).step_by(BLOCK) {
            let mut acc = [0.0f64; BLOCK];
            for (&s, &k) in starts.iter().zip(kernel) {
                let src: &[f64; BLOCK] = base[s + x0..s + x0 + BLOCK].try_into().unwrap();
                for j in 0..BLOCK {
                    acc[j] += src[j] * k;
                }
            }
            out[x0..x0 + BLOCK].copy_from_slice(&acc);
        }
        for (x, o) in out.iter_mut().enumerate().skip(full) {
            let mut acc = 0.0f64;
            for (&s, &k) in starts.iter().zip(kernel) {
                acc += base[s + x] * k;
            }
            *o = acc;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(out: &mut [f64], base: &[f64], starts: &[usize], kernel: &[f64]) {
            lanes(out, base, starts, kernel)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(out, base, starts, kernel) };
        }
    }
    lanes(out, base, starts, kernel)
}
