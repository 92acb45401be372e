//! The allocator-wide figures that move on slow paths (slab and segment
//! changes, large mappings): global atomics, read by `stats`.

use core::sync::atomic::{AtomicIsize, Ordering};

static MAPPED: AtomicIsize = AtomicIsize::new(0);
static RESIDENT: AtomicIsize = AtomicIsize::new(0);
static ACTIVE: AtomicIsize = AtomicIsize::new(0);

pub fn note_mapped(delta: isize) {
    MAPPED.fetch_add(delta, Ordering::Relaxed);
}
pub fn note_resident(delta: isize) {
    RESIDENT.fetch_add(delta, Ordering::Relaxed);
}
pub fn note_active(delta: isize) {
    ACTIVE.fetch_add(delta, Ordering::Relaxed);
}

/// Mapped, resident and active bytes now.
pub fn read() -> (isize, isize, isize) {
    (
        MAPPED.load(Ordering::Relaxed),
        RESIDENT.load(Ordering::Relaxed),
        ACTIVE.load(Ordering::Relaxed),
    )
}
