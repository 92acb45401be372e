//! The tenant service: an axum server hosting tenants, each with its own
//! memory budget.
//!
//! One file, two binaries: `examples/service/main.rs` installs memcg as the
//! global allocator and handles every request of a tenant under that
//! tenant's group; `examples/service_jemalloc.rs` includes this same file
//! with jemalloc as the global allocator and no groups, the baseline the
//! groups are measured against. (Two examples sharing a module need no cargo
//! feature and no optional dependency on the `memcg` library itself.)
//!
//! Groups: one parent `/tenants` without a limit, and one child per tenant,
//! `/tenants/t0` .. `/tenants/t{N-1}`, each with the `--tenant-max` hard
//! limit and the default [`memcg::OnExceed::Report`] policy. Each request of
//! a tenant runs as `group.run(handler)`: the handler's allocations are
//! charged to the tenant, and when the tenant goes over its `max` during a
//! poll the handler is dropped (in the group: its partial work is freed)
//! and the request is answered `507 Insufficient Storage` with the limit and
//! the usage. The server and the other tenants go on.
//!
//! Why 507 and not 503: 503 says the *server* is unavailable (overloaded,
//! in maintenance) and invites a retry, so load balancers and clients retry
//! it elsewhere or mark the backend unhealthy. Here the server is healthy
//! and only this tenant's budget is spent; the same request will fail again
//! until the tenant frees memory. 507 (RFC 4918: "unable to store the
//! representation needed to complete the request") names that cause, and
//! is not one of the codes proxies retry.
//!
//! Routes:
//!
//! - `PUT /t/{tenant}/kv/{key}`: stores the body (at most `--max-body`) as
//!   the key's value in the tenant's map; 204.
//! - `GET /t/{tenant}/kv/{key}`: the value; 404 when there is none.
//! - `POST /t/{tenant}/work`: a JSON transform (parse, transform,
//!   serialize): 200 with the result, 400 on bad JSON, 422 on JSON that is
//!   not an object.
//! - `GET /groups`: `memcg::report()`, the tree of live groups.
//! - `GET /groups/{tenant}`: the tenant group's `memory.stat`-like lines,
//!   in exact bytes (`current`, `peak`, `max`, events).
//! - `GET /metrics`: `memcg::prometheus()`, the live tree and the
//!   allocator's figures in the Prometheus text format.
//! - `GET /stats`: `key=value` lines about the process (allocator, worker
//!   threads, thread count, `VmRSS`, `VmHWM`, `reserve_batch`).
//! - `POST /shutdown`: stops the server.
//!
//! The map, its keys and its values live in the tenant's group: a stored
//! value is a copy made inside `group.run`. That copy, the key and the
//! map's room for it are reserved inside [`memcg::fallible`] before
//! anything is inserted, so a value that would take the tenant over `max`
//! is refused before it is stored (never stored, then found over the
//! limit and kept), and the tenant's `current` never goes past `max`
//! through a stored value. The map is only touched between two awaits,
//! so a cancelled request never leaves it half changed. A tenant's state is
//! dropped in its group when the server stops.

#[path = "bytes.rs"]
mod bytes;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use bytes::parse_bytes;
use serde_json::{Map, Value};
use std::collections::{HashMap, TryReserveError};
use std::fmt::Write as _;
use std::future::{Future, IntoFuture};
use std::io::{Read, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Which global allocator the binary was built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // each binary builds one of the two
pub enum Allocator {
    /// memcg; groups unless `--no-groups`.
    Memcg,
    /// jemalloc; never groups.
    Jemalloc,
}

impl Allocator {
    fn name(self) -> &'static str {
        match self {
            Allocator::Memcg => "memcg",
            Allocator::Jemalloc => "jemalloc",
        }
    }
}

const USAGE: &str = "\
usage: service [--addr 127.0.0.1:PORT] [--tenants N] [--tenant-max BYTES] [--no-groups]
               [--workers N] [--max-body BYTES] [--exit-after SECONDS] [--exit-on-stdin-eof]

  --addr ADDR           loopback address to listen on (default 127.0.0.1:0, any free port);
                        the bound address is the first line on stdout
  --tenants N           tenants t0..t{N-1} (default 200)
  --tenant-max BYTES    each tenant's hard limit (default 16M; suffixes K, M, G)
  --no-groups           handle requests without groups (the baseline)
  --workers N           tokio worker threads (default 2)
  --max-body BYTES      largest request body accepted (default 8M); larger: 413
  --exit-after SECONDS  stop after this long (default 600)
  --exit-on-stdin-eof   also stop when standard input closes
Also stops on POST /shutdown.";

