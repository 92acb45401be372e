//! `runner --group-scale` (`bench-suite/run.sh --scale`): builds the `scale`
//! binary for memcg and jemalloc, runs every case of [`CASES`] as a process
//! of its own once per allocator in each repetition (the allocator that goes
//! first alternates), takes the median of each printed figure, prints the
//! table and writes it as the "Group scale" section of `BENCHMARKS.md`
//! (replacing that section only; the rest of the file is left as it is), and
//! every run's line to `bench-suite/results/scale.csv`.
//!
//! ```text
//! runner --group-scale [--quick] [--reps N] [--out FILE] [--results DIR]
//!                      [--bins DIR] [--no-build] [--rev TEXT]
//! ```
//!
//! `--reps N`: repetitions (default 5). `--quick`: one repetition of small
//! versions of the cases (CI), written under `<target>/bench-quick/`.
//! `--rev`: what the report names as the measured source (default: the
//! commit, and any uncommitted change under `allocator/`, `scope-api/` or
//! `src/`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The heading of the section this pass owns in `BENCHMARKS.md`.
pub const HEADING: &str = "## Group scale";

/// The allocators compared: memcg with groups, jemalloc without.
const ALLOCS: [&str; 2] = ["memcg", "jemalloc"];

/// One case: an id, the `scale` arguments of the full and the quick pass.
pub struct Case {
    pub id: &'static str,
    pub full: &'static str,
    pub quick: &'static str,
}

/// Every case, in report order.
pub const CASES: &[Case] = &[
    Case {
        id: "util-1k",
        full: "util tenants=1000 bytes=65536 threads=2",
        quick: "util tenants=100 bytes=65536 threads=2",
    },
    Case {
        id: "util-10k",
        full: "util tenants=10000 bytes=8192 threads=2",
        quick: "util tenants=1000 bytes=8192 threads=2",
    },
    Case {
        id: "enter-10",
        full: "enter groups=10 threads=2",
        quick: "enter groups=10 threads=2 passes=2 budget_ms=30",
    },
    Case {
        id: "enter-10k",
        full: "enter groups=10000 threads=2",
        quick: "enter groups=1000 threads=2 passes=2 budget_ms=30",
    },
    Case {
        id: "idle",
        full: "idle groups=100000 threads=2",
        quick: "idle groups=2000 threads=2",
    },
    Case {
        id: "dying",
        full: "dying groups=10000 threads=2",
        quick: "dying groups=1000 threads=2",
    },
    Case {
        id: "service-10k",
        full: "service tenants=10000 requests=20 workers=2",
        quick: "service tenants=1000 requests=5 workers=2",
    },
    Case {
        id: "service-1k",
        full: "service tenants=1000 requests=20 workers=2",
        quick: "service tenants=100 requests=5 workers=2",
    },
];

