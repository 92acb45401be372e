//! `scale service`: a tokio multi-thread runtime with `workers` worker
//! threads runs `tenants` tenants as tasks, each spawned as
//! `tokio::spawn(tenant.run(session(..)))` (memcg: `group.run(fut)` in the
//! tenant's own group, built with `.max(64 << 20)`; a cancelled session
//! counts in `cancelled`). Every session first waits at a gate (a semaphore)
//! opened once all are spawned, so none starts before the last is spawned,
//! whatever the speed of the spawning loop against the workers' (without
//! it the peak followed the machine's load). How far the sessions then
//! overlap is tokio's choice: `kept_peak` shows it. A session then handles
//! `requests` small JSON requests:
//! it formats the request text, parses it with serde_json, builds a reply
//! object and serializes it, keeps the reply (a session log alive until the
//! session ends), and yields (`tokio::task::yield_now().await`) before the
//! next request, so other sessions run in between. Nothing touches the
//! network.
//!
//! Printed: `secs` from the first spawn until every session has been
//! joined; `peak_growth` = `ru_maxrss` at the end - all resident bytes
//! before the first spawn (the runtime is built and warmed before it);
//! `end_growth`, the anonymous RSS kept after the sessions ended;
//! `kept_peak`, the most reply bytes the sessions held at once (how far they
//! overlapped, which the schedule decides); `checksum` over every reply.

use super::{anon_rss, growth, peak_rss, total_rss, Line, Tenant};
use crate::rng::Rng;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// The hard limit of each tenant's group.
pub const TENANT_MAX: usize = 64 << 20;

/// Bytes of reply text the sessions keep right now, and the most ever kept
/// at once: how much the program itself holds at its peak, whatever the
/// allocator (the schedule decides how many sessions overlap).
static KEPT: AtomicUsize = AtomicUsize::new(0);
static KEPT_PEAK: AtomicUsize = AtomicUsize::new(0);

fn keep(bytes: usize) {
    let now = KEPT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    KEPT_PEAK.fetch_max(now, Ordering::Relaxed);
}

/// One tenant's session: once `gate` opens, `requests` requests, a yield
/// between them.
async fn session(tenant: usize, requests: usize, gate: Arc<Semaphore>) -> u64 {
    gate.acquire()
        .await
        .expect("the gate is never closed")
        .forget();
    let mut rng = Rng::new(0x5E55_0000 + tenant as u64);
    let mut log: Vec<String> = Vec::with_capacity(requests);
    let mut sum = 0u64;
    for seq in 0..requests {
        let mut req = String::with_capacity(256);
        let n = 2 + rng.below(8);
        let _ = write!(
            req,
            r#"{{"tenant":"t{tenant}","seq":{seq},"op":"{}","key":"k{:x}","items":["#,
            ["get", "put", "add", "list"][rng.below(4)],
            rng.next_u64() >> 40,
        );
        for i in 0..n {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                req,
                r#"{sep}{{"id":{},"qty":{},"tag":"x{}"}}"#,
                rng.below(1000),
                rng.below(10),
                rng.below(100)
            );
        }
        req.push_str(r#"],"note":"small request body"}"#);

        let v: Value = serde_json::from_str(&req).expect("the request is valid JSON");
        let items = v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let total: u64 = items.iter().filter_map(|it| it["qty"].as_u64()).sum();
        let ids: Vec<u64> = items.iter().filter_map(|it| it["id"].as_u64()).collect();
        let reply = json!({
            "tenant": v["tenant"],
            "seq": seq,
            "ok": true,
            "op": v["op"],
            "key": v["key"],
            "total": total,
            "ids": ids,
        });
        let text = reply.to_string();
        sum = sum
            .wrapping_mul(1_000_003)
            .wrapping_add(text.len() as u64 + total);
        keep(text.capacity());
        log.push(text);
        tokio::task::yield_now().await;
    }
    let kept: usize = log.iter().map(String::capacity).sum();
    let total = sum.wrapping_add(log.iter().map(|l| l.len() as u64).sum::<u64>());
    drop(log);
    KEPT.fetch_sub(kept, Ordering::Relaxed);
    total
}

/// Runs the case; see the module docs.
pub fn run(tenants: usize, requests: usize, workers: usize) -> Line {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .build()
        .expect("tokio runtime");
    // Warm the runtime: every worker has run a task before the first reading.
    rt.block_on(async {
        let hs: Vec<_> = (0..4 * workers.max(1))
            .map(|i| tokio::spawn(async move { i * 2 }))
            .collect();
        for h in hs {
            let _ = h.await;
        }
    });
    let names: Vec<String> = (0..tenants).map(|t| format!("svc-{t}")).collect();
    let rss0 = total_rss();
    let anon0 = anon_rss();
    let t0 = Instant::now();
    let (check, cancelled) = rt.block_on(async {
        let gate = Arc::new(Semaphore::new(0));
        let mut handles = Vec::with_capacity(tenants);
        for (t, name) in names.iter().enumerate() {
            let tenant = Tenant::new(name, Some(TENANT_MAX));
            let session = session(t, requests, gate.clone());
            handles.push(tokio::spawn(tenant.run(session)));
        }
        gate.add_permits(tenants);
        let mut check = 0u64;
        let mut cancelled = 0usize;
        for h in handles {
            match h.await.expect("a session panicked") {
                Some(v) => check = check.wrapping_add(v),
                None => cancelled += 1,
            }
        }
        (check, cancelled)
    });
    let secs = t0.elapsed().as_secs_f64();
    let peak = peak_rss();
    let anon1 = anon_rss();
    drop(rt);
    Line::new("service")
        .put("tenants", tenants)
        .put("requests", requests)
        .put("workers", workers)
        .put("rss0", rss0)
        .put("peak", peak)
        .put("peak_growth", growth(rss0, peak))
        .put("end_growth", growth(anon0, anon1))
        .put("kept_peak", KEPT_PEAK.load(Ordering::Relaxed))
        .put("secs", format!("{secs:.4}"))
        .put("cancelled", cancelled)
        .put("checksum", format!("{check:016x}"))
}
