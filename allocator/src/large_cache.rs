//! A small cache of freed large-block mappings, so programs that allocate
//! and free large blocks repeatedly reuse mappings instead of paying for
//! `mmap`, trimming and `munmap` (and fresh page faults) every time.
//!
//! Slots hold a segment-aligned header address with the mapping's length in
//! pages packed into the low bits, so a scan reads nothing but the slots; a
//! slot is taken with a compare-and-swap before its mapping is touched.
//! Mappings wait at most [`HOLD_MS`] (checked as blocks come and go) and
//! `purge` unmaps them all; when every slot is taken, a newly freed mapping
//! replaces the one kept longest. Lock-free throughout.

use crate::counters;
use crate::layout::{SEGMENT_SHIFT, SEGMENT_SIZE};
use crate::os::{self, PAGE_SIZE};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SLOTS: usize = 32;
/// Largest mapping kept.
const MAX_KEPT: usize = 32 << 20;
/// Most bytes kept in all.
const MAX_TOTAL: usize = 128 << 20;
/// How long a kept mapping waits for reuse before it is unmapped: longer
/// than the slab purge delay, since a mapping costs three system calls to
/// make and one to drop, and a large block's pages fault in anew.
pub const HOLD_MS: u64 = 1000;
const LEN_MASK: usize = (1 << SEGMENT_SHIFT) - 1;

static SLOT: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static KEPT: AtomicUsize = AtomicUsize::new(0);
static NEXT_SWEEP: AtomicU64 = AtomicU64::new(0);
/// When each slot's mapping was put there (ms).
static KEPT_AT: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

fn pack(hdr: *mut u8, len: usize) -> usize {
    hdr as usize | (len / PAGE_SIZE)
}

fn unpack(v: usize) -> (*mut u8, usize) {
    ((v & !LEN_MASK) as *mut u8, (v & LEN_MASK) * PAGE_SIZE)
}

/// Offers a freed mapping (segment-aligned, `len` bytes, no live block);
/// false when the cache does not take it (the caller unmaps it).
///
/// # Safety
/// The mapping is the caller's to give away.
pub unsafe fn put(hdr: *mut u8, len: usize) -> bool {
    if len > MAX_KEPT || hdr as usize & (SEGMENT_SIZE - 1) != 0 {
        return false;
    }
    if KEPT.fetch_add(len, Ordering::Relaxed) + len > MAX_TOTAL {
        KEPT.fetch_sub(len, Ordering::Relaxed);
        return false;
    }
    let now = os::now_ms();
    let packed = pack(hdr, len);
    // With every slot taken, the mapping kept longest makes room. A
    // program's recent sizes are the likeliest to be asked for again;
    // without this, slots filled with sizes no request fits (blocks shrunk
    // or grown before they were freed) and every later large block was
    // mapped anew until they aged out.
    if put_in_empty_slot(packed, now) || replace_oldest(packed, now) {
        counters::note_active(-(len as isize));
        sweep(now);
        return true;
    }
    KEPT.fetch_sub(len, Ordering::Relaxed);
    false
}

/// Puts `packed` in a free slot; false when there is none.
fn put_in_empty_slot(packed: usize, now: u64) -> bool {
    for (i, s) in SLOT.iter().enumerate() {
        if s.load(Ordering::Relaxed) == 0
            && s.compare_exchange(0, packed, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            KEPT_AT[i].store(now, Ordering::Relaxed);
            return true;
        }
    }
    false
}

/// Puts `packed` in the slot whose mapping has waited longest, unmapping
/// that one; false when the slots changed under the scan.
fn replace_oldest(packed: usize, now: u64) -> bool {
    let mut oldest = None;
    let mut oldest_at = u64::MAX;
    for (i, s) in SLOT.iter().enumerate() {
        let at = KEPT_AT[i].load(Ordering::Relaxed);
        if s.load(Ordering::Relaxed) != 0 && at < oldest_at {
            oldest = Some(i);
            oldest_at = at;
        }
    }
    let Some(i) = oldest else {
        return false;
    };
    let v = SLOT[i].load(Ordering::Relaxed);
    if v == 0
        || SLOT[i]
            .compare_exchange(v, packed, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return false;
    }
    KEPT_AT[i].store(now, Ordering::Relaxed);
    // SAFETY: the swap took the slot's mapping, whose only reference it held.
    unsafe { release(v) };
    true
}

/// Unmaps a mapping taken out of a slot.
///
/// # Safety
/// `v` was a slot's value, taken out of it by the caller: nothing else
/// refers to its mapping.
unsafe fn release(v: usize) {
    let (hdr, len) = unpack(v);
    KEPT.fetch_sub(len, Ordering::Relaxed);
    #[cfg(feature = "checks")]
    crate::ownership::set(hdr as usize, false);
    // SAFETY: the caller's contract.
    unsafe { os::unmap(hdr, len) };
    counters::note_mapped(-(len as isize));
    counters::note_resident(-(len as isize));
}

/// Takes the best-fitting kept mapping of `len` to `4 * len` bytes and
/// returns it with its length, or null. Its contents are whatever its last
/// block left; the room past `len` lets the block grow in place.
pub fn take(len: usize) -> (*mut u8, usize) {
    let none = (core::ptr::null_mut(), 0);
    if len > MAX_KEPT || KEPT.load(Ordering::Relaxed) == 0 {
        return none;
    }
    // Best fit among the slots, then take it if it is still there.
    let mut best = 0usize;
    let mut best_len = usize::MAX;
    for s in SLOT.iter() {
        let v = s.load(Ordering::Relaxed);
        if v == 0 {
            continue;
        }
        let (_, have) = unpack(v);
        if have >= len && have <= len.saturating_mul(4) && have < best_len {
            best = v;
            best_len = have;
        }
    }
    if best == 0 {
        return none;
    }
    for s in SLOT.iter() {
        if s.load(Ordering::Relaxed) == best
            && s.compare_exchange(best, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            KEPT.fetch_sub(best_len, Ordering::Relaxed);
            counters::note_active(best_len as isize);
            return (unpack(best).0, best_len);
        }
    }
    none
}

/// Unmaps kept mappings older than [`HOLD_MS`], at most a few times per
/// hold time.
fn sweep(now: u64) {
    if now < NEXT_SWEEP.load(Ordering::Relaxed) {
        return;
    }
    NEXT_SWEEP.store(now + HOLD_MS / 4, Ordering::Relaxed);
    release_older_than(now.saturating_sub(HOLD_MS));
}

fn release_older_than(older_than: u64) {
    for (i, s) in SLOT.iter().enumerate() {
        let v = s.load(Ordering::Relaxed);
        if v == 0 || KEPT_AT[i].load(Ordering::Relaxed) > older_than {
            continue;
        }
        if s.compare_exchange(v, 0, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: the swap took the slot's mapping, whose only reference
            // it held.
            unsafe { release(v) };
        }
    }
}

/// Unmaps every kept mapping.
pub fn purge() {
    release_older_than(u64::MAX);
}
