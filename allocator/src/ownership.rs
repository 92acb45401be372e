//! Which segment-sized regions of the address space the allocator owns
//! (only with the `checks` feature): a bitmap with one bit per 4 MiB
//! region, set while a segment or a large block's header lives there, so a
//! free of a pointer from anywhere else is caught before its supposed
//! header is read.

use crate::layout::SEGMENT_SHIFT;
use crate::os;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// User-space addresses below 2^47 (x86-64 and 4-level arm64 page tables).
const ADDRESS_BITS: usize = 47;
const REGIONS: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);
const WORDS: usize = REGIONS / 64;

static MAP: AtomicPtr<AtomicU64> = AtomicPtr::new(null_mut());

fn map() -> *mut AtomicU64 {
    let m = MAP.load(Ordering::Acquire);
    if !m.is_null() {
        return m;
    }
    // Zero pages are only backed once written: 4 MiB of address space.
    let fresh = os::map(WORDS * 8).cast::<AtomicU64>();
    if fresh.is_null() {
        os::fatal("memcg: out of memory for the ownership map (checks)\n");
    }
    match MAP.compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => fresh,
        Err(won) => {
            // SAFETY: our mapping was never published.
            unsafe { os::unmap(fresh.cast(), WORDS * 8) };
            won
        }
    }
}

fn slot(addr: usize) -> Option<(*mut AtomicU64, u64)> {
    let region = addr >> SEGMENT_SHIFT;
    if region >= REGIONS {
        return None;
    }
    // SAFETY: region / 64 < WORDS, inside the map.
    Some((unsafe { map().add(region / 64) }, 1u64 << (region % 64)))
}

/// Marks the region holding `addr` as ours (`true`) or not.
pub fn set(addr: usize, owned: bool) {
    if let Some((w, bit)) = slot(addr) {
        // SAFETY: `w` points into the live map.
        let w = unsafe { &*w };
        if owned {
            w.fetch_or(bit, Ordering::Release);
        } else {
            w.fetch_and(!bit, Ordering::Release);
        }
    }
}

/// Whether the region holding `addr` is ours.
pub fn owns(addr: usize) -> bool {
    match slot(addr) {
        // SAFETY: `w` points into the live map.
        Some((w, bit)) => unsafe { (*w).load(Ordering::Acquire) & bit != 0 },
        None => false,
    }
}
