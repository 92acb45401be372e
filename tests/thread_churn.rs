//! Spawns and joins 10,000 short-lived threads, a few at a time, each allocating and
//! freeing a mix of small blocks and a few large ones (some freed by the parent thread).
//! Thread exit must not leak: after `memcg::purge()`, resident memory (VmRSS) may grow by
//! less than 8 MiB over the level measured after a 100-thread warm-up.

use std::thread;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

const THREADS: usize = 10_000;
const WARM_UP: usize = 100;
const BATCH: usize = 4;
const MAX_GROWTH: usize = 8 << 20;

/// VmRSS of this process in bytes, read from /proc/self/status into a stack buffer
/// (the only allocation is the path's C string made by `File::open`).
fn vm_rss() -> usize {
    use std::io::Read;
    let mut buf = [0u8; 16 << 10];
    let mut len = 0;
    let mut f = std::fs::File::open("/proc/self/status").expect("open /proc/self/status");
    loop {
        let n = f.read(&mut buf[len..]).expect("read /proc/self/status");
        if n == 0 || len + n == buf.len() {
            len += n;
            break;
        }
        len += n;
    }
    let text = &buf[..len];
    let key = b"VmRSS:";
    let start = text
        .windows(key.len())
        .position(|w| w == key)
        .expect("VmRSS line in /proc/self/status")
        + key.len();
    let mut kib = 0usize;
    let mut seen_digit = false;
    for &c in &text[start..] {
        match c {
            b'0'..=b'9' => {
                kib = kib * 10 + usize::from(c - b'0');
                seen_digit = true;
            }
            b' ' | b'\t' if !seen_digit => {}
            _ => break,
        }
    }
    assert!(seen_digit, "no number after VmRSS:");
    kib << 10
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The work of one short-lived thread. Returns one large block and a few small ones for
/// the parent to free (frees of blocks owned by a thread that has exited).
fn churn(id: usize) -> (Vec<u8>, Vec<Box<[u64]>>) {
    let mut small: Vec<Box<[u8]>> = Vec::with_capacity(128);
    for i in 0..128 {
        let size = 1 + (id * 31 + i * 97) % 1024;
        small.push(vec![i as u8; size].into_boxed_slice());
    }
    // Free every other one, then allocate again into the holes.
    for i in (0..small.len()).step_by(2) {
        small[i] = vec![0u8; 8 + i].into_boxed_slice();
    }
    let mut s = String::new();
    for i in 0..50 {
        s.push_str(&i.to_string());
    }
    assert!(s.len() > 50);
    // A few large blocks: touched sparsely so that the test measures the allocator, not
    // page-fault throughput.
    let mut large: Vec<Vec<u8>> = Vec::new();
    for &size in &[300 << 10, 1 << 20, (2 << 20) + 4096] {
        let mut v: Vec<u8> = Vec::with_capacity(size);
        v.resize(size / 64, 1);
        large.push(v);
    }
    let checksum: usize = small.iter().map(|b| b.len()).sum();
    assert!(checksum > 0);
    let handed: Vec<Box<[u64]>> = (0..4)
        .map(|i| vec![i as u64; 4].into_boxed_slice())
        .collect();
    let big = large.pop().expect("large block");
    (big, handed)
}

fn run_threads(count: usize, first_id: usize) {
    let mut next = 0;
    while next < count {
        let n = BATCH.min(count - next);
        let handles: Vec<_> = (0..n)
            .map(|k| {
                let id = first_id + next + k;
                thread::spawn(move || churn(id))
            })
            .collect();
        for h in handles {
            let (big, handed) = h.join().expect("churn thread panicked");
            assert_eq!(big.len(), ((2 << 20) + 4096) / 64);
            assert_eq!(handed.len(), 4);
        }
        next += n;
    }
}

#[test]
fn ten_thousand_threads_do_not_grow_resident_memory() {
    run_threads(WARM_UP, 0);
    memcg::purge();
    let before = vm_rss();
    let stats_before = memcg::alloc_stats();

    let t = std::time::Instant::now();
    run_threads(THREADS, WARM_UP);
    let elapsed = t.elapsed();

    memcg::purge();
    let after = vm_rss();
    let stats_after = memcg::alloc_stats();
    let growth = after.saturating_sub(before);
    println!(
        "thread_churn: {THREADS} threads in batches of {BATCH} took {elapsed:.2?}; VmRSS {:.1} MiB -> {:.1} MiB (growth {:.2} MiB, limit {:.0} MiB)",
        mib(before),
        mib(after),
        mib(growth),
        mib(MAX_GROWTH)
    );
    println!("thread_churn: alloc_stats before {stats_before:?}");
    println!("thread_churn: alloc_stats after  {stats_after:?}");
    assert!(
        growth < MAX_GROWTH,
        "resident memory grew by {:.2} MiB over {THREADS} threads (limit {:.0} MiB)",
        mib(growth),
        mib(MAX_GROWTH)
    );
}
