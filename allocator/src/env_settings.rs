//! Settings from the environment, as jemalloc's `MALLOC_CONF` and
//! mimalloc's `MIMALLOC_*` give them:
//!
//! - `MEMCG_PURGE_DELAY_MS`: milliseconds free pages wait before they go
//!   back to the OS (a decimal `u64`);
//! - `MEMCG_RESERVE_BATCH`: the reserve batch in bytes, a decimal integer
//!   optionally followed by `K`, `KiB`, `M`, `MiB`, `G` or `GiB` (all powers
//!   of 1024, any case, a space allowed before the suffix), at most the
//!   largest batch the engine takes;
//! - `MEMCG_SHOW_STATS`: `1` (also `true`, `yes`, `on`) prints the
//!   allocator's figures and the group tree to stderr at exit; `0` (also
//!   `false`, `no`, `off`) does not.
//!
//! An unset or empty variable keeps the default. A value that does not
//! parse or is out of range keeps the default too, and prints one line on
//! stderr naming the variable, the value and the default used.
//!
//! This runs on an allocation path (the process's first allocation), so it
//! allocates nothing, takes no lock and cannot panic: `getenv` returns a
//! pointer into the environment, the bytes are parsed by hand, and warnings
//! are built on the stack and written with `write(2)`.

use crate::os::{self, Line};
use core::ffi::CStr;
use core::fmt::Write as _;

/// What the environment sets; `None` keeps the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub purge_delay_ms: Option<u64>,
    pub reserve_batch: Option<usize>,
    pub show_stats: bool,
}

/// The defaults named in warnings, and the range of the reserve batch.
pub struct Defaults {
    pub purge_delay_ms: u64,
    pub reserve_batch: usize,
    pub reserve_batch_max: usize,
}

/// Reads and parses the three variables, warning about bad values.
pub fn read(d: &Defaults) -> Settings {
    let mut s = Settings::default();
    if let Some(v) = var(c"MEMCG_PURGE_DELAY_MS") {
        match parse_u64(v) {
            Some(ms) => s.purge_delay_ms = Some(ms),
            None => warn(
                "MEMCG_PURGE_DELAY_MS",
                v,
                "not a number of milliseconds (decimal digits)",
                d.purge_delay_ms,
            ),
        }
    }
    if let Some(v) = var(c"MEMCG_RESERVE_BATCH") {
        match parse_bytes(v) {
            Some(b) if b <= d.reserve_batch_max as u64 => s.reserve_batch = Some(b as usize),
            Some(_) => {
                let mut why = Line::new();
                let _ = write!(
                    why,
                    "above the largest reserve batch, {} bytes",
                    d.reserve_batch_max
                );
                warn_line("MEMCG_RESERVE_BATCH", v, why.as_bytes(), d.reserve_batch as u64);
            }
            None => warn(
                "MEMCG_RESERVE_BATCH",
                v,
                "not a byte count (decimal digits, optionally followed by K, KiB, M, MiB, G or GiB)",
                d.reserve_batch as u64,
            ),
        }
    }
    if let Some(v) = var(c"MEMCG_SHOW_STATS") {
        match parse_flag(v) {
            Some(on) => s.show_stats = on,
            None => warn(
                "MEMCG_SHOW_STATS",
                v,
                "not 1 or 0 (nor true/false, yes/no, on/off)",
                0,
            ),
        }
    }
    s
}

/// The variable's bytes; `None` when unset or empty.
fn var(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer to
    // a NUL-terminated string in the environment, which stays valid unless
    // the environment is changed meanwhile (it is read at the process's
    // first allocation and parsed at once).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: as above.
    let v = unsafe { CStr::from_ptr(p) }.to_bytes();
    (!v.is_empty()).then_some(v)
}

/// `v` without leading and trailing ASCII white space.
fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// Decimal digits only (white space around allowed); `None` on anything
/// else or on overflow.
fn parse_u64(v: &[u8]) -> Option<u64> {
    digits(trim(v)).and_then(|(n, rest)| rest.is_empty().then_some(n))
}

