//! The log of recent group deaths: a ring of the last [`LOG`] dead groups'
//! record indexes, each stamped with its death's sequence number. A thread
//! reads the deaths it has not seen and drops its cache of each with one
//! set lookup, so a death costs every thread O(1), however many groups its
//! table holds. A thread that falls more than [`LOG`] deaths behind (or
//! meets a slot already overwritten) is told so and sweeps its whole table
//! instead, over its next calls.
//!
//! A slot is one `u64`: the low 32 bits of `sequence + 1` above the record
//! index, so a reader sees a whole entry or none, with no lock.

use core::sync::atomic::{AtomicU64, Ordering};

/// Deaths the ring remembers.
pub const LOG: u64 = 4096;

static NEXT: AtomicU64 = AtomicU64::new(0);
static SLOTS: [AtomicU64; LOG as usize] = [const { AtomicU64::new(0) }; LOG as usize];

/// What slot `seq` of the log holds for its reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// The record index of the group that died at `seq`.
    Index(u32),
    /// The death is counted but its slot is not written yet: read it later.
    NotYet,
    /// The slot has been reused by a later death: the reader lost track.
    Lost,
}

/// Records a death; returns its sequence number.
pub fn record(index: u32) -> u64 {
    let seq = NEXT.fetch_add(1, Ordering::AcqRel);
    let stamp = (seq as u32).wrapping_add(1) as u64;
    SLOTS[(seq % LOG) as usize].store((stamp << 32) | index as u64, Ordering::Release);
    seq
}

/// How many deaths have been counted so far (the next sequence number).
#[inline]
pub fn deaths() -> u64 {
    NEXT.load(Ordering::Acquire)
}

/// Reads the death numbered `seq` (below [`deaths`]).
pub fn read(seq: u64) -> Death {
    let v = SLOTS[(seq % LOG) as usize].load(Ordering::Acquire);
    let want = (seq as u32).wrapping_add(1);
    let have = (v >> 32) as u32;
    // Stamps are the low 32 bits of a sequence: their difference, as a
    // signed number, says whether the slot is behind (not written yet) or
    // ahead (reused).
    match have.wrapping_sub(want) as i32 {
        0 => Death::Index(v as u32),
        d if d < 0 => Death::NotYet,
        _ => Death::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_recorded_and_knows_a_reused_slot() {
        let first = record(7);
        let second = record(9);
        // Other tests of the crate may record deaths concurrently: only
        // the slots of this test's sequence numbers are looked at.
        assert_eq!(read(first), Death::Index(7));
        assert_eq!(read(second), Death::Index(9));
        let mut last = second;
        while last < first + LOG {
            last = record(1);
        }
        assert_eq!(read(first), Death::Lost);
        assert_eq!(read(deaths() + 5), Death::NotYet);
    }
}
