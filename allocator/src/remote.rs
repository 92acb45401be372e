//! Remote frees: a block freed by a thread that does not own its segment
//! travels back to the owner in a batch, never one atomic operation per
//! block.
//!
//! - The freeing thread links the block into its *outbox*: one chain per
//!   destination segment, in [`SLOTS`] direct-mapped slots. It touches only
//!   the block, the segment header's owner word and the slab descriptor's
//!   first line, which its owner writes only when the slab changes lists
//!   (see `slab::Slab`), so freeing does not pull the owner's hot lines.
//! - A chain of [`BATCH`] blocks, a chain displaced from its slot, and every
//!   chain when the thread flushes (its allocation slow path, `flush()`,
//!   thread exit) is *sent*: pushed onto the segment's inbox with one CAS.
//!   The sender then raises the owning heap's pending flag (one store, only
//!   when it is not already up).
//! - The owner, on its slow path and only when its flag is up, takes each
//!   non-empty inbox of its segments whole ([`collect`]) and puts each block
//!   back on its slab's free list as a local free would. Segments with
//!   empty inboxes cost one load; no slab is scanned.
//!
//! Credits are not part of this: the freeing thread credits the block's
//! group when it frees (`free.rs`), so a block in flight is uncharged
//! already and only its memory waits. A block in flight is still counted in
//! its slab's `used`, so its slab and segment stay until the owner collects
//! it: a sender may touch the segment up to its CAS, never after.
//!
//! Chains link blocks through their first word under a key (as free lists
//! do), and the owner checks that every block of a chain lies in the
//! segment it came from, so a use after free that writes a block in flight
//! cannot send the owner elsewhere.

use crate::cache;
use crate::layout::{Block, SEGMENT_SHIFT};
use crate::segment::{self, Segment};
use crate::slab::{self, SPAN_SLAB};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Destination segments an outbox holds chains for at once.
pub const SLOTS: usize = 8;

/// Blocks a chain collects before it is sent.
pub const BATCH: u32 = 32;

/// A thread's chains of blocks freed into other threads' segments.
#[repr(C)]
pub struct Outbox {
    seg: [*mut Segment; SLOTS],
    head: [*mut Block; SLOTS],
    tail: [*mut Block; SLOTS],
    count: [u32; SLOTS],
    /// Bit `i`: slot `i` holds a chain.
    used: u32,
}

impl Outbox {
    pub const fn new() -> Outbox {
        Outbox {
            seg: [null_mut(); SLOTS],
            head: [null_mut(); SLOTS],
            tail: [null_mut(); SLOTS],
            count: [0; SLOTS],
            used: 0,
        }
    }

    /// Whether some chain waits to be sent.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
}

/// What a sender tells the owner: the owner word it read before its CAS.
pub type SentTo = usize;

/// Adds `b`, a live block of `seg` freed by the calling thread, to the
/// outbox; returns the owner word of each segment whose chain it sent (at
/// most two: a displaced chain and a full one), 0 for none.
///
/// # Safety
/// `o` is the calling thread's outbox; `b` is a live block of `seg`, which
/// another heap owns (or no heap: abandoned).
#[inline]
pub unsafe fn add(o: *mut Outbox, seg: *mut Segment, b: *mut Block) -> [SentTo; 2] {
    let mut sent = [0; 2];
    // SAFETY: the outbox is the caller's; `b` is a live block the caller
    // gives up, so its first word is ours to write.
    unsafe {
        let i = (seg as usize >> SEGMENT_SHIFT) % SLOTS;
        if (*o).seg[i] != seg {
            if (*o).used & (1 << i) != 0 {
                sent[0] = send(o, i);
            }
            (*o).seg[i] = seg;
        }
        let head = (*o).head[i];
        if head == b {
            crate::os::fatal(
                "memcg: double free detected (block freed twice from another thread)\n",
            );
        }
        (*b).next = encode(head);
        (*o).head[i] = b;
        if head.is_null() {
            (*o).tail[i] = b;
            (*o).used |= 1 << i;
        }
        (*o).count[i] += 1;
        if (*o).count[i] >= BATCH {
            sent[1] = send(o, i);
        }
    }
    sent
}

