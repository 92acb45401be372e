//! The free path, top to bottom: the segment header (one mask) tells a
//! small block from a large one; the slab descriptor (a mask and an index)
//! tells whether the slab is on the thread's current cache's lists. If so
//! the block goes on the slab's local free list and its bytes back to the
//! reserve; a shared slab's block is credited to the group its owner tag
//! names. A block of another thread's slab is credited to its group at
//! once and travels to the owner in a batch (see `remote`).

use crate::cache::{self, Cache};
use crate::group::{self, GroupNode};
use crate::heap::{self, Heap};
use crate::layout::{self, Block, KIND_LARGE, KIND_SMALL};
use crate::segment::{self, Segment};
use crate::slab::{self, Slab, SPAN_SLAB};
use crate::{large, os};
use core::sync::atomic::Ordering;

/// Frees any block this allocator handed out. `ALIGNED`: the block is of a
/// class with aligned slabs (its layout says so).
///
/// # Safety
/// `ptr` is a live block of this allocator.
#[inline(always)]
pub unsafe fn free<const ALIGNED: bool>(ptr: *mut u8) {
    let head = layout::head_of(ptr);
    #[cfg(feature = "checks")]
    if !crate::ownership::owns(head as usize) {
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
        if (*s).cache.load(Ordering::Relaxed).cast::<Cache>() != c {
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
    s: *mut Slab,
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
        if !(*s).tags().is_null() {
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
            local_free_slow(heap::current(), s, (*s).owner);
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
unsafe fn tagged_free(s: *mut Slab, b: *mut Block, cache: *mut cache::Cache) {
    // SAFETY: as in `local_free`; the tag of a live block was written when
    // it was handed out.
    unsafe {
        #[cfg(feature = "checks")]
        slab::check_free(s, b);
        let tag = slab::tag_at((*s).tags(), slab::block_index(s, b.cast()));
        let first = (*s).free;
        slab::link(s, b, first);
        (*s).free = b;
        let rel = (*s).used_rel - 1;
        (*s).used_rel = rel;
        if (rel < 0) | cache.is_null() || tag != (*cache).tag {
            return tagged_free_slow(s, tag);
        }
        cache::credit(cache, (*s).block_size as usize);
    }
}

/// [`local_free_slow`] for a block of a shared slab whose tag is `tag`. A
/// function of its own so that [`tagged_free`]'s common case calls nothing
/// and keeps no stack frame.
///
/// # Safety
/// As for [`local_free_slow`]; `tag` was the block's tag.
#[cold]
#[inline(never)]
unsafe fn tagged_free_slow(s: *mut Slab, tag: u32) {
    // SAFETY: the caller's contract; a live block's tag names a group
    // that its charge keeps alive.
    unsafe { local_free_slow(heap::current(), s, group::node_at(tag)) }
}

/// A free into a slab that is not on the current cache's lists: another
/// cache of this thread's, an orphan of this thread's, or another
/// thread's.
///
/// # Safety
/// `b` is a live block of slab `s` in segment `seg`, not on the current cache's lists.
#[inline(never)]
unsafe fn free_other(seg: *mut Segment, s: *mut Slab, b: *mut Block) {
    // SAFETY: the block is live, so its slab and segment are.
    unsafe {
        let h = heap::current();
        if (*seg).thread_id.load(Ordering::Relaxed) == h as usize {
            let c = (*s).cache.load(Ordering::Relaxed).cast::<Cache>();
            local_free::<true>(s, b, c);
            // Not the current cache: a dedicated one keeps no more than a
            // thread keeps for a group it is not allocating in.
            heap::trim_away_cache(h, c);
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

/// A free by a thread that does not own the slab: the group is credited
/// now, and the block joins this thread's outbox for the owner (see
/// `remote`).
///
/// # Safety
/// `h` is the calling thread's heap (or the placeholder), which does not own `seg`; `b` is a live
/// block of slab `s` in `seg`.
// Inlined, with `heap::free_remote` and `remote::add`, into `free_other`:
// every free of a consumer thread comes here, and their calls and frames
// were a third of its instructions.
#[inline(always)]
unsafe fn remote_free(h: *mut heap::Heap, seg: *mut Segment, s: *mut Slab, b: *mut Block) {
    // SAFETY: the block is live until pushed, so the slab and segment are;
    // nothing of them is touched after the push.
    unsafe {
        // Credit the slab's group before the push: after it, the owner may
        // release the slab and with it the group reference.
        if (*s).state != SPAN_SLAB {
            bad_free(false);
        }
        let h = heap::heap_for_remote_free(h);
        let bytes = (*s).block_size as usize;
        let owner = slab::owner_of(s, b.cast());
        if !heap::is_placeholder(h) && (*h).group == owner {
            cache::credit((*h).current, bytes);
        } else {
            heap::credit_later(h, owner, bytes);
        }
        heap::free_remote(h, seg, b);
    }
}

/// A local free whose slab is full, orphaned, or emptied (and not the
/// allocation head); the block, whose group is `owner`, is already on the
/// slab's free list.
///
/// # Safety
/// Owner thread only; `s` is a slab in one of this thread's segments.
#[inline(never)]
unsafe fn local_free_slow(heap: *mut Heap, s: *mut Slab, owner: *mut GroupNode) {
    // SAFETY: owner-only access to the slab and its cache's lists.
    unsafe {
        let bs = (*s).block_size as usize;
        let cache = (*s).cache.load(Ordering::Relaxed).cast::<Cache>();
        if cache.is_null() {
            heap::credit_later(heap, owner, bs);
        } else if (*s).tags().is_null() {
            cache::credit(cache, bs);
        } else {
            heap::credit_group(heap, owner, bs);
        }
        cache::after_free(s);
    }
}
