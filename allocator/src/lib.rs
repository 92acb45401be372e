//! memcg-alloc: the slab engine of memcg.
//!
//! An allocation walks `lib` (this file: the `GlobalAlloc` face) -> `alloc`
//! -> `heap` (the thread's heap) -> `cache` (the thread's front for its
//! group) -> `slab`; a free walks `lib` -> `free` -> `segment` (mask and
//! index) -> `slab` -> `group` (the owner a shared slab's tag names), and on
//! to the owning thread's lists or, in a batch, its segment's inbox
//! (`remote`). Large blocks are
//! direct mappings (`large`). Memory comes from `os` only; metadata from
//! the allocator's own mappings (`meta_pool`), never from the global
//! allocator. `docs/INTERNALS.md` gives the layers and the invariants.
#![deny(unsafe_op_in_unsafe_fn)]

mod alloc;
mod atomic_stack;
mod cache;
mod counters;
mod death_log;
mod env_settings;
mod exit_report;
mod first_use;
mod free;
mod group;
pub mod groups;
mod heap;
mod hint;
mod large;
mod large_cache;
mod layout;
mod magazine;
mod meta_pool;
mod os;
#[cfg(feature = "checks")]
mod ownership;
mod pending_credit;
mod remote;
mod root_charge;
mod segment;
mod size_class;
mod slab;
mod stats;

use alloc::{alloc_any, alloc_small};
use core::alloc::{GlobalAlloc, Layout};
use free::free;
use layout::KIND_SMALL;
use size_class::{class_of, small_class, MAX_SMALL, SMALL_LOOKUP_MAX};

pub use stats::{alloc_stats, AllocStats};

/// The allocator: install it with
/// `#[global_allocator] static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();`.
///
/// It holds no state itself (all state is per thread and per segment), so
/// any number of instances share one heap per thread.
pub struct SlabAlloc {
    _private: (),
}

impl SlabAlloc {
    /// Creates the allocator; usable in a `static`.
    pub const fn new() -> Self {
        SlabAlloc { _private: () }
    }
}

impl Default for SlabAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks are handed out once until freed, sized and aligned as the
// layout asks (size classes and large mappings guarantee both), and the
// allocator never unwinds (no code path here panics; failures return null).
unsafe impl GlobalAlloc for SlabAlloc {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if layout.align() <= 8 {
            // Nested tests, not `&&`: each is one compare and branch.
            let class = if size <= SMALL_LOOKUP_MAX {
                small_class(size)
            } else if size <= MAX_SMALL {
                // Out of the small sizes' straight line (one jump more for
                // these, one less for the commonest).
                crate::hint::cold_path();
                class_of(size)
            } else {
                return alloc_any(size, 8, false);
            };
            // SAFETY: as in `alloc_any`.
            return unsafe { alloc_small(heap::current_cache(), class) };
        }
        alloc_any(size, layout.align(), false)
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a live block of ours with its layout. A
        // request of at most SMALL_LOOKUP_MAX bytes with an alignment of at
        // most that (one test: the alignment is a power of two) gets a
        // block of at most that, and a block shrunk in place to it one of at
        // most twice that: in either case one with an aligned slab.
        unsafe {
            if (layout.size() | layout.align()) <= SMALL_LOOKUP_MAX {
                free::<true>(ptr)
            } else {
                free::<false>(ptr)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc_any(layout.size(), layout.align(), true)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a live block of ours with its layout,
        // and a new size that makes a valid layout with the same alignment.
        unsafe {
            let head = layout::head_of(ptr);
            if (*head).kind == KIND_SMALL {
                let s = segment::slab_of(head.cast(), ptr);
                let bs = (*s).block_size as usize;
                if new_size <= bs && new_size >= bs / 2 {
                    return ptr;
                }
            } else if new_size > MAX_SMALL {
                let p = large::realloc(head.cast(), new_size, alloc::charge_mode(heap::current()));
                if !p.is_null() {
                    return p;
                }
            }
            let new = alloc_any(new_size, layout.align(), false);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                free::<false>(ptr);
            }
            new
        }
    }
}

/// Usable bytes of a live block (at least what was asked for).
///
/// # Safety
/// `ptr` is a live block returned by [`SlabAlloc`].
pub unsafe fn usable_size(ptr: *const u8) -> usize {
    let ptr = ptr as *mut u8;
    // SAFETY: as in `free`.
    unsafe {
        let head = layout::head_of(ptr);
        if (*head).kind == KIND_SMALL {
            (*segment::slab_of(head.cast(), ptr)).block_size as usize
        } else {
            large::usable(head.cast())
        }
    }
}

/// Gives free memory back to the OS now: this thread's empty slabs and
/// free pages, abandoned threads' free memory, and unused segments. Other
/// threads give back theirs at their next allocation slow path.
pub fn purge() {
    heap::purge_all();
}

/// Sets how long freed memory waits before its pages go back to the OS
/// (default 10 ms); 0 gives them back at the next chance.
pub fn set_purge_delay_ms(ms: u64) {
    first_use::ensure();
    heap::set_purge_delay_ms(ms);
}
