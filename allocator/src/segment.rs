//! Segments: aligned 4 MiB mappings cut into 16 KiB slices, with the slab
//! descriptors in the header, so that `ptr -> slab` is a mask and an index
//! (plus, for a slab of several slices, the offset back to its first; slabs
//! of blocks up to 2 KiB start at a multiple of 4 slices and span at most 4,
//! so for them a mask and an index alone do).
//!
//! A segment belongs to one thread heap at a time (`thread_id`); only that
//! thread changes its spans and slab lists. Other threads only push chains
//! of remote frees onto its inbox. A segment with no heap is *abandoned*.
//!
//! Spans of slices are either a slab or free. A free span is *dirty* (its
//! pages may be resident) or *clean* (never touched, or given back); spans
//! of different dirtiness are not merged, so purging and resident-byte
//! accounting stay exact per span.

use crate::atomic_stack::AtomicStack;
use crate::counters;
use crate::layout::*;
use crate::os;
use crate::slab::{Slab, SPAN_FREE, SPAN_SLAB};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// A small-object segment.
#[repr(C)]
pub struct Segment {
    pub head: SegmentHead,
    /// The owning heap's address, or [`ABANDONED`].
    pub thread_id: AtomicUsize,
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// Slices in free spans.
    pub free_slices: usize,
    /// A span start at or below the first free span (where a search for
    /// free space starts).
    pub free_hint: usize,
    /// Bytes of this segment counted as resident.
    pub resident: usize,
    /// The last span requests (`count | align << 16`) that found no fit
    /// here, among dirty spans (`[1]`) and among all (`[0]`); 0 for none.
    /// A request at least as large and as aligned cannot fit either, so a
    /// heap looking through its segments for room skips this one without
    /// walking its spans. Cleared when space is freed here.
    pub no_fit: [u32; 2],
    /// Batches of blocks other threads freed here (a stack of
    /// `remote::Batch`, see `remote`); on a line
    /// of its own, away from the owner word every free reads.
    pub inbox: Inbox,
    // The descriptor array follows, overlaying this struct: descriptor `i`
    // is at `i << DESC_SHIFT` from the segment start (see `Segment::desc`).
}

/// A segment's inbox of remote frees (see `remote`).
#[repr(C, align(64))]
pub struct Inbox(pub AtomicPtr<u8>);

const _: () = assert!(core::mem::size_of::<Slab>() == 1 << DESC_SHIFT);
const _: () = assert!(core::mem::size_of::<Segment>() <= HEADER_SLICES << DESC_SHIFT);
const _: () = assert!(HEADER_SLICES == 2);

