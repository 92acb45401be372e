//! A tenant service on axum: every request runs in its tenant's memory
//! group under `Group::run`; a request that takes its tenant over `max` is
//! cancelled and answered 507, the others go on. See `app.rs` for the
//! routes, and `service_load` for the load generator.
//!
//! Run: `cargo run --release --example service -- --tenants 200 --tenant-max 16M`
//! (prints the bound address, e.g. `127.0.0.1:40123`, then serves until
//! `--exit-after` seconds, 600 by default, or `POST /shutdown`):
//!
//! ```text
//! curl -X PUT --data-binary hello http://127.0.0.1:40123/t/t1/kv/greeting
//! curl http://127.0.0.1:40123/t/t1/kv/greeting
//! curl -d '{"items":[{"id":3,"qty":2,"tag":"a"}]}' http://127.0.0.1:40123/t/t1/work
//! curl http://127.0.0.1:40123/groups
//! curl -X POST http://127.0.0.1:40123/shutdown
//! ```

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

mod app;

fn main() {
    app::main(app::Allocator::Memcg);
}
