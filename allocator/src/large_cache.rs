//! A small cache of freed large-block mappings, so programs that allocate
//! and free large blocks repeatedly reuse mappings instead of paying for
//! `mmap`, trimming and `munmap` (and fresh page faults) every time.
//!
//! Slots hold a segment-aligned header address with the mapping's length in
//! pages packed into the low bits, so a scan reads nothing but the slots; a
//! slot is taken with a compare-and-swap before its mapping is touched.
//! Mappings wait at most [`HOLD_MS`] (checked as blocks come and go) and
//! `purge` unmaps them all; when every slot is taken, a newly freed mapping
//! replaces the one kept longest. At most [`RESIDENT_MAX`] bytes of kept
//! mappings keep their pages: past that, a mapping is kept *cold*, its pages
//! given back and only the mapping saved, so that a program which grows a
//! table by doubling does not hold every old table resident while its slabs
//! fault in fresh pages. Lock-free throughout.

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
/// Most bytes of kept mappings left resident: about one table a program
/// builds and frees over and over (`regex` builds 320 KiB ones), several
/// times over.
const RESIDENT_MAX: usize = 4 << 20;
/// In a slot's value: the mapping's pages past its header were given back.
const COLD: usize = 1 << (SEGMENT_SHIFT - 1);
/// In a slot's value: the mapping's length in pages.
const LEN_MASK: usize = COLD - 1;
const _: () = assert!(MAX_KEPT / PAGE_SIZE <= LEN_MASK);

static SLOT: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static KEPT: AtomicUsize = AtomicUsize::new(0);
/// Bytes of kept mappings that are not cold.
static KEPT_RESIDENT: AtomicUsize = AtomicUsize::new(0);
static NEXT_SWEEP: AtomicU64 = AtomicU64::new(0);
/// When each slot's mapping was put there (ms).
static KEPT_AT: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

fn pack(hdr: *mut u8, len: usize, cold: bool) -> usize {
    hdr as usize | (len / PAGE_SIZE) | if cold { COLD } else { 0 }
}

fn unpack(v: usize) -> (*mut u8, usize) {
    (
        (v & !(COLD | LEN_MASK)) as *mut u8,
        (v & LEN_MASK) * PAGE_SIZE,
    )
}

fn is_cold(v: usize) -> bool {
    v & COLD != 0
}

/// Bytes of a mapping kept cold that stay resident: its header page.
const COLD_RESIDENT: usize = PAGE_SIZE;

/// Whether a mapping of `len` bytes put in the cache now keeps its pages
/// (counted in, and counted out again by [`forget_resident`]): yes if it
/// fits in [`RESIDENT_MAX`], the kept mappings longest resident turning
/// cold to make room, since the newest is the likeliest to be asked for.
fn keep_resident(len: usize) -> bool {
    if len > RESIDENT_MAX {
        return false;
    }
    for _ in 0..SLOTS {
        if KEPT_RESIDENT.fetch_add(len, Ordering::Relaxed) + len <= RESIDENT_MAX {
            return true;
        }
        KEPT_RESIDENT.fetch_sub(len, Ordering::Relaxed);
        if !cool_oldest() {
            break;
        }
    }
    false
}

/// Gives back the pages of the kept mapping resident longest, keeping the
/// mapping; false when none is resident.
fn cool_oldest() -> bool {
    let mut oldest = None;
    let mut oldest_at = u64::MAX;
    for (i, s) in SLOT.iter().enumerate() {
        let v = s.load(Ordering::Relaxed);
        let at = KEPT_AT[i].load(Ordering::Relaxed);
        if v != 0 && !is_cold(v) && at < oldest_at {
            oldest = Some((i, v));
            oldest_at = at;
        }
    }
    let Some((i, v)) = oldest else {
        return false;
    };
    // Out of its slot while its pages go, so no thread takes it meanwhile.
    if SLOT[i]
        .compare_exchange(v, 0, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // Taken or replaced under the scan: the count moved; look again.
        return true;
    }
    forget_resident(v);
    let (hdr, len) = unpack(v);
    // SAFETY: the swap took the mapping, whose only reference the slot
    // held; it holds no live block.
    unsafe { give_back_pages(hdr, len) };
    let cold = pack(hdr, len, true);
    if SLOT[i]
        .compare_exchange(0, cold, Ordering::Release, Ordering::Relaxed)
        .is_err()
    {
        // The slot was filled meanwhile: the mapping goes.
        // SAFETY: `cold` is ours alone, out of every slot.
        unsafe { release(cold) };
    }
    true
}

/// Makes a kept mapping cold: its pages past the header page go back (the
/// header stays: the block made from the mapping next writes it).
///
/// # Safety
/// The mapping (`hdr`, `len` bytes) is the caller's and holds no live block.
unsafe fn give_back_pages(hdr: *mut u8, len: usize) {
    // SAFETY: the caller's contract; the range lies inside the mapping.
    unsafe { os::decommit(hdr.add(COLD_RESIDENT), len - COLD_RESIDENT) };
    counters::note_resident(-((len - COLD_RESIDENT) as isize));
}

/// A kept mapping (slot value `v`) leaves the cache: out of the resident
/// count unless it was cold.
fn forget_resident(v: usize) {
    if !is_cold(v) {
        KEPT_RESIDENT.fetch_sub(unpack(v).1, Ordering::Relaxed);
    }
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
    let cold = !keep_resident(len);
    if cold {
        // SAFETY: the caller gives the mapping away with no live block.
        unsafe { give_back_pages(hdr, len) };
    }
    let packed = pack(hdr, len, cold);
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
    forget_resident(packed);
    if cold {
        // The caller unmaps the whole mapping and counts it all out.
        counters::note_resident((len - COLD_RESIDENT) as isize);
    }
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
    forget_resident(v);
    let resident = if is_cold(v) { COLD_RESIDENT } else { len };
    #[cfg(feature = "checks")]
    crate::ownership::set(hdr as usize, false);
    // SAFETY: the caller's contract.
    unsafe { os::unmap(hdr, len) };
    counters::note_mapped(-(len as isize));
    counters::note_resident(-(resident as isize));
}

/// A mapping taken from the cache.
pub struct Taken {
    /// Its header address.
    pub hdr: *mut u8,
    /// Its length in bytes.
    pub len: usize,
    /// Its pages past the header page read as zeros (it was kept cold).
    pub zeroed: bool,
}

/// Takes the best-fitting kept mapping of `len` to `4 * len` bytes, if
/// any. Its contents are whatever its last block left (zeros past the
/// header page if it was kept cold); the room past `len` lets the block
/// grow in place.
pub fn take(len: usize) -> Option<Taken> {
    if len > MAX_KEPT || KEPT.load(Ordering::Relaxed) == 0 {
        return None;
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
        return None;
    }
    for s in SLOT.iter() {
        if s.load(Ordering::Relaxed) == best
            && s.compare_exchange(best, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            KEPT.fetch_sub(best_len, Ordering::Relaxed);
            forget_resident(best);
            counters::note_active(best_len as isize);
            if is_cold(best) {
                // Its pages fault in again as the block is used.
                counters::note_resident((best_len - COLD_RESIDENT) as isize);
            }
            return Some(Taken {
                hdr: unpack(best).0,
                len: best_len,
                zeroed: is_cold(best),
            });
        }
    }
    None
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
