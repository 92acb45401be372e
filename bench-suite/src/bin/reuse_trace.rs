//! `reuse_trace [messages] [spin] [lengths]`: the `channel` workload's
//! pattern (one producer sends `Vec<u64>` of 1..=64 elements through
//! `std::sync::mpsc::sync_channel(1024)`, a consumer folds and drops them)
//! with the allocator chosen by this build's `alloc-*` feature, and a
//! report of the addresses the producer was given: how the allocator reuses
//! blocks freed by another thread. The consumer spins `spin` iterations per
//! message (default 0): with a slow consumer the channel runs full.
//! `lengths` (`LO-HI` or one count `N`, 1..=4096; default `1-64`) sets the
//! element counts drawn: one count puts every message in one size class,
//! so a cost that comes from mixing classes, or from one class's block
//! size, can be told apart.
//!
//! Printed, over the second half of the messages: distinct block
//! addresses and the cache lines they start in, the reuse distance (messages between two
//! uses of one address) at p10/p50/p90, and the share of allocations of one
//! element count whose address lies above the previous one of that count,
//! by at most 1 KiB (how often the consumer reads its messages in
//! ascending address order, which hardware prefetchers follow).

use memcg_bench::{budget, rng::Rng};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

memcg_bench::global_allocator!();

const USAGE: &str = "usage: reuse_trace [messages] [spin] [lengths: LO-HI or N, 1..=4096]";

/// The most elements a message may have.
const MAX_LEN: usize = 4096;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (messages, spin, (lo, hi)) = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("reuse_trace: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    budget::setup(false);
    let traced = messages - messages / 2;
    // Allocated before the run, so recording does not allocate.
    let mut trace: Vec<(usize, usize)> = Vec::with_capacity(traced as usize);
    let (tx, rx) = sync_channel::<Vec<u64>>(1024);
    let t = Instant::now();
    let checksum = std::thread::scope(|s| {
        let consumer = s.spawn(move || {
            let mut sum = 0u64;
            for v in rx {
                for q in 0..spin {
                    black_box(q);
                }
                sum = sum.wrapping_add(v.iter().fold(v.len() as u64, |a, &x| a ^ x));
            }
            sum
        });
        let mut rng = Rng::new(1_100);
        for k in 0..messages {
            let n = rng.range(lo, hi);
            let v: Vec<u64> = (0..n as u64).map(|j| j.wrapping_mul(k)).collect();
            if k >= messages / 2 {
                trace.push((v.as_ptr() as usize, n));
            }
            tx.send(v).expect("consumer gone");
        }
        drop(tx);
        consumer.join().expect("consumer panicked")
    });
    let secs = t.elapsed().as_secs_f64();
    let report = Report::of(&trace);
    println!(
        "alloc={} messages={messages} spin={spin} lengths={lo}-{hi} secs={secs:.3} checksum={:x} distinct_addrs={} distinct_lines={} reuse_p10={} reuse_p50={} reuse_p90={} ascending={:.3}",
        memcg_bench::ALLOCATOR,
        checksum & 0xFFFF,
        report.addrs,
        report.lines,
        report.reuse[0],
        report.reuse[1],
        report.reuse[2],
        report.ascending,
    );
    ExitCode::SUCCESS
}

/// Messages, spin and the element-count range, from the arguments.
fn parse_args(args: &[String]) -> Result<(u64, u64, (usize, usize)), String> {
    if args.len() > 3 {
        return Err("too many arguments".into());
    }
    let number = |i: usize, name: &str, default: u64| -> Result<u64, String> {
        match args.get(i) {
            None => Ok(default),
            Some(a) => a
                .parse::<u64>()
                .map_err(|_| format!("{name} must be a whole number, not {a:?}")),
        }
    };
    let messages = number(0, "messages", 2_000_000)?;
    if messages < 2 {
        return Err("messages must be at least 2".into());
    }
    let spin = number(1, "spin", 0)?;
    let lengths = match args.get(2) {
        None => (1, 64),
        Some(a) => parse_lengths(a)?,
    };
    Ok((messages, spin, lengths))
}

/// `LO-HI` or `N`, within 1..=[`MAX_LEN`], `LO <= HI`.
fn parse_lengths(a: &str) -> Result<(usize, usize), String> {
    let bad = || format!("lengths must be LO-HI or N with 1 <= LO <= HI <= {MAX_LEN}, not {a:?}");
    let (lo, hi) = match a.split_once('-') {
        Some((l, h)) => (l.parse::<usize>(), h.parse::<usize>()),
        None => (a.parse::<usize>(), a.parse::<usize>()),
    };
    match (lo, hi) {
        (Ok(lo), Ok(hi)) if 1 <= lo && lo <= hi && hi <= MAX_LEN => Ok((lo, hi)),
        _ => Err(bad()),
    }
}

/// What the trace of (address, element count) says about block reuse.
struct Report {
    addrs: usize,
    lines: usize,
    /// Reuse distance in messages at p10, p50, p90 (0 when nothing reused).
    reuse: [usize; 3],
    ascending: f64,
}

impl Report {
    fn of(trace: &[(usize, usize)]) -> Report {
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        let mut last_of_len: HashMap<usize, usize> = HashMap::new();
        let mut lines = HashSet::new();
        let mut distances = Vec::new();
        let (mut followed, mut ascending) = (0u64, 0u64);
        for (i, &(addr, len)) in trace.iter().enumerate() {
            if let Some(prev) = last_of_len.insert(len, addr) {
                followed += 1;
                if addr > prev && addr - prev <= 1024 {
                    ascending += 1;
                }
            }
            if let Some(j) = last_use.insert(addr, i) {
                distances.push(i - j);
            }
            lines.insert(addr >> 6);
        }
        distances.sort_unstable();
        let at = |q: usize| {
            distances
                .get(distances.len() * q / 10)
                .copied()
                .unwrap_or(0)
        };
        Report {
            addrs: last_use.len(),
            lines: lines.len(),
            reuse: [at(1), at(5), at(9)],
            ascending: ascending as f64 / followed.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_and_ranges() {
        assert_eq!(parse_args(&args(&[])), Ok((2_000_000, 0, (1, 64))));
        assert_eq!(parse_args(&args(&["10", "3"])), Ok((10, 3, (1, 64))));
        assert_eq!(parse_args(&args(&["10", "0", "20"])), Ok((10, 0, (20, 20))));
        assert_eq!(
            parse_args(&args(&["10", "0", "9-32"])),
            Ok((10, 0, (9, 32)))
        );
        assert_eq!(parse_lengths("4096"), Ok((4096, 4096)));
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in [
            &["1"][..],
            &["x"],
            &["10", "-1"],
            &["10", "0", "0"],
            &["10", "0", "5-4"],
            &["10", "0", "1-4097"],
            &["10", "0", "1-"],
            &["10", "0", "a-b"],
            &["10", "0", "1-2", "extra"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
