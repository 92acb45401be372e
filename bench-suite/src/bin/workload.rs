//! `workload <name> <threads> [scale] [--group]`: runs one whole-program
//! workload with the global allocator chosen by this build's `alloc-*` feature
//! and prints a one-line result. `workload --list` prints the names.
//!
//! `--group` runs the workload in budgeted mode: with memcg, inside a group
//! with a far limit (see `memcg_bench::budget`).

use memcg_bench::{budget, workloads, ALLOCATOR};
use std::process::ExitCode;
use std::time::Instant;

memcg_bench::global_allocator!();

fn usage() -> ExitCode {
    eprintln!("usage: workload <name> <threads> [scale] [--group] | workload --list");
    let names: Vec<&str> = workloads::ALL.iter().map(|(n, _)| *n).collect();
    eprintln!("workloads: {}", names.join(" "));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let group = args.iter().any(|a| a == "--group");
    args.retain(|a| a != "--group");
    if args.first().map(String::as_str) == Some("--list") {
        for (n, _) in workloads::ALL {
            println!("{n}");
        }
        return ExitCode::SUCCESS;
    }
    let (Some(name), Some(threads)) = (args.first(), args.get(1)) else {
        return usage();
    };
    let Some(work) = workloads::find(name) else {
        return usage();
    };
    let Ok(threads) = threads.parse::<usize>() else {
        return usage();
    };
    let scale = match args.get(2).map(|s| s.parse::<f64>()) {
        None => 1.0,
        Some(Ok(s)) if s > 0.0 => s,
        Some(_) => return usage(),
    };
    budget::setup(group);
    let start = Instant::now();
    let out = budget::in_budget(|| work(threads.max(1), scale));
    let secs = start.elapsed().as_secs_f64();
    let accounted = budget::accounted()
        .map(|b| format!(" accounted={b}"))
        .unwrap_or_default();
    println!(
        "workload={name} alloc={ALLOCATOR} group={group} threads={threads} scale={scale} ops={} checksum={:016x} secs={secs:.3}{accounted}",
        out.ops, out.checksum
    );
    ExitCode::SUCCESS
}
