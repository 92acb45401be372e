//! Load generator for `examples/service`: many well-behaved tenants at once
//! and one runaway, over real HTTP/1.1 on loopback.
//!
//! It starts the server itself (the `service` binary beside this one, or
//! `service_jemalloc` with `--jemalloc`; `--server PATH` names another) on a
//! free loopback port, or drives a running one (`--target 127.0.0.1:PORT`).
//!
//! - `--concurrency` connections (default 32) serve the well-behaved tenants
//!   (`--tenants`, default 200, all but the runaway), connection `j` taking
//!   tenants `j, j + C, ...` in turn, one request at a time: per tenant a
//!   repeating mix of two `PUT`s of small values (64..512 bytes, 16 keys),
//!   two `GET`s of keys it stored and one `POST /work` of a small JSON body.
//! - One more connection is the runaway (the last tenant): `PUT`s of ever
//!   larger values (`--runaway-step` more bytes each time, 16 KiB by
//!   default, up to `--runaway-cap`, 1 MiB) on 64 keys in turn, one after
//!   the other as fast as they are answered (`--runaway-rate N`: at most N
//!   a second).
//! - One more samples `GET /groups/{runaway}` every `--sample-ms` (20 ms) to
//!   record the highest `current` of the runaway's group; at the end
//!   `GET /metrics` gives its `peak`.
//!
//! Bounded: no request starts after `--seconds` (default 20) or once
//! `--max-requests` (default 5,000,000) have started; each request times
//! out after 10 s; the run ends by itself. A spawned server is stopped
//! (`POST /shutdown`, then its standard input closes; it also stops on its
//! own after `--seconds` + 60 s).
//!
//! Printed: requests/s, p50 and p99 latency of the well-behaved tenants and
//! of the runaway, status counts, the server's peak RSS (`VmHWM` of
//! `/proc/PID/status`, or of `GET /stats` with `--target`) and CPU time, the
//! runaway's highest `current` and `peak` beside its `max` plus the slack
//! (the server's threads x 2 x `reserve_batch`, docs/INTERNALS.md "Reserves
//! and their slack"), the final group report (`GET /groups`: the root,
//! `tenants` and the runaway's line; `--full-report` for all), and one
//! `summary key=value ...` line for scripts.
//!
//! `--assert` exits 1 unless every well-behaved request succeeded (2xx),
//! the runaway got 507 at least once, and its group never read above max +
//! slack (sampled `current` and final `peak`).
//!
//! `--compare REPS` runs the three servers (memcg with groups, memcg
//! `--no-groups`, jemalloc without groups), each with and without the
//! runaway, REPS times in rotated order, and prints medians and ratios
//! (`bench-suite/service.sh` builds and runs it).
//!
//! Run (build the servers first):
//!
//! ```text
//! cargo build --release --example service --example service_jemalloc --example service_load
//! target/release/examples/service_load --seconds 20
//! target/release/examples/service_load --seconds 4 --assert
//! ```

#[path = "service/bytes.rs"]
mod bytes;
use bytes::parse_bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const USAGE: &str = "\
usage: service_load [--target ADDR | --server PATH | --jemalloc | --no-groups] [--workers N]
                    [--tenants N] [--tenant-max BYTES] [--concurrency N] [--seconds S]
                    [--max-requests N] [--no-runaway] [--runaway-step BYTES] [--runaway-cap BYTES]
                    [--runaway-rate N]
                    [--sample-ms MS] [--client-threads N] [--assert] [--compare REPS] [--label L]
                    [--full-report]

  --target ADDR        drive a running server (loopback only) instead of starting one
  --server PATH        the server binary to start (default: `service` beside this binary)
  --jemalloc           start `service_jemalloc` (jemalloc, no groups)
  --no-groups          start the server with --no-groups
  --workers N          the server's tokio worker threads (default 2)
  --tenants N          tenants (default 200; the last one is the runaway)
  --tenant-max BYTES   each tenant's max (default 16M)
  --concurrency N      connections of the well-behaved tenants (default 32)
  --seconds S          how long requests start (default 20)
  --max-requests N     at most this many requests (default 5000000)
  --no-runaway         no runaway tenant
  --runaway-step BYTES the runaway's value grows by this much per request (default 16K)
  --runaway-cap BYTES  ... up to this size (default 1M)
  --runaway-rate N     at most N runaway requests a second (default 0: as fast as answered)
  --sample-ms MS       how often the runaway's group is read (default 20)
  --client-threads N   this program's tokio threads (default 1)
  --assert             exit 1 unless the acceptance conditions hold
  --compare REPS       run groups / no-groups / jemalloc, with and without the runaway, REPS times
  --label L            the label of the summary line
  --full-report        print every tenant's line of the final group report";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const RUNAWAY_KEYS: usize = 64;
const WB_KEYS: u32 = 16;

