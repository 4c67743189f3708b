//! Our accept loop, used by the API and the metrics listener alike. `axum::serve` holds every
//! connection for as long as the client likes and accepts without bound, so ~21,000 silent
//! clients exhausted the process's file descriptors. Here:
//! - at most `max_connections` are open; at the cap accepting pauses (clients wait in the listen
//!   backlog) and `agentgate_connection_limit_hits` counts it;
//! - accept errors such as EMFILE back off briefly instead of spinning;
//! - each connection has header, body and keep-alive idle deadlines (see [`connection`]);
//! - on shutdown accepting stops, idle connections close and requests in progress (streams
//!   included) run to their end, as with `axum::serve`'s graceful shutdown.
mod body_deadline;
mod connection;
pub mod fd_limit;
pub mod malloc_arenas;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::metrics::metrics;

/// Prometheus scrapers are few; the separate metrics listener never needs more.
pub const METRICS_MAX_CONNECTIONS: usize = 64;

/// How long accepting pauses after an error that is not about one connection (EMFILE, ENFILE,
/// ENOBUFS): long enough not to spin, short enough to resume soon after descriptors free up.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this interval while the cap or accept errors persist.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From a request's first byte (a new connection's opening) until its headers are in.
    pub header_read: Option<Duration>,
    /// From the headers until the whole body is in.
    pub body_read: Option<Duration>,
    /// Between requests on a keep-alive connection.
    pub keep_alive_idle: Option<Duration>,
    /// While a response cannot be written because the client stopped reading.
    pub write_stall: Option<Duration>,
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits of `[server]`, with the connection cap already resolved.
    pub fn from_config(server: &ServerConfig, max_connections: usize) -> Self {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Self {
            header_read: secs(server.header_read_timeout_secs),
            body_read: secs(server.body_read_timeout_secs),
            keep_alive_idle: secs(server.keep_alive_idle_secs),
            write_stall: secs(server.write_stall_timeout_secs),
            max_connections: max_connections.max(1),
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting and returns once every
/// connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut warned_cap: Option<Instant> = None;
    let mut warned_error: Option<Instant> = None;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics().connection_limit_hits.inc();
                if due(&mut warned_cap) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        // Never closed; leaving is the only sane answer if it were.
                        Err(_) => break,
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    if due(&mut warned_error) {
                        tracing::error!(%error, "accept failed; backing off");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            },
            _ = shutdown.cancelled() => break,
        };
        connections.spawn(connection::serve(
            stream,
            peer,
            router.clone(),
            limits,
            permit,
            shutdown.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One peer's trouble (it reset or aborted before we accepted): accept the next one at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}
