//! glibc's allocator gives threads their own arenas (up to eight per core), and memory freed
//! in one arena is kept there for that arena's threads. The gateway's threads are few but
//! uneven: the runtime's, the log writer, the checkpointer and, on SQLite, a worker thread per
//! pooled connection; each arena kept its own high-water mark. Two arenas: 28.3 → 24.0 KiB of
//! RSS per held relayed stream on SQLite (BENCHMARKS.md, round 2, fourth part), with the same
//! CPU per relayed event. An operator's `MALLOC_ARENA_MAX` still wins.

const ARENAS: i32 = 2;

/// Call before any thread is started: arenas made before it are kept.
pub fn limit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets one of the allocator's parameters; no memory is touched.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}
