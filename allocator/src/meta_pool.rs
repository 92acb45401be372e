//! Fixed-size records for the allocator's own metadata (thread heaps, and
//! later per-group records), carved from the allocator's own mappings.
//!
//! Records are never unmapped, so a freed record may be read (never written)
//! by a racing thread without faulting; every chunk stays listed, so all
//! records ever made can be walked (for statistics).

use crate::atomic_stack::{AtomicStack, Link};
use crate::os;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

const CHUNK_SIZE: usize = 256 * 1024;

#[repr(C)]
struct Chunk {
    next: *mut Chunk,
    slots: usize,
}

/// A pool of records of one size (at least a [`Link`], a multiple of 64).
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
        let chunk_size = CHUNK_SIZE.max(self.slot_size * 4 + 64);
        let mem = os::map(chunk_size);
        if mem.is_null() {
            return null_mut();
        }
        crate::counters::note_mapped(chunk_size as isize);
        let chunk = mem.cast::<Chunk>();
        let first = Self::first_slot(chunk);
        let slots = (mem as usize + chunk_size - first) / self.slot_size;
        // SAFETY: `chunk` is a fresh mapping of at least a page, owned here.
        unsafe {
            (*chunk).slots = slots;
        }
        for i in 1..slots {
            // SAFETY: slot i lies inside the fresh chunk and is unused.
            unsafe { self.free.push((first + i * self.slot_size) as *mut Link) };
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

    /// Calls `f` on every record ever handed out or still free.
    pub fn for_each_slot(&self, mut f: impl FnMut(*mut u8)) {
        let mut c = self.chunks.load(Ordering::Acquire);
        while !c.is_null() {
            let first = Self::first_slot(c);
            // SAFETY: chunks are never unmapped and `slots`/`next` were set
            // before the chunk was published with Release.
            let (slots, next) = unsafe { ((*c).slots, (*c).next) };
            for i in 0..slots {
                f((first + i * self.slot_size) as *mut u8);
            }
            c = next;
        }
    }
}
