//! memcg-alloc: the slab engine (temporary stub forwarding to the system allocator).
use core::alloc::{GlobalAlloc, Layout};

/// The global allocator.
pub struct SlabAlloc;

impl SlabAlloc {
    /// Creates the allocator; usable in a `static`.
    pub const fn new() -> Self {
        SlabAlloc
    }
}

impl Default for SlabAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: stub forwarding to System.
unsafe impl GlobalAlloc for SlabAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// Allocator-wide statistics, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Bytes in live objects (size-class rounded) and live large blocks.
    pub allocated: usize,
    /// Bytes in slabs that hold at least one live object, plus large blocks.
    pub active: usize,
    /// Bytes of mapped memory not returned to the OS.
    pub resident: usize,
    /// Bytes mapped from the OS.
    pub mapped: usize,
}

/// Allocator statistics now.
pub fn alloc_stats() -> AllocStats {
    AllocStats::default()
}

/// Returns empty slabs and segments to the OS now.
pub fn purge() {}

/// The usable size of a block returned by [`SlabAlloc`].
///
/// # Safety
/// `ptr` must be a live block returned by the global [`SlabAlloc`].
pub unsafe fn usable_size(_ptr: *const u8) -> usize {
    0
}
