//! memcg-alloc: the slab engine of memcg.
//!
//! An allocation walks `lib` (this file: the `GlobalAlloc` face) -> `heap`
//! (the thread's heap) -> `cache` (one thread, one group) -> `slab`; a free
//! walks `lib` -> `segment` (mask and index) -> `slab`, and on to its owning
//! thread's lists or its atomic remote list. Large blocks are direct
//! mappings (`large`). Memory comes from `os` only; metadata from the
//! allocator's own mappings (`meta_pool`), never from the global allocator.
#![deny(unsafe_op_in_unsafe_fn)]

mod atomic_stack;
mod cache;
mod counters;
mod group;
pub mod groups;
mod heap;
mod hint;
mod large;
mod large_cache;
mod layout;
mod meta_pool;
mod os;
#[cfg(feature = "checks")]
mod ownership;
mod root_charge;
mod segment;
mod size_class;
mod slab;
mod stats;

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::Ordering;
use group::GroupNode;
use layout::{Block, KIND_LARGE, KIND_SMALL};
use segment::Segment;
use size_class::{class_for, class_of, small_class, MAX_SMALL, SMALL_LOOKUP_MAX};
use slab::SPAN_SLAB;

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

/// Allocates a block for any layout; null when it cannot be had.
#[inline(never)]
fn alloc_any(size: usize, align: usize, zero: bool) -> *mut u8 {
    match class_for(size, align) {
        Some(class) => {
            let c = heap::current_cache();
            // SAFETY: `c` is this thread's current cache (or the
            // placeholder's); class < NUM_CLASSES.
            unsafe {
                if zero {
                    cache::alloc_zeroed(c, class)
                } else {
                    cache::alloc(c, class)
                }
            }
        }
        None => large::alloc(size, align, zero),
    }
}

/// Frees any block this allocator handed out. `ALIGNED`: the block is of a
/// class with aligned slabs (its layout says so).
///
/// # Safety
/// `ptr` is a live block of this allocator.
#[inline(always)]
unsafe fn free<const ALIGNED: bool>(ptr: *mut u8) {
    let head = layout::head_of(ptr);
    #[cfg(feature = "checks")]
    if !ownership::owns(head as usize) {
        os::fatal("memcg: free of a pointer this allocator does not own\n");
    }
    // SAFETY: every block lies in a segment or behind a large header, both
    // mapped while the block lives.
    unsafe {
        if (*head).kind != KIND_SMALL {
            if (*head).kind == KIND_LARGE && large::is_block(head.cast(), ptr) {
                return large::free(head.cast());
            }
            // A jump, not a call: the fast path keeps no stack frame.
            return reject_free(false);
        }
        let seg = head.cast::<Segment>();
        let s = if ALIGNED {
            segment::aligned_slab_of(seg, ptr)
        } else {
            segment::slab_of(seg, ptr)
        };
        let b = ptr.cast::<Block>();
        // A descriptor names a cache only while it is a live slab on that
        // cache's lists (a dropped cache's slabs, and released spans, are
        // cleared), and a cache's slabs are all its thread's. So one
        // compare with the thread's current cache stands for the ownership
        // and slab-state tests, and the cache to credit is known before
        // the slab is read.
        let c = heap::current_cache();
        if (*s).cache.load(Ordering::Relaxed).cast::<cache::Cache>() != c {
            crate::hint::cold_path();
            return free_other(seg, s, b);
        }
        local_free::<false>(s, b, c);
    }
}

