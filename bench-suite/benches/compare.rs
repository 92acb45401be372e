//! Allocators side by side, every one called through `&dyn GlobalAlloc` (no
//! inlining advantage), pointers and sizes through `black_box`. The bench
//! binary's global allocator is `memcg::SlabAlloc`, so memcg runs with its
//! real thread-local state.
//!
//! Allocators: system, jemalloc, mimalloc, snmalloc, `memcg_root` (before any
//! group exists), then, once 1,000 groups exist, `memcg_root_1000_groups` and
//! `memcg_group` (inside a group with a far limit). Budgeted-mode peers in the
//! pairs cases: `cap` (a global counter over System) and `tracking`
//! (`tracking-allocator` over jemalloc, inside a registered group, counters
//! updated on every allocation and free).
//!
//! Cases (criterion groups `compare_<case>`): `pairs_fixed_64`,
//! `pairs_random_16_1024`, `pairs_random_1k_32k`, `glibc_simple` (100 blocks
//! of one size, then free them all), `working_set_1024` (replace a random slot
//! of 1024 live blocks), `realloc_doubling` (8 bytes to 1 MiB),
//! `producer_consumer` (one thread allocates, the other frees, through a
//! bounded lock-free ring).
//!
//! Run: `cargo bench -p memcg-bench --bench compare`; one pass of each:
//! `... -- --test`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Bencher, Criterion};
use tracking_allocator::{AllocationGroupId, AllocationRegistry, AllocationTracker};

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static SNMALLOC: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;
static CAP: cap::Cap<System> = cap::Cap::new(System, FAR_LIMIT);
static TRACKING: tracking_allocator::Allocator<tikv_jemallocator::Jemalloc> =
    tracking_allocator::Allocator::from_allocator(tikv_jemallocator::Jemalloc);

const FAR_LIMIT: usize = 1 << 46;
const TABLE: usize = 4096;

/// Per-group byte counters, updated on every tracked allocation and free.
struct Counters;
static BYTES: [AtomicIsize; 64] = [const { AtomicIsize::new(0) }; 64];

impl AllocationTracker for Counters {
    fn allocated(&self, _addr: usize, _size: usize, wrapped: usize, group: AllocationGroupId) {
        BYTES[group.as_usize().get() % 64].fetch_add(wrapped as isize, Ordering::Relaxed);
    }

    fn deallocated(
        &self,
        _addr: usize,
        _size: usize,
        wrapped: usize,
        source: AllocationGroupId,
        _current: AllocationGroupId,
    ) {
        BYTES[source.as_usize().get() % 64].fetch_sub(wrapped as isize, Ordering::Relaxed);
    }
}

/// `TABLE` sizes in `lo..=hi` from a fixed-seed xorshift64*.
fn sizes(lo: usize, hi: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..TABLE)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            lo + (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo + 1) as u64) as usize
        })
        .collect()
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("layout")
}

/// Allocates through `a`, aborting on null like the global allocator path.
#[inline(always)]
fn alloc(a: &dyn GlobalAlloc, l: Layout) -> *mut u8 {
    // SAFETY: every layout here has a non-zero size.
    let p = unsafe { a.alloc(l) };
    if p.is_null() {
        std::alloc::handle_alloc_error(l);
    }
    black_box(p)
}

/// Frees a block of `a` allocated with `l`.
///
/// # Safety
/// `p` came from `a.alloc(l)` and is freed once.
#[inline(always)]
unsafe fn free(a: &dyn GlobalAlloc, p: *mut u8, l: Layout) {
    // SAFETY: the caller's contract.
    unsafe { a.dealloc(black_box(p), l) }
}

fn pairs(b: &mut Bencher, a: &dyn GlobalAlloc, table: &[usize]) {
    let mut i = 0usize;
    b.iter(|| {
        let l = layout(black_box(table[i & (TABLE - 1)]));
        i = i.wrapping_add(1);
        let p = alloc(a, l);
        // SAFETY: just allocated with `l`.
        unsafe { free(a, p, l) };
    });
}

