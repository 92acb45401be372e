//! `memcg-soak [--seconds N] [--threads N] [--groups N] [--seed N] [--rss-bound-mib N]`
//!
//! Runs the soak (30 s by default) and prints its figures; exits with 1 on
//! any violation, 2 on bad arguments.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use memcg_soak::{run, Config};
use std::time::Duration;

fn main() {
    let mut cfg = Config::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        let Some(v) = value else {
            eprintln!("usage: memcg-soak [--seconds N] [--threads N] [--groups N] [--seed N] [--rss-bound-mib N]");
            std::process::exit(2);
        };
        match args[i].as_str() {
            "--seconds" => cfg.duration = Duration::from_secs(v),
            "--threads" => cfg.threads = v as usize,
            "--groups" => cfg.groups = v as usize,
            "--seed" => cfg.seed = v,
            "--rss-bound-mib" => cfg.rss_bound = (v as usize) << 20,
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    println!(
        "memcg-soak: {} threads, {} groups, {} s, seed {}, RSS bound {} MiB",
        cfg.threads,
        cfg.groups,
        cfg.duration.as_secs(),
        cfg.seed,
        cfg.rss_bound >> 20
    );
    let report = run(&cfg);
    println!("{report}");
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
