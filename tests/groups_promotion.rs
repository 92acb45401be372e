//! A group that becomes busy on a thread (and gets a cache of its own
//! there) takes along the slabs it filled before. Its own process, beside
//! no other test's allocations on the thread.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

#[test]
fn a_group_promoted_on_a_thread_takes_its_earlier_slabs_along() {
    // 6 MiB of 64-byte objects in one group on one thread: the first 4 MiB
    // come from the thread's shared (tagged) slabs, the rest from the slabs
    // of the group's own cache, made when it became busy. At that point
    // the earlier slabs, which hold nothing but the group's blocks, become
    // the group's own too: its per-class figures cover them all. (Before,
    // they stayed shared: about 2 MiB was the group's.)
    let g = memcg::Group::new("promoted-early-slabs");
    let g2 = g.clone();
    std::thread::spawn(move || {
        let _in = g2.enter();
        let all: Vec<Vec<u8>> = (0..(6 << 20) / 64).map(|_| vec![7u8; 64]).collect();
        let own: usize = g2
            .stats()
            .classes
            .iter()
            .filter(|c| c.size == 64)
            .map(|c| c.slab_bytes)
            .sum();
        assert!(
            own >= 5 << 20,
            "the group's own 64-byte slabs hold {own} bytes of its 6 MiB"
        );
        // Freed on the fast path of the group's own cache.
        drop(all);
    })
    .join()
    .unwrap();
    assert_eq!(g.stats().current, 0);
}