/// Which server to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Groups,
    NoGroups,
    Jemalloc,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Groups => "groups",
            Server::NoGroups => "no-groups",
            Server::Jemalloc => "jemalloc",
        }
    }
}

#[derive(Clone, Debug)]
struct Opts {
    target: Option<SocketAddr>,
    server_path: Option<PathBuf>,
    server: Server,
    workers: usize,
    tenants: usize,
    tenant_max: usize,
    concurrency: usize,
    seconds: f64,
    max_requests: u64,
    runaway: bool,
    runaway_step: usize,
    runaway_cap: usize,
    runaway_rate: f64,
    sample_ms: u64,
    client_threads: usize,
    assert: bool,
    compare: Option<usize>,
    label: Option<String>,
    full_report: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        target: None,
        server_path: None,
        server: Server::Groups,
        workers: 2,
        tenants: 200,
        tenant_max: 16 << 20,
        concurrency: 32,
        seconds: 20.0,
        max_requests: 5_000_000,
        runaway: true,
        runaway_step: 16 << 10,
        runaway_cap: 1 << 20,
        runaway_rate: 0.0,
        sample_ms: 20,
        client_threads: 1,
        assert: false,
        compare: None,
        label: None,
        full_report: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        }
        match flag.as_str() {
            "--target" => {
                let v = value()?;
                o.target = Some(
                    v.parse()
                        .map_err(|_| format!("--target: not an address: {v:?}"))?,
                )
            }
            "--server" => o.server_path = Some(PathBuf::from(value()?)),
            "--jemalloc" => o.server = Server::Jemalloc,
            "--no-groups" => o.server = Server::NoGroups,
            "--workers" => o.workers = num(&flag, value()?)?,
            "--tenants" => o.tenants = num(&flag, value()?)?,
            "--tenant-max" => o.tenant_max = parse_bytes(&value()?)?,
            "--concurrency" => o.concurrency = num(&flag, value()?)?,
            "--seconds" => o.seconds = num(&flag, value()?)?,
            "--max-requests" => o.max_requests = num(&flag, value()?)?,
            "--no-runaway" => o.runaway = false,
            "--runaway-step" => o.runaway_step = parse_bytes(&value()?)?,
            "--runaway-cap" => o.runaway_cap = parse_bytes(&value()?)?,
            "--runaway-rate" => o.runaway_rate = num(&flag, value()?)?,
            "--sample-ms" => o.sample_ms = num(&flag, value()?)?,
            "--client-threads" => o.client_threads = num(&flag, value()?)?,
            "--assert" => o.assert = true,
            "--compare" => o.compare = Some(num(&flag, value()?)?),
            "--label" => o.label = Some(value()?),
            "--full-report" => o.full_report = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    if let Some(t) = o.target {
        if !t.ip().is_loopback() {
            return Err(format!("--target {t}: loopback addresses only"));
        }
        if o.compare.is_some() {
            return Err("--compare starts its own servers; drop --target".into());
        }
    }
    if !(o.seconds > 0.0 && o.seconds <= 3600.0) {
        return Err("--seconds: more than 0, at most 3600".into());
    }
    if o.tenants < 2 || o.concurrency == 0 || o.client_threads == 0 || o.workers == 0 {
        return Err(
            "--tenants at least 2; --concurrency, --client-threads, --workers at least 1".into(),
        );
    }
    if o.runaway_rate.is_nan() || o.runaway_rate < 0.0 {
        return Err("--runaway-rate: 0 or more".into());
    }
    if o.runaway_step == 0 || o.runaway_cap < o.runaway_step || o.sample_ms == 0 {
        return Err("--runaway-step, --sample-ms above 0; --runaway-cap at least the step".into());
    }
    Ok(o)
}

// ---------------------------------------------------------------- client

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One connection, reopened when the server closed it.
struct Conn {
    addr: SocketAddr,
    sender: Option<Sender>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, sender: None }
    }

    async fn request_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        if self.sender.as_ref().is_none_or(Sender::is_closed) {
            self.sender = Some(connect(self.addr).await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err("no connection".into());
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let fail = |e: hyper::Error| format!("{path}: {e}");
        sender.ready().await.map_err(fail)?;
        let resp = sender.send_request(req).await.map_err(fail)?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(fail)?.to_bytes();
        Ok((status, body))
    }

    /// A request with a timeout; transport errors drop the connection.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let r = match tokio::time::timeout(REQUEST_TIMEOUT, self.request_inner(method, path, body))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("{path}: timed out")),
        };
        if r.is_err() {
            self.sender = None;
        }
        r
    }

    async fn get_text(&mut self, path: &str) -> Result<String, String> {
        match self.request(Method::GET, path, Bytes::new()).await? {
            (200, b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            (s, b) => Err(format!(
                "{path}: {s} {}",
                String::from_utf8_lossy(&b).trim()
            )),
        }
    }
}

