//! Branch and cache hints.

use core::sync::atomic::{AtomicBool, Ordering};

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

/// Whether the processor has `prefetchw` (set once, at the process's first
/// use of the allocator; until then [`prefetch_write`] reads instead).
static HAS_PREFETCHW: AtomicBool = AtomicBool::new(false);

/// Asks the processor whether it has `prefetchw`.
pub fn detect_write_prefetch() {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::__cpuid;
        // Leaf 0x8000_0001, ECX bit 8: PRFCHW (AMD's 3DNowPrefetch), when
        // the processor has that leaf at all.
        let max = __cpuid(0x8000_0000).eax;
        let has = max >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0;
        HAS_PREFETCHW.store(has, Ordering::Relaxed);
    }
}

/// Starts fetching the cache line at `p` for writing: the line arrives
/// owned (other cores' copies invalidated), so a write soon after neither
/// waits for a second trip nor holds up the next atomic operation behind
/// it. Any address will do, as for [`prefetch`]; a processor without the
/// instruction gets a read prefetch.
#[inline(always)]
pub fn prefetch_write<T>(p: *const T) {
    // `_mm_prefetch` with a write hint compiles to a read prefetch unless
    // the build targets `prfchw`, so the instruction is written out, and
    // used only where CPUID reports it (older Intel processors may fault on
    // it).
    #[cfg(target_arch = "x86_64")]
    if HAS_PREFETCHW.load(Ordering::Relaxed) {
        // SAFETY: `prefetchw` is a hint: it reads nothing into a register,
        // writes no memory and never faults, whatever the address; this
        // processor has it (CPUID, above).
        unsafe {
            core::arch::asm!(
                "prefetchw [{0}]",
                in(reg) p,
                options(nostack, readonly, preserves_flags)
            )
        };
        return;
    }
    prefetch(p);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn write_prefetch_is_used_where_the_processor_reports_it() {
        detect_write_prefetch();
        // Linux names the CPUID bit `3dnowprefetch` in the flags.
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let flags = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .expect("a flags line");
        let listed = flags.split_whitespace().any(|f| f == "3dnowprefetch");
        assert_eq!(HAS_PREFETCHW.load(Ordering::Relaxed), listed);
        // Either way it is a hint: any address, even null, is fine.
        let x = 7u64;
        prefetch_write(&x);
        prefetch_write(core::ptr::null::<u64>());
        assert_eq!(x, 7);
    }
}