/// The command line.
struct Config {
    addr: SocketAddr,
    tenants: usize,
    tenant_max: usize,
    groups: bool,
    workers: usize,
    max_body: usize,
    exit_after: Duration,
    exit_on_eof: bool,
}

impl Config {
    fn parse(mut args: impl Iterator<Item = String>, alloc: Allocator) -> Result<Config, String> {
        let mut c = Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenants: 200,
            tenant_max: 16 << 20,
            groups: alloc == Allocator::Memcg,
            workers: 2,
            max_body: 8 << 20,
            exit_after: Duration::from_secs(600),
            exit_on_eof: false,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--addr" => {
                    let v = value()?;
                    c.addr = v
                        .parse()
                        .map_err(|_| format!("--addr: not an address: {v:?}"))?;
                }
                "--tenants" => {
                    c.tenants = value()?
                        .parse()
                        .map_err(|_| "--tenants: not a count".to_string())?
                }
                "--tenant-max" => c.tenant_max = parse_bytes(&value()?)?,
                "--max-body" => c.max_body = parse_bytes(&value()?)?,
                "--workers" => {
                    c.workers = value()?
                        .parse()
                        .map_err(|_| "--workers: not a count".to_string())?
                }
                "--exit-after" => {
                    let v: f64 = value()?
                        .parse()
                        .map_err(|_| "--exit-after: not a number of seconds".to_string())?;
                    if !(v > 0.0 && v <= 86_400.0) {
                        return Err("--exit-after: between 0 and 86400 seconds".into());
                    }
                    c.exit_after = Duration::from_secs_f64(v);
                }
                "--no-groups" => c.groups = false,
                "--exit-on-stdin-eof" => c.exit_on_eof = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                _ => return Err(format!("unknown flag {flag:?}")),
            }
        }
        if !c.addr.ip().is_loopback() {
            return Err(format!(
                "--addr {}: this server listens on loopback addresses only (127.0.0.0/8, ::1)",
                c.addr
            ));
        }
        if c.tenants == 0 || c.tenants > 1_000_000 {
            return Err("--tenants: between 1 and 1000000".into());
        }
        if c.workers == 0 || c.workers > 64 {
            return Err("--workers: between 1 and 64".into());
        }
        Ok(c)
    }
}

/// One tenant: its group (none without groups) and its key-value map.
struct Tenant {
    group: Option<memcg::Group>,
    kv: Mutex<HashMap<String, Vec<u8>>>,
}

impl Tenant {
    fn kv(&self) -> MutexGuard<'_, HashMap<String, Vec<u8>>> {
        // No code panics while holding the lock; take the map back if one did.
        self.kv.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        // The map's memory is the tenant's: free it in the tenant's group.
        let kv = std::mem::take(self.kv.get_mut().unwrap_or_else(PoisonError::into_inner));
        match &self.group {
            Some(g) => g.scope(move || drop(kv)),
            None => drop(kv),
        }
    }
}

/// The server's state, shared by every handler.
struct App {
    alloc: Allocator,
    groups: bool,
    workers: usize,
    tenant_max: usize,
    tenants: HashMap<String, Arc<Tenant>>,
    /// Holds the parent group alive while tenants come and go.
    _parent: Option<memcg::Group>,
    stop: Stop,
}

/// The stop signal: set once, seen by every waiter, before or after.
#[derive(Clone)]
struct Stop(Arc<watch::Sender<bool>>);

impl Stop {
    fn new() -> Stop {
        Stop(Arc::new(watch::Sender::new(false)))
    }

