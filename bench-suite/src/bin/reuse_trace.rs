//! `reuse_trace [messages] [spin]`: the `channel` workload's pattern (one
//! producer sends `Vec<u64>` of 1..=64 elements through
//! `std::sync::mpsc::sync_channel(1024)`, a consumer folds and drops them)
//! with the allocator chosen by this build's `alloc-*` feature, and a
//! report of the addresses the producer was given: how the allocator reuses
//! blocks freed by another thread. The consumer spins `spin` iterations per
//! message (default 0): with a slow consumer the channel runs full.
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed: Result<Vec<u64>, _> = args.iter().map(|a| a.parse::<u64>()).collect();
    let (messages, spin) = match parsed.as_deref() {
        Ok([]) => (2_000_000, 0),
        Ok([m]) => (*m, 0),
        Ok([m, s]) => (*m, *s),
        _ => {
            eprintln!("usage: reuse_trace [messages] [spin]");
            return ExitCode::from(2);
        }
    };
    if messages < 2 {
        eprintln!("reuse_trace: messages must be at least 2");
        return ExitCode::from(2);
    }
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
            let n = rng.range(1, 64);
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
        "alloc={} messages={messages} spin={spin} secs={secs:.3} checksum={:x} distinct_addrs={} distinct_lines={} reuse_p10={} reuse_p50={} reuse_p90={} ascending={:.3}",
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
