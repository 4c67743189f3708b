//! Shared pieces of the benchmark tools: the monotonic clock every event is stamped with, the
//! mock agent server, the SSE load client and `/proc` readers.
pub mod client;
pub mod mock;
pub mod procfs;

/// CLOCK_MONOTONIC in nanoseconds. The mock stamps events with it and the load client reads it
/// on receipt; both run on the same machine, so the difference is the relay latency.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Raises the soft open-files limit to the hard one (best effort) and returns the soft limit in
/// force afterwards: a client holding thousands of streams needs one descriptor per stream.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    agentgate::server::fd_limit::raise_to_hard_limit()
        .ok_or_else(|| std::io::Error::other("the open-files limit could not be read"))
}

/// A latency histogram in nanoseconds, 1 ns .. 10 min, 3 significant figures.
pub fn histogram() -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    Ok(hdrhistogram::Histogram::new_with_bounds(
        1,
        600_000_000_000,
        3,
    )?)
}
