//! Built-in deterministic demo agent (no LLM).
//!
//! Speaks the upstream agent server protocol (`POST /message` answered with
//! an SSE stream of `data: <json>` events, see AGENT_PROTOCOL.md) so the
//! gateway, its tests and local demos can run without a real agent. The
//! gateway nests [`router`] at `/demo-agent` (on by default) and its
//! `demo-agent` command runs [`serve`]; this crate knows nothing of the
//! gateway.
//!
//! Behaviour:
//! * Only the last user message and `agentState` are used (like real agents).
//! * A new prompt builds a small static web app (`index.html`, `app.js`,
//!   `styles.css`, `README.md`, `Dockerfile`) from a template chosen by
//!   keywords: todo, counter, notes, timer, or a generic landing page + list.
//! * A follow-up (our `agentState` present) modifies it: dark mode, rename,
//!   footer, README removal/restore; anything else is noted in the README
//!   changelog, so every follow-up changes something.
//! * A vague prompt gets one idle `RefinementRequest`.
//! * The final idle `ReviewResult` carries a git unified diff from the
//!   received `allFiles` (missing = empty tree) to the new app.
//!
//! Test switches, read from the request's `settings.demo` object:
//!
//! | key | effect |
//! |---|---|
//! | `eventDelayMs: u64` | delay between events (default 150) |
//! | `keepAliveMs: u64` | KeepAlive interval from stream start (default 30000) |
//! | `noFinalEvent: true` | send the running events, then close without an idle event |
//! | `hang: true` | send only KeepAlives, forever (until the client disconnects) |
//! | `invalidJson: true` | send one `data: {not json` event, then close |
//! | `hugeEventBytes: N` | first send one running WipUpdate whose content is N bytes |
//! | `httpStatus: 500` | answer that status with a plain-text reason body (`Internal Server Error`) |
//! | `runtimeError: true` | a single idle RuntimeError instead of the build |
//! | `doubleIdle: true` | two idle RuntimeErrors (the second with `unifiedDiff: ""`) |
//! | `dropAfterEvents: N` | abort the connection after N events, KeepAlives included (no terminating chunk; 0 = right after the headers) |
// Production code says what it expects of a value instead of panicking on it; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod agent;
mod auth;
mod blob_id;
mod generator;
mod intent;
mod line_diff;
mod protocol;
mod request;
mod server;
mod state;
mod stream;
mod switches;
mod templates;
mod unified_diff;

#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod test_support;

use std::future::Future;
use stream::Shutdown;

/// The demo agent's routes (`POST /message`, `GET /health`), ready to be
/// nested, e.g. `.nest("/demo-agent", demo_agent::router(token))`. An unset or
/// empty token disables authentication.
pub fn router(bearer_token: Option<String>) -> axum::Router {
    server::build_router(bearer_token, Shutdown::default())
}

/// Runs the demo agent as a standalone server until `shutdown` resolves;
/// open streams (even `hang` ones) end then, so shutdown cannot stall.
pub async fn serve(
    listener: tokio::net::TcpListener,
    bearer_token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = server::build_router(bearer_token, Shutdown(Some(rx)));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "demo agent listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        })
        .await
}
