//! The model with 10,000 groups on four threads: seeded-random turns of
//! enter, leave, alloc (plain, zeroed, over-aligned, `fallible`), free on
//! any thread, 4 MiB bursts and group deaths with live objects, checked op
//! by op and, with every thread flushed, figure by figure. See
//! `rel_common/scale.rs` for the model and what it predicts.
//!
//! `REL_SCALE_SEED=<n>` runs that one seed (decimal or 0x-hex);
//! `REL_SCALE_SEEDS=<k>` runs `k` seeds from the default one on;
//! `REL_SCALE_SLACK=strict` holds every level of a chain to
//! `threads x 2 x reserve_batch` (a parent fails it: `rel_scale_slack.rs`).

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

#[path = "rel_common/model.rs"]
mod model;
#[path = "rel_common/scale.rs"]
mod scale;

use scale::{Case, Config};
use std::time::Instant;

fn parse(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("REL_SCALE_SEED").ok().and_then(|v| parse(&v)) {
        return vec![s];
    }
    let k = std::env::var("REL_SCALE_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3u64);
    (0..k).map(|i| 0x5CA1_E000 + i).collect()
}

#[test]
fn model_10000_groups_4_threads() {
    for seed in seeds() {
        let t0 = Instant::now();
        let c = Case::new(Config::new(seed)).run();
        eprintln!("seed {seed:#x}: {:.1} s, {c:?}", t0.elapsed().as_secs_f64());
        // The case did what it is for.
        assert!(c.groups_made >= 10_000);
        assert!(
            c.refused > 0 && c.probe_refusals > 0,
            "no limit was hit: {c:?}"
        );
        assert!(c.deaths_with_objects > 0 && c.most_dying > 0, "{c:?}");
        assert!(c.cross_frees > 0 && c.isolated_allocs > 0 && c.large_allocs > 0);
        assert!(c.fallible_allocs > 0 && c.promoted > 0, "{c:?}");
        assert!(
            c.entered_per_thread.iter().all(|&n| n > 5000),
            "each thread should keep thousands of group caches: {c:?}"
        );
    }
}
