//! The connection cap, sized from the process's file-descriptor limit: past that limit `accept`
//! fails with EMFILE, and so do the database, file and upstream connections the gateway needs.
use super::METRICS_MAX_CONNECTIONS;

/// Used when the limit cannot be read (not a Unix system).
const FALLBACK_MAX_CONNECTIONS: usize = 1024;

/// Never derive a cap below this: a gateway with fewer descriptors is misconfigured, and the
/// warning says so.
const MIN_DERIVED: u64 = 16;

/// Memory, not descriptors, is the limit past this many connections.
const MAX_DERIVED: u64 = 1 << 20;

/// The cap to serve with: `configured`, or (when 0) the descriptor limit minus [`reserve`].
/// Raises the soft descriptor limit to the hard one first, and warns when the limit is too low
/// for the cap.
pub fn max_connections(configured: usize, database_pool: u32) -> usize {
    let Some(limit) = raise_to_hard_limit() else {
        return if configured > 0 {
            configured
        } else {
            FALLBACK_MAX_CONNECTIONS
        };
    };
    let reserve = reserve(limit, database_pool);
    if configured > 0 {
        if configured as u64 + reserve > limit {
            tracing::warn!(
                fd_limit = limit,
                max_connections = configured,
                reserve,
                "the file-descriptor limit is too low for server.max_connections: accepts and \
                 outgoing connections will fail with 'too many open files' before the cap; \
                 raise `ulimit -n` or lower the cap"
            );
        }
        return configured;
    }
    let derived = limit.saturating_sub(reserve);
    if derived < MIN_DERIVED {
        tracing::warn!(
            fd_limit = limit,
            reserve,
            max_connections = MIN_DERIVED,
            "the file-descriptor limit leaves almost no room for client connections; raise `ulimit -n`"
        );
    }
    let derived = derived.clamp(MIN_DERIVED, MAX_DERIVED);
    tracing::info!(
        fd_limit = limit,
        max_connections = derived,
        "connection cap"
    );
    usize::try_from(derived).unwrap_or(FALLBACK_MAX_CONNECTIONS)
}

/// Descriptors kept for everything but client connections: the database pool and the log
/// writer's connection, the metrics listener's connections, and a quarter of the limit (at least
/// 256) for files, git repositories and upstream connections (one per active run).
pub fn reserve(limit: u64, database_pool: u32) -> u64 {
    (limit / 4).max(256) + u64::from(database_pool) + 1 + METRICS_MAX_CONNECTIONS as u64
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (best effort) and returns the soft limit in
/// force afterwards (also used by the benchmark's load client, which holds thousands of streams).
#[cfg(unix)]
pub fn raise_to_hard_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass. Failing (e.g. macOS refuses an
        // unlimited hard limit) leaves the soft limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(unix))]
pub fn raise_to_hard_limit() -> Option<u64> {
    None
}
