//! What the workloads share: a checked heap block.

use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::ptr::NonNull;

const ALIGN: usize = 8;
const SIZE_BITS: u32 = 28;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;

/// A block of `size >= 8` bytes from the global allocator. Its first word
/// holds its size and a random tag, its last byte a copy of the tag's low
/// bits; both are checked when it is freed, so an allocator that hands out
/// overlapping or corrupted memory makes the workload panic (a non-zero exit
/// the runner reports) instead of printing a result.
#[derive(Debug)]
pub struct Blk {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a `Blk` owns its memory exclusively; the global allocator accepts
// frees from any thread.
unsafe impl Send for Blk {}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("block layout")
}

impl Blk {
    /// Allocates `size` bytes (at least 8, at most 256 MiB) tagged with `tag`.
    pub fn new(size: usize, tag: u64) -> Blk {
        let size = size.clamp(8, SIZE_MASK as usize);
        let l = layout(size);
        // SAFETY: `l` has a non-zero size.
        let p = unsafe { alloc(l) };
        let Some(ptr) = NonNull::new(p) else {
            handle_alloc_error(l)
        };
        let b = Blk { ptr, size };
        b.stamp(tag);
        b
    }

    fn stamp(&self, tag: u64) {
        let word = (tag << SIZE_BITS) | self.size as u64;
        // SAFETY: the block has at least 8 bytes and is 8-aligned; the last
        // byte is inside it, and past the first word when the size exceeds 8.
        unsafe {
            self.ptr.as_ptr().cast::<u64>().write(word);
            if self.size > 8 {
                self.ptr
                    .as_ptr()
                    .add(self.size - 1)
                    .write((word >> 56) as u8 ^ 0x5A);
            }
        }
    }

    /// The requested size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Verifies the stamps and returns the tag; panics on corruption.
    pub fn check(&self) -> u64 {
        // SAFETY: as in `stamp`.
        let (word, last) = unsafe {
            let word = self.ptr.as_ptr().cast::<u64>().read();
            let last = if self.size > 8 {
                self.ptr.as_ptr().add(self.size - 1).read()
            } else {
                (word >> 56) as u8 ^ 0x5A
            };
            (word, last)
        };
        if word & SIZE_MASK != self.size as u64 || (word >> 56) as u8 ^ 0x5A != last {
            panic!(
                "corrupt block at {:p}: size {} header {word:#x} last byte {last:#x}",
                self.ptr, self.size
            );
        }
        word >> SIZE_BITS
    }

    /// Resizes the block (through `realloc`), keeping the tag.
    pub fn resize(&mut self, new_size: usize) {
        let tag = self.check();
        let new_size = new_size.clamp(8, SIZE_MASK as usize);
        // SAFETY: `ptr` came from the global allocator with `layout(size)`;
        // `new_size` is non-zero and does not overflow when rounded to 8.
        let p = unsafe { realloc(self.ptr.as_ptr(), layout(self.size), new_size) };
        let Some(ptr) = NonNull::new(p) else {
            handle_alloc_error(layout(new_size))
        };
        self.ptr = ptr;
        self.size = new_size;
        self.stamp(tag);
    }

    /// Gives up ownership (the block leaks unless passed to `from_raw`).
    pub fn into_raw(self) -> *mut u8 {
        let p = self.ptr.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes back a block from `into_raw`.
    ///
    /// # Safety
    /// `p` must come from [`Blk::into_raw`] and be taken back once.
    pub unsafe fn from_raw(p: *mut u8) -> Blk {
        // SAFETY: the caller passes a live block; its first word holds its size.
        let word = unsafe { p.cast::<u64>().read() };
        let b = Blk {
            // SAFETY: `into_raw` pointers are never null.
            ptr: unsafe { NonNull::new_unchecked(p) },
            size: (word & SIZE_MASK) as usize,
        };
        b.check();
        b
    }
}

impl Drop for Blk {
    fn drop(&mut self) {
        self.check();
        // SAFETY: allocated by the global allocator with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), layout(self.size)) }
    }
}

/// Scales a default amount, keeping at least `min`.
pub fn scaled(base: f64, scale: f64, min: usize) -> usize {
    ((base * scale) as usize).max(min)
}

/// Splits `total` units of work among `threads`.
pub fn share(total: usize, threads: usize) -> usize {
    total.div_ceil(threads).max(1)
}
