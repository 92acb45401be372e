//! `scale <case> [key=value ...]`: runs one group-scale case (see
//! `memcg_bench::scale`) with the global allocator chosen by this build's
//! `alloc-*` feature and prints one `scale=<case> alloc=<name> ...` line.
//! `runner --group-scale` (`bench-suite/run.sh --scale`) runs them all.
//!
//! ```text
//! scale util    tenants=1000 bytes=65536 threads=2 rounds=4
//! scale enter   groups=10 threads=2 passes=5 ops=2000000 budget_ms=300
//! scale idle    groups=100000 threads=2
//! scale dying   groups=10000 threads=2
//! scale service tenants=10000 requests=20 workers=2
//! ```
//!
//! The values shown are the defaults.

use memcg_bench::scale;
use std::collections::BTreeMap;
use std::process::ExitCode;

memcg_bench::global_allocator!();

const USAGE: &str = "usage: scale util|enter|idle|dying|service [key=value ...]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(case) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut kv: BTreeMap<String, u64> = BTreeMap::new();
    for a in &args[1..] {
        let parsed = a
            .split_once('=')
            .and_then(|(k, v)| v.parse::<u64>().ok().map(|v| (k.to_string(), v)));
        match parsed {
            Some((k, v)) => {
                kv.insert(k, v);
            }
            None => {
                eprintln!("scale: bad argument {a:?} (want key=number)\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let known: &[&str] = match case.as_str() {
        "util" => &["tenants", "bytes", "threads", "rounds"],
        "enter" => &["groups", "threads", "passes", "ops", "budget_ms"],
        "idle" | "dying" => &["groups", "threads"],
        "service" => &["tenants", "requests", "workers"],
        _ => &[],
    };
    if let Some(k) = kv.keys().find(|k| !known.contains(&k.as_str())) {
        eprintln!("scale: {case} takes no {k}=\n{USAGE}");
        return ExitCode::from(2);
    }
    let get = |k: &str, default: u64| kv.get(k).copied().unwrap_or(default);
    memcg_bench::budget::setup(false);
    let line = match case.as_str() {
        "util" => scale::utilization::run(
            get("tenants", 1000) as usize,
            get("bytes", 65536) as usize,
            get("threads", 2) as usize,
            get("rounds", 4) as usize,
        ),
        "enter" => scale::enter::run(
            get("groups", 10) as usize,
            get("threads", 2) as usize,
            get("passes", 5) as usize,
            get("ops", 2_000_000),
            get("budget_ms", 300),
        ),
        "idle" => scale::idle::run(get("groups", 100_000) as usize, get("threads", 2) as usize),
        "dying" => scale::dying::run(get("groups", 10_000) as usize, get("threads", 2) as usize),
        "service" => scale::service::run(
            get("tenants", 10_000) as usize,
            get("requests", 20) as usize,
            get("workers", 2) as usize,
        ),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!("{}", line.text());
    ExitCode::SUCCESS
}
