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
