//! Writes a run subscription as `text/event-stream`. Each block is `event:`, `id:`, then one
//! `data:` line, in that order (app.build clients parse strictly), plus keep-alive comments.
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::runs::event_log::SharedEvent;
use crate::runs::subscription::SubscriptionError;

const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

pub fn frame(event: &SharedEvent) -> Bytes {
    let mut out = Vec::with_capacity(event.data.len() + event.event.len() + 32);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.event.as_bytes());
    out.extend_from_slice(b"\nid: ");
    out.extend_from_slice(event.seq.to_string().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(event.data.as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn log_error_frame(e: &SubscriptionError) -> Bytes {
    tracing::error!(error = %e, "subscription failed");
    let data = serde_json::json!({
        "error": "The run's events could not be read; reconnect with Last-Event-ID to resume.",
        "code": "event_log_unavailable",
    });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

/// The streaming response. `extra_headers` carries `X-Run-Id` and the limit headers.
pub fn sse_response<S>(events: S, keep_alive: Duration, extra_headers: HeaderMap) -> Response
where
    S: Stream<Item = Result<SharedEvent, SubscriptionError>> + Send + 'static,
{
    let start = tokio::time::Instant::now() + keep_alive;
    let ticker = tokio::time::interval_at(start, keep_alive);
    let guard = crate::metrics::SubscriberGuard::new();
    let body = futures::stream::unfold(
        (Box::pin(events), ticker, false, guard),
        |(mut events, mut ticker, ended, guard)| async move {
            if ended {
                return None;
            }
            tokio::select! {
                item = events.next() => match item {
                    Some(Ok(event)) => Some((frame(&event), (events, ticker, false, guard))),
                    Some(Err(e)) => Some((log_error_frame(&e), (events, ticker, true, guard))),
                    None => None,
                },
                _ = ticker.tick() => Some((Bytes::from_static(KEEP_ALIVE_COMMENT), (events, ticker, false, guard))),
            }
        },
    )
    .map(Ok::<_, std::convert::Infallible>);
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.extend(extra_headers);
    response
}