thread_local! {
    /// Whether this thread's segments may hold dirty free spans (pages
    /// freed but not yet given back), so purging has work to do.
    static DIRTY: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Whether the calling thread's segments may hold dirty free spans.
pub fn has_dirty() -> bool {
    DIRTY.with(|d| d.get())
}

/// Records whether the calling thread's segments hold dirty free spans.
pub fn set_dirty(dirty: bool) {
    DIRTY.with(|d| d.set(dirty));
}

/// Gives an empty, unlinked slab back to its segment: its tags (or its
/// dedicated group's hold), its active bytes, its span.
///
/// # Safety
/// Owner thread only; the slab holds no live block and is on no list.
pub unsafe fn release_slab(s: *mut Slab) {
    // SAFETY: the slab is in one of this thread's segments and empty.
    unsafe {
        let owner = crate::slab::retire(s);
        release_span(s);
        if !owner.is_null() {
            crate::group::GroupNode::release(owner);
        }
    }
}

/// Gives a span taken for a slab back to its segment, as dirty free space.
///
/// # Safety
/// Owner thread only; the span holds no live block and is on no list.
pub unsafe fn release_span(s: *mut Slab) {
    // SAFETY: the span is in one of this thread's segments.
    unsafe {
        let seg = head_of((*s).start).cast::<Segment>();
        let bytes = (*s).slice_count as usize * SLICE_SIZE;
        counters::note_active(-(bytes as isize));
        Segment::free_span(seg, s, os::now_ms());
        set_dirty(true);
    }
}

/// Abandoned segments, waiting to be adopted.
pub static ABANDONED_SEGMENTS: AtomicStack = AtomicStack::new();

/// The slab holding `ptr`, a block of a class of at most
/// [`crate::slab::ALIGNED_MAX_BLOCK`] bytes, in segment `seg`: such slabs
/// span [`crate::slab::ALIGNED_SLICES`] slices from a multiple of that, so
/// the descriptor's place follows from the address alone, with no load for
/// the free path's stores to wait on.
///
/// # Safety
/// `ptr` must point into a slab of `seg` of such a class.
#[inline(always)]
pub unsafe fn aligned_slab_of(seg: *mut Segment, ptr: *mut u8) -> *mut Slab {
    const SHIFT: usize = SLICE_SHIFT + crate::slab::ALIGNED_SLICES.trailing_zeros() as usize;
    let off = ((ptr as usize & (SEGMENT_SIZE - 1)) >> SHIFT) << (SHIFT - SLICE_SHIFT + DESC_SHIFT);
    // SAFETY: the descriptor lies in the segment header.
    unsafe { seg.cast::<u8>().add(off).cast::<Slab>() }
}

/// The slab holding `ptr` in segment `seg`.
///
/// # Safety
/// `ptr` must point into a slab of `seg`.
#[inline(always)]
pub unsafe fn slab_of(seg: *mut Segment, ptr: *mut u8) -> *mut Slab {
    let off = ((ptr as usize & (SEGMENT_SIZE - 1)) >> SLICE_SHIFT) << DESC_SHIFT;
    // SAFETY: the descriptor lies in the segment header; continuation
    // slices of a slab hold the distance back to its first slice.
    unsafe {
        let d = seg.cast::<u8>().add(off).cast::<Slab>();
        d.byte_sub((*d).back_bytes as usize)
    }
}

impl Segment {
    /// Maps and initialises a segment owned by `heap`; null when out of memory.
    pub fn create(owner_id: usize) -> *mut Segment {
        let mem = os::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
        if mem.is_null() {
            return null_mut();
        }
        let seg = mem.cast::<Segment>();
        #[cfg(feature = "checks")]
        crate::ownership::set(seg as usize, true);
        let header_bytes = HEADER_SLICES * SLICE_SIZE;
        counters::note_mapped(SEGMENT_SIZE as isize);
        counters::note_resident(header_bytes as isize);
        // SAFETY: fresh zeroed mapping of SEGMENT_SIZE bytes, owned here;
        // all-zero is a valid bit pattern for every field but `kind`,
        // `thread_id` and the spans set below.
        unsafe {
            (*seg).head.kind = KIND_SMALL;
            (*seg).thread_id.store(owner_id, Ordering::Relaxed);
            (*seg).resident = header_bytes;
            (*seg).free_slices = 0;
            (*seg).free_hint = HEADER_SLICES;
            (*seg).no_fit = [0; 2];
            Self::make_free_span(seg, HEADER_SLICES, USABLE_SLICES, false, 0);
        }
        seg
    }

    /// Unmaps an all-free segment.
    ///
    /// # Safety
    /// `seg` must be unlinked from every list and hold no slab.
    pub unsafe fn destroy(seg: *mut Segment) {
        // SAFETY: the caller guarantees nothing refers to the segment.
        unsafe {
            #[cfg(feature = "checks")]
            crate::ownership::set(seg as usize, false);
            counters::note_resident(-((*seg).resident as isize));
            counters::note_mapped(-(SEGMENT_SIZE as isize));
            os::unmap(seg.cast(), SEGMENT_SIZE);
        }
    }

    /// # Safety
    /// `seg` is a live segment and `idx < SLICES`.
    #[inline(always)]
    pub unsafe fn desc(seg: *mut Segment, idx: usize) -> *mut Slab {
        // SAFETY: the caller passes HEADER_SLICES <= idx < SLICES, so the
        // descriptor is in the header and clear of the segment's fields.
        unsafe { seg.cast::<u8>().add(idx << DESC_SHIFT).cast::<Slab>() }
    }

    /// The index of a descriptor within its segment.
    ///
    /// # Safety
    /// `d` is a descriptor of the live segment `seg`.
    #[inline(always)]
    pub unsafe fn index_of(seg: *mut Segment, d: *mut Slab) -> usize {
        (d as usize - seg as usize) >> DESC_SHIFT
    }

    /// Marks slices `idx..idx+count` a free span.
    ///
    /// # Safety
    /// The calling thread owns `seg`; the slices `idx..idx + count` are free and on no list.
    unsafe fn make_free_span(seg: *mut Segment, idx: usize, count: usize, dirty: bool, at: u64) {
        // SAFETY: the caller owns the segment and the slices are in range.
        unsafe {
            let d = Self::desc(seg, idx);
            (*d).back_bytes = 0;
            (*d).slice_count = count as u32;
            (*d).state = SPAN_FREE;
            // Only a live slab's descriptor names a cache: a free that
            // finds its current cache there needs no state test.
            (*d).cache.store(null_mut(), Ordering::Relaxed);
            (*d).dirty = dirty;
            (*d).freed_at = at;
            if count > 1 {
                let last = Self::desc(seg, idx + count - 1);
                (*last).back_bytes = ((count - 1) << DESC_SHIFT) as u32;
            }
            (*seg).free_slices += count;
        }
    }
    /// The first free span (from the hint) that fits `count` slices at
    /// `align`, dirty ones only when `dirty`; `SLICES` when none does.
    ///
    /// # Safety
    /// The calling thread must own `seg`.
    unsafe fn find_fit(seg: *mut Segment, count: usize, align: usize, dirty: bool) -> usize {
        // SAFETY: owner-only read of the span tiling.
        unsafe {
            let mut i = (*seg).free_hint;
            while i < SLICES {
                let d = Self::desc(seg, i);
                let n = (*d).slice_count as usize;
                let at = (i + align - 1) & !(align - 1);
                if (*d).state == SPAN_FREE && at + count <= i + n && (!dirty || (*d).dirty) {
                    return i;
                }
                i += n.max(1);
            }
            SLICES
        }
    }

    /// Takes a span of `count` slices starting at a multiple of `align`
    /// slices (first fit; among dirty spans only when `dirty_only`); null
    /// when none is free. Returns the span's
    /// descriptor, whose `fresh` says whether its memory is untouched zeros.
    ///
    /// # Safety
    /// The calling thread must own `seg`; `align` is a power of two.
    pub unsafe fn alloc_span(
        seg: *mut Segment,
        count: usize,
        align: usize,
        dirty_only: bool,
    ) -> *mut Slab {
        // SAFETY: owner-only access to the descriptors; indices stay below
        // SLICES because spans tile the usable slices exactly.
        unsafe {
            if (*seg).free_slices < count {
                return null_mut();
            }
            let failed = (*seg).no_fit[dirty_only as usize];
            if failed != 0
                && count >= (failed & 0xffff) as usize
                && align >= (failed >> 16) as usize
            {
                return null_mut();
            }
            let mut i = Self::find_fit(seg, count, align, dirty_only);
            while i < SLICES {
                let d = Self::desc(seg, i);
                let n = (*d).slice_count as usize;
                let at = (i + align - 1) & !(align - 1);
                if (*d).state == SPAN_FREE && at + count <= i + n {
                    let dirty = (*d).dirty;
                    let freed_at = (*d).freed_at;
                    if i == (*seg).free_hint && at == i {
                        (*seg).free_hint = i + count;
                    }
                    (*seg).free_slices -= n;
                    if at > i {
                        Self::make_free_span(seg, i, at - i, dirty, freed_at);
                    }
                    if i + n > at + count {
                        Self::make_free_span(seg, at + count, i + n - at - count, dirty, freed_at);
                    }
                    let d = Self::desc(seg, at);
                    (*d).back_bytes = 0;
                    (*d).slice_count = count as u32;
                    (*d).state = SPAN_SLAB;
                    (*d).fresh = !dirty;
                    for k in 1..count {
                        (*Self::desc(seg, at + k)).back_bytes = (k << DESC_SHIFT) as u32;
                    }
                    (*d).start = (seg as *mut u8).add(at * SLICE_SIZE);
                    if !dirty {
                        let bytes = count * SLICE_SIZE;
                        (*seg).resident += bytes;
                        counters::note_resident(bytes as isize);
                    }
                    return d;
                }
                i += n.max(1);
            }
            // No room among all spans means none among the dirty ones.
            let key = (count | align << 16) as u32;
            (*seg).no_fit[dirty_only as usize] = key;
            if !dirty_only {
                (*seg).no_fit[1] = key;
            }
            null_mut()
        }
    }

    /// Gives a slab's span back as dirty free space, merging with dirty
    /// neighbours.
    ///
    /// # Safety
    /// The calling thread must own `seg`; `d` is a slab span of it with no
    /// live block, unlinked from every list.
    pub unsafe fn free_span(seg: *mut Segment, d: *mut Slab, now: u64) {
        // SAFETY: owner-only access; neighbours are found through the span
        // tiling (first slice counts, last slice offsets).
        unsafe {
            let idx = Self::index_of(seg, d);
            let count = (*d).slice_count as usize;
            Self::insert_free(seg, idx, count, true, now);
        }
    }

    /// Adds slices `idx..idx+count` as a free span of the given dirtiness,
    /// merged with neighbouring free spans of the same dirtiness.
    ///
    /// # Safety
    /// The calling thread owns `seg`; the slices `idx..idx + count` hold no live block.
    unsafe fn insert_free(
        seg: *mut Segment,
        mut idx: usize,
        mut count: usize,
        dirty: bool,
        at: u64,
    ) -> usize {
        // SAFETY: see `free_span`.
        unsafe {
            // Descriptors absorbed into a larger span keep stale counts but
            // always read as free, so a walk that lands on one skips it.
            let d = Self::desc(seg, idx);
            (*d).state = SPAN_FREE;
            (*d).cache.store(null_mut(), Ordering::Relaxed);
            let end = idx + count;
            if end < SLICES {
                let nd = Self::desc(seg, end);
                if (*nd).state == SPAN_FREE && (*nd).dirty == dirty {
                    let n = (*nd).slice_count as usize;
                    (*seg).free_slices -= n;
                    count += n;
                }
            }
            if idx > HEADER_SLICES {
                let last = Self::desc(seg, idx - 1);
                let pidx = idx - 1 - ((*last).back_bytes >> DESC_SHIFT) as usize;
                let pd = Self::desc(seg, pidx);
                if (*pd).state == SPAN_FREE && (*pd).dirty == dirty {
                    let n = (*pd).slice_count as usize;
                    (*seg).free_slices -= n;
                    idx = pidx;
                    count += n;
                }
            }
            Self::make_free_span(seg, idx, count, dirty, at);
            (*seg).no_fit = [0; 2];
            if idx < (*seg).free_hint {
                (*seg).free_hint = idx;
            }
            idx + count
        }
    }

    /// Gives back the pages of dirty free spans freed at or before
    /// `older_than`; returns whether dirty spans remain.
    ///
    /// # Safety
    /// The calling thread must own `seg`.
    pub unsafe fn purge(seg: *mut Segment, older_than: u64) -> bool {
        let mut remaining = false;
        // Slices given back but not yet decommitted (first, count):
        // neighbouring spans go in one call, since each call costs a
        // multi-threaded process a TLB shootdown on the other cores.
        let mut run = (0usize, 0usize);
        // SAFETY: owner-only access; a free span holds no live block.
        unsafe {
            let base = seg as *mut u8;
            let decommit = move |(from, count): (usize, usize)| {
                if count > 0 {
                    os::decommit(base.add(from * SLICE_SIZE), count * SLICE_SIZE);
                }
            };
            let mut i = HEADER_SLICES;
            while i < SLICES {
                let d = Self::desc(seg, i);
                let n = (*d).slice_count as usize;
                if (*d).state == SPAN_FREE && (*d).dirty {
                    if (*d).freed_at <= older_than {
                        let bytes = n * SLICE_SIZE;
                        if run.0 + run.1 == i {
                            run.1 += n;
                        } else {
                            decommit(run);
                            run = (i, n);
                        }
                        (*seg).resident -= bytes;
                        counters::note_resident(-(bytes as isize));
                        (*seg).free_slices -= n;
                        // Continue after the merged (clean) span. The run
                        // takes in the clean span after it too: given back
                        // again, untouched pages stay zeros, and the next
                        // dirty span (small slabs sit four slices apart)
                        // joins the same call.
                        i = Self::insert_free(seg, i, n, false, 0);
                        run.1 = i - run.0;
                        continue;
                    }
                    remaining = true;
                }
                i += n.max(1);
            }
            decommit(run);
        }
        remaining
    }

    /// Whether every usable slice is free.
    ///
    /// # Safety
    /// The calling thread must own `seg`.
    pub unsafe fn is_unused(seg: *mut Segment) -> bool {
        // SAFETY: owner-only read.
        unsafe { (*seg).free_slices == USABLE_SLICES }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_spans_start_at_multiples_and_leave_gaps_usable() {
        let seg = Segment::create(0);
        assert!(!seg.is_null());
        // SAFETY: this test owns the segment; spans stay in range.
        unsafe {
            // One unaligned slice first, so the aligned spans must skip.
            let a = Segment::alloc_span(seg, 1, 1, false);
            assert_eq!(Segment::index_of(seg, a), HEADER_SLICES);
            let mut aligned = Vec::new();
            for count in [1, 2, 4, 1, 3] {
                let d = Segment::alloc_span(seg, count, 4, false);
                let i = Segment::index_of(seg, d);
                assert_eq!(i % 4, 0, "span of {count} at {i}");
                assert_eq!((*d).slice_count as usize, count);
                for k in 0..count {
                    let p = (*d).start.add(k * SLICE_SIZE + 100);
                    assert_eq!(aligned_slab_of(seg, p), d, "slice {k} of {count}");
                    assert_eq!(slab_of(seg, p), d);
                }
                aligned.push(d);
            }
            // The gaps before and after aligned spans are free spans still:
            // unaligned spans fill them first.
            let gap = Segment::alloc_span(seg, 1, 1, false);
            assert_eq!(Segment::index_of(seg, gap), HEADER_SLICES + 1);
            let free_before = (*seg).free_slices;
            for d in aligned.into_iter().chain([a, gap]) {
                Segment::free_span(seg, d, 0);
            }
            assert!((*seg).free_slices > free_before);
            assert!(Segment::is_unused(seg));
            Segment::destroy(seg);
        }
    }
    #[test]
    fn a_purge_gives_back_small_slabs_four_slices_apart_in_one_call() {
        let seg = Segment::create(0);
        assert!(!seg.is_null());
        // SAFETY: this test owns the segment; spans stay in range, and each
        // is written only while it is a slab.
        unsafe {
            // Small-block slabs: one slice each, four slices apart, clean
            // gaps between them.
            let slabs: Vec<*mut Slab> = (0..8)
                .map(|_| Segment::alloc_span(seg, 1, 4, false))
                .collect();
            for &d in &slabs {
                assert!(!d.is_null());
                (*d).start.write_bytes(0x5A, SLICE_SIZE);
            }
            for &d in &slabs {
                Segment::free_span(seg, d, 0);
            }
            let before = crate::os::DECOMMIT_CALLS.with(|c| c.get());
            assert!(!Segment::purge(seg, u64::MAX), "no dirty span remains");
            let calls = crate::os::DECOMMIT_CALLS.with(|c| c.get()) - before;
            assert_eq!(calls, 1, "8 dirty spans with clean gaps between");
            assert_eq!((*seg).resident, HEADER_SLICES * SLICE_SIZE);
            // Given back: the pages read as zeros again.
            for &d in &slabs {
                let first = Segment::index_of(seg, d);
                let p = (seg as *mut u8).add(first * SLICE_SIZE);
                assert_eq!(*p, 0);
                assert_eq!(*p.add(SLICE_SIZE - 1), 0);
            }
            assert!(Segment::is_unused(seg));
            Segment::destroy(seg);
        }
    }

    #[test]
    fn a_request_that_found_no_fit_is_refused_until_space_is_freed() {
        let seg = Segment::create(0);
        assert!(!seg.is_null());
        // SAFETY: this test owns the segment; spans stay in range.
        unsafe {
            // Fill the segment with one-slice spans, then free every other
            // one: half the slices are free, no two side by side.
            let spans: Vec<*mut Slab> = (0..USABLE_SLICES)
                .map(|_| Segment::alloc_span(seg, 1, 1, false))
                .collect();
            assert!(spans.iter().all(|d| !d.is_null()));
            for d in spans.iter().step_by(2) {
                Segment::free_span(seg, *d, 0);
            }
            assert!((*seg).free_slices >= 2);
            assert!(Segment::alloc_span(seg, 2, 1, false).is_null());
            assert_eq!((*seg).no_fit[0], 2 | 1 << 16);
            // Larger or more aligned requests are refused from the record;
            // a smaller one still walks the spans and fits.
            assert!(Segment::alloc_span(seg, 3, 4, false).is_null());
            assert_eq!((*seg).no_fit[0], 2 | 1 << 16, "refused without a walk");
            let one = Segment::alloc_span(seg, 1, 1, false);
            assert!(!one.is_null());
            // Freeing a neighbour makes room for two: the record is cleared.
            Segment::free_span(seg, spans[1], 0);
            assert_eq!((*seg).no_fit, [0, 0]);
            let two = Segment::alloc_span(seg, 2, 1, false);
            assert!(!two.is_null(), "room for two after the free");
            Segment::free_span(seg, two, 0);
            Segment::free_span(seg, one, 0);
            for d in spans.iter().skip(3).step_by(2) {
                Segment::free_span(seg, *d, 0);
            }
            assert!(Segment::is_unused(seg));
            Segment::destroy(seg);
        }
    }
}
