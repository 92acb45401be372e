//! `page_cost [mib]`: what a fresh page of anonymous memory costs on this
//! machine, the floor under every allocator's first touch of new memory.
//! Maps `mib` MiB (default 64) and times, per 4 KiB page, medians of 5
//! repetitions:
//! - `fault`: one write per 4 KiB page, so one page fault each;
//! - `populate`: `madvise(MADV_POPULATE_WRITE)` in 64 KiB steps, the pages
//!   made present without a fault each;
//! - `huge`: one write per 4 KiB page of a 2 MiB-aligned range advised
//!   `MADV_HUGEPAGE`, so one fault per huge page where the kernel grants it
//!   (the report gives the share it granted, from `AnonHugePages`).
//!
//! An allocator that takes fresh pages per thread at 4 KiB (memcg, jemalloc)
//! pays `fault` for each; one that backs its arenas with huge pages
//! (mimalloc) pays `huge`, at the price of keeping whole 2 MiB pages
//! resident.

use std::process::ExitCode;
use std::time::Instant;

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;
const REPS: usize = 5;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    let mib = match arg.as_deref().map(str::parse::<usize>) {
        None => 64,
        Some(Ok(m)) if (2..=4096).contains(&m) && m % 2 == 0 => m,
        Some(_) => {
            eprintln!("usage: page_cost [mib]   (an even number of MiB, 2..=4096; default 64)");
            return ExitCode::from(2);
        }
    };
    let size = mib << 20;
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    println!("region {mib} MiB, transparent_hugepage/enabled: {thp}");
    println!("case      us per 4 KiB page (median of {REPS})");
    for case in [Case::Fault, Case::Populate, Case::Huge] {
        let mut times = Vec::with_capacity(REPS);
        let mut granted = 0.0;
        for _ in 0..REPS {
            match measure(case, size) {
                Ok((secs, huge_share)) => {
                    times.push(secs);
                    granted = huge_share;
                }
                Err(e) => {
                    println!("{:9} unavailable: {e}", case.name());
                    break;
                }
            }
        }
        if times.len() < REPS {
            continue;
        }
        times.sort_by(f64::total_cmp);
        let per_page = times[REPS / 2] / (size / PAGE) as f64 * 1e6;
        match case {
            Case::Huge => println!(
                "{:9} {per_page:.2}   ({:.0}% of the range in huge pages)",
                case.name(),
                granted * 100.0
            ),
            _ => println!("{:9} {per_page:.2}", case.name()),
        }
    }
    ExitCode::SUCCESS
}

#[derive(Clone, Copy)]
enum Case {
    Fault,
    Populate,
    Huge,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Fault => "fault",
            Case::Populate => "populate",
            Case::Huge => "huge",
        }
    }
}

/// Maps `size` bytes (2 MiB aligned), makes every page present the way
/// `case` says, and returns the seconds that took and the share of the
/// range the kernel backed with huge pages.
fn measure(case: Case, size: usize) -> Result<(f64, f64), String> {
    let map_len = size + HUGE;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    let base = (raw as usize).next_multiple_of(HUGE) as *mut u8;
    let result = touch(case, base, size);
    let granted = if result.is_ok() {
        huge_share(size)
    } else {
        0.0
    };
    // SAFETY: `raw` is the mapping made above, `map_len` long, and nothing
    // refers to it any more.
    unsafe { libc::munmap(raw, map_len) };
    result.map(|secs| (secs, granted))
}

/// Makes the `size` bytes at `base` present; returns the seconds it took.
fn touch(case: Case, base: *mut u8, size: usize) -> Result<f64, String> {
    if let Case::Huge = case {
        // SAFETY: `base..base + size` lies inside our mapping; advice changes
        // no contents.
        if unsafe { libc::madvise(base.cast(), size, libc::MADV_HUGEPAGE) } != 0 {
            return Err(format!(
                "MADV_HUGEPAGE: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let start = Instant::now();
    match case {
        Case::Fault | Case::Huge => {
            for off in (0..size).step_by(PAGE) {
                // SAFETY: `off < size`, inside our writable mapping.
                unsafe { base.add(off).write_volatile(1) };
            }
        }
        Case::Populate => {
            const STEP: usize = 64 << 10;
            for off in (0..size).step_by(STEP) {
                // SAFETY: `base + off .. + STEP` lies inside our writable
                // mapping (`size` is a multiple of 2 MiB).
                let r =
                    unsafe { libc::madvise(base.add(off).cast(), STEP, libc::MADV_POPULATE_WRITE) };
                if r != 0 {
                    return Err(format!(
                        "MADV_POPULATE_WRITE: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The share of `size` bytes that this process has in anonymous huge pages
/// now (`AnonHugePages` of `/proc/self/smaps_rollup`): the measured region
/// is the only large anonymous mapping while it is read.
fn huge_share(size: usize) -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps_rollup") else {
        return 0.0;
    };
    let kib: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    ((kib << 10) as f64 / size as f64).min(1.0)
}
