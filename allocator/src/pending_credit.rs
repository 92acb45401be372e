//! Credits held back: bytes freed by a thread for a group it keeps no cache
//! for (another thread's block of a group this thread is not in, a block of
//! an orphaned slab), given to the group in batches instead of one
//! read-modify-write of the group's shared counters per block (the kernel's
//! per-CPU object stock plays the same part).
//!
//! A thread holds at most [`SLOTS`] groups' credits, each below the
//! caller's cap (`cache::saved_reserve_max()`, an eighth of a batch), so
//! with them a group reads at most `SLOTS x cap` per thread above its live
//! bytes, like the saved reserves they sit beside. Held bytes are still
//! charged, so they keep a dead group's record alive until handed over: at
//! the cap, when the slot is taken by another group, when the thread reads
//! the group's death from the death log, at `flush` and at thread exit.
//! Groups with a limit on their chain take no part (the caller credits them
//! at once), so a limit's slack is unchanged.
//!
//! The owner thread writes the slots; other threads only read them (the
//! allocator-wide figures subtract what is held), so they are atomics
//! accessed Relaxed.

use crate::group::GroupNode;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Groups whose credits a thread holds at once.
pub const SLOTS: usize = 8;

/// A thread's held credits: a direct-mapped table by the record's address.
#[repr(C)]
pub struct PendingCredits {
    node: [AtomicPtr<GroupNode>; SLOTS],
    bytes: [AtomicUsize; SLOTS],
}

impl PendingCredits {
    pub const fn new() -> PendingCredits {
        PendingCredits {
            node: [const { AtomicPtr::new(null_mut()) }; SLOTS],
            bytes: [const { AtomicUsize::new(0) }; SLOTS],
        }
    }

    fn slot_of(node: *mut GroupNode) -> usize {
        // Records are 64-byte slots of one table: consecutive groups take
        // consecutive slots.
        (node as usize >> 6) % SLOTS
    }

    /// Whether credits for `node` are held here now (so it was unlimited
    /// when they were taken: the caller need not look at its limits again).
    pub fn holds(&self, node: *mut GroupNode) -> bool {
        self.node[Self::slot_of(node)].load(Ordering::Relaxed) == node
    }

    /// Holds `bytes` freed for `node`, handing the slot's credits over when
    /// they pass `cap` or when another group had the slot.
    ///
    /// # Safety
    /// Owner thread only; `node` is charged at least `bytes` and is not the
    /// root.
    pub unsafe fn add(&self, node: *mut GroupNode, bytes: usize, cap: usize) {
        let i = Self::slot_of(node);
        let held = self.node[i].load(Ordering::Relaxed);
        if held == node {
            let b = self.bytes[i].load(Ordering::Relaxed) + bytes;
            if b > cap {
                self.clear(i);
                // SAFETY: `node` is charged for the bytes held and these.
                unsafe { GroupNode::uncharge(node, b, true) };
            } else {
                self.bytes[i].store(b, Ordering::Relaxed);
            }
            return;
        }
        // SAFETY: owner-only; the slot's group is charged for its bytes.
        unsafe { self.hand_over(i) };
        if bytes > cap {
            // SAFETY: as the caller promised.
            unsafe { GroupNode::uncharge(node, bytes, true) };
            return;
        }
        self.bytes[i].store(bytes, Ordering::Relaxed);
        self.node[i].store(node, Ordering::Relaxed);
    }

    fn clear(&self, i: usize) {
        self.node[i].store(null_mut(), Ordering::Relaxed);
        self.bytes[i].store(0, Ordering::Relaxed);
    }

    /// Gives slot `i`'s credits to its group.
    ///
    /// # Safety
    /// Owner thread only.
    unsafe fn hand_over(&self, i: usize) {
        let node = self.node[i].load(Ordering::Relaxed);
        if node.is_null() {
            return;
        }
        let b = self.bytes[i].load(Ordering::Relaxed);
        self.clear(i);
        // SAFETY: the group is charged for the bytes held for it (which
        // also keep its record alive until now).
        unsafe { GroupNode::uncharge(node, b, true) };
    }

    /// Gives the credits held for `node` (if any) to it.
    ///
    /// # Safety
    /// Owner thread only.
    pub unsafe fn hand_over_for(&self, node: *mut GroupNode) {
        if self.holds(node) {
            // SAFETY: the caller is the owner thread, the slots' only
            // writer, so the slot cannot change between the test and here.
            unsafe { self.hand_over(Self::slot_of(node)) };
        }
    }

    /// Gives every held credit to its group.
    ///
    /// # Safety
    /// Owner thread only.
    pub unsafe fn hand_over_all(&self) {
        for i in 0..SLOTS {
            // SAFETY: the caller is the owner thread, the slots' only
            // writer; each slot's group is charged for what it holds.
            unsafe { self.hand_over(i) };
        }
    }

    /// Bytes held now (read by any thread: approximate while the owner
    /// frees).
    pub fn held(&self) -> usize {
        self.bytes.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_one_group_and_its_bytes_below_the_cap() {
        let p = PendingCredits::new();
        assert_eq!(p.held(), 0);
        // Slots are picked by address only: no record is touched while the
        // bytes stay below the cap and no other group takes the slot.
        let a = (64 * SLOTS * 3) as *mut GroupNode;
        // SAFETY: nothing is handed over (below the cap, empty slot), so
        // the fake record is never read.
        unsafe {
            p.add(a, 100, 1000);
            p.add(a, 200, 1000);
        }
        assert!(p.holds(a));
        assert_eq!(p.held(), 300);
        let b = (64 * (SLOTS * 3 + 1)) as *mut GroupNode;
        assert!(!p.holds(b));
    }
}