struct Opts {
    quick: bool,
    reps: usize,
    out: Option<PathBuf>,
    results: Option<PathBuf>,
    bins: Option<PathBuf>,
    build: bool,
    rev: Option<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        reps: 5,
        out: None,
        results: None,
        bins: None,
        build: true,
        rev: None,
    };
    let mut reps = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |n: &str| it.next().cloned().ok_or(format!("{n} needs a value"));
        match a.as_str() {
            "--group-scale" => {}
            "--quick" => o.quick = true,
            "--reps" => {
                reps = Some(
                    val("--reps")?
                        .parse::<usize>()
                        .map_err(|e| format!("--reps: {e}"))?,
                )
            }
            "--out" => o.out = Some(PathBuf::from(val("--out")?)),
            "--results" => o.results = Some(PathBuf::from(val("--results")?)),
            "--bins" => o.bins = Some(PathBuf::from(val("--bins")?)),
            "--no-build" => o.build = false,
            "--rev" => o.rev = Some(val("--rev")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.quick {
        o.reps = 1;
    }
    if let Some(r) = reps {
        o.reps = r.max(1);
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
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn sh(dir: &Path, cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd)
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    o.status
        .success()
        .then_some(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The measured source: the commit, and uncommitted engine changes if any.
fn describe_rev(root: &Path) -> String {
    let Some(head) = sh(root, "git", &["rev-parse", "--short", "HEAD"]) else {
        return "an unknown commit (no git)".into();
    };
    let dirty = sh(
        root,
        "git",
        &[
            "status",
            "--porcelain",
            "--",
            "allocator",
            "scope-api",
            "src",
            "Cargo.toml",
        ],
    )
    .unwrap_or_default();
    let files: Vec<&str> = dirty
        .lines()
        .filter_map(|l| l.get(3..))
        .map(str::trim)
        .collect();
    let engine = sh(
        root,
        "git",
        &[
            "log",
            "-1",
            "--format=%h",
            "--",
            "allocator",
            "scope-api",
            "src",
        ],
    )
    .filter(|e| !e.is_empty() && *e != head)
    .map(|e| format!(" (the engine, `allocator/`, `scope-api/` and `src/`, as of `{e}`)"))
    .unwrap_or_default();
    if files.is_empty() {
        format!("commit `{head}`{engine}")
    } else {
        format!(
            "commit `{head}`{engine} plus uncommitted changes to {}",
            files
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn build(root: &Path, target: &Path, bins: &Path) -> Result<(), String> {
    for a in ALLOCS {
        eprintln!("== build scale with alloc-{a}");
        crate::build::build_for(root, target, bins, a, &["scale"])?;
    }
    Ok(())
}

/// One run: its outcome and the figures it printed.
struct Run {
    rep: usize,
    case: &'static str,
    alloc: &'static str,
    status: String,
    line: String,
    wall: f64,
    figures: BTreeMap<String, String>,
}

impl Run {
    fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Runs `bin args`, killing it after `limit`.
fn run_case(bin: &Path, args: &str, limit: Duration) -> (String, String, f64) {
    let t0 = Instant::now();
    let child = Command::new(bin)
        .args(args.split_whitespace())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (format!("spawn failed: {e}"), String::new(), 0.0),
    };
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if t0.elapsed() > limit => {
                // Our own child, by its handle.
                let _ = child.kill();
                timed_out = true;
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    let line = out
        .lines()
        .find(|l| l.starts_with("scale="))
        .unwrap_or("")
        .to_string();
    let status = match status {
        _ if timed_out => format!("killed after {} s", limit.as_secs()),
        Some(st) if st.success() && !line.is_empty() => "ok".to_string(),
        Some(st) => {
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            format!(
                "{st}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        }
        None => "lost".to_string(),
    };
    (status, line, wall)
}

fn figures(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The medians of every numeric figure, per (case, allocator).
struct Medians {
    m: BTreeMap<(String, String, String), f64>,
    n: BTreeMap<(String, String), usize>,
}

impl Medians {
    fn of(runs: &[Run]) -> Medians {
        let mut vals: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
        let mut n: BTreeMap<(String, String), usize> = BTreeMap::new();
        for r in runs.iter().filter(|r| r.ok()) {
            *n.entry((r.case.into(), r.alloc.into())).or_default() += 1;
            for (k, v) in &r.figures {
                if let Ok(x) = v.parse::<f64>() {
                    vals.entry((r.case.into(), r.alloc.into(), k.clone()))
                        .or_default()
                        .push(x);
                }
            }
        }
        Medians {
            m: vals.into_iter().map(|(k, v)| (k, median(v))).collect(),
            n,
        }
    }

    fn get(&self, case: &str, alloc: &str, key: &str) -> f64 {
        self.m
            .get(&(case.into(), alloc.into(), key.into()))
            .copied()
            .unwrap_or(f64::NAN)
    }

    fn runs(&self, case: &str, alloc: &str) -> usize {
        self.n
            .get(&(case.into(), alloc.into()))
            .copied()
            .unwrap_or(0)
    }
}

fn num(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{v:.digits$}");
    // Thousands separators on the integer part.
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(a, b)| (a, b));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        "–".into()
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "–",
    }
}

/// One table row: case, figure, memcg, jemalloc, memcg / jemalloc, target, met.
type Row = [String; 7];

fn rows(m: &Medians, quick: bool) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    let arg = |id: &str, key: &str| -> String {
        let c = CASES.iter().find(|c| c.id == id).expect("case");
        let args = if quick { c.quick } else { c.full };
        args.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(|v| num(v.parse().unwrap_or(f64::NAN), 0))
            .unwrap_or_default()
    };
    let g = |id: &str, a: &str, k: &str| m.get(id, a, k);
    for (id, per) in [("util-1k", "64 KiB"), ("util-10k", "8 KiB")] {
        let case = format!("{} tenants x {per}, 2 worker threads", arg(id, "tenants"));
        let (um, uj) = (g(id, "memcg", "util"), g(id, "jemalloc", "util"));
        out.push([
            case.clone(),
            "utilization (live / RSS growth)".into(),
            num(um, 3),
            num(uj, 3),
            ratio(um, uj),
            ">= 0.9x jemalloc".into(),
            verdict((um.is_finite() && uj.is_finite()).then_some(um >= 0.9 * uj)).into(),
        ]);
        let (tm, tj) = (
            g(id, "memcg", "secs") * 1e3,
            g(id, "jemalloc", "secs") * 1e3,
        );
        out.push([
            case,
            "time (ms)".into(),
            num(tm, 1),
            num(tj, 1),
            ratio(tm, tj),
            "<= 1.5x jemalloc".into(),
            verdict((tm.is_finite() && tj.is_finite()).then_some(tm <= 1.5 * tj)).into(),
        ]);
    }
    let e10 = g("enter-10", "memcg", "ns");
    for id in ["enter-10", "enter-10k"] {
        let (nm, nj) = (g(id, "memcg", "ns"), g(id, "jemalloc", "ns"));
        let (target, ok) = if id == "enter-10" {
            ("(the base)".to_string(), None)
        } else {
            (
                format!("<= 2x the 10-group case (here {})", ratio(nm, e10)),
                (nm.is_finite() && e10.is_finite()).then_some(nm <= 2.0 * e10),
            )
        };
        out.push([
            format!(
                "enter + alloc 32 B + free + leave, random group of {}",
                arg(id, "groups")
            ),
            "ns per op".into(),
            num(nm, 1),
            num(nj, 1),
            ratio(nm, nj),
            target,
            verdict(ok).into(),
        ]);
    }
    let idle = format!("{} idle groups", arg("idle", "groups"));
    let (rm, rj) = (
        g("idle", "memcg", "rss_per_group"),
        g("idle", "jemalloc", "rss_per_group"),
    );
    out.push([
        idle.clone(),
        "RSS per group (B)".into(),
        num(rm, 0),
        num(rj, 0),
        "–".into(),
        "<= 1,024 B".into(),
        verdict(rm.is_finite().then_some(rm <= 1024.0)).into(),
    ]);
    let (um, uj) = (
        g("idle", "memcg", "us_per_group"),
        g("idle", "jemalloc", "us_per_group"),
    );
    out.push([
        idle,
        "build + first use per group (µs)".into(),
        num(um, 2),
        num(uj, 2),
        ratio(um, uj),
        "<= 20 µs".into(),
        verdict(um.is_finite().then_some(um <= 20.0)).into(),
    ]);
    let dying = format!(
        "{} groups dropped, one 48 B object each alive",
        arg("dying", "groups")
    );
    let (dm, dj) = (
        g("dying", "memcg", "rss_per_dying"),
        g("dying", "jemalloc", "rss_per_dying"),
    );
    out.push([
        dying.clone(),
        "RSS per dying group, object included (B)".into(),
        num(dm, 0),
        num(dj, 0),
        "–".into(),
        "<= 512 B".into(),
        verdict(dm.is_finite().then_some(dm <= 512.0)).into(),
    ]);
    let (alive, freed, purged, exited) = (
        g("dying", "memcg", "root_alive"),
        g("dying", "memcg", "root_freed"),
        g("dying", "memcg", "root_purged"),
        g("dying", "memcg", "root_exited"),
    );
    let mut drain = format!("{} -> {}", num(alive, 0), num(freed, 0));
    if freed.is_finite() && freed != 0.0 {
        let _ = write!(
            drain,
            " (after purge {}, after thread exit {})",
            num(purged, 0),
            num(exited, 0)
        );
    }
    out.push([
        dying,
        "`root().dying_descendants()`: objects alive -> freed + `flush()`".into(),
        drain,
        "–".into(),
        "–".into(),
        "drains to 0".into(),
        verdict(freed.is_finite().then_some(freed == 0.0)).into(),
    ]);
    for id in ["service-10k", "service-1k"] {
        let case = format!(
            "tokio, 2 workers, {} tenants x {} JSON requests under `Group::run`",
            arg(id, "tenants"),
            arg(id, "requests")
        );
        let (tm, tj) = (
            g(id, "memcg", "secs") * 1e3,
            g(id, "jemalloc", "secs") * 1e3,
        );
        out.push([
            case.clone(),
            "time (ms)".into(),
            num(tm, 1),
            num(tj, 1),
            ratio(tm, tj),
            "<= 1.5x jemalloc".into(),
            verdict((tm.is_finite() && tj.is_finite()).then_some(tm <= 1.5 * tj)).into(),
        ]);
        let mib = 1024.0 * 1024.0;
        let (pm, pj) = (
            g(id, "memcg", "peak_growth") / mib,
            g(id, "jemalloc", "peak_growth") / mib,
        );
        out.push([
            case.clone(),
            "peak RSS growth (MiB)".into(),
            num(pm, 1),
            num(pj, 1),
            ratio(pm, pj),
            "<= 1.5x jemalloc".into(),
            verdict((pm.is_finite() && pj.is_finite()).then_some(pm <= 1.5 * pj)).into(),
        ]);
        // How far the sessions overlapped: set by tokio's schedule, which
        // adapts to the time a poll takes, not by the allocator.
        let (km, kj) = (
            g(id, "memcg", "kept_peak") / mib,
            g(id, "jemalloc", "kept_peak") / mib,
        );
        out.push([
            case,
            "reply text the sessions held at once, at most (MiB)".into(),
            num(km, 2),
            num(kj, 2),
            ratio(km, kj),
            "(the schedule)".into(),
            "–".into(),
        ]);
    }
    out
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| case | figure | memcg | jemalloc | memcg / jemalloc | target | met |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|---|");
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// The section of `doc` under [`HEADING`], up to the next `## ` heading.
pub fn section_of(doc: &str) -> Option<String> {
    section_named(doc, HEADING)
}

/// The section of `doc` under `heading`, up to the next `## ` heading.
pub fn section_named(doc: &str, heading: &str) -> Option<String> {
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == heading)?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| start + 1 + i);
    Some(format!("{}\n", lines[start..end].join("\n").trim_end()))
}

/// `doc` with its [`HEADING`] section replaced by `section`, or, when it
/// has none, with `section` put before "## Workloads in detail" (or before
/// "## Failures and checksum mismatches", or at the end).
pub fn splice(doc: &str, section: &str) -> String {
    splice_named(doc, HEADING, section)
}

/// `doc` with its `heading` section replaced by `section` (or put where
/// [`splice`] puts a new one).
pub fn splice_named(doc: &str, heading: &str, section: &str) -> String {
    let section = format!("{}\n", section.trim_end());
    let lines: Vec<&str> = doc.lines().collect();
    let join = |ls: &[&str]| {
        let mut s = ls.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    };
    if let Some(start) = lines.iter().position(|l| l.trim_end() == heading) {
        let end = lines[start + 1..]
            .iter()
            .position(|l| l.starts_with("## "))
            .map_or(lines.len(), |i| start + 1 + i);
        let rest = if end < lines.len() {
            format!("\n{}", join(&lines[end..]))
        } else {
            String::new()
        };
        return format!("{}{section}{rest}", join(&lines[..start]));
    }
    let at = [
        "## Workloads in detail",
        "## Failures and checksum mismatches",
    ]
    .iter()
    .find_map(|h| lines.iter().position(|l| l.trim_end() == *h));
    match at {
        Some(i) => format!("{}{section}\n{}", join(&lines[..i]), join(&lines[i..])),
        None if doc.trim().is_empty() => section,
        None => format!("{}\n{section}", join(&lines)),
    }
}

/// The mismatches of figures that must not depend on the allocator.
fn mismatches(runs: &[Run]) -> Vec<String> {
    let mut out = Vec::new();
    for c in CASES {
        for key in ["live", "checksum", "objects", "cancelled"] {
            let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for r in runs.iter().filter(|r| r.ok() && r.case == c.id) {
                if let Some(v) = r.figures.get(key) {
                    seen.entry(v.as_str()).or_default().push(r.alloc);
                }
            }
            if seen.len() > 1 {
                let d: Vec<String> = seen
                    .iter()
                    .map(|(v, a)| {
                        let mut a = a.clone();
                        a.dedup();
                        format!("{v} ({})", a.join(", "))
                    })
                    .collect();
                out.push(format!("`{}` {key}: {}", c.id, d.join("; ")));
            }
        }
        let cancelled = runs
            .iter()
            .filter(|r| r.ok() && r.case == c.id)
            .filter_map(|r| r.figures.get("cancelled"))
            .any(|v| v != "0");
        if cancelled {
            out.push(format!("`{}`: some sessions were cancelled", c.id));
        }
    }
    out
}

fn section(
    opts: &Opts,
    rev: &str,
    date: &str,
    rows: &[Row],
    m: &Medians,
    problems: &[String],
    csv_rel: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let min_runs = CASES
        .iter()
        .flat_map(|c| ALLOCS.iter().map(|a| m.runs(c.id, a)))
        .min()
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "Generated by `bench-suite/run.sh --scale{}` on {date}, measuring {rev}. Each case is a process of its own \
         (fresh RSS), run once per allocator in each of **{} repetition(s)** with the allocator that goes first \
         alternating; a figure is the median over the repetitions ({} good run(s) at least per cell), a ratio \
         is of two such medians. memcg runs \
         every tenant in a group of its own; jemalloc (tikv-jemallocator) runs the same work, on the same \
         threads, without groups. 2 threads unless said. The machine is shared: compare the ratios, not the \
         bare times across runs.\n",
        if opts.quick { " --quick" } else { "" },
        opts.reps,
        min_runs,
    );
    s.push_str(&table(rows));
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "How each figure is computed (`bench-suite/src/scale/`, one file per case; `scale <case> key=value ...` \
         runs one). RSS is read from `/proc/self/statm` as resident minus shared pages (anonymous RSS, so code \
         pages faulted in during a case do not count), except the tokio peak, which is `getrusage`'s \
         `ru_maxrss`. The worker threads are started, and have made and freed one object of each size, before \
         the first reading, and are still alive at the last. Every object is written in full when allocated.\n"
    );
    let _ = writeln!(
        s,
        "- Tenants (`utilization.rs`): each tenant keeps objects of sizes 8..2048 B (each power of two equally \
         likely) until their requested sizes reach its share; the objects are made in 4 rounds, and in round r \
         worker w serves the tenants t with (t + r) % 2 == w, so every tenant is served in turn by both \
         workers, each entering the tenant's group (`let _g = tenant.enter();`) for the visit. *Live bytes* is \
         the sum of the requested sizes kept; *RSS growth* is the RSS with every object alive minus the RSS \
         before the tenants' groups were made, so the groups count against memcg. *Time* runs from before the \
         groups are made to the last visit."
    );
    let _ = writeln!(
        s,
        "- Enter (`enter.rs`): the groups are made and each thread first uses every one of them; then each of \
         the 2 threads does 5 timed passes of: pick a random group from a table of random indices, enter it, \
         allocate 32 B, write it, free it, leave. A pass ends after 2,000,000 operations or 300 ms, whichever \
         comes first (`--quick`: 2 passes of 30 ms). The figure is the median over every (thread, pass), then \
         over the repetitions; jemalloc does the same loop without the enter."
    );
    let _ = writeln!(
        s,
        "- Idle groups (`idle.rs`): 2 threads build their half of the groups one by one (`Group::new`), enter \
         each once right away to allocate, fill and free one 64 B object, and keep it. *RSS per group* is the \
         RSS growth from before the first group to when all are built, over the number of groups; *build + \
         first use* is the wall time of that phase over the number of groups."
    );
    let _ = writeln!(
        s,
        "- Dying groups (`dying.rs`): under one parent group, 2 threads make their half of the children; in \
         each child one 48 B object is allocated and kept and the child's only handle is dropped. *RSS per \
         dying group* is the RSS growth over the number of groups, the 48 B object included (jemalloc's figure \
         is what the objects alone cost). The dying count is `memcg::root().dying_descendants()` with the \
         objects alive, then after each thread has freed its objects and called `memcg::flush()`."
    );
    let _ = writeln!(
        s,
        "- tokio service (`service.rs`): a multi-thread runtime with 2 workers, built and warmed before the \
         first reading; every tenant is a task spawned as `tokio::spawn(group.run(session))`, its group built \
         with `.max(64 << 20)` in the spawning loop (jemalloc: the session alone, no group). Every session \
         waits at a gate (a semaphore) opened once all are spawned, so none starts before the last is spawned; then it \
         handles its JSON requests one by one: format the request text, parse it with serde_json, build a reply object \
         and serialize it, keep the reply until the session ends, then `tokio::task::yield_now().await`. \
         *Time* runs from the first spawn until every task is joined; *peak RSS growth* is `ru_maxrss` at the \
         end minus the resident bytes before the first spawn. *Reply text held at once* is the most bytes of \
         kept replies alive at one time, counted by the sessions: how far they overlapped. tokio decides that \
         (its workers look at the shared queue more often when polls take longer), and the RSS figure follows \
         it. No session was cancelled unless said below.\n"
    );
    if !problems.is_empty() {
        let _ = writeln!(s, "Failures and mismatches:\n");
        for f in problems {
            let _ = writeln!(s, "- {f}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "Every run's printed line: [`{csv_rel}`]({csv_rel}). Only this section is rewritten by \
         `run.sh --scale`; the full `run.sh` keeps it as it is."
    );
    s
}

/// Runs the pass; `args` are the runner's arguments. Returns the exit
/// status: 0, 1 when a run failed or a figure mismatched, 2 on bad usage.
pub fn main(args: &[String]) -> i32 {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("runner --group-scale: {e}");
            }
            eprintln!(
                "usage: runner --group-scale [--quick] [--reps N] [--out FILE] [--results DIR] \
                 [--bins DIR] [--no-build] [--rev TEXT]"
            );
            return 2;
        }
    };
    let root = repo_root();
    let target = target_dir(&root);
    let bins = opts
        .bins
        .clone()
        .unwrap_or_else(|| target.join("bench-bins"));
    let quick_dir = target.join("bench-quick");
    let out_md = opts.out.clone().unwrap_or_else(|| {
        if opts.quick {
            quick_dir.join("BENCHMARKS.md")
        } else {
            root.join("BENCHMARKS.md")
        }
    });
    let results = opts.results.clone().unwrap_or_else(|| {
        if opts.quick {
            quick_dir.join("bench-results")
        } else {
            root.join("bench-suite").join("results")
        }
    });
    if let Err(e) = fs::create_dir_all(&results) {
        eprintln!("runner --group-scale: {}: {e}", results.display());
        return 1;
    }
    let rev = opts.rev.clone().unwrap_or_else(|| describe_rev(&root));
    let date = sh(&root, "date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    if opts.build {
        if let Err(e) = build(&root, &target, &bins) {
            eprintln!("runner --group-scale: {e}");
            return 1;
        }
    }
    let limit = Duration::from_secs(if opts.quick { 120 } else { 900 });
    let t0 = Instant::now();
    let mut runs: Vec<Run> = Vec::new();
    for rep in 0..opts.reps {
        for c in CASES {
            for k in 0..ALLOCS.len() {
                let alloc = ALLOCS[(k + rep) % ALLOCS.len()];
                let args = if opts.quick { c.quick } else { c.full };
                let (status, line, wall) =
                    run_case(&bins.join(format!("scale-{alloc}")), args, limit);
                if status != "ok" {
                    eprintln!("!! {} {alloc} rep={rep}: {status}", c.id);
                }
                runs.push(Run {
                    rep,
                    case: c.id,
                    alloc,
                    figures: figures(&line),
                    status,
                    line,
                    wall,
                });
            }
        }
        eprintln!(
            "== group scale rep {}/{} done ({:.0} s)",
            rep + 1,
            opts.reps,
            t0.elapsed().as_secs_f64()
        );
    }
    let mut csv = String::from("rep,case,alloc,status,wall_s,line\n");
    for r in &runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.3},{}",
            r.rep,
            r.case,
            r.alloc,
            r.status.replace(',', ";"),
            r.wall,
            r.line
        );
    }
    let csv_path = results.join("scale.csv");
    if let Err(e) = fs::write(&csv_path, csv) {
        eprintln!("runner --group-scale: {}: {e}", csv_path.display());
        return 1;
    }
    let m = Medians::of(&runs);
    let rows = rows(&m, opts.quick);
    let problems: Vec<String> = runs
        .iter()
        .filter(|r| !r.ok())
        .map(|r| {
            format!(
                "failure: `{}` {} rep {}: {}",
                r.case, r.alloc, r.rep, r.status
            )
        })
        .chain(
            mismatches(&runs)
                .into_iter()
                .map(|m| format!("mismatch: {m}")),
        )
        .collect();
    let csv_rel = if opts.quick {
        "bench-results/scale.csv".to_string()
    } else {
        csv_path
            .strip_prefix(&root)
            .unwrap_or(&csv_path)
            .display()
            .to_string()
    };
    let sec = section(&opts, &rev, &date, &rows, &m, &problems, &csv_rel);
    let doc = fs::read_to_string(&out_md).unwrap_or_default();
    if let Some(p) = out_md.parent() {
        let _ = fs::create_dir_all(p);
    }
    if let Err(e) = fs::write(&out_md, splice(&doc, &sec)) {
        eprintln!("runner --group-scale: {}: {e}", out_md.display());
        return 1;
    }
    println!(
        "Group scale, {rev}, {date}, median of {} repetition(s):\n",
        opts.reps
    );
    print!("{}", table(&rows));
    for f in &problems {
        println!("!! {f}");
    }
    eprintln!(
        "== wrote the Group scale section of {} and {} ({:.0} s)",
        out_md.display(),
        csv_path.display(),
        t0.elapsed().as_secs_f64()
    );
    i32::from(!problems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::{section_of, splice, HEADING};

    #[test]
    fn splice_replaces_only_the_section() {
        let doc = "# T\n\n## A\n\na\n\n## Group scale\n\nold\n\n## Workloads in detail\n\nw\n";
        let out = splice(doc, &format!("{HEADING}\n\nnew\n"));
        assert_eq!(
            out,
            "# T\n\n## A\n\na\n\n## Group scale\n\nnew\n\n## Workloads in detail\n\nw\n"
        );
        assert_eq!(section_of(&out).as_deref(), Some("## Group scale\n\nnew\n"));
    }

    #[test]
    fn splice_inserts_before_the_details_or_appends() {
        let doc = "# T\n\n## A\n\na\n\n## Workloads in detail\n\nw\n";
        let out = splice(doc, &format!("{HEADING}\n\nnew\n"));
        assert_eq!(
            out,
            "# T\n\n## A\n\na\n\n## Group scale\n\nnew\n\n## Workloads in detail\n\nw\n"
        );
        assert_eq!(
            splice("# T\n", &format!("{HEADING}\n\nx\n")),
            "# T\n\n## Group scale\n\nx\n"
        );
        assert_eq!(splice("", "## Group scale\n"), "## Group scale\n");
        // At the end of the file.
        let end = "# T\n\n## Group scale\n\nold\n";
        assert_eq!(
            splice(end, "## Group scale\n\nnew\n"),
            "# T\n\n## Group scale\n\nnew\n"
        );
    }
}
