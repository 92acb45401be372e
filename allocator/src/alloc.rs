//! The allocation path, top to bottom: a small request takes a block from
//! the thread's current cache (one pop, one add to the reserve's running
//! total, and for a shared slab one owner tag); when the head slab is empty
//! or the reserve short, the slow path tops up the reserve, moves to the
//! next slab, collects remote frees, or makes a new slab. Large requests
//! are mappings of their own, charged at once.

use crate::cache::{self, Cache};
use crate::group::ChargeMode;
use crate::size_class::{class_for, class_size};
use crate::slab::{self, Slab};
use crate::{heap, large, magazine, segment};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Allocates a block for any layout; null when it cannot be had.
#[inline(never)]
pub fn alloc_any(size: usize, align: usize, zero: bool) -> *mut u8 {
    match class_for(size, align) {
        Some(class) => {
            let c = heap::current_cache();
            // SAFETY: `c` is this thread's current cache (or the
            // placeholder's); class < NUM_CLASSES.
            unsafe {
                if zero {
                    alloc_zeroed(c, class)
                } else {
                    alloc_small(c, class)
                }
            }
        }
        None => alloc_large(size, align, zero),
    }
}

/// Allocates a block of `class`: the fast path.
///
/// # Safety
/// `cache` is the calling thread's current cache (or the placeholder's),
/// `class < NUM_CLASSES`.
#[inline(always)]
pub unsafe fn alloc_small(cache: *mut Cache, class: usize) -> *mut u8 {
    // SAFETY: owner-only access to the cache and its head slab; the
    // placeholder's head is the empty sentinel, whose `free` is null, so it
    // is never written.
    unsafe {
        let cl = cache::class_list(cache, class);
        let s = (*cl).head;
        let b = (*s).free;
        // The class list, not the slab, gives the size: one load less on
        // the chain through the slab. Both tests in one branch.
        let t = (*cache).taken.load(Ordering::Relaxed) + (*cl).size;
        if b.is_null() | (t > (*cache).take_limit) {
            crate::hint::cold_path();
            return alloc_slow(cache, class).0;
        }
        (*cache).taken.store(t, Ordering::Relaxed);
        let next = slab::next_of(s, b);
        (*s).free = next;
        // The next allocation of the class reads `next`'s link: start its
        // load now, so a free list of cold blocks (freed long ago, or by
        // another core) does not stall every allocation on a miss.
        crate::hint::prefetch(next);
        (*s).used_rel += 1;
        // Only a shared slab has tags (and only a group's allocations use
        // one): the root's and dedicated slabs never take this branch. The
        // tag is written out of line: inlined here, it crashes the LLVM of
        // rustc 1.95 (its module inliner, in the thin local LTO of a
        // release build with several codegen units; one unit, or LTO off,
        // builds) in programs that call the allocator through
        // `&dyn GlobalAlloc`, such as `benches/compare.rs`. Reading the
        // block size from the size table instead of the class list above
        // crashes it the same way.
        // Returning the callee's result makes the call a jump: the fast
        // path keeps no stack frame.
        if !(*s).tags().is_null() {
            return tag_block(s, b.cast(), (*cache).tag);
        }
        b.cast()
    }
}

/// Records the owner of a block just handed out from a shared slab, and
/// returns the block.
///
/// # Safety
/// `s` is a shared slab of the calling thread and `b` a block of it just handed out.
#[inline(never)]
unsafe fn tag_block(s: *mut Slab, b: *mut u8, tag: u32) -> *mut u8 {
    // SAFETY: the caller passes a shared slab and one of its blocks.
    unsafe { slab::set_tag(s, b, tag) };
    b
}

/// Allocates a zeroed block of `class`; a block carved from memory fresh
/// from the OS is cleared only where the free list wrote.
///
/// # Safety
/// As for [`alloc_small`].
pub unsafe fn alloc_zeroed(cache: *mut Cache, class: usize) -> *mut u8 {
    // SAFETY: as in `alloc_small`; the block is ours to write once popped.
    unsafe {
        let s = (*cache::class_list(cache, class)).head;
        let b = (*s).free;
        let t = (*cache).taken.load(Ordering::Relaxed) + class_size(class);
        let (p, zero) = if !b.is_null() && t <= (*cache).take_limit {
            (*cache).taken.store(t, Ordering::Relaxed);
            (*s).free = slab::next_of(s, b);
            (*s).used_rel += 1;
            if !(*s).tags().is_null() {
                slab::set_tag(s, b.cast(), (*cache).tag);
            }
            (b.cast::<u8>(), false)
        } else {
            alloc_slow(cache, class)
        };
        if !p.is_null() {
            let len = if zero {
                core::mem::size_of::<usize>()
            } else {
                class_size(class)
            };
            core::ptr::write_bytes(p, 0, len);
        }
        p
    }
}

