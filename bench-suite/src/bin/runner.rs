//! The comparison runner: builds the `workload` and `pairs_probe` binaries once
//! per global allocator, runs every workload for 1, 2 and 4 threads with the
//! allocator order rotated each repetition (wall time from the clock; user,
//! sys and peak RSS from `wait4`), times `pairs_probe` once per allocator in
//! each repetition, counts instructions per malloc/free pair
//! under cachegrind, reads criterion's estimates of `benches/compare.rs` when
//! they exist, and writes `BENCHMARKS.md`, `bench-results/raw.csv`,
//! `bench-results/pairs.csv` and `bench-results/ratios.svg`.
//!
//! ```text
//! runner [--quick] [--reps N] [--scale S] [--threads 1,2,4]
//!        [--allocators memcg,system,...] [--workloads larson,...]
//!        [--bins DIR] [--no-build] [--no-cachegrind] [--out FILE] [--results DIR]
//!        [--reuse]
//! runner --group-scale [--quick] [--reps N] [--out FILE] [--results DIR]
//!        [--bins DIR] [--no-build] [--rev TEXT]
//! ```
//!
//! Besides one configuration per allocator, `memcg-group` runs memcg with
//! every thread in a group, and `mimalloc-nothp` runs the mimalloc binary
//! with transparent huge pages disabled for the process, so the report shows
//! how much of mimalloc's lead is huge pages.
//!
//! `--quick`: one repetition at scale 0.1 with memcg, system, jemalloc and
//! mimalloc (no `mimalloc-nothp`), short cachegrind runs, written under
//! `<target>/bench-quick/` so the committed `BENCHMARKS.md` is left alone.
//!
//! `--group-scale`: only the group-scale pass instead (memcg and jemalloc,
//! the `scale` binary; its own options): see `memcg_bench::scale::report`.
//! It rewrites the "Group scale" section of `BENCHMARKS.md` alone, and the
//! full report keeps that section as it finds it.
//!
//! `--reuse`: no build and no campaign; the workload and timed-pairs figures
//! are read back from `raw.csv` and `pairs.csv` of the last campaign (the
//! report says so), and criterion's and cachegrind's are taken afresh (for
//! a criterion pass spoiled by a slow spell of this shared machine).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use memcg_bench::workloads;

/// Every allocator the suite knows, in report order (cargo feature suffix).
const ALLOCATORS: &[&str] = &[
    "memcg", "system", "jemalloc", "mimalloc", "snmalloc", "cap", "tracking",
];

