//! Branch and cache hints.

/// Marks the branch that calls it as the unlikely one (a stable stand-in
/// for `core::hint::cold_path`, newer than the supported Rust).
#[cold]
#[inline(always)]
pub fn cold_path() {}

/// Starts loading the cache line at `p`, to be read soon. Any address will
/// do (null, freed, unmapped): a prefetch never faults and changes nothing
/// but the cache.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint: it reads nothing into a register and
    // never faults, whatever the address; SSE is part of the x86_64 base.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
