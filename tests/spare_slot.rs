//! The spare slot: a thread's last freed block of each small class is kept
//! for that class's next allocation, still charged to its group, and given
//! back at the class's next allocation, by `flush`, near a limit, and at
//! thread exit.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod groups_common;
use groups_common::*;

use memcg::{Group, OnExceed};
use std::alloc::{GlobalAlloc, Layout};

#[test]
fn a_freed_block_serves_the_next_allocation_of_its_class() {
    let l = Layout::from_size_align(200, 8).unwrap();
    // SAFETY: each block is freed once, with its layout.
    unsafe {
        let a = GLOBAL.alloc(l);
        GLOBAL.dealloc(a, l);
        let b = GLOBAL.alloc(l);
        assert_eq!(a, b, "the kept block comes back first");
        // A block shrunk in place to a smaller class's layout is not handed
        // out for that class: a request gets exactly its class's size.
        let c = GLOBAL.realloc(b, l, 180);
        assert_eq!(c, b, "200 -> 180 stays in place (same class)");
        let big = memcg::usable_size(c);
        let small = Layout::from_size_align(180, 8).unwrap();
        GLOBAL.dealloc(c, small);
        let d = GLOBAL.alloc(small);
        assert_ne!(d, c);
        assert!(memcg::usable_size(d) < big, "180 B gets its own class");
        GLOBAL.dealloc(d, small);
    }
}

#[test]
fn flush_gives_kept_blocks_back_to_their_group() {
    let g = Group::builder("spare-flush").build();
    let v = g.scope(|| vec![7u8; 512]);
    assert!(g.current() >= 512);
    g.scope(|| drop(v));
    // The block waits in the slot (and the reserve holds the rest), both
    // still charged; `flush` hands both back.
    g.scope(memcg::flush);
    assert_eq!(g.current(), 0, "{}", g.stats());
}

#[test]
fn a_block_freed_in_another_group_is_credited_to_its_own() {
    let a = Group::builder("spare-owner").build();
    let b = Group::builder("spare-freer").build();
    let v = a.scope(|| vec![1u8; 300]);
    // Freed while `b` is current: it goes to `b`'s slot, but it is `a`'s.
    b.scope(|| drop(v));
    b.scope(|| {
        // The next allocation of the class finds a block that is not this
        // cache's, frees it on the full path (crediting `a`), and moves on.
        let w = vec![2u8; 300];
        drop(w);
    });
    a.scope(memcg::flush);
    b.scope(memcg::flush);
    assert_eq!(a.current(), 0, "{}", a.stats());
    assert_eq!(b.current(), 0, "{}", b.stats());
}

#[test]
fn near_max_a_kept_block_is_given_back_before_a_charge_is_refused() {
    let g = Group::builder("spare-near-max")
        .max(MIB)
        .on_exceed(OnExceed::Fail)
        .build();
    g.scope(|| {
        let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(4096);
        while blocks.len() < blocks.capacity() {
            match try_alloc(1000) {
                Some(v) => blocks.push(v),
                None => break,
            }
        }
        assert!(blocks.len() < blocks.capacity(), "max was reached");
        assert!(try_alloc(500).is_none(), "nothing left for another class");
        // The freed 1000-byte block is kept in its slot, still charged; a
        // request of another class must get its bytes all the same.
        drop(blocks.pop());
        let v = try_alloc(500);
        assert!(v.is_some(), "{}", g.stats());
        drop(v);
        drop(blocks);
    });
}

#[test]
fn a_thread_gives_its_kept_blocks_back_when_it_exits() {
    let g = Group::builder("spare-exit").build();
    let g2 = g.clone();
    std::thread::spawn(move || {
        g2.scope(|| {
            for size in [24usize, 100, 500, 1000] {
                drop(vec![0u8; size]);
            }
        });
    })
    .join()
    .unwrap();
    assert_eq!(g.current(), 0, "{}", g.stats());
}
