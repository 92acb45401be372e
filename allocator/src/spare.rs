//! The spare slot: per size class up to [`SMALL_LOOKUP_MAX`] bytes, each
//! cache keeps the block its thread freed last, and hands it out again at
//! the next allocation of that class.
//!
//! A block in the slot has not gone back to its slab: it still counts as
//! live there and stays charged to the slab's group. So putting it there
//! reads no block metadata and touches no reserve; the sizes come from the
//! layout the caller passes (a size class is a function of the size). Only
//! taking it out reads the slab, to check that it is one of this cache's
//! and of the class asked for: then it is handed out as it is, its charge
//! unchanged. A block of another
//! cache, thread or released slab (a bad free) goes down the full free
//! path instead, which credits its own group, or aborts.
//!
//! What this holds back is at most one block per class up to 1 KiB (about
//! 6.5 KiB) per thread and group, given back at the class's next
//! allocation, by `flush`, `purge`, when the cache is dropped, and when the
//! thread exits. The `checks` feature does without it, so that every free
//! is checked when it happens.

use crate::cache::{class_list, Cache};
use crate::segment::{self, KIND_SMALL};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// The slot of a cache that takes no blocks: the placeholder's, which is
/// shared and never written, and a cache being torn down.
pub const CLOSED: *mut u8 = core::ptr::without_provenance_mut(1);

/// The spare block of `class` if it is one of `cache`'s, taken out of the
/// slot; null when there is none (a block that is not the cache's is freed
/// on the full path first).
///
/// # Safety
/// `cache` is the calling thread's current cache (or the placeholder's);
/// `class < NUM_CLASSES`.
#[inline(always)]
pub unsafe fn take(cache: *mut Cache, class: usize) -> *mut u8 {
    // SAFETY: owner-only access to the slot; a block in it is one the
    // caller's thread freed and nobody else can reach, so its segment and
    // slab are mapped.
    unsafe {
        let cl = class_list(cache, class);
        let b = (*cl).spare;
        if b as usize <= CLOSED as usize {
            return null_mut();
        }
        (*cl).spare = null_mut();
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

/// Puts `ptr`, freed with a layout of class `class`, in the slot; false
/// when the slot is taken (or closed) and the block must take the full
/// path. Aborts when the slot already holds `ptr`: a double free.
///
/// # Safety
/// As for [`take`]; `ptr` is a live block of at least `class`'s size
/// (a block shrunk in place may be of a larger class).
#[inline(always)]
pub unsafe fn put(cache: *mut Cache, class: usize, ptr: *mut u8) -> bool {
    // SAFETY: owner-only access to the slot.
    unsafe {
        let cl = class_list(cache, class);
        let s = (*cl).spare;
        if s.is_null() {
            (*cl).spare = ptr;
            return true;
        }
        if s == ptr {
            crate::bad_free(true);
        }
        false
    }
}

/// Frees a block out of a slot on the full path.
#[cold]
#[inline(never)]
unsafe fn give_back(b: *mut u8) {
    // SAFETY: the block was freed by the caller's thread and kept since.
    unsafe { crate::free(b) }
}

/// Gives every spare block of `cache` back to its slab (and its group the
/// bytes); the slots stay open when `open`, else they are closed.
///
/// # Safety
/// Owner thread only, while its heap is still the thread's current one (so
/// the full free path finds its own slabs).
pub unsafe fn flush(cache: *mut Cache, open: bool) {
    // SAFETY: owner-only access to the slots.
    unsafe {
        for class in 0..crate::size_class::NUM_CLASSES {
            let cl = class_list(cache, class);
            let b = (*cl).spare;
            (*cl).spare = if open { null_mut() } else { CLOSED };
            if b as usize > CLOSED as usize {
                give_back(b);
            }
        }
    }
}
