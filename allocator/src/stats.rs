//! Allocator-wide statistics (what jemalloc's `stats.*` give).
//!
//! Mapped, resident and active bytes move on slow paths only (slab and
//! segment changes), so they are global atomics. Allocated bytes are what
//! the root group is charged, less the reserves threads hold.

use core::fmt;

/// Allocator-wide statistics, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Bytes in live blocks: the size class of each small block, the
    /// page-rounded size of each large one.
    pub allocated: usize,
    /// Bytes in slabs in use (holding or ready to hand out blocks) plus large
    /// blocks: what `allocated` needs, with its fragmentation.
    pub active: usize,
    /// Bytes of mapped memory that may be backed by physical pages: active
    /// memory, free memory not yet purged, and the allocator's headers.
    pub resident: usize,
    /// Bytes mapped from the OS, including the allocator's own metadata.
    pub mapped: usize,
}

fn clamp(v: isize) -> usize {
    v.max(0) as usize
}

/// The allocator's statistics now. Counts held by other threads are read
/// without stopping them, so figures taken while threads allocate are
/// approximate; at rest they are exact.
pub fn alloc_stats() -> AllocStats {
    // Every block is charged to a group and so to the root; reserves are
    // charged but not handed out.
    // SAFETY: the root node is a static.
    let charged = unsafe { (*crate::group::root()).current() } as isize;
    let allocated = charged - crate::heap::reserves_in_live_caches();
    let (mapped, resident, active) = crate::counters::read();
    AllocStats {
        allocated: clamp(allocated),
        active: clamp(active),
        resident: clamp(resident),
        mapped: clamp(mapped),
    }
}

impl fmt::Display for AllocStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "allocated {}", self.allocated)?;
        writeln!(f, "active {}", self.active)?;
        writeln!(f, "resident {}", self.resident)?;
        write!(f, "mapped {}", self.mapped)
    }
}
