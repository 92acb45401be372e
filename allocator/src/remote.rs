//! Remote frees: a block freed by a thread that does not own its segment
//! travels back to the owner in a batch, never one atomic operation per
//! block.
//!
//! - The freeing thread writes the block's address into its *outbox*: one
//!   [`Batch`] (an array of addresses, from the allocator's own records) per
//!   destination segment, in [`SLOTS`] direct-mapped slots. It writes
//!   nothing into the block, and reads only the segment header's owner word
//!   and the slab descriptor's first line, which its owner writes only when
//!   the slab changes lists (see `slab::Slab`), so freeing does not pull the
//!   owner's hot lines.
//! - A batch of [`BATCH`] blocks, a batch displaced from its slot, and every
//!   batch when the thread flushes (its allocation slow path, `flush()`,
//!   thread exit) is *sent*: pushed onto the segment's inbox with one CAS.
//!   The sender then raises the owning heap's pending flag (one store, only
//!   when it is not already up).
//! - The owner, on its slow path and only when its flag is up, takes each
//!   non-empty inbox of its segments whole ([`collect`]) and puts each block
//!   of each batch back on its slab's free list as a local free would, or,
//!   for a block of its root cache, into its magazines (see `magazine`),
//!   which write nothing into the block.
//!   Segments with empty inboxes cost one load; no slab is scanned. The
//!   addresses come from an array, so the owner's writes of the blocks'
//!   links do not wait on one another (a chain linked through the blocks
//!   made it load each block, written last by the freeing thread, before it
//!   could find the next).
//!
//! Credits are not part of this: the freeing thread credits the block's
//! group when it frees (`free.rs`), so a block in flight is uncharged
//! already and only its memory waits. A block in flight is still counted in
//! its slab's `used`, so its slab and segment stay until the owner collects
//! it: a sender may touch the segment up to its CAS, never after.
//!
//! Batches live in the allocator's own memory, out of reach of a program's
//! use after free; the owner still checks that every address lies in the
//! segment it came from. Out of memory for a batch, a block waits in the
//! thread's outbox (linked through its first word) until one can be had; a
//! thread with no outbox (exiting, or one that never allocated) sends each
//! block in a batch of its own, and leaves it counted in its slab when not
//! even that can be had (its group was credited; only its memory is lost).

use crate::cache::{self, Cache};
use crate::layout::{self, Block, SEGMENT_SHIFT};
use crate::magazine::{self, Magazines};
use crate::meta_pool::MetaPool;
use crate::segment::{self, Segment};
use crate::slab::{self, SPAN_SLAB};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Destination segments an outbox holds batches for at once.
pub const SLOTS: usize = 8;

/// Blocks a batch carries: a batch is then 256 bytes, a whole pool slot.
pub const BATCH: usize = 30;

/// Blocks freed into one segment, sent together. The first word is the
/// inbox's link once sent (and the pool's while the record is free).
#[repr(C)]
pub struct Batch {
    next: *mut Batch,
    count: usize,
    blocks: [*mut Block; BATCH],
}

const _: () = assert!(core::mem::size_of::<Batch>() == 256);

static BATCHES: MetaPool = MetaPool::new(core::mem::size_of::<Batch>());

/// An empty batch; null when out of memory.
fn new_batch() -> *mut Batch {
    let b = BATCHES.alloc().cast::<Batch>();
    if !b.is_null() {
        // SAFETY: a fresh pool record of a batch's size, ours alone.
        unsafe { (*b).count = 0 };
    }
    b
}

/// A thread's batches of blocks freed into other threads' segments.
#[repr(C)]
pub struct Outbox {
    seg: [*mut Segment; SLOTS],
    batch: [*mut Batch; SLOTS],
    /// Bit `i`: slot `i` holds a batch.
    used: u32,
    /// Blocks no batch could be had for (out of memory), linked through
    /// their first word by [`encode`]; retried at every [`send_all`].
    stuck: *mut Block,
}

impl Outbox {
    pub const fn new() -> Outbox {
        Outbox {
            seg: [null_mut(); SLOTS],
            batch: [null_mut(); SLOTS],
            used: 0,
            stuck: null_mut(),
        }
    }

    /// Whether some block waits to be sent.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.used == 0 && self.stuck.is_null()
    }
}

/// What a sender tells the owner: the owner word it read before its CAS.
pub type SentTo = usize;

/// Adds `b`, a live block of `seg` freed by the calling thread, to the
/// outbox; calls `sent` with the owner word of each segment whose batch it
/// sent (a displaced batch, a full one).
///
/// # Safety
/// `o` is the calling thread's outbox; `b` is a live block of `seg`, which
/// another heap owns (or no heap: abandoned).
#[inline(always)]
pub unsafe fn add(o: *mut Outbox, seg: *mut Segment, b: *mut Block, mut sent: impl FnMut(SentTo)) {
    // SAFETY: the outbox and its batches are the caller's; `b` is a live
    // block the caller gives up, so its first word is ours to write.
    unsafe {
        let i = (seg as usize >> SEGMENT_SHIFT) % SLOTS;
        if (*o).seg[i] != seg {
            if (*o).used & (1 << i) != 0 {
                sent(send(o, i));
            }
            (*o).seg[i] = seg;
        }
        let mut bt = (*o).batch[i];
        if bt.is_null() {
            bt = new_batch();
            if bt.is_null() {
                crate::hint::cold_path();
                (*b).next = encode((*o).stuck);
                (*o).stuck = b;
                return;
            }
            (*o).batch[i] = bt;
            (*o).used |= 1 << i;
        }
        let n = (*bt).count;
        if n > 0 && (*bt).blocks[n - 1] == b {
            crate::os::fatal(
                "memcg: double free detected (block freed twice from another thread)\n",
            );
        }
        (*bt).blocks[n] = b;
        (*bt).count = n + 1;
        if n + 1 == BATCH {
            sent(send(o, i));
        }
    }
}

