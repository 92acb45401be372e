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
        // SAFETY: a node alone is a chain from itself to itself; the caller
        // owns it.
        unsafe { self.push_chain(node, node) }
    }

    /// Pushes a chain of nodes, `first` on top, in one step: they keep
    /// their order, and the stack never shows part of the chain.
    ///
    /// # Safety
    /// `first` and `last` must be valid nodes starting with a [`Link`],
    /// `last` reachable from `first` through `next`, and every node from
    /// `first` to `last` exclusively owned by the caller.
    pub unsafe fn push_chain(&self, first: *mut Link, last: *mut Link) {
        let mut old = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller owns the chain until the CAS publishes it;
            // only its last link changes.
            unsafe { (*last).next.store(Self::unpack(old), Ordering::Relaxed) };
            match self.head.compare_exchange_weak(
                old,
                Self::pack(first, old),
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

/// The last node of a list linked through `next` (such as one `take_all`
/// returned).
///
/// # Safety
/// `node` and every node after it must be valid and the caller's alone.
pub unsafe fn last_of(mut node: *mut Link) -> *mut Link {
    loop {
        // SAFETY: the caller owns every node of the list.
        let next = unsafe { (*node).next.load(Ordering::Relaxed) };
        if next.is_null() {
            return node;
        }
        node = next;
    }
}

/// Reverses a list linked through `next`; returns its new first node.
///
/// # Safety
/// Every node of the list must be valid and the caller's alone.
pub unsafe fn reversed(mut node: *mut Link) -> *mut Link {
    let mut done: *mut Link = null_mut();
    while !node.is_null() {
        // SAFETY: the caller owns every node of the list.
        unsafe {
            let next = (*node).next.load(Ordering::Relaxed);
            (*node).next.store(done, Ordering::Relaxed);
            done = node;
            node = next;
        }
    }
    done
}

impl Default for AtomicStack {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> *mut Link {
        Box::into_raw(Box::new(Link {
            next: AtomicPtr::new(null_mut()),
        }))
    }

    fn drain(s: &AtomicStack) -> Vec<*mut Link> {
        let mut out = Vec::new();
        let mut n = s.take_all();
        while !n.is_null() {
            out.push(n);
            // SAFETY: taken nodes are ours; `next` was written by a push.
            n = unsafe { (*n).next.load(Ordering::Relaxed) };
        }
        out
    }

    #[test]
    fn a_chain_pushed_back_keeps_its_order_above_what_is_there() {
        let s = AtomicStack::new();
        let [a, b, c, d] = [node(), node(), node(), node()];
        // SAFETY: the nodes are fresh and ours.
        unsafe {
            s.push(a);
            s.push(b);
            s.push(c);
        }
        let top = s.take_all();
        assert_eq!(top, c);
        // SAFETY: `c` heads the taken chain c -> b -> a.
        let rest = unsafe { (*top).next.load(Ordering::Relaxed) };
        assert_eq!(rest, b);
        // SAFETY: `d` is ours; the chain b -> a is ours since the take.
        unsafe {
            s.push(d);
            s.push_chain(rest, a);
        }
        assert_eq!(drain(&s), vec![b, a, d]);
        for n in [a, b, c, d] {
            // SAFETY: every node came from `Box::into_raw` and is off the stack.
            drop(unsafe { Box::from_raw(n) });
        }
    }

    #[test]
    fn chains_pushed_from_several_threads_all_arrive_whole() {
        const THREADS: usize = 4;
        const CHAINS: usize = 500;
        let s = AtomicStack::new();
        std::thread::scope(|sc| {
            for _ in 0..THREADS {
                sc.spawn(|| {
                    for _ in 0..CHAINS {
                        let (x, y) = (node(), node());
                        // SAFETY: fresh nodes, linked x -> y, ours until pushed.
                        unsafe {
                            (*x).next.store(y, Ordering::Relaxed);
                            s.push_chain(x, y);
                        }
                    }
                });
            }
        });
        let all = drain(&s);
        assert_eq!(all.len(), THREADS * CHAINS * 2);
        for pair in all.chunks(2) {
            // SAFETY: drained nodes are ours.
            assert_eq!(unsafe { (*pair[0]).next.load(Ordering::Relaxed) }, pair[1]);
        }
        for n in all {
            // SAFETY: every node came from `Box::into_raw` and is off the stack.
            drop(unsafe { Box::from_raw(n) });
        }
    }
}