/// What one class of requests (well-behaved, runaway) saw.
#[derive(Default)]
struct Class {
    /// Latencies in microseconds.
    lat_us: Vec<u32>,
    status: BTreeMap<u16, u64>,
    transport_errors: u64,
    first_error: Option<String>,
    first_507: Option<String>,
}

impl Class {
    fn record(&mut self, t0: Instant, r: Result<(u16, Bytes), String>) {
        let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.lat_us.push(us);
        match r {
            Ok((s, body)) => {
                *self.status.entry(s).or_default() += 1;
                if s == 507 && self.first_507.is_none() {
                    self.first_507 = Some(String::from_utf8_lossy(&body).trim().to_string());
                }
                if !(200..300).contains(&s) && self.first_error.is_none() {
                    self.first_error =
                        Some(format!("{s} {}", String::from_utf8_lossy(&body).trim()));
                }
            }
            Err(e) => {
                self.transport_errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
            }
        }
    }

    fn merge(&mut self, o: Class) {
        self.lat_us.extend(o.lat_us);
        for (s, n) in o.status {
            *self.status.entry(s).or_default() += n;
        }
        self.transport_errors += o.transport_errors;
        self.first_error = self.first_error.take().or(o.first_error);
        self.first_507 = self.first_507.take().or(o.first_507);
    }

    fn requests(&self) -> u64 {
        self.lat_us.len() as u64
    }

    fn ok(&self) -> u64 {
        self.status
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    fn count(&self, status: u16) -> u64 {
        self.status.get(&status).copied().unwrap_or(0)
    }

    /// Requests that did not get a 2xx.
    fn errors(&self) -> u64 {
        self.requests() - self.ok()
    }

    /// Nearest-rank percentile, in microseconds (sorts in place).
    fn percentile(&mut self, p: f64) -> u32 {
        if self.lat_us.is_empty() {
            return 0;
        }
        self.lat_us.sort_unstable();
        let n = self.lat_us.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.lat_us[rank.clamp(1, n) - 1]
    }

    fn statuses(&self) -> String {
        let mut s = String::new();
        for (code, n) in &self.status {
            let _ = write!(s, "{}{code}:{n}", if s.is_empty() { "" } else { "," });
        }
        if self.transport_errors > 0 {
            let _ = write!(
                s,
                "{}transport:{}",
                if s.is_empty() { "" } else { "," },
                self.transport_errors
            );
        }
        if s.is_empty() {
            s.push('-');
        }
        s
    }
}

/// The run's shared bounds.
struct Limits {
    deadline: Instant,
    max_requests: u64,
    started: AtomicU64,
}

impl Limits {
    /// Whether another request may start.
    fn next(&self) -> bool {
        Instant::now() < self.deadline
            && self.started.fetch_add(1, Ordering::Relaxed) < self.max_requests
    }
}

/// Small JSON bodies for `POST /work`.
fn work_bodies() -> Vec<Bytes> {
    (0..16u64)
        .map(|v| {
            let mut s = format!(r#"{{"tenant":"x","seq":{v},"op":"sum","items":["#);
            for i in 0..(2 + v % 8) {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(
                    s,
                    r#"{sep}{{"id":{},"qty":{},"tag":"tag{}"}}"#,
                    (v * 31 + i * 7) % 1000,
                    (v + i) % 10,
                    (v * 3 + i) % 100
                );
            }
            s.push_str(r#"],"note":"a small request body"}"#);
            Bytes::from(s)
        })
        .collect()
}

/// One connection of well-behaved tenants.
async fn well_behaved(
    addr: SocketAddr,
    tenants: Vec<usize>,
    limits: Arc<Limits>,
    values: Bytes,
    bodies: Arc<Vec<Bytes>>,
) -> Class {
    let mut conn = Conn::new(addr);
    let mut class = Class::default();
    // Per tenant: requests made, keys stored (a bit each).
    let mut state: Vec<(u64, u32)> = vec![(0, 0); tenants.len()];
    let mut turn = 0usize;
    while !tenants.is_empty() && limits.next() {
        let i = turn % tenants.len();
        turn += 1;
        let t = tenants[i];
        let (seq, stored) = state[i];
        state[i].0 += 1;
        let (method, path, body) = match seq % 5 {
            0 | 1 => {
                let k = (seq * 7 % WB_KEYS as u64) as u32;
                state[i].1 |= 1 << k;
                let len = 64 + (seq * 37 % 449) as usize;
                (Method::PUT, format!("/t/t{t}/kv/k{k}"), values.slice(..len))
            }
            2 | 3 => {
                // A key this tenant stored (its first request was a PUT).
                let from = (seq * 5 % WB_KEYS as u64) as u32;
                let k = (0..WB_KEYS)
                    .map(|d| (from + d) % WB_KEYS)
                    .find(|k| stored & (1 << k) != 0)
                    .unwrap_or(0);
                (Method::GET, format!("/t/t{t}/kv/k{k}"), Bytes::new())
            }
            _ => (
                Method::POST,
                format!("/t/t{t}/work"),
                bodies[(seq as usize + t) % bodies.len()].clone(),
            ),
        };
        let t0 = Instant::now();
        let r = conn.request(method, &path, body).await;
        class.record(t0, r);
    }
    class
}

/// The runaway: ever larger values.
async fn runaway(
    addr: SocketAddr,
    tenant: usize,
    (step, cap, rate): (usize, usize, f64),
    limits: Arc<Limits>,
    values: Bytes,
) -> Class {
    let mut conn = Conn::new(addr);
    let mut class = Class::default();
    let mut i = 0usize;
    let start = Instant::now();
    loop {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.min(limits.deadline).into()).await;
        }
        if !limits.next() {
            break;
        }
        let len = step.saturating_mul(i + 1).min(cap);
        let path = format!("/t/t{tenant}/kv/r{}", i % RUNAWAY_KEYS);
        let t0 = Instant::now();
        let r = conn.request(Method::PUT, &path, values.slice(..len)).await;
        class.record(t0, r);
        i += 1;
    }
    class
}

/// `key value` lines (a group's stats) or `key=value` lines (`/stats`).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?;
        rest.strip_prefix(' ')
            .or_else(|| rest.strip_prefix('='))?
            .trim()
            .parse()
            .ok()
    })
}

