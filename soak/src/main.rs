//! `memcg-soak [--scale] [--seconds N] [--threads N] [--groups N] [--seed N]
//! [--rss-bound-mib N] [--isolated-every N] [--hot N] [--stretch-every N]`
//!
//! Runs the soak (30 s by default) and prints its figures; exits with 1 on
//! any violation, 2 on bad arguments. `--scale` starts from the scale mode
//! (10,000 groups on 4 threads, 15 s; see `Config::scale`), which the other
//! flags then adjust.

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use memcg_soak::{run, Config};
use std::time::Duration;

const USAGE: &str = "usage: memcg-soak [--scale] [--seconds N] [--threads N] [--groups N] \
                     [--seed N] [--rss-bound-mib N] [--isolated-every N] [--hot N] \
                     [--stretch-every N]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scale = args.iter().any(|a| a == "--scale");
    let mut cfg = if scale {
        Config::scale()
    } else {
        Config::default()
    };
    let args: Vec<&String> = args.iter().filter(|a| *a != "--scale").collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        let Some(v) = value else {
            eprintln!("{USAGE}");
            std::process::exit(2);
        };
        match args[i].as_str() {
            "--seconds" => cfg.duration = Duration::from_secs(v),
            "--threads" => cfg.threads = v as usize,
            "--groups" => cfg.groups = v as usize,
            "--seed" => cfg.seed = v,
            "--rss-bound-mib" => cfg.rss_bound = (v as usize) << 20,
            "--isolated-every" => cfg.isolated_every = v as usize,
            "--hot" => cfg.hot = v as usize,
            "--stretch-every" => cfg.stretch_every = v as usize,
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    println!(
        "memcg-soak{}: {} threads, {} groups, {} s, seed {}, RSS bound {} MiB, \
         isolated 1/{}, hot {}, stretch 1/{}",
        if scale { " --scale" } else { "" },
        cfg.threads,
        cfg.groups,
        cfg.duration.as_secs(),
        cfg.seed,
        cfg.rss_bound >> 20,
        cfg.isolated_every,
        cfg.hot,
        cfg.stretch_every
    );
    let report = run(&cfg);
    println!("{report}");
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
