//! Fuzzes sequences of allocator and group operations (alloc, realloc, free,
//! enter, leave, group create/drop, limit and policy changes, hand-offs to
//! a worker thread) decoded from the input, checked against the model in
//! `tests/rel_common/model.rs`: block contents by pattern, each group's
//! charge after flushing, `check()`, refusals, and no dying group left.
#![no_main]

#[global_allocator]
static GLOBAL: memcg::SlabAlloc = memcg::SlabAlloc::new();

#[path = "../../tests/rel_common/model.rs"]
mod model;

use libfuzzer_sys::fuzz_target;
use model::{Harness, Op};

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let mut h = Harness::new();
    let mut n = 0;
    while let Some(op) = Op::decode(&mut data) {
        h.apply(&op);
        n += 1;
        if n == 2000 {
            break;
        }
    }
    h.finish();
});