    fn stop(&self) {
        self.0.send_replace(true);
    }

    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`: `wait_for` ends only when the flag is set.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

type Shared = State<Arc<App>>;

/// A plain-text response.
fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// What a request that took its tenant over a limit gets.
fn insufficient_storage(e: &memcg::Exceeded) -> Response {
    let limit = match e.limit {
        memcg::Limit::Max => "max",
        memcg::Limit::SlabMax => "slab_max",
    };
    text(
        StatusCode::INSUFFICIENT_STORAGE,
        format!(
            "tenant memory limit exceeded: group {} {limit} {} bytes, usage {} bytes, \
             request {} bytes; the request was cancelled\n",
            e.group, e.limit_bytes, e.usage, e.request
        ),
    )
}

impl App {
    fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(name).cloned()
    }

    /// Runs a request's handler in the tenant's group, cancelling it when
    /// the tenant goes over its limit.
    async fn in_tenant(&self, t: &Tenant, handler: impl Future<Output = Response>) -> Response {
        match &t.group {
            Some(g) => match g.run(handler).await {
                Ok(r) => r,
                Err(e) => insufficient_storage(&e),
            },
            None => handler.await,
        }
    }

    /// `memcg::fallible(f)` with groups, `f()` without.
    fn fallible<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.groups {
            memcg::fallible(f)
        } else {
            f()
        }
    }
}

const MAX_KEY: usize = 256;

fn no_tenant(name: &str) -> Response {
    text(StatusCode::NOT_FOUND, format!("no tenant {name:?}\n"))
}

fn bad_key(key: &str) -> Option<Response> {
    (key.is_empty() || key.len() > MAX_KEY).then(|| {
        text(
            StatusCode::BAD_REQUEST,
            format!("keys are 1 to {MAX_KEY} bytes\n"),
        )
    })
}

/// Stores a copy of `value` at `key`; runs in the tenant's group.
fn store(app: &App, t: &Tenant, key: &str, value: &[u8]) -> Response {
    let mut kv = t.kv();
    // Everything the insert needs is reserved first, where a limit refuses
    // it (with groups, the refusal is an exceed: `run` cancels the request
    // and answers 507). Nothing is inserted unless all of it was granted.
    let reserved = app.fallible(|| -> Result<(String, Vec<u8>), TryReserveError> {
        let mut v = Vec::new();
        v.try_reserve_exact(value.len())?;
        v.extend_from_slice(value);
        let mut k = String::new();
        k.try_reserve_exact(key.len())?;
        k.push_str(key);
        kv.try_reserve(1)?;
        Ok((k, v))
    });
    match reserved {
        Ok((k, v)) => {
            let old = kv.insert(k, v);
            drop(kv);
            drop(old);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => {
            drop(kv);
            text(
                StatusCode::INSUFFICIENT_STORAGE,
                "out of memory for the value\n",
            )
        }
    }
}

async fn put_kv(
    State(app): Shared,
    Path((tenant, key)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(t) = app.tenant(&tenant) else {
        return no_tenant(&tenant);
    };
    if let Some(r) = bad_key(&key) {
        return r;
    }
    app.in_tenant(&t, async { store(&app, &t, &key, &body) })
        .await
}

async fn get_kv(State(app): Shared, Path((tenant, key)): Path<(String, String)>) -> Response {
    let Some(t) = app.tenant(&tenant) else {
        return no_tenant(&tenant);
    };
    app.in_tenant(&t, async {
        let kv = t.kv();
        match kv.get(&key) {
            Some(v) => {
                let body = Bytes::copy_from_slice(v);
                drop(kv);
                (StatusCode::OK, body).into_response()
            }
            None => {
                drop(kv);
                text(StatusCode::NOT_FOUND, "no such key\n")
            }
        }
    })
    .await
}

/// The JSON transform: counts and sums the `items`, sorts their unique
/// `id`s, upper-cases their `tag`s and lists the object's keys.
fn transform(tenant: &str, body: &[u8]) -> Response {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad JSON: {e}\n")),
    };
    let Value::Object(obj) = v else {
        return text(StatusCode::UNPROCESSABLE_ENTITY, "expected a JSON object\n");
    };
    let items: &[Value] = obj
        .get("items")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let total: f64 = items
        .iter()
        .filter_map(|it| it.get("qty").and_then(Value::as_f64))
        .sum();
    let mut ids: Vec<i64> = items
        .iter()
        .filter_map(|it| it.get("id").and_then(Value::as_i64))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let tags: Vec<Value> = items
        .iter()
        .filter_map(|it| it.get("tag").and_then(Value::as_str))
        .map(|s| Value::String(s.to_uppercase()))
        .collect();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    let mut out = Map::new();
    out.insert("tenant".into(), Value::String(tenant.to_string()));
    out.insert("count".into(), items.len().into());
    out.insert("total".into(), total.into());
    out.insert("ids".into(), ids.into());
    out.insert("tags".into(), Value::Array(tags));
    out.insert(
        "keys".into(),
        keys.into_iter().map(|k| Value::String(k.clone())).collect(),
    );
    let body = match serde_json::to_vec(&Value::Object(out)) {
        Ok(b) => b,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot serialize: {e}\n"),
            )
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn work(State(app): Shared, Path(tenant): Path<String>, body: Bytes) -> Response {
    let Some(t) = app.tenant(&tenant) else {
        return no_tenant(&tenant);
    };
    app.in_tenant(&t, async { transform(&tenant, &body) }).await
}

fn no_groups(app: &App) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no groups: this server runs {}{}\n",
            app.alloc.name(),
            if app.alloc == Allocator::Memcg {
                " with --no-groups"
            } else {
                ""
            }
        ),
    )
}

async fn groups(State(app): Shared) -> Response {
    if app.alloc == Allocator::Jemalloc {
        return no_groups(&app);
    }
    text(StatusCode::OK, memcg::report())
}

async fn group_stats(State(app): Shared, Path(tenant): Path<String>) -> Response {
    let Some(t) = app.tenant(&tenant) else {
        return no_tenant(&tenant);
    };
    match &t.group {
        Some(g) => text(StatusCode::OK, format!("{}\n", g.stats())),
        None => no_groups(&app),
    }
}

async fn metrics(State(app): Shared) -> Response {
    if app.alloc == Allocator::Jemalloc {
        return no_groups(&app);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        memcg::prometheus(),
    )
        .into_response()
}

/// `Name:   value kB` lines of `/proc/self/status`, as `name=value`.
fn proc_status(out: &mut String) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    for line in s.lines() {
        for (field, key) in [
            ("VmRSS:", "vm_rss_kib"),
            ("VmHWM:", "vm_hwm_kib"),
            ("Threads:", "threads"),
        ] {
            if let Some(v) = line.strip_prefix(field) {
                let v = v.trim().trim_end_matches(" kB");
                let _ = writeln!(out, "{key}={v}");
            }
        }
    }
}

async fn stats(State(app): Shared) -> Response {
    let mut out = String::new();
    let _ = writeln!(out, "allocator={}", app.alloc.name());
    let _ = writeln!(out, "groups={}", u8::from(app.groups));
    let _ = writeln!(out, "workers={}", app.workers);
    let _ = writeln!(out, "tenants={}", app.tenants.len());
    let _ = writeln!(out, "tenant_max={}", app.tenant_max);
    if app.alloc == Allocator::Memcg {
        let _ = writeln!(out, "reserve_batch={}", memcg::tunables().reserve_batch);
    }
    proc_status(&mut out);
    text(StatusCode::OK, out)
}

async fn shutdown(State(app): Shared) -> Response {
    app.stop.stop();
    text(StatusCode::OK, "stopping\n")
}

fn router(app: Arc<App>, max_body: usize) -> Router {
    Router::new()
        .route("/t/{tenant}/kv/{key}", get(get_kv).put(put_kv))
        .route("/t/{tenant}/work", post(work))
        .route("/groups", get(groups))
        .route("/groups/{tenant}", get(group_stats))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/shutdown", post(shutdown))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

fn build_app(c: &Config, alloc: Allocator, stop: Stop) -> Result<App, String> {
    let parent = if c.groups {
        Some(
            memcg::Group::builder("tenants")
                .try_build()
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let mut tenants = HashMap::with_capacity(c.tenants);
    for i in 0..c.tenants {
        let name = format!("t{i}");
        let group = match &parent {
            Some(p) => Some(
                p.child(&name)
                    .max(c.tenant_max)
                    .try_build()
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let kv = Mutex::new(HashMap::new());
        tenants.insert(name, Arc::new(Tenant { group, kv }));
    }
    Ok(App {
        alloc,
        groups: c.groups,
        workers: c.workers,
        tenant_max: c.tenant_max,
        tenants,
        _parent: parent,
        stop,
    })
}

async fn serve(c: Config, alloc: Allocator) -> Result<(), String> {
    let stop = Stop::new();
    let app = Arc::new(build_app(&c, alloc, stop.clone())?);
    let listener = tokio::net::TcpListener::bind(c.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", c.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{local}");
        let _ = out.flush();
    }
    eprintln!(
        "service: {} on {local}: {} tenants, {}, {} workers, stops after {:.0} s{}",
        alloc.name(),
        c.tenants,
        if c.groups {
            format!("groups with max {} bytes each", c.tenant_max)
        } else {
            "no groups".to_string()
        },
        c.workers,
        c.exit_after.as_secs_f64(),
        if c.exit_on_eof {
            ", at stdin EOF or on POST /shutdown"
        } else {
            " or on POST /shutdown"
        },
    );

    // Every way the server stops ends up in `stop`.
    {
        let stop = stop.clone();
        let after = c.exit_after;
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            stop.stop();
        });
    }
    if c.exit_on_eof {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            stop.stop();
        });
    }

    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let signal = {
        let stop = stop.clone();
        async move { stop.wait().await }
    };
    let server = tokio::spawn(
        axum::serve(listener, router(app.clone(), c.max_body))
            .with_graceful_shutdown(signal)
            .into_future(),
    );
    // Open connections get a few seconds to finish after the signal.
    stop.wait().await;
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("service: server error: {e}"),
        Ok(Err(e)) => eprintln!("service: server task: {e}"),
        Err(_) => eprintln!("service: connections still open after 5 s; stopping anyway"),
    }
    drop(app);
    eprintln!("service: stopped");
    Ok(())
}

/// Parses the command line, runs the server until it is told to stop.
pub fn main(alloc: Allocator) {
    let c = match Config::parse(std::env::args().skip(1), alloc) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("service: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(c.workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("service: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(serve(c, alloc)) {
        eprintln!("service: {e}");
        std::process::exit(1);
    }
}
