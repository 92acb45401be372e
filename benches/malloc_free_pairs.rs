//! Allocation/free pairs, every allocator called through `&dyn GlobalAlloc` so that
//! none of them gets an inlining advantage; pointers and sizes pass through `black_box`.
//!
//! - `pairs_fixed/<size>/<allocator>`: one `alloc` + `dealloc` of a fixed size.
//! - `pairs_random_16_1024/<allocator>`: sizes from a fixed table of 4096 random sizes in
//!   16..=1024 (the index cycles), one pair per iteration.
//!
//! `memcg::SlabAlloc` is also this binary's global allocator, so it runs with its real
//! thread-local state rather than as a side instance.
//!
//! Run: `cargo bench --bench malloc_free_pairs`; quick check: `... -- --test`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FIXED_SIZES: [usize; 4] = [16, 64, 256, 1024];
const TABLE_LEN: usize = 4096;
const ALIGN: usize = 8;

fn allocators() -> [(&'static str, &'static dyn GlobalAlloc); 4] {
    [
        ("system", &System),
        ("jemalloc", &JEMALLOC),
        ("mimalloc", &MIMALLOC),
        ("memcg", &GLOBAL),
    ]
}

/// 4096 sizes in 16..=1024 from a fixed-seed xorshift64*.
fn size_table() -> Vec<usize> {
    let mut x: u64 = 0x5EED_0000_1602_1024;
    (0..TABLE_LEN)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            16 + (r % (1024 - 16 + 1)) as usize
        })
        .collect()
}

/// One allocation and free of `layout` through `a`.
#[inline(always)]
fn pair(a: &dyn GlobalAlloc, layout: Layout) {
    // SAFETY: every layout used here has a non-zero size.
    let p = unsafe { a.alloc(layout) };
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    let p = black_box(p);
    // SAFETY: `p` was just returned by `a` for `layout` and is freed once.
    unsafe { a.dealloc(p, layout) };
}

fn pairs_fixed(c: &mut Criterion) {
    for size in FIXED_SIZES {
        let mut group = c.benchmark_group(format!("pairs_fixed/{size}"));
        for (name, a) in allocators() {
            group.bench_function(name, |b| {
                let a = black_box(a);
                b.iter(|| {
                    let size = black_box(size);
                    // SAFETY: `size` is one of FIXED_SIZES (non-zero, far below
                    // isize::MAX) and ALIGN is a power of two.
                    let layout = unsafe { Layout::from_size_align_unchecked(size, ALIGN) };
                    pair(a, layout);
                });
            });
        }
        group.finish();
    }
}

fn pairs_random(c: &mut Criterion) {
    let table = size_table();
    let mut group = c.benchmark_group("pairs_random_16_1024");
    for (name, a) in allocators() {
        group.bench_function(name, |b| {
            let a = black_box(a);
            let mut i = 0usize;
            b.iter(|| {
                let size = black_box(table[i % TABLE_LEN]);
                i = i.wrapping_add(1);
                // SAFETY: table sizes are in 16..=1024 and ALIGN is a power of two.
                let layout = unsafe { Layout::from_size_align_unchecked(size, ALIGN) };
                pair(a, layout);
            });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = pairs_fixed, pairs_random
}
criterion_main!(benches);
