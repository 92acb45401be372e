//! The segments an exited thread leaves are adopted in the order it took
//! them, oldest first (the most carved, whose slabs' room is used before
//! newer segments' untouched spans), however many adoptions and purge passes
//! come between. Its own process: no other test's threads adopt them.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const SEGMENT: usize = 4 << 20;

fn segment_of(p: *const u8) -> usize {
    p as usize & !(SEGMENT - 1)
}

/// Allocates 1000-byte blocks until they have landed in `n` segments;
/// returns the segments in the order the blocks first reached them, and
/// every block.
fn fill_segments(n: usize, byte: u8) -> (Vec<usize>, Vec<Vec<u8>>) {
    let mut segments = Vec::new();
    let mut blocks = Vec::with_capacity(16 << 10);
    while segments.len() < n {
        let b = vec![byte; 1000];
        let s = segment_of(b.as_ptr());
        if !segments.contains(&s) {
            segments.push(s);
        }
        blocks.push(b);
        assert!(blocks.len() < 64 << 10, "{n} segments not reached");
    }
    (segments, blocks)
}

#[test]
fn an_exited_threads_segments_are_adopted_oldest_first_then_in_turn() {
    // A long delay: nothing is purged away, but purge passes still run.
    memcg::set_purge_delay_ms(600_000);
    // The first thread takes three segments and keeps one block in each,
    // so none is left unused (and unmapped) when it exits.
    let (taken, kept) = std::thread::spawn(|| {
        let (segments, blocks) = fill_segments(3, 1);
        let mut kept = Vec::new();
        for b in blocks {
            let s = segment_of(b.as_ptr());
            if !kept.iter().any(|k: &Vec<u8>| segment_of(k.as_ptr()) == s) {
                kept.push(b);
            }
        }
        (segments, kept)
    })
    .join()
    .unwrap();
    // The next thread adopts them one at a time as it fills each.
    let adopted = std::thread::spawn(|| {
        let (segments, blocks) = fill_segments(3, 2);
        assert!(blocks.iter().all(|b| b.iter().all(|&x| x == 2)));
        segments
    })
    .join()
    .unwrap();
    assert!(kept.iter().all(|b| b.iter().all(|&x| x == 1)));
    assert_eq!(
        adopted, taken,
        "segments taken {taken:x?}, adopted by the next thread {adopted:x?}"
    );
}
