//! Byte counts on the command line, shared by the service and its load generator.

/// `123`, `64K`, `16M`, `1G` (binary multiples).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("not a byte count: {s:?}"))
}
