//! Fixed-size records for the allocator's own metadata (thread heaps, and
//! later per-group records), carved from the allocator's own mappings.
//!
//! Records are never unmapped, so a freed record may be read (never written)
//! by a racing thread without faulting; every chunk stays listed, so all
//! records ever made can be walked (for statistics). A chunk is carved one
//! record at a time, so only the pages of records handed out become
//! resident (a pool used for a few records costs a few pages, not a chunk).

use crate::atomic_stack::AtomicStack;
use crate::os;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

const CHUNK_SIZE: usize = 256 * 1024;

#[repr(C)]
struct Chunk {
    next: *mut Chunk,
    slots: usize,
    /// Slots handed out so far (may pass `slots` when threads race for the
    /// last; those past it do not exist).
    carved: AtomicUsize,
}

/// A pool of records of one size (at least a [`crate::atomic_stack::Link`], a
/// multiple of 64).
pub struct MetaPool {
    slot_size: usize,
    free: AtomicStack,
    chunks: AtomicPtr<Chunk>,
}

impl MetaPool {
    pub const fn new(slot_size: usize) -> Self {
        MetaPool {
            slot_size: (slot_size + 63) & !63,
            free: AtomicStack::new(),
            chunks: AtomicPtr::new(null_mut()),
        }
    }

    fn first_slot(chunk: *mut Chunk) -> usize {
        (chunk as usize + core::mem::size_of::<Chunk>() + 63) & !63
    }

    /// A record's memory (contents unspecified), or null when out of memory.
    pub fn alloc(&self) -> *mut u8 {
        let p = self.free.pop();
        if !p.is_null() {
            return p.cast();
        }
        let c = self.chunks.load(Ordering::Acquire);
        if !c.is_null() {
            // SAFETY: published chunks are never unmapped; their header was
            // written before the Release that published them.
            unsafe {
                let i = (*c).carved.fetch_add(1, Ordering::Relaxed);
                if i < (*c).slots {
                    return (Self::first_slot(c) + i * self.slot_size) as *mut u8;
                }
            }
        }
        let chunk_size = CHUNK_SIZE.max(self.slot_size * 4 + 64);
        let mem = os::map(chunk_size);
        if mem.is_null() {
            return null_mut();
        }
        crate::counters::note_mapped(chunk_size as isize);
        let chunk = mem.cast::<Chunk>();
        let first = Self::first_slot(chunk);
        let slots = (mem as usize + chunk_size - first) / self.slot_size;
        // SAFETY: `chunk` is a fresh mapping of at least a page, owned here;
        // slot 0 is ours, the rest are carved later.
        unsafe {
            (*chunk).slots = slots;
            (*chunk).carved = AtomicUsize::new(1);
        }
        let mut head = self.chunks.load(Ordering::Relaxed);
        loop {
            // SAFETY: the chunk is not yet published; we own it.
            unsafe { (*chunk).next = head };
            match self.chunks.compare_exchange_weak(
                head,
                chunk,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        first as *mut u8
    }

    /// Returns a record to the pool.
    ///
    /// # Safety
    /// `p` came from this pool's `alloc` and is no longer used.
    pub unsafe fn free(&self, p: *mut u8) {
        // SAFETY: the record is ours again and at least a Link in size.
        unsafe { self.free.push(p.cast()) }
    }

    /// Calls `f` on every record ever handed out (live or freed since).
    pub fn for_each_slot(&self, mut f: impl FnMut(*mut u8)) {
        let mut c = self.chunks.load(Ordering::Acquire);
        while !c.is_null() {
            let first = Self::first_slot(c);
            // SAFETY: chunks are never unmapped and `slots`/`next` were set
            // before the chunk was published with Release.
            let (slots, next) = unsafe {
                let carved = (*c).carved.load(Ordering::Relaxed);
                ((*c).slots.min(carved), (*c).next)
            };
            for i in 0..slots {
                f((first + i * self.slot_size) as *mut u8);
            }
            c = next;
        }
    }
}
