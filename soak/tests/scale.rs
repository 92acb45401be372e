//! The soak's scale mode (10,000 groups on 4 threads) for a few seconds,
//! as part of the test suite.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use memcg_soak::{run, Config};
use std::time::Duration;

#[test]
fn scale_soak_passes() {
    let cfg = Config {
        duration: Duration::from_secs(4),
        ..Config::scale()
    };
    let report = run(&cfg);
    eprintln!("{report}");
    assert!(report.ops > 0);
    assert!(report.violations.is_empty(), "{report}");
}