/// The slow path: charge the reserve, refill the head slab, move on to the
/// next, or make a new one. Returns the block and whether it reads as zero
/// past its first word.
///
/// # Safety
/// As for [`alloc_small`].
#[inline(never)]
unsafe fn alloc_slow(cache: *mut Cache, class: usize) -> (*mut u8, bool) {
    // SAFETY: owner-only access to the thread's heap and magazines; the
    // placeholder's magazines are null.
    unsafe {
        let heap = heap::current();
        // Blocks other threads freed come back first (see `magazine`): in a
        // producer/consumer pair that is every allocation of the producer,
        // so this comes before the rest of the slow path and its frame.
        let b = magazine::take((*heap).magazines, &raw mut (*heap).root, cache, class, true);
        if !b.is_null() {
            return (b, false);
        }
        alloc_refill(heap, cache, class)
    }
}

/// The slow path past the magazines: see [`alloc_slow`].
///
/// # Safety
/// As for [`alloc_small`]; `heap` is the calling thread's heap (or the
/// placeholder).
#[inline(never)]
unsafe fn alloc_refill(heap: *mut heap::Heap, cache: *mut Cache, class: usize) -> (*mut u8, bool) {
    // SAFETY: owner-only access to the thread's heap, cache and slabs.
    unsafe {
        if heap::is_placeholder(heap) {
            // The placeholder: this thread's first allocation (and maybe
            // the process's: the environment's settings come first).
            crate::first_use::ensure();
            let h = heap::init_thread();
            if h.is_null() {
                return (null_mut(), false);
            }
            return alloc_slow((*h).current, class);
        }
        // A group that allocates this much from the shared slabs in one
        // stretch on this thread gets slabs of its own here: its objects
        // fill whole slabs, and its fast paths become the root's.
        if (*cache).tagged && (*cache).taken.load(Ordering::Relaxed) > cache::PROMOTE_AFTER {
            let d = heap::promote(heap);
            if !d.is_null() {
                return alloc_slow(d, class);
            }
        }
        // Blocks other threads sent back are taken in at the first slow
        // path after, not only when a list runs dry: slabs they empty go
        // back, and their memory serves every class again.
        if heap::remote_pending(heap) {
            heap::collect_remote_frees(heap);
        }
        if !cache::reserve_for(cache, class_size(class), (*heap).fallible > 0) {
            return (null_mut(), false);
        }
        loop {
            // The reserve holds the block's bytes now.
            let b = magazine::take(
                (*heap).magazines,
                &raw mut (*heap).root,
                cache,
                class,
                false,
            );
            if !b.is_null() {
                return (b, false);
            }
            let (b, zero) = cache::pop_block(cache, class);
            if !b.is_null() {
                return (b, zero);
            }
            if heap::collect_remote_frees(heap) && cache::has_head(cache, class) {
                continue;
            }
            if heap::reuse_slab(heap, cache, class) {
                continue;
            }
            let s = heap::new_slab(heap, cache, class);
            if s.is_null() {
                return (null_mut(), false);
            }
            if !slab::init(s, class, cache.cast(), (*cache).node, (*cache).tagged) {
                segment::release_span(s);
                return (null_mut(), false);
            }
            cache::add_slab(cache, class, s);
        }
    }
}

/// A large block charged to the thread's group.
fn alloc_large(size: usize, align: usize, zero: bool) -> *mut u8 {
    let mut h = heap::current();
    if heap::is_placeholder(h) {
        crate::first_use::ensure();
        h = heap::init_thread();
    }
    if h.is_null() {
        return null_mut();
    }
    // SAFETY: `h` is this thread's heap; its group is live while current.
    unsafe { large::alloc(size, align, zero, (*h).group, charge_mode(h)) }
}

/// How the thread's charges treat limits now.
///
/// # Safety
/// `h` is the calling thread's heap or the placeholder.
pub unsafe fn charge_mode(h: *mut heap::Heap) -> ChargeMode {
    // SAFETY: the placeholder's `fallible` is 0 and never written.
    if unsafe { (*h).fallible } > 0 {
        ChargeMode::Fallible
    } else {
        ChargeMode::Normal
    }
}