/// Sends every batch of the outbox (after trying again to place the blocks
/// that found no batch); calls `sent` with each owner word.
///
/// # Safety
/// `o` is the calling thread's outbox.
pub unsafe fn send_all(o: *mut Outbox, mut sent: impl FnMut(SentTo)) {
    // SAFETY: the caller's outbox; each used slot holds a batch, and each
    // stuck block is a live block the thread gave up.
    unsafe {
        let mut b = core::mem::replace(&mut (*o).stuck, null_mut());
        while !b.is_null() {
            let next = decode((*b).next);
            let seg = layout::head_of(b.cast()).cast::<Segment>();
            add(o, seg, b, &mut sent);
            b = next;
        }
        loop {
            let used = (*o).used;
            if used == 0 {
                break;
            }
            sent(send(o, used.trailing_zeros() as usize));
        }
    }
}

/// Sends one block in a batch of its own (for a thread with no outbox: one
/// exiting, or one that never allocated). Returns the owner word, or 0 when
/// no batch could be had (the block then stays counted in its slab).
///
/// # Safety
/// As for [`add`].
pub unsafe fn send_one(seg: *mut Segment, b: *mut Block) -> SentTo {
    let bt = new_batch();
    if bt.is_null() {
        return 0;
    }
    // SAFETY: a fresh batch, ours until pushed; `b` as in `add`.
    unsafe {
        (*bt).blocks[0] = b;
        (*bt).count = 1;
        push(seg, bt)
    }
}

/// Pushes slot `i`'s batch onto its segment's inbox and empties the slot.
///
/// # Safety
/// `o` is the calling thread's outbox and slot `i` holds a batch.
// One `add` in `BATCH` sends: out of line, so the others keep no frame.
#[inline(never)]
unsafe fn send(o: *mut Outbox, i: usize) -> SentTo {
    // SAFETY: slot `i` holds a batch of live blocks of `seg[i]`.
    unsafe {
        let to = push((*o).seg[i], (*o).batch[i]);
        (*o).batch[i] = null_mut();
        (*o).used &= !(1 << i);
        to
    }
}

/// Pushes `bt`, a batch of live blocks of `seg`, onto `seg`'s inbox;
/// returns the owner word read before the push.
///
/// # Safety
/// `bt` holds live blocks of `seg` given up by the caller, and is the
/// caller's; nothing of it or of the segment may be touched after this
/// returns.
unsafe fn push(seg: *mut Segment, bt: *mut Batch) -> SentTo {
    // SAFETY: the batch's blocks are live, so the segment is mapped until
    // the CAS publishes them; nothing of it is touched after.
    unsafe {
        let to = (*seg).thread_id.load(Ordering::Acquire);
        let inbox = &(*seg).inbox.0;
        let mut old = inbox.load(Ordering::Relaxed);
        loop {
            (*bt).next = old.cast::<Batch>();
            match inbox.compare_exchange_weak(old, bt.cast(), Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return to,
                Err(now) => old = now,
            }
        }
    }
}

/// Takes `seg`'s inbox and puts every block of every batch back: in the
/// collecting heap's magazines when `mags` is its field and `root` its
/// root cache (see `magazine`), else (and when those are full) on its
/// slab, moving slabs between lists (and giving emptied ones back) as local
/// frees do; the batches go back to their pool. Returns whether any block
/// came back.
///
/// # Safety
/// The calling thread owns `seg` (or is adopting it); `mags` is null or
/// its heap's magazine field, with `root` that heap's root cache.
pub unsafe fn collect(seg: *mut Segment, mags: *mut *mut Magazines, root: *mut Cache) -> bool {
    // SAFETY: owner-only access to the segment's slabs; the swap takes the
    // inbox whole, and pairs with the senders' SeqCst pushes, which
    // published the batches' contents.
    unsafe {
        if (*seg).inbox.0.load(Ordering::Relaxed).is_null() {
            return false;
        }
        let mut bt = (*seg)
            .inbox
            .0
            .swap(null_mut(), Ordering::SeqCst)
            .cast::<Batch>();
        while !bt.is_null() {
            let next = (*bt).next;
            let blocks = &(&(*bt).blocks)[..(*bt).count];
            for &b in blocks {
                if layout::head_of(b.cast()).cast::<Segment>() != seg {
                    crate::os::fatal("memcg: a remote free names a block of another segment\n");
                }
                let s = segment::slab_of(seg, b.cast());
                if (*s).state != SPAN_SLAB || b == (*s).free {
                    crate::os::fatal("memcg: bad or double free detected in a remote free\n");
                }
                #[cfg(feature = "checks")]
                slab::check_free(s, b);
                if !mags.is_null() && magazine::stash(mags, root, s, b) {
                    continue;
                }
                cache::return_block(s, b);
            }
            BATCHES.free(bt.cast());
            bt = next;
        }
        true
    }
}

/// A stuck list's link: the next block's address under the free-list
/// secret.
#[inline(always)]
fn encode(next: *mut Block) -> usize {
    next as usize ^ slab::chain_key()
}

#[inline(always)]
fn decode(word: usize) -> *mut Block {
    (word ^ slab::chain_key()) as *mut Block
}
