//! A cache hint for scans over scattered memory.
//!
//! The GetChanges scan walks the by-USN log in order, but each entry's
//! slot, and each slot's state, lies anywhere in a large directory: a
//! cache miss apiece, taken one after another. Asking for the lines a few
//! entries ahead lets those misses overlap.

/// Asks the CPU to start loading the cache line holding `p` into every
/// cache level. A hint: it reads nothing architecturally and never faults,
/// whatever `p` is. Does nothing off x86-64.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory, so it is sound for any
    // address; SSE, which provides it, is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
