//! json (Rust-native): generate a JSON-like document as text, parse it into a
//! tree of `Value`s (strings, vectors of children, keyed objects), walk the
//! tree to a checksum, drop it; repeat. Each thread parses its share of the
//! documents.

use super::common::{scaled, share};
use super::Outcome;
use crate::budget::run_threads;
use crate::rng::Rng;

/// A parsed node.
#[derive(Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Num(i64),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

const NODES_PER_DOC: usize = 20_000;

fn gen_string(rng: &mut Rng, out: &mut String) {
    out.push('"');
    for _ in 0..rng.below(24) {
        match rng.below(40) {
            0 => out.push_str("\\\""),
            1 => out.push_str("\\\\"),
            2 => out.push_str("\\n"),
            _ => out.push((b'a' + rng.below(26) as u8) as char),
        }
    }
    out.push('"');
}

fn gen_value(rng: &mut Rng, depth: usize, budget: &mut usize, out: &mut String) {
    *budget = budget.saturating_sub(1);
    let container = depth < 8 && *budget > 0 && rng.chance(1, 3);
    if container {
        let n = rng.below(12);
        let obj = rng.chance(1, 2);
        out.push(if obj { '{' } else { '[' });
        for k in 0..n {
            if k > 0 {
                out.push_str(", ");
            }
            if obj {
                gen_string(rng, out);
                out.push_str(": ");
            }
            gen_value(rng, depth + 1, budget, out);
        }
        out.push(if obj { '}' } else { ']' });
        return;
    }
    match rng.below(5) {
        0 => out.push_str("null"),
        1 => out.push_str(if rng.chance(1, 2) { "true" } else { "false" }),
        2 | 3 => {
            let n = rng.next_u64() as i64 >> rng.below(60);
            out.push_str(&n.to_string());
        }
        _ => gen_string(rng, out),
    }
}

/// Generates one document of about `NODES_PER_DOC` nodes.
pub fn generate(rng: &mut Rng) -> String {
    let mut out = String::new();
    out.push('[');
    let mut budget = NODES_PER_DOC;
    let mut first = true;
    while budget > 0 {
        if !first {
            out.push_str(",\n");
        }
        first = false;
        gen_value(rng, 1, &mut budget, &mut out);
    }
    out.push(']');
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s[self.i], c, "parse error at {}", self.i);
        self.i += 1;
    }

    fn string(&mut self) -> String {
        self.eat(b'"');
        let mut out = String::new();
        loop {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    out.push(match e {
                        b'n' => '\n',
                        other => other as char,
                    });
                }
                other => out.push(other as char),
            }
        }
    }

    fn value(&mut self) -> Value {
        self.ws();
        match self.s[self.i] {
            b'n' => {
                self.i += 4;
                Value::Null
            }
            b't' => {
                self.i += 4;
                Value::Bool(true)
            }
            b'f' => {
                self.i += 5;
                Value::Bool(false)
            }
            b'"' => Value::Str(self.string()),
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Value::Arr(v);
                }
                loop {
                    v.push(self.value());
                    self.ws();
                    let c = self.s[self.i];
                    self.i += 1;
                    if c == b']' {
                        return Value::Arr(v);
                    }
                    assert_eq!(c, b',', "parse error at {}", self.i);
                }
            }
            b'{' => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Value::Obj(v);
                }
                loop {
                    let k = self.string();
                    self.eat(b':');
                    v.push((k, self.value()));
                    self.ws();
                    let c = self.s[self.i];
                    self.i += 1;
                    if c == b'}' {
                        return Value::Obj(v);
                    }
                    assert_eq!(c, b',', "parse error at {}", self.i);
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i] == b'-' || self.s[self.i].is_ascii_digit())
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                Value::Num(t.parse().expect("number"))
            }
        }
    }
}

/// Parses a document made by [`generate`].
pub fn parse(text: &str) -> Value {
    Parser {
        s: text.as_bytes(),
        i: 0,
    }
    .value()
}

/// A checksum over every node of the tree.
pub fn walk(v: &Value) -> u64 {
    match v {
        Value::Null => 1,
        Value::Bool(b) => 2 + *b as u64,
        Value::Num(n) => *n as u64,
        Value::Str(s) => s
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
        Value::Arr(v) => v
            .iter()
            .fold(11u64, |h, c| h.wrapping_mul(3).wrapping_add(walk(c))),
        Value::Obj(v) => v.iter().fold(13u64, |h, (k, c)| {
            h.wrapping_mul(5)
                .wrapping_add(k.len() as u64)
                .wrapping_add(walk(c))
        }),
    }
}

pub fn run(threads: usize, scale: f64) -> Outcome {
    let docs = share(scaled(90.0, scale, threads), threads);
    let sum = run_threads(threads, |i| {
        let mut s = 0u64;
        for d in 0..docs {
            let mut rng = Rng::new((800 + i * 10_000 + d) as u64);
            let text = generate(&mut rng);
            let tree = parse(&text);
            s = s.wrapping_add(walk(&tree));
        }
        s
    });
    Outcome {
        ops: (docs * threads * NODES_PER_DOC) as u64,
        checksum: sum,
    }
}