/// Leading decimal digits (at least one) and what follows them.
fn digits(v: &[u8]) -> Option<(u64, &[u8])> {
    let n = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let mut x: u64 = 0;
    for &b in &v[..n] {
        x = x.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((x, &v[n..]))
}

/// A byte count: digits, then optionally a binary suffix.
fn parse_bytes(v: &[u8]) -> Option<u64> {
    let (n, rest) = digits(trim(v))?;
    let unit = trim(rest);
    let shift = if unit.is_empty() {
        0
    } else if unit.len() > 3 {
        return None;
    } else {
        let shift = match unit[0].to_ascii_uppercase() {
            b'K' => 10,
            b'M' => 20,
            b'G' => 30,
            _ => return None,
        };
        if unit.len() == 1 || unit[1..].eq_ignore_ascii_case(b"iB") {
            shift
        } else {
            return None;
        }
    };
    n.checked_mul(1u64 << shift)
}

fn parse_flag(v: &[u8]) -> Option<bool> {
    let v = trim(v);
    let is = |words: &[&[u8]]| words.iter().any(|w| v.eq_ignore_ascii_case(w));
    if is(&[b"1", b"true", b"yes", b"on"]) {
        Some(true)
    } else if is(&[b"0", b"false", b"no", b"off"]) {
        Some(false)
    } else {
        None
    }
}

fn warn(name: &str, value: &[u8], why: &str, default: u64) {
    warn_line(name, value, why.as_bytes(), default);
}

/// `memcg: ignoring NAME="value": why; using the default N`, on one line:
/// the value is cut at 64 bytes and control bytes show as `?`.
fn warn_line(name: &str, value: &[u8], why: &[u8], default: u64) {
    let mut l = Line::new();
    l.push(b"memcg: ignoring ");
    l.push(name.as_bytes());
    l.push(b"=\"");
    for &b in value.iter().take(64) {
        l.push(if b.is_ascii_control() {
            b"?"
        } else {
            core::slice::from_ref(&b)
        });
    }
    if value.len() > 64 {
        l.push(b"...");
    }
    l.push(b"\": ");
    l.push(why);
    let _ = write!(l, "; using the default {default}");
    l.end();
    os::write_stderr(l.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b" 250\n"), Some(250));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"-5",
            b"+5",
            b"1.5",
            b"10ms",
            b"0x10",
        ] {
            assert_eq!(parse_u64(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes(b"4096"), Some(4096));
        assert_eq!(parse_bytes(b"64K"), Some(64 << 10));
        assert_eq!(parse_bytes(b"64k"), Some(64 << 10));
        assert_eq!(parse_bytes(b"64KiB"), Some(64 << 10));
        assert_eq!(parse_bytes(b"64 kib"), Some(64 << 10));
        assert_eq!(parse_bytes(b"2M"), Some(2 << 20));
        assert_eq!(parse_bytes(b"2MiB"), Some(2 << 20));
        assert_eq!(parse_bytes(b"1G"), Some(1 << 30));
        assert_eq!(parse_bytes(b"1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes(b"17179869184G"), None, "overflow");
        for bad in [
            &b"K"[..],
            b"64KB",
            b"64Ki",
            b"64T",
            b"64 K B",
            b"-1",
            b"1.5M",
            b"64KiBs",
        ] {
            assert_eq!(parse_bytes(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn flags() {
        for on in [&b"1"[..], b"true", b"YES", b"on"] {
            assert_eq!(parse_flag(on), Some(true));
        }
        for off in [&b"0"[..], b"false", b"No", b"off"] {
            assert_eq!(parse_flag(off), Some(false));
        }
        for bad in [&b"2"[..], b"maybe", b"10"] {
            assert_eq!(parse_flag(bad), None);
        }
    }
}
