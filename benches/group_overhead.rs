//! What groups cost the allocation path: malloc/free pairs (random sizes
//! 16..1024, through `&dyn GlobalAlloc`, pointers and sizes through
//! `black_box`) in the root group before any group exists, in the root
//! group with 1,000 groups in existence, and inside a group with a far
//! limit.
//!
//! Run: `cargo bench --bench group_overhead`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

fn size_table() -> Vec<usize> {
    let mut x: u64 = 0x5EED_0000_1602_1024;
    (0..4096)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            16 + (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1009) as usize
        })
        .collect()
}

fn pairs(c: &mut Criterion, name: &str, table: &[usize]) {
    let a: &dyn GlobalAlloc = black_box(&GLOBAL);
    c.bench_function(name, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let size = black_box(table[i & 4095]);
            i = i.wrapping_add(1);
            // SAFETY: sizes are 16..1024 with alignment 8: a valid layout.
            let layout = unsafe { Layout::from_size_align_unchecked(size, 8) };
            // SAFETY: a valid non-zero layout; the block is freed once.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                a.dealloc(black_box(p), layout);
            }
        })
    });
}

fn overhead(c: &mut Criterion) {
    let table = size_table();
    // Criterion runs these in order: first with no group in existence.
    pairs(c, "group_overhead/root_no_groups", &table);
    let groups: Vec<memcg::Group> = (0..1000)
        .map(|i| {
            memcg::Group::builder(&format!("bench-{i}"))
                .max(1 << 40)
                .build()
        })
        .collect();
    for g in &groups {
        g.scope(|| drop(black_box(vec![0u8; 64])));
    }
    pairs(c, "group_overhead/root_1000_groups", &table);
    let _in = groups[7].enter();
    pairs(c, "group_overhead/in_group", &table);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = overhead
}
criterion_main!(benches);