fn glibc_simple(b: &mut Bencher, a: &dyn GlobalAlloc) {
    const SIZES: [usize; 4] = [16, 64, 256, 1024];
    let mut ptrs = [std::ptr::null_mut::<u8>(); 100];
    let mut i = 0usize;
    b.iter(|| {
        let l = layout(black_box(SIZES[i & 3]));
        i = i.wrapping_add(1);
        for p in ptrs.iter_mut() {
            *p = alloc(a, l);
        }
        for p in ptrs.iter() {
            // SAFETY: each was allocated above with `l`, freed once here.
            unsafe { free(a, *p, l) };
        }
    });
}

fn working_set(b: &mut Bencher, a: &dyn GlobalAlloc, table: &[usize]) {
    let idx = sizes(0, 1023, 0xABCD);
    let mut slots: Vec<(*mut u8, usize)> = (0..1024)
        .map(|k| (alloc(a, layout(table[k])), table[k]))
        .collect();
    let mut i = 0usize;
    b.iter(|| {
        let k = black_box(idx[i & (TABLE - 1)]);
        let size = black_box(table[(i * 7) & (TABLE - 1)]);
        i = i.wrapping_add(1);
        let (p, old) = slots[k];
        // SAFETY: slot k holds a live block of size `old` from `a`.
        unsafe { free(a, p, layout(old)) };
        slots[k] = (alloc(a, layout(size)), size);
    });
    for (p, s) in slots {
        // SAFETY: the live blocks, each freed once.
        unsafe { free(a, p, layout(s)) };
    }
}

fn realloc_doubling(b: &mut Bencher, a: &dyn GlobalAlloc) {
    b.iter(|| {
        let mut size = 8usize;
        let mut p = alloc(a, layout(size));
        while size < (1 << 20) {
            // SAFETY: `p` is live with `layout(size)`; the new size is non-zero.
            p = unsafe { a.realloc(p, layout(size), size * 2) };
            if p.is_null() {
                std::alloc::handle_alloc_error(layout(size * 2));
            }
            size *= 2;
            // SAFETY: the block has `size` bytes; touch its last one.
            unsafe { p.add(size - 1).write(1) };
        }
        // SAFETY: the final block, with its final layout.
        unsafe { free(a, p, layout(size)) };
    });
}

/// A bounded single-producer single-consumer ring of pointers.
struct Ring {
    slots: Box<[UnsafeCell<usize>]>,
    head: AtomicUsize,
    tail: AtomicUsize,
}

// SAFETY: a slot is written only by the producer while it is free (tail - head
// < capacity) and read only by the consumer after the producer's Release
// store of `tail`; `head` hands it back the same way.
unsafe impl Sync for Ring {}

impl Ring {
    const CAP: usize = 1024;

    fn new() -> Ring {
        Ring {
            slots: (0..Self::CAP).map(|_| UnsafeCell::new(0)).collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    fn push(&self, v: usize) {
        let t = self.tail.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while t - self.head.load(Ordering::Acquire) >= Self::CAP {
            backoff(&mut spins);
        }
        // SAFETY: the slot is free (see `Sync`), only the producer writes it.
        unsafe { *self.slots[t % Self::CAP].get() = v };
        self.tail.store(t + 1, Ordering::Release);
    }

    fn pop(&self) -> usize {
        let h = self.head.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while self.tail.load(Ordering::Acquire) == h {
            backoff(&mut spins);
        }
        // SAFETY: the slot was published by the producer's Release store.
        let v = unsafe { *self.slots[h % Self::CAP].get() };
        self.head.store(h + 1, Ordering::Release);
        v
    }
}

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn producer_consumer(b: &mut Bencher, a: &(dyn GlobalAlloc + Sync), table: &[usize]) {
    b.iter_custom(|iters| {
        let ring = Ring::new();
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..iters as usize {
                    let p = ring.pop() as *mut u8;
                    // SAFETY: the producer allocated it with this size from `a`.
                    unsafe { free(a, p, layout(table[i & (TABLE - 1)])) };
                }
            });
            for i in 0..iters as usize {
                ring.push(alloc(a, layout(table[i & (TABLE - 1)])) as usize);
            }
        });
        start.elapsed()
    });
}

