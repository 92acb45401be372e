//! The baseline of `examples/service`: the same server (the same source
//! file, `service/app.rs`) with jemalloc as the global allocator and no
//! groups. `service_load --jemalloc` drives it.
//!
//! Run: `cargo run --release --example service_jemalloc -- --tenants 200`

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "service/app.rs"]
mod app;

fn main() {
    app::main(app::Allocator::Jemalloc);
}
