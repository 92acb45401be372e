//! A thread's magazines: blocks of its root cache's slabs that other
//! threads freed, kept as addresses (per size class, last in first out)
//! and handed out again without the owner writing into them first.
//!
//! Putting such a block back on its slab's free list means writing the
//! list's link into it while the freeing core, which has just read the
//! block, still holds its lines: on an Intel Xeon (measured with
//! `reuse_trace`) those writes, waited for at the owner's next atomic
//! operation, cost a producer/consumer pair more than the rest of the free.
//! A magazine records the address in the owner's own memory instead, as
//! jemalloc's thread caches do. The owner does ask for each stashed block's
//! line for writing (a write prefetch, which no later instruction waits
//! for), so a batch's lines move to its core together rather than one at a
//! time as the program writes each block it is handed (on an AMD EPYC the
//! first quartile of 41 `channel` runs fell 4-9% at 1, 2 and 4 threads).
//!
//! - `remote::collect` stashes a block of the collecting heap's root cache
//!   (untagged, of a class up to [`MAX_BLOCK`]) while its class's magazine
//!   has room; the rest go to their slabs' free lists as before.
//! - A stashed block stays counted in its slab's `used`, so its slab stays;
//!   its group was credited when it was freed, and it is charged again when
//!   it is handed out, through the same reserve as any allocation.
//! - The allocation slow path takes from the magazine before it looks at
//!   the slabs; the fast path is untouched (a local free list still comes
//!   first).
//! - [`return_all`] puts every stashed block back on its slab (flush,
//!   purge, thread exit), so slabs they empty go back.
//!
//! Only root caches have magazines: a group's caches stay as small as they
//! are, whatever the number of groups. A heap's record is taken at its
//! first stash and given back at thread exit.

use crate::cache::{self, Cache};
use crate::layout::{self, Block};
use crate::meta_pool::MetaPool;
use crate::segment::{self, Segment};
use crate::size_class::class_size;
use crate::slab::Slab;
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Blocks a magazine holds per class.
pub const DEPTH: usize = 128;

/// The largest block size stashed: with [`DEPTH`] blocks a class, a
/// heap's magazines hold at most 816 KiB (128 times the sizes of the
/// classes up to 1 KiB, 6,528 bytes).
pub const MAX_BLOCK: usize = 1024;

/// Classes with a magazine: every class up to [`MAX_BLOCK`].
const CLASSES: usize = {
    let mut c = 0;
    while class_size(c) < MAX_BLOCK {
        c += 1;
    }
    c + 1
};

const _: () = assert!(class_size(CLASSES - 1) == MAX_BLOCK);

/// One heap's magazines.
#[repr(C)]
pub struct Magazines {
    count: [u32; CLASSES],
    blocks: [[*mut Block; DEPTH]; CLASSES],
}

static MAGAZINES: MetaPool = MetaPool::new(core::mem::size_of::<Magazines>());

/// Stashes `b`, a block of slab `s` that another thread freed, in the
/// magazine of its class when `s` belongs to `root` (the collecting heap's
/// root cache) and there is room; false when not (the caller puts it on
/// its slab). `*mags` is the heap's record, taken here at the first stash.
///
/// # Safety
/// Owner thread only: `mags` is the calling heap's field, `root` its root
/// cache, `s` a live slab of one of its segments and `b` a block of `s`
/// that was live.
#[inline]
pub unsafe fn stash(
    mags: *mut *mut Magazines,
    root: *mut Cache,
    s: *mut Slab,
    b: *mut Block,
) -> bool {
    // SAFETY: owner-only; the record is this heap's, and a fresh one has
    // its counts cleared before use.
    unsafe {
        let class = (*s).class as usize;
        if class >= CLASSES
            || (*s).cache.load(Ordering::Relaxed) != root.cast()
            || !(*s).tags().is_null()
        {
            return false;
        }
        let mut m = *mags;
        if m.is_null() {
            m = MAGAZINES.alloc().cast::<Magazines>();
            if m.is_null() {
                return false;
            }
            (&raw mut (*m).count).write([0; CLASSES]);
            *mags = m;
        }
        let n = (*m).count[class] as usize;
        if n == DEPTH {
            return false;
        }
        // The last one stashed always; with `checks`, every one.
        let stashed = &(&(*m).blocks[class])[..n];
        if stashed.last() == Some(&b) || (cfg!(feature = "checks") && stashed.contains(&b)) {
            crate::os::fatal(
                "memcg: double free detected (block freed twice from another thread)\n",
            );
        }
        // Its lines start moving to this core now, all of a batch at once
        // and behind no store, instead of one at a time when the program
        // writes each block it is handed.
        crate::hint::prefetch_write(b);
        (*m).blocks[class][n] = b;
        (*m).count[class] = n as u32 + 1;
        true
    }
}

/// Hands out a stashed block of `class` for `cache` when `cache` is the
/// heap's root cache and its magazine holds one, charging it to the
/// reserve: within `take_limit` when `checked`, else unconditionally (the
/// caller has made room). Null otherwise.
///
/// # Safety
/// Owner thread only: `m` is the calling heap's record (or null) and
/// `root` its root cache; `cache` is the current cache.
#[inline]
pub unsafe fn take(
    m: *mut Magazines,
    root: *mut Cache,
    cache: *mut Cache,
    class: usize,
    checked: bool,
) -> *mut u8 {
    // SAFETY: owner-only access to the record and the cache's totals.
    unsafe {
        if m.is_null() || cache != root || class >= CLASSES {
            return null_mut();
        }
        let n = (*m).count[class] as usize;
        if n == 0 {
            return null_mut();
        }
        let t = (*cache).taken.load(Ordering::Relaxed) + class_size(class);
        if checked && t > (*cache).take_limit {
            return null_mut();
        }
        (*cache).taken.store(t, Ordering::Relaxed);
        (*m).count[class] = n as u32 - 1;
        if n > 1 {
            // The next one's line, for the program's first write to it.
            crate::hint::prefetch_write((*m).blocks[class][n - 2]);
        }
        (*m).blocks[class][n - 1].cast()
    }
}

/// Puts every stashed block back on its slab's free list, as a local free
/// would (a slab it empties may go back).
///
/// # Safety
/// Owner thread only: `m` is the calling heap's record (or null).
pub unsafe fn return_all(m: *mut Magazines) {
    // SAFETY: owner-only; every stashed block belongs to a live slab of
    // this heap's root cache, which its count keeps alive until here.
    unsafe {
        if m.is_null() {
            return;
        }
        for class in 0..CLASSES {
            let n = (*m).count[class] as usize;
            (*m).count[class] = 0;
            for &b in &(&(*m).blocks[class])[..n] {
                let seg = layout::head_of(b.cast()).cast::<Segment>();
                let s = segment::slab_of(seg, b.cast());
                cache::return_block(s, b);
            }
        }
    }
}

/// [`return_all`], then gives the record back; `*mags` becomes null.
///
/// # Safety
/// As for [`return_all`]; `mags` is the heap's field.
pub unsafe fn release(mags: *mut *mut Magazines) {
    // SAFETY: the record is this heap's; once emptied nothing refers to it.
    unsafe {
        let m = *mags;
        if m.is_null() {
            return;
        }
        return_all(m);
        *mags = null_mut();
        MAGAZINES.free(m.cast());
    }
}
