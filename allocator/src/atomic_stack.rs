//! A lock-free intrusive stack (Treiber) of nodes whose first word is the link.
//!
//! The head packs a 48-bit pointer with a 16-bit tag bumped on every change,
//! so a `pop` racing with pop-push-pop of the same node fails its CAS instead
//! of corrupting the list (the ABA problem). `pop` reads the link of a node
//! another thread may have just taken, so it is only for memory that is never
//! unmapped (type-stable pools); `take_all` never reads another thread's node
//! and is safe for memory that may be unmapped once taken.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

const PTR_BITS: u32 = 48;
const PTR_MASK: u64 = (1 << PTR_BITS) - 1;

/// The link word every node starts with.
#[repr(C)]
pub struct Link {
    pub next: AtomicPtr<Link>,
}

/// See the module docs.
pub struct AtomicStack {
    head: AtomicU64,
}

impl AtomicStack {
    pub const fn new() -> Self {
        AtomicStack {
            head: AtomicU64::new(0),
        }
    }

    fn unpack(word: u64) -> *mut Link {
        (word & PTR_MASK) as usize as *mut Link
    }

    fn pack(ptr: *mut Link, old: u64) -> u64 {
        let tag = (old >> PTR_BITS).wrapping_add(1) << PTR_BITS;
        tag | (ptr as usize as u64 & PTR_MASK)
    }

    /// Whether the stack held no node when looked at.
    pub fn is_empty(&self) -> bool {
        Self::unpack(self.head.load(Ordering::Relaxed)).is_null()
    }

    /// Pushes a node.
    ///
    /// # Safety
    /// `node` must be valid, exclusively owned by the caller and start with a
    /// [`Link`].
    pub unsafe fn push(&self, node: *mut Link) {
        let mut old = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller owns `node` until the CAS publishes it.
            unsafe { (*node).next.store(Self::unpack(old), Ordering::Relaxed) };
            match self.head.compare_exchange_weak(
                old,
                Self::pack(node, old),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(cur) => old = cur,
            }
        }
    }

    /// Pops a node, or null when empty. Only for never-unmapped memory.
    pub fn pop(&self) -> *mut Link {
        let mut old = self.head.load(Ordering::Acquire);
        loop {
            let node = Self::unpack(old);
            if node.is_null() {
                return null_mut();
            }
            // SAFETY: nodes of this stack are never unmapped (the caller's
            // contract for using `pop`), so the read is of mapped memory; a
            // stale value is caught by the tagged CAS below.
            let next = unsafe { (*node).next.load(Ordering::Relaxed) };
            match self.head.compare_exchange_weak(
                old,
                Self::pack(next, old),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return node,
                Err(cur) => old = cur,
            }
        }
    }

    /// Takes the whole stack; returns its first node (linked through `next`).
    pub fn take_all(&self) -> *mut Link {
        let mut old = self.head.load(Ordering::Acquire);
        loop {
            if Self::unpack(old).is_null() {
                return null_mut();
            }
            match self.head.compare_exchange_weak(
                old,
                Self::pack(null_mut(), old),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Self::unpack(old),
                Err(cur) => old = cur,
            }
        }
    }
}

impl Default for AtomicStack {
    fn default() -> Self {
        Self::new()
    }
}
