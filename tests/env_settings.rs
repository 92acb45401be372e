//! Settings by environment: `MEMCG_PURGE_DELAY_MS`, `MEMCG_RESERVE_BATCH`
//! and `MEMCG_SHOW_STATS`. The allocator reads them at the process's first
//! allocation, so each case runs this test binary again as a child with
//! the variables set, running only `child` (which does nothing unless
//! `MEMCG_ENV_TEST_CHILD` is set).

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

use std::process::Command;

const VARS: [&str; 3] = [
    "MEMCG_PURGE_DELAY_MS",
    "MEMCG_RESERVE_BATCH",
    "MEMCG_SHOW_STATS",
];
const DEFAULT_BATCH: usize = 32 << 10;
const DEFAULT_DELAY: u64 = 10;

/// In the child: prints the tunables in force and leaves a group alive
/// (with an object in it) for the report at exit.
#[test]
fn child() {
    if std::env::var_os("MEMCG_ENV_TEST_CHILD").is_none() {
        return;
    }
    let t = memcg::tunables();
    println!(
        "tunables reserve_batch={} purge_delay_ms={}",
        t.reserve_batch, t.purge_delay_ms
    );
    let g = memcg::Group::builder("env-child-group")
        .max(1 << 30)
        .build();
    let v = g.scope(|| vec![7u8; 100_000]);
    std::mem::forget((g, v));
}

struct Run {
    batch: usize,
    delay: u64,
    stderr: String,
}

/// Runs the child with `vars` set (the others unset).
fn run(vars: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("MEMCG_ENV_TEST_CHILD", "1");
    for v in VARS {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{vars:?}: {stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("tunables ").map(|(_, t)| t))
        .unwrap_or_else(|| panic!("{vars:?}: no tunables line in {stdout}"));
    let field = |name: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap()
            .to_string()
    };
    Run {
        batch: field("reserve_batch").parse().unwrap(),
        delay: field("purge_delay_ms").parse().unwrap(),
        stderr,
    }
}

/// The warning lines about `var` in `stderr`.
fn warnings<'a>(stderr: &'a str, var: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("memcg: ignoring ") && l.contains(var))
        .collect()
}

#[test]
fn defaults_without_variables() {
    let r = run(&[]);
    assert_eq!((r.batch, r.delay), (DEFAULT_BATCH, DEFAULT_DELAY));
    assert!(!r.stderr.contains("memcg:"), "{}", r.stderr);
}

#[test]
fn good_values_take_effect() {
    for (batch, want) in [
        ("65536", 64 << 10),
        ("64K", 64 << 10),
        ("64KiB", 64 << 10),
        ("2M", 2 << 20),
        ("1MiB", 1 << 20),
        ("1GiB", 1 << 30),
        ("0", 0),
    ] {
        let r = run(&[
            ("MEMCG_RESERVE_BATCH", batch),
            ("MEMCG_PURGE_DELAY_MS", "250"),
        ]);
        assert_eq!((r.batch, r.delay), (want, 250), "{batch}");
        assert!(!r.stderr.contains("memcg:"), "{batch}: {}", r.stderr);
    }
    // Empty is unset.
    let r = run(&[("MEMCG_RESERVE_BATCH", ""), ("MEMCG_PURGE_DELAY_MS", "")]);
    assert_eq!((r.batch, r.delay), (DEFAULT_BATCH, DEFAULT_DELAY));
    assert!(!r.stderr.contains("memcg:"), "{}", r.stderr);
}

#[test]
fn bad_values_warn_once_and_keep_the_default() {
    for (var, bad) in [
        ("MEMCG_RESERVE_BATCH", "12Q"),
        ("MEMCG_RESERVE_BATCH", "-1"),
        ("MEMCG_RESERVE_BATCH", "2G"),
        ("MEMCG_RESERVE_BATCH", "99999999999999999999"),
        ("MEMCG_PURGE_DELAY_MS", "soon"),
        ("MEMCG_PURGE_DELAY_MS", "-5"),
        ("MEMCG_SHOW_STATS", "maybe"),
    ] {
        let r = run(&[(var, bad)]);
        assert_eq!(
            (r.batch, r.delay),
            (DEFAULT_BATCH, DEFAULT_DELAY),
            "{var}={bad}"
        );
        let w = warnings(&r.stderr, var);
        assert_eq!(w.len(), 1, "{var}={bad}: {}", r.stderr);
        let default = match var {
            "MEMCG_RESERVE_BATCH" => DEFAULT_BATCH.to_string(),
            "MEMCG_PURGE_DELAY_MS" => DEFAULT_DELAY.to_string(),
            _ => "0".to_string(),
        };
        assert!(w[0].contains(&format!("{var}=\"{bad}\"")), "{}", w[0]);
        assert!(
            w[0].ends_with(&format!("using the default {default}")),
            "{}",
            w[0]
        );
        assert!(!r.stderr.contains("stats at exit"), "{}", r.stderr);
    }
    // One bad variable leaves the good ones be; a value with a newline
    // stays on one line.
    let r = run(&[
        ("MEMCG_RESERVE_BATCH", "1M\nB"),
        ("MEMCG_PURGE_DELAY_MS", "40"),
    ]);
    assert_eq!((r.batch, r.delay), (DEFAULT_BATCH, 40));
    let w = warnings(&r.stderr, "MEMCG_RESERVE_BATCH");
    assert_eq!(w.len(), 1, "{}", r.stderr);
    assert!(w[0].contains("=\"1M?B\""), "{}", w[0]);
}

#[test]
fn show_stats_prints_the_tree_at_exit() {
    let r = run(&[("MEMCG_SHOW_STATS", "1")]);
    let at = r
        .stderr
        .find("memcg: stats at exit")
        .unwrap_or_else(|| panic!("no report: {}", r.stderr));
    let report = &r.stderr[at..];
    for want in ["allocated ", "mapped ", "env-child-group"] {
        assert!(report.contains(want), "{want}: {report}");
    }
    assert!(warnings(&r.stderr, "MEMCG_SHOW_STATS").is_empty());

    let r = run(&[("MEMCG_SHOW_STATS", "0")]);
    assert!(!r.stderr.contains("stats at exit"), "{}", r.stderr);
}
