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

/// Starts fetching the cache line at `p` for writing: the line arrives
/// owned (other cores' copies invalidated), so a write soon after neither
/// waits for a second trip nor holds up the next atomic operation behind
/// it. Any address will do, as for [`prefetch`].
#[inline(always)]
pub fn prefetch_write<T>(p: *const T) {
    // `_mm_prefetch` with a write hint compiles to a read prefetch unless
    // the build targets `prfchw`, so the instruction is written out.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetchw` is a hint: it reads nothing into a register,
    // writes no memory and never faults, whatever the address; x86-64
    // processors without it (CPUID PRFCHW clear) execute it as a no-op.
    unsafe {
        core::arch::asm!(
            "prefetchw [{0}]",
            in(reg) p,
            options(nostack, readonly, preserves_flags)
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
