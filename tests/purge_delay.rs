//! `set_purge_delay_ms` takes effect at once: after a long delay is
//! lowered to 0, the next slow path gives free pages back, instead of
//! waiting out the delay that was set when the heap's timer last ran.
//! One test in its own binary: the delay is process-wide.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const MIB: usize = 1 << 20;

/// About 8 MiB in 2 KiB blocks, freed again: their slabs' spans go back to
/// the heap's segments, resident until a purge.
fn churn() {
    let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 2000]).collect();
    assert_eq!(
        blocks.iter().map(|b| b[1999] as usize).sum::<usize>() % 256,
        0
    );
    drop(blocks);
}

#[test]
fn lowering_the_delay_purges_at_the_next_slow_path() {
    memcg::set_purge_delay_ms(600_000);
    // The first pass leaves free spans behind; the second one's first new
    // slab finds them and runs the heap's purge timer (nothing is old
    // enough to go), so the timer last ran just now.
    churn();
    churn();
    let before = memcg::alloc_stats().resident;
    assert!(
        before >= 8 * MIB,
        "the freed blocks' memory should still be resident: {before} bytes"
    );
    std::thread::sleep(std::time::Duration::from_millis(5));
    memcg::set_purge_delay_ms(0);
    // Sizes this thread has not used yet: each needs a new slab, whose slow
    // path looks at the timer.
    let fresh: Vec<Vec<u8>> = [3000usize, 5000, 7000, 9000, 12000, 20000]
        .iter()
        .map(|&n| vec![7u8; n])
        .collect();
    let after = memcg::alloc_stats().resident;
    assert!(
        after + 4 * MIB <= before,
        "with the delay lowered to 0 the free spans should be purged: \
         resident {before} bytes before, {after} after"
    );
    assert!(fresh.iter().all(|v| v.iter().all(|&b| b == 7)));
}
