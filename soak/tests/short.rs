//! The soak for about 5 seconds, as part of the test suite.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use memcg_soak::{run, Config};
use std::time::Duration;

#[test]
fn short_soak_passes() {
    let cfg = Config {
        threads: 4,
        groups: 6,
        duration: Duration::from_secs(5),
        ..Config::default()
    };
    let report = run(&cfg);
    eprintln!("{report}");
    assert!(report.ops > 0);
    assert!(report.violations.is_empty(), "{report}");
}
