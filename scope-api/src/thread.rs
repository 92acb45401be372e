//! Threads that start in their parent's group.

use std::thread::JoinHandle;

/// Like `std::thread::spawn`, but the new thread starts in the calling
/// thread's group (and holds it alive until it ends).
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let group = crate::current();
    std::thread::spawn(move || group.scope(f))
}
