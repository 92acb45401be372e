//! The documented slack of reserves (README, "How charging works"): a
//! reserve holds at most two batches, so `current` reads at most
//! `threads x 2 x reserve_batch` above the bytes of live objects, and a
//! `Fail` allocation is refused only when `current + size > max` with the
//! other threads' reserves (that slack) counted in `current`.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const KIB: usize = 1 << 10;

/// On this thread, in `g`: 200 objects of 1 KiB, then (when `big`) one of
/// 100 KiB, whose size class (112 KiB) is larger than a batch, then the
/// 200 freed while `g` is still the thread's loaded group. Returns the big
/// object (if any) and its charge.
fn small_then_big_then_free(g: &memcg::Group, big: bool) -> (Option<Vec<u8>>, usize) {
    let small: Vec<Box<[u8; 1024]>> = g.scope(|| (0..200).map(|_| Box::new([1u8; 1024])).collect());
    let b = big.then(|| g.scope(|| Vec::<u8>::with_capacity(100 * KIB)));
    // SAFETY: a live block of the global allocator.
    let charged = b
        .as_ref()
        .map_or(0, |b| unsafe { memcg::usable_size(b.as_ptr()) });
    drop(small);
    (b, charged)
}

fn assert_within_two_batches(g: &memcg::Group, live: usize, what: &str) {
    let batch = memcg::tunables().reserve_batch;
    let cur = g.current();
    assert!(
        cur <= live + 2 * batch,
        "{what}: current {cur} with {live} bytes live, one thread: the reserve holds {}, more \
         than 2 x reserve_batch = {}",
        cur - live,
        2 * batch
    );
}

/// The control: without the big refill the frees trim the reserve.
#[test]
fn frees_keep_the_reserve_within_two_batches() {
    let g = memcg::Group::new("rel-reserve-slack-control");
    let (b, live) = small_then_big_then_free(&g, false);
    assert_within_two_batches(&g, live, "no big object");
    memcg::flush();
    assert_eq!(g.current(), live);
    drop(b);
}

/// After a refill for a class larger than a batch (it charges class +
/// batch at once), frees on the same thread are not trimmed any more: the
/// reserve grows by every byte freed.
#[test]
fn frees_after_a_big_refill_keep_the_reserve_within_two_batches() {
    let g = memcg::Group::new("rel-reserve-slack-big-refill");
    let (b, live) = small_then_big_then_free(&g, true);
    assert_within_two_batches(&g, live, "after a 112 KiB refill");
    memcg::flush();
    assert_eq!(g.current(), live);
    drop(b);
}

/// What it costs another thread: the first thread's reserve, saved when it
/// leaves the group, counts against the limit; an allocation on a second
/// thread that fits with 2 x reserve_batch counted for the first is
/// refused.
#[test]
fn a_swollen_reserve_refuses_another_thread_below_the_slack() {
    let batch = memcg::tunables().reserve_batch;
    let max = 512 * KIB;
    let g = memcg::Group::builder("rel-reserve-slack-refusal")
        .max(max)
        .on_exceed(memcg::OnExceed::Fail)
        .build();
    let (b, live) = small_then_big_then_free(&g, true);
    // Another group entered: `g`'s reserve is saved in this thread's table.
    let other = memcg::Group::new("rel-reserve-slack-other");
    other.scope(|| drop(Box::new(0u8)));
    // The second thread asks for what fits beside `live` and the first
    // thread's documented slack.
    let ask = max - live - 2 * batch;
    let g2 = g.clone();
    let got = std::thread::spawn(move || {
        g2.scope(|| {
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(ask).is_ok()
        })
    })
    .join()
    .unwrap();
    assert!(
        got,
        "a {ask}-byte allocation on a second thread was refused: max {max}, {live} bytes live, \
         current {} (the first thread's reserve: {}, documented at most {})",
        g.current(),
        g.current() - live,
        2 * batch
    );
    drop(b);
}