/// A configuration run: a label, the allocator binary, extra arguments.
#[derive(Clone, Debug)]
struct Config {
    label: String,
    alloc: String,
    group: bool,
    /// Run with transparent huge pages disabled for the process
    /// (`prctl(PR_SET_THP_DISABLE)`, inherited across `exec`).
    no_thp: bool,
}

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    reps: usize,
    scale: f64,
    threads: Vec<usize>,
    allocators: Vec<String>,
    workloads: Vec<String>,
    bins: Option<PathBuf>,
    build: bool,
    cachegrind: bool,
    out: Option<PathBuf>,
    results: Option<PathBuf>,
    reuse: bool,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        reps: 10,
        scale: 1.0,
        threads: vec![1, 2, 4],
        allocators: ALLOCATORS.iter().map(|s| s.to_string()).collect(),
        workloads: workloads::ALL.iter().map(|(n, _)| n.to_string()).collect(),
        bins: None,
        build: true,
        cachegrind: true,
        out: None,
        results: None,
        reuse: false,
    };
    let mut reps = None;
    let mut scale = None;
    let mut allocs = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--reps" => reps = Some(val("--reps")?.parse().map_err(|e| format!("--reps: {e}"))?),
            "--scale" => {
                scale = Some(
                    val("--scale")?
                        .parse()
                        .map_err(|e| format!("--scale: {e}"))?,
                )
            }
            "--threads" => {
                o.threads = val("--threads")?
                    .split(',')
                    .map(|t| t.parse().map_err(|e| format!("--threads: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--allocators" => {
                allocs = Some(
                    val("--allocators")?
                        .split(',')
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                )
            }
            "--workloads" => {
                o.workloads = val("--workloads")?.split(',').map(str::to_string).collect()
            }
            "--bins" => o.bins = Some(PathBuf::from(val("--bins")?)),
            "--no-build" => o.build = false,
            "--no-cachegrind" => o.cachegrind = false,
            "--out" => o.out = Some(PathBuf::from(val("--out")?)),
            "--results" => o.results = Some(PathBuf::from(val("--results")?)),
            "--reuse" => {
                o.reuse = true;
                o.build = false;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.quick {
        o.reps = 1;
        o.scale = 0.1;
        o.allocators = ["memcg", "system", "jemalloc", "mimalloc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    if let Some(r) = reps {
        o.reps = r;
    }
    if let Some(s) = scale {
        o.scale = s;
    }
    if let Some(a) = allocs {
        o.allocators = a;
    }
    for a in &o.allocators {
        if !ALLOCATORS.contains(&a.as_str()) {
            return Err(format!("unknown allocator {a}"));
        }
    }
    for w in &o.workloads {
        if workloads::find(w).is_none() {
            return Err(format!("unknown workload {w}"));
        }
    }
    Ok(o)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench-suite has a parent")
        .to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => root.join("target"),
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_string();
            }
            s
        })
        .unwrap_or_else(|| "n/a".into())
}

/// Builds `workload` and `pairs_probe` for each allocator and copies them to
/// `bins`. Returns the allocators that built, and messages for those that did not.
fn build_all(
    root: &Path,
    target: &Path,
    bins: &Path,
    allocs: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for a in allocs {
        eprintln!("== build workload, pairs_probe with alloc-{a}");
        match memcg_bench::build::build_for(root, target, bins, a, &["workload", "pairs_probe"]) {
            Ok(()) => ok.push(a.clone()),
            Err(e) => failed.push(format!("{a}: {e}")),
        }
    }
    (ok, failed)
}

/// One measured run.
#[derive(Clone, Debug)]
struct Run {
    config: String,
    workload: String,
    threads: usize,
    rep: usize,
    wall: f64,
    user: f64,
    sys: f64,
    maxrss_kb: i64,
    status: String,
    ok: bool,
    checksum: String,
    stderr_tail: String,
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Spawns `bin args` and reaps it with `wait4`, for its rusage; with
/// `no_thp`, transparent huge pages are disabled for the child.
fn measure(bin: &Path, args: &[String], no_thp: bool) -> (f64, libc::rusage, i32, String, String) {
    let start = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if no_thp {
        // SAFETY: the hook runs in the forked child before `exec`, where
        // only async-signal-safe calls are allowed: `prctl` is a bare
        // system call that allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    // Reaped below with `wait4` (for its rusage), not with `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let pid = child.id() as libc::pid_t;
    // Read both pipes to the end first (so a chatty child cannot block), then reap.
    let mut out = String::new();
    let mut err = String::new();
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let errt = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = se.read_to_string(&mut e);
        e
    });
    let _ = so.read_to_string(&mut out);
    err.push_str(&errt.join().unwrap_or_default());
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (`child.wait` is never
    // called); `status` and `ru` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4 failed");
    (wall, ru, status, out, err)
}

fn describe_status(status: i32) -> (bool, String) {
    if libc::WIFEXITED(status) {
        let c = libc::WEXITSTATUS(status);
        (c == 0, format!("exit {c}"))
    } else if libc::WIFSIGNALED(status) {
        (false, format!("signal {}", libc::WTERMSIG(status)))
    } else {
        (false, format!("status {status}"))
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn run_one(
    bins: &Path,
    cfg: &Config,
    workload: &str,
    threads: usize,
    scale: f64,
    rep: usize,
) -> Run {
    let bin = bins.join(format!("workload-{}", cfg.alloc));
    let mut args = vec![workload.to_string(), threads.to_string(), scale.to_string()];
    if cfg.group {
        args.push("--group".into());
    }
    let (wall, ru, status, out, err) = measure(&bin, &args, cfg.no_thp);
    let (mut ok, status) = describe_status(status);
    let line = out
        .lines()
        .find(|l| l.starts_with("workload="))
        .unwrap_or("");
    let checksum = field(line, "checksum").unwrap_or("").to_string();
    if checksum.is_empty() {
        ok = false;
    }
    let tail: Vec<&str> = err.lines().rev().take(6).collect();
    Run {
        config: cfg.label.clone(),
        workload: workload.to_string(),
        threads,
        rep,
        wall,
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        maxrss_kb: ru.ru_maxrss,
        status,
        ok,
        checksum,
        stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn geomean(v: &[f64]) -> f64 {
    let good: Vec<f64> = v
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    if good.is_empty() {
        return f64::NAN;
    }
    (good.iter().map(|x| x.ln()).sum::<f64>() / good.len() as f64).exp()
}

/// Median and spread of one cell.
#[derive(Clone, Copy, Debug)]
struct Cell {
    wall: f64,
    wall_min: f64,
    wall_max: f64,
    user: f64,
    sys: f64,
    rss_mib: f64,
    rss_min: f64,
    rss_max: f64,
    n: usize,
}

fn summarize(runs: &[&Run]) -> Option<Cell> {
    let ok: Vec<&&Run> = runs.iter().filter(|r| r.ok).collect();
    if ok.is_empty() {
        return None;
    }
    let mut w: Vec<f64> = ok.iter().map(|r| r.wall).collect();
    let mut u: Vec<f64> = ok.iter().map(|r| r.user).collect();
    let mut s: Vec<f64> = ok.iter().map(|r| r.sys).collect();
    let mut m: Vec<f64> = ok.iter().map(|r| r.maxrss_kb as f64 / 1024.0).collect();
    let wall_min = w.iter().copied().fold(f64::INFINITY, f64::min);
    let wall_max = w.iter().copied().fold(0.0, f64::max);
    let rss_min = m.iter().copied().fold(f64::INFINITY, f64::min);
    let rss_max = m.iter().copied().fold(0.0, f64::max);
    Some(Cell {
        wall: median(&mut w),
        wall_min,
        wall_max,
        user: median(&mut u),
        sys: median(&mut s),
        rss_mib: median(&mut m),
        rss_min,
        rss_max,
        n: ok.len(),
    })
}

/// A campaign read back from its CSV files (`--reuse`).
struct Campaign {
    runs: Vec<Run>,
    pairs: Vec<(String, usize, f64)>,
    started: String,
    secs: f64,
}

fn read_campaign(results: &Path) -> Result<Campaign, String> {
    let read = |f: &str| {
        fs::read_to_string(results.join(f))
            .map_err(|e| format!("{}: {e}", results.join(f).display()))
    };
    let num = |v: &str, what: &str| v.parse::<f64>().map_err(|e| format!("{what} {v:?}: {e}"));
    let mut runs = Vec::new();
    for line in read("raw.csv")?.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 10 {
            return Err(format!("raw.csv: bad line {line:?}"));
        }
        let status = f[8].to_string();
        let checksum = f[9].to_string();
        runs.push(Run {
            config: f[0].to_string(),
            workload: f[1].to_string(),
            threads: num(f[2], "threads")? as usize,
            rep: num(f[3], "rep")? as usize,
            wall: num(f[4], "wall")?,
            user: num(f[5], "user")?,
            sys: num(f[6], "sys")?,
            maxrss_kb: num(f[7], "maxrss")? as i64,
            ok: status == "exit 0" && !checksum.is_empty(),
            status,
            checksum,
            stderr_tail: String::new(),
        });
    }
    let mut pairs = Vec::new();
    for line in read("pairs.csv")?.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 3 {
            return Err(format!("pairs.csv: bad line {line:?}"));
        }
        pairs.push((
            f[0].to_string(),
            num(f[1], "rep")? as usize,
            num(f[2], "ns")?,
        ));
    }
    let (started, secs) = match read("campaign.txt") {
        Ok(t) => {
            let mut l = t.lines();
            let started = l.next().unwrap_or("an earlier run").to_string();
            let secs = l.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            (started, secs)
        }
        Err(_) => ("an earlier run".to_string(), f64::NAN),
    };
    Ok(Campaign {
        runs,
        pairs,
        started,
        secs,
    })
}

/// Runs `pairs_probe n` once; the time per pair it measured.
fn timed_pairs(bins: &Path, cfg: &Config, n: u64) -> Result<f64, String> {
    let bin = bins.join(format!("pairs_probe-{}", cfg.alloc));
    let mut args = vec![n.to_string()];
    if cfg.group {
        args.push("--group".into());
    }
    let (_, _, status, out, err) = measure(&bin, &args, cfg.no_thp);
    let (ok, status) = describe_status(status);
    if !ok {
        return Err(format!("{status}: {}", err.lines().last().unwrap_or("")));
    }
    out.lines()
        .find_map(|l| field(l, "ns_per_pair"))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| "no ns_per_pair in its output".to_string())
}

/// Instruction counts from cachegrind: `(label, Ir per pair)` or an error.
fn cachegrind(
    bins: &Path,
    configs: &[Config],
    n1: u64,
    n2: u64,
) -> Vec<(String, Result<f64, String>)> {
    let mut out = Vec::new();
    for cfg in configs {
        let bin = bins.join(format!("pairs_probe-{}", cfg.alloc));
        let ir = |n: u64| -> Result<u64, String> {
            let mut cmd = Command::new("valgrind");
            cmd.args([
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
            ])
            .arg(&bin)
            .arg(n.to_string());
            if cfg.group {
                cmd.arg("--group");
            }
            let o = cmd.output().map_err(|e| format!("valgrind: {e}"))?;
            let err = String::from_utf8_lossy(&o.stderr);
            if !o.status.success() {
                let tail: Vec<&str> = err.lines().rev().take(3).collect();
                return Err(format!("{}: {}", o.status, tail.join(" | ")));
            }
            err.lines()
                .find_map(|l| {
                    let l = l.split_once("I")?.1.trim_start();
                    let v = l.strip_prefix("refs:")?;
                    v.trim().replace(',', "").parse::<u64>().ok()
                })
                .ok_or_else(|| "no I refs line".to_string())
        };
        eprintln!("== cachegrind {}", cfg.label);
        let r = ir(n1).and_then(|a| ir(n2).map(|b| (b as f64 - a as f64) / (n2 - n1) as f64));
        out.push((cfg.label.clone(), r));
    }
    out
}

/// Criterion's median estimates of `benches/compare.rs`:
/// `case -> [(allocator, median ns, lower, upper)]`.
type Micro = BTreeMap<String, Vec<(String, f64, f64, f64)>>;

fn read_criterion(dir: &Path) -> Micro {
    let mut m = Micro::new();
    let Ok(groups) = fs::read_dir(dir) else {
        return m;
    };
    for g in groups.flatten() {
        let gname = g.file_name().to_string_lossy().to_string();
        let Some(case) = gname.strip_prefix("compare_") else {
            continue;
        };
        let Ok(funcs) = fs::read_dir(g.path()) else {
            continue;
        };
        for f in funcs.flatten() {
            let fname = f.file_name().to_string_lossy().to_string();
            let est = f.path().join("new").join("estimates.json");
            let Ok(text) = fs::read_to_string(&est) else {
                continue;
            };
            if let Some((p, lo, hi)) = parse_median(&text) {
                m.entry(case.to_string())
                    .or_default()
                    .push((fname, p, lo, hi));
            }
        }
    }
    m
}

/// Pulls `median.point_estimate` and its confidence interval out of
/// criterion's estimates.json without a JSON library.
fn parse_median(text: &str) -> Option<(f64, f64, f64)> {
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let num = |key: &str| -> Option<f64> {
        let i = rest.find(key)? + key.len();
        let s = rest[i..].trim_start_matches([':', ' ']);
        let end = s.find([',', '}']).unwrap_or(s.len());
        s[..end].trim().parse().ok()
    };
    Some((
        num("\"point_estimate\"")?,
        num("\"lower_bound\"")?,
        num("\"upper_bound\"")?,
    ))
}

fn lock_versions(root: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let wanted = [
        "memcg",
        "tikv-jemallocator",
        "tikv-jemalloc-sys",
        "mimalloc",
        "libmimalloc-sys",
        "snmalloc-rs",
        "snmalloc-sys",
        "cap",
        "tracking-allocator",
        "criterion",
    ];
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = n.trim_matches('"').to_string();
        } else if let Some(v) = line.strip_prefix("version = ") {
            if wanted.contains(&name.as_str()) {
                out.push((name.clone(), v.trim_matches('"').to_string()));
            }
        }
    }
    out.sort_by_key(|(n, _)| wanted.iter().position(|w| w == n));
    out
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        "–".into()
    }
}

/// The SVG chart: per workload (geometric mean over thread counts), the time
/// ratio of every configuration to mimalloc, on a log2 axis.
fn svg_chart(rows: &[(String, Vec<(String, f64)>)], labels: &[String]) -> String {
    const COLORS: [&str; 9] = [
        "#d62728", "#ff9896", "#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
        "#17becf",
    ];
    let bar_h = 7.0;
    let group_gap = 10.0;
    let left = 130.0;
    let plot_w = 600.0;
    let top = 50.0;
    let group_h = labels.len() as f64 * bar_h + group_gap;
    let height = top + rows.len() as f64 * group_h + 40.0;
    let width = left + plot_w + 170.0;
    // log2 axis from 1/4 to 8.
    let (lo, hi) = (-2.0f64, 3.0f64);
    let x = |r: f64| left + (r.log2().clamp(lo, hi) - lo) / (hi - lo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="14">Workload time relative to mimalloc (geometric mean over thread counts; log scale, lower is better)</text>"#
    );
    for (r, label) in [
        (0.25, "0.25x"),
        (0.5, "0.5x"),
        (1.0, "1x"),
        (1.5, "1.5x"),
        (2.0, "2x"),
        (4.0, "4x"),
        (8.0, "8x"),
    ] {
        let xx = x(r);
        let dash = if r == 1.0 {
            ""
        } else {
            r#" stroke-dasharray="3,3""#
        };
        let color = if r == 1.5 { "#d62728" } else { "#999" };
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="{color}"{dash}/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            height - 35.0,
            height - 22.0
        );
    }
    for (gi, (name, vals)) in rows.iter().enumerate() {
        let gy = top + gi as f64 * group_h;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{name}</text>"#,
            left - 6.0,
            gy + labels.len() as f64 * bar_h / 2.0 + 4.0
        );
        for (li, label) in labels.iter().enumerate() {
            let Some((_, r)) = vals.iter().find(|(l, _)| l == label) else {
                continue;
            };
            if !r.is_finite() {
                continue;
            }
            let y = gy + li as f64 * bar_h;
            let x0 = x(1.0);
            let x1 = x(*r);
            let (bx, bw) = if x1 >= x0 {
                (x0, x1 - x0)
            } else {
                (x1, x0 - x1)
            };
            let _ = writeln!(
                s,
                r#"<rect x="{bx:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{name} {label}: {r:.2}x</title></rect>"#,
                bw.max(0.5),
                bar_h - 1.0,
                COLORS[li % COLORS.len()]
            );
        }
    }
    for (li, label) in labels.iter().enumerate() {
        let y = top + li as f64 * 16.0;
        let lx = left + plot_w + 20.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{y}" width="12" height="10" fill="{}"/><text x="{}" y="{}">{label}</text>"#,
            COLORS[li % COLORS.len()],
            lx + 16.0,
            y + 9.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "--group-scale") {
        std::process::exit(memcg_bench::scale::report::main(&argv));
    }
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("runner: {e}");
            }
            eprintln!("usage: runner [--quick] [--reps N] [--scale S] [--threads 1,2,4] [--allocators a,b] [--workloads w,x] [--bins DIR] [--no-build] [--no-cachegrind] [--out FILE] [--results DIR] [--reuse] | runner --group-scale [--quick] [--reps N] [--out FILE] [--results DIR] [--bins DIR] [--no-build] [--rev TEXT]");
            std::process::exit(2);
        }
    };
    let root = repo_root();
    let target = target_dir(&root);
    let bins = opts
        .bins
        .clone()
        .unwrap_or_else(|| target.join("bench-bins"));
    let (out_md, results) = if opts.quick {
        let d = target.join("bench-quick");
        (
            opts.out.clone().unwrap_or_else(|| d.join("BENCHMARKS.md")),
            opts.results
                .clone()
                .unwrap_or_else(|| d.join("bench-results")),
        )
    } else {
        (
            opts.out
                .clone()
                .unwrap_or_else(|| root.join("BENCHMARKS.md")),
            opts.results
                .clone()
                .unwrap_or_else(|| root.join("bench-results")),
        )
    };
    fs::create_dir_all(&results).expect("create results dir");
    if let Some(p) = out_md.parent() {
        fs::create_dir_all(p).expect("create output dir");
    }

    let (built, build_failures) = if opts.build {
        build_all(&root, &target, &bins, &opts.allocators)
    } else {
        let have: Vec<String> = opts
            .allocators
            .iter()
            .filter(|a| bins.join(format!("workload-{a}")).exists())
            .cloned()
            .collect();
        let missing = opts
            .allocators
            .iter()
            .filter(|a| !have.contains(a))
            .map(|a| format!("{a}: no binary in {}", bins.display()))
            .collect();
        (have, missing)
    };
    let mut configs: Vec<Config> = Vec::new();
    for a in ALLOCATORS {
        if !built.iter().any(|b| b == a) {
            continue;
        }
        configs.push(Config {
            label: a.to_string(),
            alloc: a.to_string(),
            group: false,
            no_thp: false,
        });
        if *a == "memcg" {
            configs.push(Config {
                label: "memcg-group".into(),
                alloc: a.to_string(),
                group: true,
                no_thp: false,
            });
        }
        // How much of mimalloc's lead is its huge pages: the same binary
        // with THP disabled (full runs only; the quick pass stays short).
        if *a == "mimalloc" && !opts.quick {
            configs.push(Config {
                label: "mimalloc-nothp".into(),
                alloc: a.to_string(),
                group: false,
                no_thp: true,
            });
        }
    }
    let labels: Vec<String> = configs.iter().map(|c| c.label.clone()).collect();

    // The measurement campaign.
    let now = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut started = now.clone();
    let mut runs: Vec<Run> = Vec::new();
    // Timed malloc/free pairs: one process per allocator per repetition,
    // in the rotated order, so a slow spell of the machine is shared.
    let pairs_n: u64 = if opts.quick { 2_000_000 } else { 50_000_000 };
    let mut pair_times: Vec<(String, usize, f64)> = Vec::new();
    let total = opts.reps * opts.workloads.len() * opts.threads.len() * configs.len();
    let t0 = Instant::now();
    let mut reps = opts.reps;
    let mut campaign_secs = f64::NAN;
    if opts.reuse {
        match read_campaign(&results) {
            Ok(c) => {
                runs = c.runs;
                pair_times = c.pairs;
                started = c.started;
                campaign_secs = c.secs;
                reps = runs.iter().map(|r| r.rep + 1).max().unwrap_or(0);
            }
            Err(e) => {
                eprintln!("runner: --reuse: {e}");
                std::process::exit(2);
            }
        }
    }
    for rep in 0..if opts.reuse { 0 } else { opts.reps } {
        for w in &opts.workloads {
            for &t in &opts.threads {
                for k in 0..configs.len() {
                    let cfg = &configs[(k + rep) % configs.len()];
                    let r = run_one(&bins, cfg, w, t, opts.scale, rep);
                    if !r.ok {
                        eprintln!(
                            "!! {} {w} t={t} rep={rep}: {} {}",
                            cfg.label, r.status, r.stderr_tail
                        );
                    }
                    runs.push(r);
                }
            }
        }
        for k in 0..configs.len() {
            let cfg = &configs[(k + rep) % configs.len()];
            match timed_pairs(&bins, cfg, pairs_n) {
                Ok(ns) => pair_times.push((cfg.label.clone(), rep, ns)),
                Err(e) => eprintln!("!! {} pairs_probe rep={rep}: {e}", cfg.label),
            }
        }
        eprintln!(
            "== rep {}/{} done ({} runs of {total}, {:.0} s)",
            rep + 1,
            opts.reps,
            runs.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    if !opts.reuse {
        campaign_secs = t0.elapsed().as_secs_f64();
        fs::write(
            results.join("campaign.txt"),
            format!("{started}\n{campaign_secs:.0}\n"),
        )
        .expect("write campaign.txt");
    }

    // Raw results.
    let mut csv =
        String::from("config,workload,threads,rep,wall_s,user_s,sys_s,maxrss_kb,status,checksum\n");
    for r in &runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.4},{:.4},{:.4},{},{},{}",
            r.config,
            r.workload,
            r.threads,
            r.rep,
            r.wall,
            r.user,
            r.sys,
            r.maxrss_kb,
            r.status,
            r.checksum
        );
    }
    fs::write(results.join("raw.csv"), csv).expect("write raw.csv");
    let mut pcsv = String::from("config,rep,ns_per_pair\n");
    for (c, rep, ns) in &pair_times {
        let _ = writeln!(pcsv, "{c},{rep},{ns:.3}");
    }
    fs::write(results.join("pairs.csv"), pcsv).expect("write pairs.csv");
    // Per config: (median, min, max, n).
    let pairs: BTreeMap<String, (f64, f64, f64, usize)> = labels
        .iter()
        .filter_map(|c| {
            let mut v: Vec<f64> = pair_times
                .iter()
                .filter(|(l, ..)| l == c)
                .map(|x| x.2)
                .collect();
            if v.is_empty() {
                return None;
            }
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            let n = v.len();
            Some((c.clone(), (median(&mut v), lo, hi, n)))
        })
        .collect();

    // Cells.
    let mut cells: BTreeMap<(String, usize, String), Cell> = BTreeMap::new();
    let mut failures: Vec<String> = build_failures.clone();
    let mut mismatches: Vec<String> = Vec::new();
    for w in &opts.workloads {
        for &t in &opts.threads {
            let mut sums: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in &labels {
                let rs: Vec<&Run> = runs
                    .iter()
                    .filter(|r| &r.workload == w && r.threads == t && &r.config == c)
                    .collect();
                for r in rs.iter().filter(|r| !r.ok) {
                    failures.push(format!(
                        "{c} `{w}` threads={t} rep={}: {} — {}",
                        r.rep, r.status, r.stderr_tail
                    ));
                }
                for r in rs.iter().filter(|r| r.ok) {
                    sums.entry(r.checksum.clone()).or_default().push(c.clone());
                }
                if let Some(cell) = summarize(&rs) {
                    cells.insert((w.clone(), t, c.clone()), cell);
                }
            }
            if sums.len() > 1 {
                let desc: Vec<String> = sums
                    .iter()
                    .map(|(k, v)| {
                        let mut v = v.clone();
                        v.dedup();
                        format!("{k} ({})", v.join(", "))
                    })
                    .collect();
                mismatches.push(format!("`{w}` threads={t}: {}", desc.join("; ")));
            }
        }
    }
    let cell = |w: &str, t: usize, c: &str| cells.get(&(w.to_string(), t, c.to_string())).copied();
    let ratio = |w: &str, t: usize, c: &str, base: &str, rss: bool| -> f64 {
        match (cell(w, t, c), cell(w, t, base)) {
            (Some(a), Some(b)) if rss => a.rss_mib / b.rss_mib,
            (Some(a), Some(b)) => a.wall / b.wall,
            _ => f64::NAN,
        }
    };

    // Instruction counts.
    let (n1, n2) = if opts.quick {
        (20_000, 120_000)
    } else {
        (200_000, 1_200_000)
    };
    let cg = if opts.cachegrind && Command::new("valgrind").arg("--version").output().is_ok() {
        // Huge pages change no instruction count: one count per binary.
        let counted: Vec<Config> = configs.iter().filter(|c| !c.no_thp).cloned().collect();
        cachegrind(&bins, &counted, n1, n2)
    } else {
        Vec::new()
    };

    // Criterion.
    let micro = read_criterion(&target.join("criterion"));

    // The report.
    let mut md = String::new();
    let _ = writeln!(md, "# Allocator comparison\n");
    let _ = writeln!(
        md,
        "Generated by `bench-suite/run.sh{}` on {started}. The machine is shared and small: compare the ratios \
         measured in this one run, never the bare times across runs. Medians over **{} repetition(s)** per cell \
         (allocator order rotated each repetition), workload scale {}; the spread is min–max.\n",
        if opts.quick { " --quick" } else { "" },
        reps,
        opts.scale
    );
    if opts.reuse {
        let _ = writeln!(
            md,
            "The workload and timed-pairs figures are those of the campaign of {started}, read back from \
             `bench-results/raw.csv` and `pairs.csv`; the criterion and cachegrind figures were taken on \
             {now} (`bench-suite/run.sh --reuse` runs criterion again without a new campaign).\n"
        );
    }
    let _ = writeln!(md, "## Machine and versions\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let _ = writeln!(md, "| cpus (nproc) | {nproc} |");
    let _ = writeln!(md, "| cpu | {} |", cpu_model());
    let _ = writeln!(md, "| kernel | {} |", sh("uname", &["-srm"]));
    let _ = writeln!(md, "| rustc | {} |", sh("rustc", &["--version"]));
    let _ = writeln!(md, "| cargo | {} |", sh("cargo", &["--version"]));
    let _ = writeln!(md, "| valgrind | {} |", sh("valgrind", &["--version"]));
    let _ = writeln!(
        md,
        "| c++ (snmalloc) | {} |",
        sh("c++", &["--version"]).lines().next().unwrap_or("")
    );
    for (n, v) in lock_versions(&root) {
        let _ = writeln!(md, "| crate {n} | {v} |");
    }
    let _ = writeln!(
        md,
        "| campaign | {} runs in {:.0} s |",
        runs.len(),
        campaign_secs
    );
    let _ = writeln!(md);
    let _ = writeln!(md, "Configurations:\n");
    let descr = |l: &str| -> &str {
        match l {
            "memcg" => "memcg::SlabAlloc, root group",
            "memcg-group" => "memcg::SlabAlloc, every thread inside a group with a far limit (`--group`)",
            "system" => "glibc malloc (std::alloc::System)",
            "jemalloc" => "tikv-jemallocator",
            "mimalloc" => "mimalloc crate (default features off)",
            "mimalloc-nothp" => "the mimalloc binary with transparent huge pages disabled for the process (`prctl(PR_SET_THP_DISABLE)`): how much of mimalloc's lead is huge pages",
            "snmalloc" => "snmalloc-rs, `build_cc`",
            "cap" => "budgeted peer: `cap::Cap<System>` (one global atomic counter, far limit)",
            "tracking" => "budgeted peer: `tracking-allocator` over jemalloc (header per block, per-group counters on every alloc/free)",
            _ => "",
        }
    };
    for l in &labels {
        let _ = writeln!(md, "- `{l}`: {}", descr(l));
    }
    let _ = writeln!(md);

    // Headlines.
    let mut geo: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for c in &labels {
        let mut times = Vec::new();
        let mut rss = Vec::new();
        for w in &opts.workloads {
            for &t in &opts.threads {
                if let Some(x) = cell(w, t, c) {
                    times.push(x.wall);
                    rss.push(x.rss_mib);
                }
            }
        }
        geo.insert(c.clone(), (geomean(&times), geomean(&rss)));
    }
    // Geometric means of per-cell ratios (cells where both sides ran).
    let geo_ratio = |c: &str, base: &str, rss: bool| -> f64 {
        let mut v = Vec::new();
        for w in &opts.workloads {
            for &t in &opts.threads {
                v.push(ratio(w, t, c, base, rss));
            }
        }
        geomean(&v)
    };
    let _ = writeln!(md, "## Headlines\n");
    let has = |l: &str| labels.iter().any(|x| x == l);
    if let Some(pr) = micro.get("pairs_random_16_1024") {
        let get = |a: &str| pr.iter().find(|(n, ..)| n == a).map(|x| x.1);
        if let Some(m) = get("memcg_root") {
            let _ = writeln!(
                md,
                "- malloc/free pairs, random sizes 16..1024 (criterion median): memcg {m:.2} ns; {} jemalloc, {} mimalloc.",
                get("jemalloc").map(|j| fmt_ratio(m / j)).unwrap_or("–".into()),
                get("mimalloc").map(|j| fmt_ratio(m / j)).unwrap_or("–".into()),
            );
        }
    }
    if let Some(&(m, ..)) = pairs.get("memcg") {
        let r = |base: &str| {
            pairs
                .get(base)
                .map(|b| fmt_ratio(m / b.0))
                .unwrap_or("–".into())
        };
        let g = pairs
            .get("memcg-group")
            .map(|g| {
                format!(
                    "; in a group {:.2} ns ({} the root)",
                    g.0,
                    fmt_ratio(g.0 / m)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "- malloc/free pairs, random sizes 16..1024 (`pairs_probe`, median over {} runs per allocator): memcg {m:.2} ns; {} jemalloc, {} mimalloc{g}.",
            pairs["memcg"].3,
            r("jemalloc"),
            r("mimalloc"),
        );
    }
    let cgv = |l: &str| {
        cg.iter()
            .find(|(n, _)| n == l)
            .and_then(|(_, r)| r.as_ref().ok().copied())
    };
    if let (Some(m), Some(j), Some(mi)) = (cgv("memcg"), cgv("jemalloc"), cgv("mimalloc")) {
        let _ = writeln!(
            md,
            "- Instructions per malloc/free pair (cachegrind): memcg {m:.1}, jemalloc {j:.1}, mimalloc {mi:.1} ({} jemalloc, {} mimalloc).",
            fmt_ratio(m / j),
            fmt_ratio(m / mi)
        );
    }
    if has("memcg") {
        let _ = writeln!(
            md,
            "- Workloads, geometric mean of time: memcg {} jemalloc, {} mimalloc; of peak RSS: {} jemalloc, {} mimalloc.",
            fmt_ratio(geo_ratio("memcg", "jemalloc", false)),
            fmt_ratio(geo_ratio("memcg", "mimalloc", false)),
            fmt_ratio(geo_ratio("memcg", "jemalloc", true)),
            fmt_ratio(geo_ratio("memcg", "mimalloc", true)),
        );
        let mut worst = Vec::new();
        for w in &opts.workloads {
            for &t in &opts.threads {
                let r = ratio(w, t, "memcg", "mimalloc", false);
                if r > 1.5 {
                    worst.push(format!("`{w}` t={t} {}", fmt_ratio(r)));
                }
            }
        }
        let _ = writeln!(
            md,
            "- Workload cells above 1.5x mimalloc (memcg, root group): {}.",
            if worst.is_empty() {
                "none".to_string()
            } else {
                worst.join(", ")
            }
        );
        if has("mimalloc-nothp") {
            let _ = writeln!(
                md,
                "- Huge pages in mimalloc's lead: with THP disabled for the process, mimalloc's workload geometric mean of time is {} its own; memcg's is {} of it.",
                fmt_ratio(geo_ratio("mimalloc-nothp", "mimalloc", false)),
                fmt_ratio(geo_ratio("memcg", "mimalloc-nothp", false)),
            );
        }
    }
    if has("memcg-group") {
        let _ = writeln!(
            md,
            "- Inside a group vs root group (workload geometric mean of time): {}.",
            fmt_ratio(geo_ratio("memcg-group", "memcg", false))
        );
        for peer in ["cap", "tracking"] {
            if has(peer) {
                let _ = writeln!(
                    md,
                    "- Budgeted mode, workloads: memcg-group time {} `{peer}`, peak RSS {} `{peer}`.",
                    fmt_ratio(geo_ratio("memcg-group", peer, false)),
                    fmt_ratio(geo_ratio("memcg-group", peer, true)),
                );
            }
        }
    }
    let _ = writeln!(md);

    // Geometric means.
    let _ = writeln!(md, "## Geometric means over all workload cells\n");
    let _ = writeln!(
        md,
        "Geometric mean over every workload x threads cell of the median time and of the median peak RSS, and the \
         geometric mean of the per-cell ratios.\n"
    );
    let _ = writeln!(md, "| config | time (s) | time / mimalloc | time / jemalloc | peak RSS (MiB) | RSS / mimalloc | RSS / jemalloc |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for c in &labels {
        let (t, r) = geo[c];
        let _ = writeln!(
            md,
            "| {c} | {t:.3} | {} | {} | {r:.1} | {} | {} |",
            fmt_ratio(geo_ratio(c, "mimalloc", false)),
            fmt_ratio(geo_ratio(c, "jemalloc", false)),
            fmt_ratio(geo_ratio(c, "mimalloc", true)),
            fmt_ratio(geo_ratio(c, "jemalloc", true)),
        );
    }
    let _ = writeln!(md);

    // Chart.
    let mut chart_rows = Vec::new();
    for w in &opts.workloads {
        let vals = labels
            .iter()
            .map(|c| {
                let rs: Vec<f64> = opts
                    .threads
                    .iter()
                    .map(|&t| ratio(w, t, c, "mimalloc", false))
                    .collect();
                (c.clone(), geomean(&rs))
            })
            .collect();
        chart_rows.push((w.clone(), vals));
    }
    fs::write(results.join("ratios.svg"), svg_chart(&chart_rows, &labels)).expect("write svg");
    let svg_rel = if opts.quick {
        "bench-results/ratios.svg".to_string()
    } else {
        results
            .strip_prefix(&root)
            .map(|p| p.join("ratios.svg").display().to_string())
            .unwrap_or_else(|_| results.join("ratios.svg").display().to_string())
    };
    let _ = writeln!(md, "## Time ratio to mimalloc per workload\n");
    let _ = writeln!(md, "![time ratios to mimalloc]({svg_rel})\n");
    // One table of per-cell ratios to mimalloc, of time or of peak RSS;
    // memcg cells above the 1.5x bar are marked.
    let ratio_table = |md: &mut String, title: &str, rss: bool| {
        let _ = writeln!(md, "{title}\n");
        let _ = write!(md, "| workload | threads |");
        for c in &labels {
            let _ = write!(md, " {c} |");
        }
        let _ = write!(md, "\n|---|---:|");
        for _ in &labels {
            let _ = write!(md, "---:|");
        }
        let _ = writeln!(md);
        for w in &opts.workloads {
            for &t in &opts.threads {
                let _ = write!(md, "| {w} | {t} |");
                for c in &labels {
                    let r = ratio(w, t, c, "mimalloc", rss);
                    let mark = if !rss && c.starts_with("memcg") && r > 1.5 {
                        " **!**"
                    } else {
                        ""
                    };
                    let _ = write!(md, " {}{mark} |", fmt_ratio(r));
                }
                let _ = writeln!(md);
            }
        }
    };
    ratio_table(
        &mut md,
        "Median time / mimalloc's median time per cell:",
        false,
    );
    ratio_table(&mut md, "\nPeak RSS / mimalloc's peak RSS per cell:", true);
    let _ = writeln!(md);

    // Instruction counts.
    if !cg.is_empty() {
        let _ = writeln!(md, "## Instructions per malloc/free pair\n");
        let _ = writeln!(
            md,
            "`valgrind --tool=cachegrind --cache-sim=no` on `pairs_probe N` (random sizes 16..1024 from a fixed table, \
             through `&dyn GlobalAlloc`), as (Ir(N={n2}) - Ir(N={n1})) / {}; start-up cancels out. The figure includes \
             the probe loop itself (a table load, a `black_box`, an add: the same few instructions for every allocator).\n",
            n2 - n1
        );
        let _ = writeln!(md, "| config | Ir per pair | / mimalloc | / jemalloc |");
        let _ = writeln!(md, "|---|---:|---:|---:|");
        for (l, r) in &cg {
            match r {
                Ok(v) => {
                    let _ = writeln!(
                        md,
                        "| {l} | {v:.1} | {} | {} |",
                        cgv("mimalloc")
                            .map(|m| fmt_ratio(v / m))
                            .unwrap_or("–".into()),
                        cgv("jemalloc")
                            .map(|m| fmt_ratio(v / m))
                            .unwrap_or("–".into()),
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "| {l} | failed: {e} | | |");
                }
            }
        }
        let _ = writeln!(md);
    }

    // Criterion.
    if !pairs.is_empty() {
        let _ = writeln!(
            md,
            "## malloc/free pairs, one process per allocator and repetition\n"
        );
        let _ = writeln!(
            md,
            "`pairs_probe {pairs_n}`: random sizes 16..1024 from a fixed table of 4,096, through `&dyn GlobalAlloc`, \
             the loop timed inside the process; run once per allocator in each repetition, in the rotated order. \
             Median (min–max) of the time per pair.\n"
        );
        let _ = writeln!(md, "| config | ns per pair | / jemalloc | / mimalloc |");
        let _ = writeln!(md, "|---|---:|---:|---:|");
        for c in &labels {
            if let Some(&(m, lo, hi, _)) = pairs.get(c) {
                let r = |b: &str| {
                    pairs
                        .get(b)
                        .map(|x| fmt_ratio(m / x.0))
                        .unwrap_or("–".into())
                };
                let _ = writeln!(
                    md,
                    "| {c} | {} ({}–{}) | {} | {} |",
                    fmt_ns(m),
                    fmt_ns(lo),
                    fmt_ns(hi),
                    r("jemalloc"),
                    r("mimalloc")
                );
            }
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Micro benchmarks (criterion)\n");
    if micro.is_empty() {
        let _ = writeln!(
            md,
            "No criterion results in `{}`: run `cargo bench -p memcg-bench --bench compare` (the full `run.sh` does) \
             before the runner.\n",
            target.join("criterion").display()
        );
    } else {
        let _ = writeln!(
            md,
            "`bench-suite/benches/compare.rs`: every allocator through `&dyn GlobalAlloc`, pointers and sizes through \
             `black_box`; the bench binary's global allocator is `memcg::SlabAlloc`. Median time per iteration with \
             criterion's 95% confidence interval of the median, and ratios to mimalloc and jemalloc.\n"
        );
        for (case, rows) in &micro {
            let base = |a: &str| rows.iter().find(|(n, ..)| n == a).map(|x| x.1);
            let _ = writeln!(md, "### {case}\n");
            let _ = writeln!(
                md,
                "| allocator | median | 95% CI | / mimalloc | / jemalloc |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|");
            let mut rows = rows.clone();
            rows.sort_by(|a, b| a.1.total_cmp(&b.1));
            for (n, p, lo, hi) in rows {
                let _ = writeln!(
                    md,
                    "| {n} | {} | {}–{} | {} | {} |",
                    fmt_ns(p),
                    fmt_ns(lo),
                    fmt_ns(hi),
                    base("mimalloc")
                        .map(|m| fmt_ratio(p / m))
                        .unwrap_or("–".into()),
                    base("jemalloc")
                        .map(|m| fmt_ratio(p / m))
                        .unwrap_or("–".into()),
                );
            }
            let _ = writeln!(md);
        }
    }

    // Per-workload detail.
    let _ = writeln!(md, "## Workloads in detail\n");
    let _ = writeln!(
        md,
        "`workload <name> <threads> [scale]` (bench-suite/src/workloads/). Each workload does a fixed total amount of \
         work split among its threads; 4 threads oversubscribe the 2 cores. Time is wall-clock from spawn to `wait4`; \
         user, sys and peak RSS (`ru_maxrss`) come from `wait4`.\n"
    );
    for w in &opts.workloads {
        let _ = writeln!(md, "### {w}\n");
        let _ = writeln!(md, "| threads | config | time (s) | min–max | / mimalloc | / jemalloc | user (s) | sys (s) | peak RSS (MiB) | RSS min–max | RSS / mimalloc | RSS / jemalloc |");
        let _ = writeln!(
            md,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for &t in &opts.threads {
            for c in &labels {
                match cell(w, t, c) {
                    Some(x) => {
                        let _ = writeln!(
                            md,
                            "| {t} | {c} | {:.3} | {:.3}–{:.3} | {} | {} | {:.3} | {:.3} | {:.1} | {:.1}–{:.1} | {} | {} |",
                            x.wall,
                            x.wall_min,
                            x.wall_max,
                            fmt_ratio(ratio(w, t, c, "mimalloc", false)),
                            fmt_ratio(ratio(w, t, c, "jemalloc", false)),
                            x.user,
                            x.sys,
                            x.rss_mib,
                            x.rss_min,
                            x.rss_max,
                            fmt_ratio(ratio(w, t, c, "mimalloc", true)),
                            fmt_ratio(ratio(w, t, c, "jemalloc", true)),
                        );
                        let _ = x.n;
                    }
                    None => {
                        let _ = writeln!(md, "| {t} | {c} | failed | | | | | | | | | |");
                    }
                }
            }
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Failures and checksum mismatches\n");
    if failures.is_empty() && mismatches.is_empty() {
        let _ = writeln!(md, "None: every run exited 0 and every allocator printed the same checksum for each workload and thread count.\n");
    } else {
        for f in &failures {
            let _ = writeln!(md, "- failure: {f}");
        }
        for m in &mismatches {
            let _ = writeln!(md, "- checksum mismatch: {m}");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "Raw results: [`bench-results/raw.csv`]({}).",
        if opts.quick {
            "bench-results/raw.csv".to_string()
        } else {
            results
                .strip_prefix(&root)
                .map(|p| p.join("raw.csv").display().to_string())
                .unwrap_or_else(|_| results.join("raw.csv").display().to_string())
        }
    );
    // The "Group scale" section is `--group-scale`'s and "Service" is
    // `bench-suite/service.sh`'s: keep the ones there are.
    let old = fs::read_to_string(&out_md).unwrap_or_default();
    for heading in [memcg_bench::scale::report::HEADING, "## Service"] {
        if let Some(sec) = memcg_bench::scale::report::section_named(&old, heading) {
            md = memcg_bench::scale::report::splice_named(&md, heading, &sec);
        }
    }
    fs::write(&out_md, md).expect("write report");
    eprintln!("== wrote {} and {}", out_md.display(), results.display());
    if !failures.is_empty() || !mismatches.is_empty() {
        eprintln!(
            "== {} failure(s), {} checksum mismatch(es): see the report",
            failures.len(),
            mismatches.len()
        );
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.2} ns")
    }
}