/// A Prometheus sample `name{group="path"} value`.
fn metric(text: &str, name: &str, group: &str) -> Option<u64> {
    let prefix = format!("{name}{{group=\"{group}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str())?.trim().parse().ok())
}

/// Reads the runaway's group until `done`; the highest `current` seen.
async fn sampler(
    addr: SocketAddr,
    tenant: usize,
    every: Duration,
    done: Arc<AtomicBool>,
) -> (u64, u64) {
    let mut conn = Conn::new(addr);
    let path = format!("/groups/t{tenant}");
    let (mut highest, mut samples) = (0u64, 0u64);
    while !done.load(Ordering::Relaxed) {
        if let Ok(text) = conn.get_text(&path).await {
            if let Some(c) = field(&text, "current") {
                highest = highest.max(c);
                samples += 1;
            }
        }
        tokio::time::sleep(every).await;
    }
    (highest, samples)
}

// ---------------------------------------------------------------- server

struct Spawned {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

fn server_binary(o: &Opts) -> Result<PathBuf, String> {
    if let Some(p) = &o.server_path {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let name = match o.server {
        Server::Jemalloc => "service_jemalloc",
        _ => "service",
    };
    let p = exe.with_file_name(name);
    if !p.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release --example service --example service_jemalloc`",
            p.display()
        ));
    }
    Ok(p)
}

fn spawn_server(o: &Opts) -> Result<Spawned, String> {
    let bin = server_binary(o)?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--addr", "127.0.0.1:0", "--exit-on-stdin-eof"])
        .args(["--tenants", &o.tenants.to_string()])
        .args(["--tenant-max", &o.tenant_max.to_string()])
        .args(["--workers", &o.workers.to_string()])
        .args(["--max-body", &(o.runaway_cap + (1 << 20)).to_string()])
        .args(["--exit-after", &format!("{:.0}", o.seconds + 60.0)]);
    if o.server == Server::NoGroups {
        cmd.arg("--no-groups");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let stdin = child.stdin.take();
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err("no stdout".into());
    };
    let mut out = BufReader::new(stdout);
    let mut line = String::new();
    let addr = match out.read_line(&mut line) {
        Ok(n) if n > 0 => line.trim().parse::<SocketAddr>().ok(),
        _ => None,
    };
    let Some(addr) = addr.filter(|a| a.ip().is_loopback()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("the server printed no loopback address: {line:?}"));
    };
    // Drain the rest of its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    Ok(Spawned { child, stdin, addr })
}

/// `(VmHWM in KiB, utime + stime in seconds)` of a process.
fn proc_figures(pid: u32) -> (Option<u64>, Option<f64>) {
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")?
                    .trim()
                    .trim_end_matches(" kB")
                    .parse()
                    .ok()
            })
        });
    (hwm, cpu_seconds(&format!("/proc/{pid}/stat")))
}

fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line (11 and 12 here).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

fn stop_server(mut s: Spawned) {
    drop(s.stdin.take()); // the server stops at stdin EOF too
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = s.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("service_load: the server did not stop within 10 s; killing it");
    let _ = s.child.kill();
    let _ = s.child.wait();
}

// ---------------------------------------------------------------- one run

/// What one run measured.
struct Outcome {
    label: String,
    runaway_on: bool,
    secs: f64,
    wb: Class,
    ra: Class,
    groups: bool,
    allocator: String,
    server_threads: u64,
    reserve_batch: u64,
    peak_rss_kib: Option<u64>,
    server_cpu_s: Option<f64>,
    client_cpu_s: Option<f64>,
    ra_current_max: Option<u64>,
    ra_samples: u64,
    ra_peak: Option<u64>,
    ra_limit: Option<u64>,
    report: String,
    /// The runaway's name in the report (`t199`).
    report_tenant: String,
    metrics_lines: usize,
}

impl Outcome {
    fn slack(&self) -> u64 {
        self.server_threads * 2 * self.reserve_batch
    }

    fn bound(&self) -> Option<u64> {
        self.ra_limit.map(|m| m + self.slack())
    }

    fn total(&self) -> u64 {
        self.wb.requests() + self.ra.requests()
    }

    fn rps(&self) -> f64 {
        self.total() as f64 / self.secs
    }

    /// Server CPU microseconds per request.
    fn cpu_us_per_req(&self) -> Option<f64> {
        self.server_cpu_s
            .map(|c| c * 1e6 / self.total().max(1) as f64)
    }

    /// Why the acceptance conditions fail (empty: they hold).
    fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.wb.requests() == 0 {
            f.push("no well-behaved request was made".into());
        }
        if self.wb.errors() > 0 {
            f.push(format!(
                "{} well-behaved requests failed ({}; first: {})",
                self.wb.errors(),
                self.wb.statuses(),
                self.wb.first_error.as_deref().unwrap_or("-")
            ));
        }
        if self.runaway_on {
            if !self.groups {
                f.push("the server has no groups: nothing stops the runaway".into());
            }
            if self.ra.count(507) == 0 {
                f.push(format!("the runaway got no 507 ({})", self.ra.statuses()));
            }
            if let Some(bound) = self.bound() {
                match self.ra_current_max {
                    Some(c) if c <= bound => {}
                    Some(c) => f.push(format!(
                        "the runaway's group read current {c} > max + slack {bound}"
                    )),
                    None => f.push("the runaway's group was never read".into()),
                }
                match self.ra_peak {
                    Some(p) if p <= bound => {}
                    Some(p) => f.push(format!(
                        "the runaway's group peaked at {p} > max + slack {bound}"
                    )),
                    None => f.push("the runaway's peak was not read".into()),
                }
            } else if self.groups {
                f.push("the runaway's max was not read".into());
            }
        }
        f
    }

    fn summary(&mut self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let (wb50, wb99) = (self.wb.percentile(50.0), self.wb.percentile(99.0));
        let (ra50, ra99) = (self.ra.percentile(50.0), self.ra.percentile(99.0));
        let ok = self.failures().is_empty();
        format!(
            "summary label={} server={} groups={} runaway={} secs={:.2} requests={} rps={:.0} \
             wb_requests={} wb_rps={:.0} wb_p50_us={wb50} wb_p99_us={wb99} wb_errors={} wb_status={} \
             runaway_requests={} runaway_p50_us={ra50} runaway_p99_us={ra99} runaway_507={} runaway_status={} \
             server_peak_rss_kib={} server_cpu_s={} cpu_us_per_req={} client_cpu_s={} \
             server_threads={} reserve_batch={} slack={} runaway_max={} runaway_current_max={} \
             runaway_samples={} runaway_peak={} bound={} metrics_lines={} ok={}",
            self.label,
            self.allocator,
            u8::from(self.groups),
            u8::from(self.runaway_on),
            self.secs,
            self.total(),
            self.rps(),
            self.wb.requests(),
            self.wb.requests() as f64 / self.secs,
            self.wb.errors(),
            self.wb.statuses(),
            self.ra.requests(),
            self.ra.count(507),
            self.ra.statuses(),
            opt(self.peak_rss_kib),
            self.server_cpu_s
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            self.cpu_us_per_req()
                .map_or_else(|| "-".into(), |c| format!("{c:.1}")),
            self.client_cpu_s
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            self.server_threads,
            self.reserve_batch,
            self.slack(),
            opt(self.ra_limit),
            opt(self.ra_current_max),
            self.ra_samples,
            opt(self.ra_peak),
            opt(self.bound()),
            self.metrics_lines,
            u8::from(ok),
        )
    }

    /// The report's root and `tenants` lines, the runaway's (or the
    /// first tenant's) and a count of the rest, unless `full`.
    fn report_excerpt(&self, full: bool) -> String {
        if full {
            return self.report.clone();
        }
        let mut out = String::new();
        let mut skipped = 0;
        for line in self.report.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let keep = line.len() - line.trim_start().len() < 4
                || name == self.report_tenant
                || (name == "t0" && !self.runaway_on);
            if keep {
                out.push_str(line);
                out.push('\n');
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            let _ = writeln!(
                out,
                "    ... {skipped} more tenants (--full-report shows them)"
            );
        }
        out
    }

    fn print(&mut self, with_report: bool, full_report: bool) {
        let ms = |us: u32| us as f64 / 1000.0;
        let (wb50, wb99) = (self.wb.percentile(50.0), self.wb.percentile(99.0));
        let (ra50, ra99) = (self.ra.percentile(50.0), self.ra.percentile(99.0));
        println!(
            "== {} ({}, groups {}, runaway {}): {:.1} s",
            self.label,
            self.allocator,
            if self.groups { "on" } else { "off" },
            if self.runaway_on { "on" } else { "off" },
            self.secs
        );
        println!(
            "requests {} ({:.0}/s); well-behaved {} ({:.0}/s)",
            self.total(),
            self.rps(),
            self.wb.requests(),
            self.wb.requests() as f64 / self.secs
        );
        println!(
            "well-behaved latency p50 {:.2} ms  p99 {:.2} ms  status {}",
            ms(wb50),
            ms(wb99),
            self.wb.statuses()
        );
        if self.runaway_on {
            println!(
                "runaway      latency p50 {:.2} ms  p99 {:.2} ms  status {}",
                ms(ra50),
                ms(ra99),
                self.ra.statuses()
            );
            if let Some(b) = &self.ra.first_507 {
                println!("first 507: {b}");
            }
        }
        if let Some(e) = &self.wb.first_error {
            println!("first well-behaved error: {e}");
        }
        println!(
            "server: peak RSS {} KiB, CPU {} s ({} us/request), {} threads; client CPU {} s",
            self.peak_rss_kib
                .map_or_else(|| "-".into(), |v| v.to_string()),
            self.server_cpu_s
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            self.cpu_us_per_req()
                .map_or_else(|| "-".into(), |c| format!("{c:.1}")),
            self.server_threads,
            self.client_cpu_s
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
        );
        if let (true, Some(max), Some(bound)) = (self.runaway_on, self.ra_limit, self.bound()) {
            println!(
                "runaway group: max {max}, slack {} ({} threads x 2 x reserve_batch {}), \
                 highest current read {} ({} samples), peak {}, bound {bound}",
                self.slack(),
                self.server_threads,
                self.reserve_batch,
                self.ra_current_max
                    .map_or_else(|| "-".into(), |v| v.to_string()),
                self.ra_samples,
                self.ra_peak.map_or_else(|| "-".into(), |v| v.to_string()),
            );
        }
        if with_report {
            println!("group report (GET /groups):");
            print!("{}", self.report_excerpt(full_report));
            println!("GET /metrics: {} lines", self.metrics_lines);
        }
        println!("{}", self.summary());
    }
}

async fn run_load(o: &Opts, addr: SocketAddr, pid: Option<u32>, label: String) -> Outcome {
    let mut ctl = Conn::new(addr);
    let facts = ctl.get_text("/stats").await.unwrap_or_default();
    let groups = field(&facts, "groups") == Some(1);
    let allocator = facts
        .lines()
        .find_map(|l| l.strip_prefix("allocator="))
        .unwrap_or("?")
        .to_string();
    let server_tenants = field(&facts, "tenants").map_or(o.tenants, |n| n as usize);
    let tenants = o.tenants.min(server_tenants);
    let runaway_tenant = tenants - 1;
    let wb_tenants = if o.runaway { tenants - 1 } else { tenants };
    let mut threads = field(&facts, "threads").unwrap_or(0);

    let values = Bytes::from(
        (0..o.runaway_cap.max(1024))
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let bodies = Arc::new(work_bodies());
    let limits = Arc::new(Limits {
        deadline: Instant::now() + Duration::from_secs_f64(o.seconds),
        max_requests: o.max_requests,
        started: AtomicU64::new(0),
    });
    let cpu0 = pid.and_then(|p| proc_figures(p).1);
    let client0 = cpu_seconds("/proc/self/stat");
    let t0 = Instant::now();

    let mut wb_tasks = Vec::new();
    for j in 0..o.concurrency.min(wb_tenants) {
        let mine: Vec<usize> = (j..wb_tenants).step_by(o.concurrency).collect();
        wb_tasks.push(tokio::spawn(well_behaved(
            addr,
            mine,
            limits.clone(),
            values.clone(),
            bodies.clone(),
        )));
    }
    let ra_task = o.runaway.then(|| {
        tokio::spawn(runaway(
            addr,
            runaway_tenant,
            (o.runaway_step, o.runaway_cap, o.runaway_rate),
            limits.clone(),
            values.clone(),
        ))
    });
    let done = Arc::new(AtomicBool::new(false));
    let sampler_task = (o.runaway && groups).then(|| {
        tokio::spawn(sampler(
            addr,
            runaway_tenant,
            Duration::from_millis(o.sample_ms),
            done.clone(),
        ))
    });

    let mut wb = Class::default();
    for t in wb_tasks {
        match t.await {
            Ok(c) => wb.merge(c),
            Err(e) => wb.first_error = Some(format!("a load task failed: {e}")),
        }
    }
    let mut ra = Class::default();
    if let Some(t) = ra_task {
        if let Ok(c) = t.await {
            ra = c;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (ra_current_max, ra_samples) = match sampler_task {
        Some(t) => match t.await {
            Ok((c, n)) if n > 0 => (Some(c), n),
            _ => (None, 0),
        },
        None => (None, 0),
    };
    let cpu1 = pid.and_then(|p| proc_figures(p).1);
    let client1 = cpu_seconds("/proc/self/stat");

    let report = ctl
        .get_text("/groups")
        .await
        .unwrap_or_else(|e| format!("{e}\n"));
    let metrics = ctl.get_text("/metrics").await.unwrap_or_default();
    let group = format!("/tenants/t{runaway_tenant}");
    let ra_peak = metric(&metrics, "memcg_group_peak_bytes", &group);
    let ra_limit = metric(&metrics, "memcg_group_max_bytes", &group);
    let facts_end = ctl.get_text("/stats").await.unwrap_or_default();
    threads = threads.max(field(&facts_end, "threads").unwrap_or(0));
    let peak_rss_kib = match pid {
        Some(p) => proc_figures(p).0,
        None => field(&facts_end, "vm_hwm_kib"),
    };
    Outcome {
        label,
        runaway_on: o.runaway,
        secs,
        wb,
        ra,
        groups,
        allocator,
        server_threads: threads,
        reserve_batch: field(&facts, "reserve_batch").unwrap_or(0),
        peak_rss_kib,
        server_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        client_cpu_s: client0.zip(client1).map(|(a, b)| b - a),
        ra_current_max,
        ra_samples,
        ra_peak,
        ra_limit,
        report,
        report_tenant: format!("t{runaway_tenant}"),
        metrics_lines: metrics.lines().count(),
    }
}

fn runtime(o: &Opts) -> tokio::runtime::Runtime {
    let rt = if o.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.client_threads)
            .enable_all()
            .build()
    };
    match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("service_load: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// One run: starts the server (unless `--target`), drives it, stops it.
fn run_once(o: &Opts, label: String) -> Result<Outcome, String> {
    let rt = runtime(o);
    match o.target {
        Some(addr) => Ok(rt.block_on(run_load(o, addr, None, label))),
        None => {
            let s = spawn_server(o)?;
            let pid = s.child.id();
            let out = rt.block_on(async {
                let out = run_load(o, s.addr, Some(pid), label).await;
                let _ = Conn::new(s.addr)
                    .request(Method::POST, "/shutdown", Bytes::new())
                    .await;
                out
            });
            drop(rt);
            stop_server(s);
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------- compare

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

/// Per-run figures kept for the comparison.
struct Row {
    server: Server,
    runaway: bool,
    rps: f64,
    wb_rps: f64,
    wb_p50: f64,
    wb_p99: f64,
    ra_p99: f64,
    rss_mib: f64,
    cpu_us: f64,
    wb_errors: u64,
    ra_507: u64,
    within_bound: bool,
}

fn compare(o: &Opts, reps: usize) -> bool {
    let servers = [Server::Groups, Server::NoGroups, Server::Jemalloc];
    let mut rows = Vec::new();
    println!(
        "== compare: {reps} repetitions x 3 servers x (runaway on, off), {} s each, {} tenants, \
         concurrency {}, {} server workers, runaway rate {}",
        o.seconds,
        o.tenants,
        o.concurrency,
        o.workers,
        if o.runaway_rate > 0.0 {
            format!("{}/s", o.runaway_rate)
        } else {
            "unpaced".into()
        }
    );
    for rep in 0..reps {
        for k in 0..servers.len() {
            let server = servers[(rep + k) % servers.len()];
            let order = if (rep + k) % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for runaway in order {
                let mut one = o.clone();
                one.server = server;
                one.runaway = runaway;
                let label = format!(
                    "{}/{}/rep{}",
                    server.name(),
                    if runaway { "runaway" } else { "calm" },
                    rep + 1
                );
                match run_once(&one, label) {
                    Ok(mut out) => {
                        let line = out.summary();
                        println!("{line}");
                        rows.push(Row {
                            server,
                            runaway,
                            rps: out.rps(),
                            wb_rps: out.wb.requests() as f64 / out.secs,
                            wb_p50: out.wb.percentile(50.0) as f64 / 1000.0,
                            wb_p99: out.wb.percentile(99.0) as f64 / 1000.0,
                            ra_p99: out.ra.percentile(99.0) as f64 / 1000.0,
                            rss_mib: out.peak_rss_kib.unwrap_or(0) as f64 / 1024.0,
                            cpu_us: out.cpu_us_per_req().unwrap_or(f64::NAN),
                            wb_errors: out.wb.errors(),
                            ra_507: out.ra.count(507),
                            within_bound: out.failures().iter().all(|f| !f.contains("max + slack")),
                        });
                    }
                    Err(e) => {
                        eprintln!("service_load: {e}");
                        return false;
                    }
                }
            }
        }
    }
    let med = |s: Server, r: bool, f: &dyn Fn(&Row) -> f64| {
        median(
            rows.iter()
                .filter(|x| x.server == s && x.runaway == r)
                .map(f)
                .collect(),
        )
    };
    println!();
    println!(
        "{:<10} {:<8} {:>9} {:>9} {:>10} {:>10} {:>12} {:>10} {:>11} {:>9} {:>8}",
        "server",
        "runaway",
        "req/s",
        "wb req/s",
        "wb p50 ms",
        "wb p99 ms",
        "runaway p99",
        "peak MiB",
        "CPU us/req",
        "wb errors",
        "507s"
    );
    for s in servers {
        for r in [false, true] {
            let errors: u64 = rows
                .iter()
                .filter(|x| x.server == s && x.runaway == r)
                .map(|x| x.wb_errors)
                .sum();
            let n507: u64 = rows
                .iter()
                .filter(|x| x.server == s && x.runaway == r)
                .map(|x| x.ra_507)
                .sum();
            println!(
                "{:<10} {:<8} {:>9.0} {:>9.0} {:>10.2} {:>10.2} {:>12} {:>10.1} {:>11.1} {:>9} {:>8}",
                s.name(),
                if r { "on" } else { "off" },
                med(s, r, &|x| x.rps),
                med(s, r, &|x| x.wb_rps),
                med(s, r, &|x| x.wb_p50),
                med(s, r, &|x| x.wb_p99),
                if r {
                    format!("{:.2}", med(s, r, &|x| x.ra_p99))
                } else {
                    "-".into()
                },
                med(s, r, &|x| x.rss_mib),
                med(s, r, &|x| x.cpu_us),
                errors,
                n507
            );
        }
    }
    let g_on = |f: &dyn Fn(&Row) -> f64| med(Server::Groups, true, f);
    let g_off = |f: &dyn Fn(&Row) -> f64| med(Server::Groups, false, f);
    let j_on = |f: &dyn Fn(&Row) -> f64| med(Server::Jemalloc, true, f);
    let j_off = |f: &dyn Fn(&Row) -> f64| med(Server::Jemalloc, false, f);
    let p99_ratio = g_on(&|x| x.wb_p99) / g_off(&|x| x.wb_p99);
    let tput_calm = g_off(&|x| x.rps) / j_off(&|x| x.rps);
    let tput_runaway = g_on(&|x| x.wb_rps) / j_on(&|x| x.wb_rps);
    let cpu_calm = g_off(&|x| x.cpu_us) / j_off(&|x| x.cpu_us);
    let groups_clean = rows
        .iter()
        .filter(|x| x.server == Server::Groups)
        .all(|x| x.wb_errors == 0);
    let runaway_stopped = rows
        .iter()
        .filter(|x| x.server == Server::Groups && x.runaway)
        .all(|x| x.ra_507 > 0 && x.within_bound);
    let met = |b: bool| if b { "met" } else { "MISSED" };
    println!();
    println!(
        "groups: well-behaved errors in every run: {} ({})",
        if groups_clean { "none" } else { "some" },
        met(groups_clean)
    );
    println!(
        "groups: runaway got 507 and stayed within max + slack in every run: {}",
        met(runaway_stopped)
    );
    println!(
        "groups: well-behaved p99 with runaway / without: {p99_ratio:.2}x (bar <= 1.25x: {})",
        met(p99_ratio <= 1.25)
    );
    println!(
        "throughput groups / jemalloc without runaway (req/s): {tput_calm:.2}x (bar >= 0.9x: {})",
        met(tput_calm >= 0.9)
    );
    println!("throughput groups / jemalloc with runaway (well-behaved req/s): {tput_runaway:.2}x");
    println!("server CPU per request groups / jemalloc without runaway: {cpu_calm:.2}x");
    println!(
        "compare p99_ratio={p99_ratio:.3} tput_ratio_calm={tput_calm:.3} \
         tput_ratio_runaway={tput_runaway:.3} cpu_ratio_calm={cpu_calm:.3} \
         groups_clean={} runaway_stopped={}",
        u8::from(groups_clean),
        u8::from(runaway_stopped)
    );
    groups_clean && runaway_stopped && p99_ratio <= 1.25 && tput_calm >= 0.9
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("service_load: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Some(reps) = o.compare {
        let ok = compare(&o, reps.max(1));
        std::process::exit(if ok || !o.assert { 0 } else { 1 });
    }
    let label = o.label.clone().unwrap_or_else(|| match o.target {
        Some(_) => "target".into(),
        None => o.server.name().into(),
    });
    let mut out = match run_once(&o, label) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("service_load: {e}");
            std::process::exit(1);
        }
    };
    out.print(true, o.full_report);
    if o.assert {
        let f = out.failures();
        if f.is_empty() {
            println!("assert: ok");
        } else {
            for x in &f {
                println!("assert: FAILED: {x}");
            }
            std::process::exit(1);
        }
    }
}
