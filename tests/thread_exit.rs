//! Thread exit: blocks outliving their thread, and frees and allocations
//! that run after the allocator has torn the thread's heap down.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

fn fill(v: &mut [u8], seed: u8) {
    for (i, b) in v.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
}

fn check(v: &[u8], seed: u8) {
    for (i, b) in v.iter().enumerate() {
        assert_eq!(
            *b,
            seed.wrapping_add(i as u8),
            "byte {i} of a block from seed {seed}"
        );
    }
}

#[test]
fn blocks_outlive_their_thread_and_are_adopted() {
    // Threads allocate and exit; their blocks are freed here, on another
    // thread, after the owning heap is gone (remote frees to abandoned
    // segments), and new threads adopt the abandoned segments.
    for round in 0..20u8 {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let blocks: Vec<Vec<u8>> = (0..2000)
                .map(|i| {
                    let mut v = vec![0u8; 16 + (i % 700)];
                    fill(&mut v, round);
                    v
                })
                .collect();
            tx.send(blocks).unwrap();
        })
        .join()
        .unwrap();
        let blocks = rx.recv().unwrap();
        for b in &blocks {
            check(b, round);
        }
        drop(blocks);
    }
    let before = memcg::alloc_stats();
    memcg::purge();
    let after = memcg::alloc_stats();
    println!("before purge {before:?}\nafter purge  {after:?}");
    assert!(after.resident <= before.resident);
    assert!(
        after.active < 8 << 20,
        "abandoned slabs stayed active: {after:?}"
    );
}

static KEY_BLOCK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static KEY_OK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const LATE: Layout = match Layout::from_size_align(48, 8) {
    Ok(l) => l,
    Err(_) => panic!(),
};

extern "C" fn late_destructor(p: *mut libc::c_void) {
    // Runs after the allocator's own key destructor (keys run in creation
    // order and the allocator's key was made by this binary's first
    // allocation): free the block given to us, allocate and free more.
    let b = p.cast::<u8>();
    // SAFETY: `b` is a live 48-byte block set by the thread below.
    unsafe {
        for i in 0..48 {
            assert_eq!(*b.add(i), 0x5A);
        }
        GLOBAL.dealloc(b, LATE);
        for n in 0..100 {
            let q = GLOBAL.alloc(Layout::from_size_align(8 + n * 16, 8).unwrap());
            assert!(!q.is_null());
            q.write_bytes(1, 8 + n * 16);
            GLOBAL.dealloc(q, Layout::from_size_align(8 + n * 16, 8).unwrap());
        }
    }
    KEY_OK.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn frees_and_allocations_after_heap_teardown_are_correct() {
    // Make sure the allocator's key exists before ours.
    drop(vec![0u8; 10]);
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out-pointer; the destructor never unwinds across C
    // (assertion failures would abort the process, failing the test).
    assert_eq!(
        unsafe { libc::pthread_key_create(&mut key, Some(late_destructor)) },
        0
    );
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                // SAFETY: a valid non-zero layout; the block is handed to the
                // key destructor, which frees it.
                unsafe {
                    let b = GLOBAL.alloc(LATE);
                    assert!(!b.is_null());
                    b.write_bytes(0x5A, 48);
                    KEY_BLOCK.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    libc::pthread_setspecific(key, b.cast());
                }
                let v: Vec<u64> = (0..10_000).collect();
                assert_eq!(v.iter().sum::<u64>(), 49_995_000);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(KEY_OK.load(std::sync::atomic::Ordering::SeqCst), 8);
}