/// Sends every chain of the outbox; calls `sent` with each owner word.
///
/// # Safety
/// `o` is the calling thread's outbox.
pub unsafe fn send_all(o: *mut Outbox, mut sent: impl FnMut(SentTo)) {
    // SAFETY: the caller's outbox; each used slot holds a chain.
    unsafe {
        loop {
            let used = (*o).used;
            if used == 0 {
                break;
            }
            sent(send(o, used.trailing_zeros() as usize));
        }
    }
}

/// Sends a chain of one block at once (for a thread with no outbox: one
/// exiting, or one that never allocated). Returns the owner word.
///
/// # Safety
/// As for [`add`].
pub unsafe fn send_one(seg: *mut Segment, b: *mut Block) -> SentTo {
    // SAFETY: as in `add`; the block is the whole chain.
    unsafe {
        (*b).next = encode(null_mut());
        push(seg, b, b)
    }
}

/// Pushes slot `i`'s chain onto its segment's inbox and empties the slot.
///
/// # Safety
/// `o` is the calling thread's outbox and slot `i` holds a chain.
unsafe fn send(o: *mut Outbox, i: usize) -> SentTo {
    // SAFETY: slot `i` holds a chain of live blocks of `seg[i]`.
    unsafe {
        let to = push((*o).seg[i], (*o).head[i], (*o).tail[i]);
        (*o).head[i] = null_mut();
        (*o).tail[i] = null_mut();
        (*o).count[i] = 0;
        (*o).used &= !(1 << i);
        to
    }
}

/// Pushes the chain `head..=tail` (linked by [`encode`], `tail`'s link
/// still to be written) onto `seg`'s inbox; returns the owner word read
/// before the push.
///
/// # Safety
/// `head..=tail` is a chain of live blocks of `seg` linked by [`encode`], given up by the caller;
/// nothing of it may be touched after this returns.
unsafe fn push(seg: *mut Segment, head: *mut Block, tail: *mut Block) -> SentTo {
    // SAFETY: the chain's blocks are live, so the segment is mapped until
    // the CAS publishes them; nothing of it is touched after.
    unsafe {
        let to = (*seg).thread_id.load(Ordering::Acquire);
        let inbox = &(*seg).inbox.0;
        let mut old = inbox.load(Ordering::Relaxed);
        loop {
            if old == head {
                crate::os::fatal(
                    "memcg: double free detected (block freed twice from another thread)\n",
                );
            }
            (*tail).next = encode(old);
            match inbox.compare_exchange_weak(old, head, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return to,
                Err(now) => old = now,
            }
        }
    }
}

/// Takes `seg`'s inbox and puts every block back on its slab, moving slabs
/// between lists (and giving emptied ones back) as local frees do. Returns
/// whether any block came back.
///
/// # Safety
/// The calling thread owns `seg` (or is adopting it).
pub unsafe fn collect(seg: *mut Segment) -> bool {
    // SAFETY: owner-only access to the segment's slabs; the swap takes the
    // chain whole, and pairs with the senders' SeqCst pushes.
    unsafe {
        if (*seg).inbox.0.load(Ordering::Relaxed).is_null() {
            return false;
        }
        let mut b = (*seg).inbox.0.swap(null_mut(), Ordering::SeqCst);
        while !b.is_null() {
            if crate::layout::head_of(b.cast()).cast::<Segment>() != seg {
                crate::os::fatal("memcg: a remote free chain was overwritten (use after free)\n");
            }
            let next = decode((*b).next);
            let s = segment::slab_of(seg, b.cast());
            if (*s).state != SPAN_SLAB || b == (*s).free {
                crate::os::fatal("memcg: bad or double free detected in a remote free\n");
            }
            #[cfg(feature = "checks")]
            slab::check_free(s, b);
            slab::link(s, b, (*s).free);
            (*s).free = b;
            (*s).used_rel -= 1;
            if (*s).used_rel < 0 {
                cache::after_free(s);
            }
            b = next;
        }
        true
    }
}

/// A chain link: the next block's address under the free-list secret.
#[inline(always)]
fn encode(next: *mut Block) -> usize {
    next as usize ^ slab::chain_key()
}

#[inline(always)]
fn decode(word: usize) -> *mut Block {
    (word ^ slab::chain_key()) as *mut Block
}
