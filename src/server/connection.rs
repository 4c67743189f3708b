//! One HTTP/1 connection and its deadlines. A connection is always in one of three phases:
//! - awaiting a request's headers: from its opening, or from the first byte after an idle spell,
//!   it has `header_read` to deliver them;
//! - busy: a request is being handled or its response sent; no connection deadline applies
//!   (the body deadline, the route's own timeout and streams' keep-alives cover it) unless the
//!   client stops reading: a write that cannot proceed for `write_stall` closes it;
//! - idle: between requests, for at most `keep_alive_idle`.
//!
//! hyper's own `header_read_timeout` is not used: its timer restarts when a connection goes
//! idle, so it would cut keep-alive connections at the header deadline, and a short header
//! deadline with a longer idle timeout (kinder to proxies that pool connections) needs both.
//! A deadline that passes drops the connection, which closes it: no response is in progress.
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::body_deadline::{self, DeadlineBody};
use super::ConnectionLimits;
use crate::metrics::{metrics, Kind};

/// Serves one connection until the client closes it, a deadline passes, or shutdown lets it end.
/// `_permit` holds its place under the connection cap until then.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    _permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let _open = OpenConnection::new();
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedIo {
        stream,
        activity: activity.clone(),
        blocked: false,
    });
    let service = ConnectionService {
        router,
        peer,
        activity: activity.clone(),
        body_read: limits.body_read,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let expiry = activity.first_expiry(
        limits.header_read,
        limits.keep_alive_idle,
        limits.write_stall,
    );
    tokio::pin!(expiry);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            phase = &mut expiry => {
                metrics().connection_timeouts.get_or_create(&Kind { kind: phase.into() }).inc();
                tracing::debug!(%peer, phase, "closing a connection past its deadline");
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                // Idle connections close now; a request in progress (a stream) runs to its end.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// Counts an open connection in `agentgate_open_connections` for as long as it lives.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics().open_connections.inc();
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics().open_connections.dec();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHeaders,
    Busy,
    Idle,
}

struct State {
    phase: Phase,
    since: Instant,
    /// Requests whose response has not finished (more than one only when pipelined).
    in_flight: usize,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
}

/// What the connection is doing, updated by its reads and requests, watched by `first_expiry`.
struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                phase: Phase::AwaitingHeaders,
                since: Instant::now(),
                in_flight: 0,
                write_blocked_since: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock guards plain data that every writer leaves consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: &mut State, phase: Phase) {
        state.phase = phase;
        state.since = Instant::now();
        self.changed.notify_one();
    }

    /// Bytes arrived: after an idle spell they start the next request's headers.
    fn bytes_read(&self) {
        let mut state = self.state();
        if state.phase == Phase::Idle {
            self.set(&mut state, Phase::AwaitingHeaders);
        }
    }

    /// A write could not proceed (`true`) or proceeded again (`false`).
    fn write_blocked(&self, blocked: bool) {
        let mut state = self.state();
        state.write_blocked_since = blocked.then(Instant::now);
        self.changed.notify_one();
    }

    fn request_started(&self) {
        let mut state = self.state();
        state.in_flight += 1;
        if state.phase != Phase::Busy {
            self.set(&mut state, Phase::Busy);
        }
    }

    fn request_finished(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            self.set(&mut state, Phase::Idle);
        }
    }

    /// Resolves with the phase whose deadline passed first; never while busy.
    async fn first_expiry(
        &self,
        header_read: Option<Duration>,
        keep_alive_idle: Option<Duration>,
        write_stall: Option<Duration>,
    ) -> &'static str {
        loop {
            // Registered before the state is read, so a change in between is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (phase, since, blocked_since) = {
                let state = self.state();
                (state.phase, state.since, state.write_blocked_since)
            };
            let (limit, since, name) = match (phase, blocked_since) {
                (Phase::AwaitingHeaders, _) => (header_read, since, "header"),
                (Phase::Idle, _) => (keep_alive_idle, since, "idle"),
                (Phase::Busy, Some(blocked)) => (write_stall, blocked, "write"),
                (Phase::Busy, None) => (None, since, "busy"),
            };
            match limit {
                Some(limit) => {
                    let deadline = since + limit;
                    if Instant::now() >= deadline {
                        return name;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Marks the request finished when dropped: by its response body once sent, or by its future
/// if the connection goes away first.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The response body, holding the request in flight until hyper has sent (and drops) it.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The router as hyper sees it: adds the peer address (`ConnectInfo<SocketAddr>`), the body
/// deadline, and the in-flight tracking.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    body_read: Option<Duration>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        let in_flight = InFlight(self.activity.clone());
        // A `Router` clone shares its routes (one Arc), so this is cheap per request.
        let mut router = self.router.clone();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let (body, expired) = DeadlineBody::new(body, self.body_read);
        let request = Request::from_parts(parts, body);
        Box::pin(async move {
            let response = match router.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if expired.is_expired() {
                metrics()
                    .connection_timeouts
                    .get_or_create(&Kind {
                        kind: "body".into(),
                    })
                    .inc();
                body_deadline::request_timeout(response)
            } else {
                response
            };
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// The TCP stream, telling the connection's activity when bytes arrive and when writes stall.
struct WatchedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// The last write waited for the client; the activity is told only on a change.
    blocked: bool,
}

impl WatchedIo {
    fn note_write<T>(&mut self, result: Poll<T>) -> Poll<T> {
        let blocked = result.is_pending();
        if blocked != self.blocked {
            self.blocked = blocked;
            self.activity.write_blocked(blocked);
        }
        result
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note_write(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note_write(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.note_write(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{oneshot, Semaphore};

    use super::*;

    /// Sends its `Drop` through `dropped`: the server let go of the response.
    struct DropSignal(Option<oneshot::Sender<()>>);

    impl Drop for DropSignal {
        fn drop(&mut self) {
            if let Some(dropped) = self.0.take() {
                let _ = dropped.send(());
            }
        }
    }

    /// hyper is patched to watch a streaming connection for the client's end with a small
    /// probe instead of a read buffer (vendor/README.md); the end must still be noticed at
    /// once, not at the next write, which for a quiet stream may be minutes away.
    #[tokio::test]
    async fn a_client_that_leaves_a_quiet_stream_is_let_go_at_once() {
        let (dropped, let_go) = oneshot::channel();
        let signal = Arc::new(Mutex::new(Some(DropSignal(Some(dropped)))));
        let router = Router::new().route(
            "/stream",
            get(move || {
                let signal = signal.lock().expect("signal").take();
                async move {
                    let first = futures::stream::once(async {
                        Ok::<_, Infallible>(axum::body::Bytes::from_static(b"data: one\n\n"))
                    });
                    // Then nothing, for as long as the response lives.
                    let quiet = futures::stream::pending();
                    let held = futures::stream::unfold(signal, |_signal| async { None });
                    Body::from_stream(futures::StreamExt::chain(
                        futures::StreamExt::chain(first, quiet),
                        held,
                    ))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let limits = ConnectionLimits {
            header_read: None,
            body_read: None,
            keep_alive_idle: None,
            write_stall: None,
            max_connections: 1,
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let (stream, peer) = listener.accept().await.expect("accept");
                let permit = Arc::new(Semaphore::new(1))
                    .acquire_owned()
                    .await
                    .expect("permit");
                serve(stream, peer, router, limits, permit, shutdown).await;
            }
        });

        let mut client = TcpStream::connect(address).await.expect("connect");
        client
            .write_all(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("request");
        let mut received = Vec::new();
        while !String::from_utf8_lossy(&received).contains("data: one") {
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the stream ended early");
            received.extend_from_slice(&chunk[..n]);
        }
        drop(client);

        let noticed = tokio::time::timeout(Duration::from_secs(2), let_go).await;
        assert!(
            noticed.is_ok(),
            "the server kept a stream its client had left"
        );
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the connection ended")
            .expect("serve");
        shutdown.cancel();
    }
}
