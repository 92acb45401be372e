//! The root group's charge, kept per thread.
//!
//! Every charge walks up to the root, so a single atomic counter for the
//! root would be one cache line that every thread's refills and trims
//! write. Instead each thread with a heap adds to a slot of its own with
//! plain stores; a thread without one (and an exiting thread's remainder)
//! adds to a shared atomic. The root's `current` is the sum, read only for
//! statistics: exact at rest, a moment's mix while threads allocate.

use crate::atomic_stack::Link;
use crate::meta_pool::MetaPool;
use core::cell::Cell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// One thread's share of the root's charge.
#[repr(C)]
struct Slot {
    /// The pool's free-list link while the slot is free.
    _link: Link,
    /// Written by its thread only (load and store), read by any.
    value: AtomicIsize,
    /// Counted in [`total`].
    live: AtomicBool,
}

static SLOTS: MetaPool = MetaPool::new(core::mem::size_of::<Slot>());
/// Charges of threads without a slot, and what exited threads left.
static SHARED: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static MINE: Cell<*mut Slot> = const { Cell::new(null_mut()) };
}

/// Adds `delta` bytes (negative: takes back) to the root's charge.
#[inline]
pub fn add(delta: isize) {
    let s = MINE.with(|m| m.get());
    if s.is_null() {
        SHARED.fetch_add(delta, Ordering::Relaxed);
    } else {
        // SAFETY: the slot is this thread's until `retire`; only this thread
        // writes it.
        let v = unsafe { &(*s).value };
        v.store(v.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    }
}

/// Gives the calling thread a slot (its heap is being made); quietly keeps
/// using the shared counter when out of memory.
pub fn register() {
    if !MINE.with(|m| m.get()).is_null() {
        return;
    }
    let s = SLOTS.alloc().cast::<Slot>();
    if s.is_null() {
        return;
    }
    // SAFETY: a pool record is ours until freed.
    unsafe {
        core::ptr::write(
            s,
            Slot {
                _link: Link {
                    next: core::sync::atomic::AtomicPtr::new(null_mut()),
                },
                value: AtomicIsize::new(0),
                live: AtomicBool::new(true),
            },
        );
    }
    MINE.with(|m| m.set(s));
}

/// Folds the calling thread's slot into the shared counter and frees it
/// (its heap is going).
pub fn retire() {
    let s = MINE.with(|m| m.replace(null_mut()));
    if s.is_null() {
        return;
    }
    // SAFETY: the slot was this thread's; after `live` is cleared no sum
    // reads it, and the pool keeps freed records mapped.
    unsafe {
        let v = (*s).value.swap(0, Ordering::Relaxed);
        SHARED.fetch_add(v, Ordering::Relaxed);
        (*s).live.store(false, Ordering::Release);
        SLOTS.free(s.cast());
    }
}

/// The root's charge: the shared counter plus every live slot.
pub fn total() -> isize {
    let mut sum = SHARED.load(Ordering::Relaxed);
    SLOTS.for_each_slot(|p| {
        let s = p.cast::<Slot>();
        // SAFETY: pool records are never unmapped; only atomics are read.
        unsafe {
            if (*s).live.load(Ordering::Acquire) {
                sum += (*s).value.load(Ordering::Relaxed);
            }
        }
    });
    sum
}