/// Puts a block back on its slab, owned by this thread, and credits
/// `cache`, the slab's cache (or, for an orphan, null). A shared slab's
/// block goes to [`tagged_free`]. `CHECK_STATE` tests that the descriptor
/// is a live slab (the caller knows it otherwise).
///
/// # Safety
/// The calling thread owns the slab's segment; `b` is a live block of it.
#[inline(always)]
unsafe fn local_free<const CHECK_STATE: bool>(
    s: *mut slab::Slab,
    b: *mut Block,
    cache: *mut cache::Cache,
) {
    // SAFETY: owner-only access to the slab; the cache, when not null, is
    // the thread's.
    unsafe {
        let first = (*s).free;
        if b == first || (CHECK_STATE && (*s).state != SPAN_SLAB) {
            return reject_free(b == first);
        }
        // Only shared slabs have tags: a jump, so the root's free path
        // keeps no stack frame and pays one load and one branch.
        if !(*s).tags.is_null() {
            return tagged_free(s, b, cache);
        }
        #[cfg(feature = "checks")]
        slab::check_free(s, b);
        slab::link(s, b, first);
        (*s).free = b;
        let rel = (*s).used_rel - 1;
        (*s).used_rel = rel;
        // Slow only for a full or orphaned slab, or an emptied one that
        // is not the allocation head (an empty head is kept).
        if rel < 0 {
            crate::hint::cold_path();
            cache::local_free_slow(heap::current(), s, (*s).owner);
        } else {
            cache::credit(cache, (*s).block_size as usize);
        }
    }
}

/// [`local_free`] for a shared slab: the block's tag names its group; a
/// block of the group `cache` charges is credited there, any other on the
/// slow path.
///
/// # Safety
/// As for [`local_free`]; `s` has tags and `b` is not its free list's head.
#[inline(never)]
unsafe fn tagged_free(s: *mut slab::Slab, b: *mut Block, cache: *mut cache::Cache) {
    // SAFETY: as in `local_free`; the tag of a live block was written when
    // it was handed out.
    unsafe {
        #[cfg(feature = "checks")]
        slab::check_free(s, b);
        let tag = *(*s).tags.add(slab::block_index(s, b.cast()));
        let first = (*s).free;
        slab::link(s, b, first);
        (*s).free = b;
        let rel = (*s).used_rel - 1;
        (*s).used_rel = rel;
        if (rel < 0) | cache.is_null() || tag != (*cache).tag {
            cache::local_free_slow(heap::current(), s, group::node_at(tag));
        } else {
            cache::credit(cache, (*s).block_size as usize);
        }
    }
}

/// A free into a slab that is not on the current cache's lists: another
/// cache of this thread's, an orphan of this thread's, or another
/// thread's.
#[inline(never)]
unsafe fn free_other(seg: *mut Segment, s: *mut slab::Slab, b: *mut Block) {
    // SAFETY: the block is live, so its slab and segment are.
    unsafe {
        let h = heap::current();
        if (*seg).thread_id.load(Ordering::Relaxed) == h as usize {
            local_free::<true>(
                s,
                b,
                (*s).cache.load(Ordering::Relaxed).cast::<cache::Cache>(),
            );
        } else {
            remote_free(h, seg, s, b);
        }
    }
}

/// [`bad_free`] behind a call that returns `()`, so the fast path reaches it
/// by a jump and keeps no stack frame of its own.
#[cold]
#[inline(never)]
fn reject_free(double: bool) {
    bad_free(double)
}

/// Aborts on a free the allocator can tell is wrong.
#[cold]
#[inline(never)]
fn bad_free(double: bool) -> ! {
    if double {
        os::fatal("memcg: double free detected (block freed twice in a row)\n");
    }
    os::fatal("memcg: free of a pointer that is not a live block of this allocator\n");
}

/// A free by a thread that does not own the slab.
#[inline(never)]
unsafe fn remote_free(h: *mut heap::Heap, seg: *mut Segment, s: *mut slab::Slab, b: *mut Block) {
    // SAFETY: the block is live until pushed, so the slab and segment are;
    // nothing of them is touched after the push.
    unsafe {
        // Credit the slab's group before the push: after it, the owner may
        // release the slab and with it the group reference.
        if (*s).state != SPAN_SLAB {
            bad_free(false);
        }
        let bytes = (*s).block_size as usize;
        let owner = slab::owner_of(s, b.cast());
        if !heap::is_placeholder(h) && heap::current_node() == owner {
            cache::credit((*h).current, bytes);
        } else {
            GroupNode::uncharge(owner, bytes, true);
        }
        if !(*seg).has_remote.load(Ordering::Relaxed) {
            (*seg).has_remote.store(true, Ordering::SeqCst);
        }
        slab::push_remote(s, b);
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
            return unsafe { cache::alloc(heap::current_cache(), class) };
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
                let p = large::realloc(head.cast(), new_size);
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
    heap::set_purge_delay_ms(ms);
}
