//! Kept blocks: per size class up to 1 KiB, each cache keeps the last
//! [`SLOTS`] blocks its thread freed, and hands them out again (last in,
//! first out) at the next allocations of that class. A stack rather than a
//! single slot, so that under a random mix of sizes "is there a kept
//! block" and "is there room" stay predictable branches.
//!
//! A kept block has not gone back to its slab: it still counts as live
//! there and stays charged to the slab's group. So keeping it reads no
//! block metadata and touches no reserve; the class comes from the layout
//! the caller passes. Only taking it out reads the slab, to check that it
//! is one of this cache's and of the class asked for: then it is handed
//! out as it is, its charge unchanged. A block of another cache, thread or
//! released slab (a bad free) goes down the full free path instead, which
//! credits its own group, or aborts.
//!
//! What this holds back is at most [`SLOTS`] blocks per class up to 1 KiB
//! (26,112 bytes) per thread and group, given back when found to be
//! another cache's, and all by `flush`, `purge`, before a charge would be
//! refused, when the cache is dropped, and when the thread exits. A free
//! that finds its class's stack full takes the full path. The `checks`
//! feature does without kept blocks, so that every free is checked when it
//! happens.

use crate::cache::{class_list, Cache};
use crate::segment::{self, KIND_SMALL};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Blocks kept per class.
pub const SLOTS: usize = 4;

/// `kept_n` of a cache that keeps no blocks: the placeholder's, which is
/// shared and never written, and a cache being torn down.
pub const CLOSED: u32 = u32::MAX;

/// The last kept block of `class` if it is one of `cache`'s, taken off the
/// stack; null when there is none (a block that is not the cache's is freed
/// on the full path first).
///
/// # Safety
/// `cache` is the calling thread's current cache (or the placeholder's);
/// `class < NUM_CLASSES`.
#[inline(always)]
pub unsafe fn take(cache: *mut Cache, class: usize) -> *mut u8 {
    // SAFETY: owner-only access to the stack; a block on it is one the
    // caller's thread freed and nobody else can reach, so its segment and
    // slab are mapped.
    unsafe {
        let cl = class_list(cache, class);
        let n = (*cl).kept_n;
        // 1..=SLOTS; an empty or closed stack wraps past it.
        if n.wrapping_sub(1) as usize >= SLOTS {
            return null_mut();
        }
        let top = (&raw mut (*cl).kept).cast::<*mut u8>().add(n as usize - 1);
        let b = *top;
        *top = null_mut();
        (*cl).kept_n = n - 1;
        let head = segment::head_of(b);
        if (*head).kind == KIND_SMALL {
            let s = segment::slab_of(head.cast(), b);
            // Of this cache, and of this very class: a block shrunk in place
            // to a smaller layout goes back instead, so a request always
            // gets its class's size.
            if (*s).cache.load(Ordering::Relaxed) == cache && (*s).class as usize == class {
                return b;
            }
        }
        crate::cold_path();
        give_back(b);
        null_mut()
    }
}

/// Pushes `ptr`, freed with a layout of class `class`, on the stack; false
/// when the stack is full or closed and the block must take the full path.
/// Aborts when the last kept block is `ptr`: a double free.
///
/// # Safety
/// As for [`take`]; `ptr` is a live block of at least `class`'s size
/// (a block shrunk in place may be of a larger class).
#[inline(always)]
pub unsafe fn put(cache: *mut Cache, class: usize, ptr: *mut u8) -> bool {
    // SAFETY: owner-only access to the stack. Slots past `kept_n` are null,
    // so the top slot as computed here (the last one for an empty or closed
    // stack) holds `ptr` only when `ptr` is kept already.
    unsafe {
        let cl = class_list(cache, class);
        let n = (*cl).kept_n as usize;
        let slots = (&raw mut (*cl).kept).cast::<*mut u8>();
        if *slots.add(n.wrapping_sub(1) & (SLOTS - 1)) == ptr {
            crate::bad_free(true);
        }
        if n < SLOTS {
            *slots.add(n) = ptr;
            (*cl).kept_n = n as u32 + 1;
            return true;
        }
        false
    }
}

/// Frees a kept block on the full path.
#[cold]
#[inline(never)]
unsafe fn give_back(b: *mut u8) {
    // SAFETY: the block was freed by the caller's thread and kept since.
    unsafe { crate::free(b) }
}

/// Gives every kept block of `cache` back to its slab (and its group the
/// bytes); the stacks stay open when `open`, else they are closed.
///
/// # Safety
/// Owner thread only, while its heap is still the thread's current one (so
/// the full free path finds its own slabs); `cache` is not the placeholder.
pub unsafe fn flush(cache: *mut Cache, open: bool) {
    // SAFETY: owner-only access to the stacks.
    unsafe {
        for class in 0..crate::size_class::NUM_CLASSES {
            let cl = class_list(cache, class);
            let n = (*cl).kept_n;
            (*cl).kept_n = if open { 0 } else { CLOSED };
            if n == CLOSED {
                continue;
            }
            let slots = (&raw mut (*cl).kept).cast::<*mut u8>();
            for i in 0..n as usize {
                let b = *slots.add(i);
                *slots.add(i) = null_mut();
                give_back(b);
            }
        }
    }
}
