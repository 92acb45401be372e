//! The group tree in the report printed at exit under `MEMCG_SHOW_STATS=1`
//! (the allocator prints its own figures first, then calls this hook).

use std::io::Write as _;

/// Installs the hook (once the root group exists: before then no group
/// was made, and the allocator says so itself).
pub(crate) fn install() {
    memcg_alloc::groups::set_exit_report(print_tree);
}

/// Runs from `exit`: never unwinds, and a failed write is ignored.
fn print_tree() {
    let r = std::panic::catch_unwind(|| {
        let text = crate::report();
        let _ = std::io::stderr().write_all(text.as_bytes());
    });
    if r.is_err() {
        let _ = std::io::stderr().write_all(b"memcg: the group tree could not be printed\n");
    }
}
