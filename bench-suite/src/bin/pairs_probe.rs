//! `pairs_probe <n> [--group]`: `n` malloc/free pairs of random sizes 16..1024
//! (a fixed table of 4096 sizes) through `&dyn GlobalAlloc`, with the global
//! allocator chosen by this build's `alloc-*` feature; prints the time per
//! pair of the timed loop (the runner's timed pairs). The runner also runs it
//! under `valgrind --tool=cachegrind` for two values of `n` and divides the
//! difference of the instruction counts by the difference of `n`, so start-up
//! and the size table cancel out.

use memcg_bench::{budget, rng::Rng};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

memcg_bench::global_allocator!();

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let group = args.iter().any(|a| a == "--group");
    let Some(Ok(n)) = args
        .iter()
        .find(|a| *a != "--group")
        .map(|s| s.parse::<u64>())
    else {
        eprintln!("usage: pairs_probe <n> [--group]");
        return ExitCode::from(2);
    };
    budget::setup(group);
    let mut rng = Rng::new(42);
    let table: Vec<usize> = (0..4096).map(|_| rng.range(16, 1024)).collect();
    let a: &dyn GlobalAlloc = black_box(&GLOBAL);
    let (sum, elapsed) = budget::in_budget(|| {
        // Warm the allocator's caches for every size first: start-up cost.
        let mut sum = 0usize;
        for &size in &table {
            sum = sum.wrapping_add(pair(a, size));
        }
        let t = Instant::now();
        for i in 0..n {
            sum = sum.wrapping_add(pair(a, black_box(table[(i & 4095) as usize])));
        }
        (sum, t.elapsed())
    });
    let ns = elapsed.as_nanos() as f64 / n.max(1) as f64;
    println!("pairs={n} ns_per_pair={ns:.3} checksum={:x}", sum & 0xFFFF);
    ExitCode::SUCCESS
}

#[inline(always)]
fn pair(a: &dyn GlobalAlloc, size: usize) -> usize {
    let Ok(layout) = Layout::from_size_align(size, 8) else {
        return 0;
    };
    // SAFETY: `layout` has a non-zero size; the block is freed once, with it.
    unsafe {
        let p = a.alloc(layout);
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        let p = black_box(p);
        a.dealloc(p, layout);
        p as usize >> 4
    }
}
