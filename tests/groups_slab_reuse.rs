//! Slabs a busy group's threads leave behind are filled by the threads
//! after them. Its own process: it reads the allocator-wide `active` bytes.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

#[test]
fn a_busy_groups_slabs_serve_the_threads_after_it() {
    // Each round, a new thread allocates 8 MiB of 64-byte objects in one
    // group (enough for the group to get slabs of its own on the thread)
    // and frees all but one in 16, kept until the end. Its slabs outlive
    // it, a sixteenth full: the next threads must fill that room rather
    // than leave those slabs beside fresh ones. (When they did, rounds 2 to
    // 6 added 34 MB of active slabs; adopting the exited thread's segments
    // newest first, 21 MB; oldest first, as now, about 4 MB.)
    const ROUNDS: usize = 6;
    let g = memcg::Group::new("busy-rounds");
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut active = Vec::new();
    for round in 0..ROUNDS {
        let g = g.clone();
        let mine = std::thread::spawn(move || {
            let _in = g.enter();
            let all: Vec<Vec<u8>> = (0..(8 << 20) / 64).map(|_| vec![round as u8; 64]).collect();
            let mut mine = Vec::with_capacity(all.len() / 16);
            mine.extend(all.into_iter().step_by(16));
            mine
        })
        .join()
        .unwrap();
        kept.extend(mine);
        active.push(memcg::alloc_stats().active);
    }
    println!("active after each round: {active:?}");
    for (i, v) in kept.iter().enumerate() {
        assert!(v.iter().all(|&b| b as usize == i / (8 << 20 >> 10)));
    }
    let grown = active[ROUNDS - 1] - active[0];
    assert!(
        grown < 8 << 20,
        "rounds 2..{ROUNDS} added {grown} active bytes for 2.5 MiB kept: {active:?}"
    );
    drop(kept);
}