type Alloc = (&'static str, &'static (dyn GlobalAlloc + Sync));

/// The size tables of the three pairs cases, by case name; the second is
/// also the working set's and the producer/consumer's.
fn pair_tables() -> [(&'static str, Vec<usize>); 3] {
    [
        ("pairs_fixed_64", vec![64usize; TABLE]),
        (
            "pairs_random_16_1024",
            sizes(16, 1024, 0x5EED_0000_1602_1024),
        ),
        (
            "pairs_random_1k_32k",
            sizes(1024, 32 << 10, 0x5EED_0000_0001_0032),
        ),
    ]
}

/// Every case for `allocs`; `pairs_only` adds peers to the pairs cases.
fn cases(c: &mut Criterion, allocs: &[Alloc], pairs_only: &[Alloc]) {
    let tables = pair_tables();
    for (case, table) in &tables {
        let mut g = c.benchmark_group(format!("compare_{case}"));
        for (name, a) in allocs.iter().chain(pairs_only) {
            g.bench_function(*name, |b| pairs(b, *a, table));
        }
        g.finish();
    }
    let small = &tables[1].1;
    let mut g = c.benchmark_group("compare_glibc_simple");
    for (name, a) in allocs {
        g.bench_function(*name, |b| glibc_simple(b, *a));
    }
    g.finish();
    let mut g = c.benchmark_group("compare_working_set_1024");
    for (name, a) in allocs {
        g.bench_function(*name, |b| working_set(b, *a, small));
    }
    g.finish();
    let mut g = c.benchmark_group("compare_realloc_doubling");
    for (name, a) in allocs {
        g.bench_function(*name, |b| realloc_doubling(b, *a));
    }
    g.finish();
    let mut g = c.benchmark_group("compare_producer_consumer");
    for (name, a) in allocs {
        g.bench_function(*name, |b| producer_consumer(b, *a, small));
    }
    g.finish();
}

fn compare(c: &mut Criterion) {
    let _ = AllocationRegistry::set_global_tracker(Counters);
    AllocationRegistry::enable_tracking();

    // Phase 1: no group exists yet.
    cases(
        c,
        &[
            ("system", &System),
            ("jemalloc", &JEMALLOC),
            ("mimalloc", &MIMALLOC),
            ("snmalloc", &SNMALLOC),
            ("memcg_root", &GLOBAL),
        ],
        &[("cap", &CAP)],
    );
    // The tracking peer inside an allocation group of its own.
    {
        let mut token = tracking_allocator::AllocationGroupToken::register().expect("token");
        let _in = token.enter();
        for (case, table) in &pair_tables() {
            let mut g = c.benchmark_group(format!("compare_{case}"));
            g.bench_function("tracking", |b| pairs(b, &TRACKING, table));
            g.finish();
        }
    }

    // Phase 2: 1,000 groups exist (each has allocated once).
    let groups: Vec<memcg::Group> = (0..1000)
        .map(|i| {
            memcg::Group::builder(&format!("compare-{i}"))
                .max(FAR_LIMIT)
                .build()
        })
        .collect();
    for g in &groups {
        g.scope(|| drop(black_box(vec![0u8; 64])));
    }
    cases(c, &[("memcg_root_1000_groups", &GLOBAL)], &[]);
    let budget = memcg::Group::builder("compare-budget")
        .max(FAR_LIMIT)
        .build();
    {
        let _in = budget.enter();
        cases(c, &[("memcg_group", &GLOBAL)], &[]);
    }
    drop(groups);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    targets = compare
}
criterion_main!(benches);
