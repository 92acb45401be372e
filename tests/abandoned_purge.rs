//! The purge timer gives back what an exited thread left: blocks that
//! outlived their thread and were freed by another one afterwards reach
//! their abandoned segments as remote frees, and the timer's pass over the
//! abandoned segments puts them back on their slabs, so that the emptied
//! slabs' pages go back to the OS without any thread having to adopt the
//! segments. One test in its own binary: the delay is process-wide.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const MIB: usize = 1 << 20;

/// Allocates 64 blocks in each of a few sizes the test uses nowhere else:
/// the slabs they need are made on the slow path, which looks at the purge
/// timer.
fn slow_paths(round: usize) -> usize {
    let sizes = [3000usize, 5000, 7000, 9000, 12000, 20000];
    let v: Vec<Vec<u8>> = sizes
        .iter()
        .flat_map(|&n| (0..64).map(move |i| vec![(round + i) as u8; n]))
        .collect();
    v.iter().map(|b| b[0] as usize).sum()
}

#[test]
fn the_timer_gives_back_blocks_freed_after_their_thread_exited() {
    memcg::set_purge_delay_ms(1);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // 16 MiB in 1 KiB blocks, all handed to the main thread.
        let blocks: Vec<Vec<u8>> = (0..16 * 1024).map(|i| vec![i as u8; 1000]).collect();
        tx.send(blocks).unwrap();
    })
    .join()
    .unwrap();
    let blocks = rx.recv().unwrap();
    assert_eq!(
        blocks.iter().map(|b| b[999] as usize).sum::<usize>() % 256,
        0
    );
    let held = memcg::alloc_stats();
    assert!(
        held.active >= 16 * MIB,
        "the blocks should be active: {held:?}"
    );
    drop(blocks);
    // Whether the slabs and pages of (most of) the 16 MiB went back.
    let given_back = |now: &memcg::AllocStats| {
        (
            now.active + 12 * MIB <= held.active,
            now.resident + 12 * MIB <= held.resident,
        )
    };
    let mut sum = 0;
    let mut after = memcg::alloc_stats();
    for round in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(3));
        sum += slow_paths(round);
        after = memcg::alloc_stats();
        if given_back(&after) == (true, true) {
            break;
        }
    }
    println!("holding {held:?}\nafter   {after:?}");
    assert!(sum > 0);
    let (slabs, pages) = given_back(&after);
    assert!(
        slabs,
        "the freed blocks' slabs stayed active: {held:?} then {after:?}"
    );
    assert!(
        pages,
        "the freed blocks' pages stayed resident: {held:?} then {after:?}"
    );
}
