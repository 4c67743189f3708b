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
/// Events already waiting are written together, one write for a burst instead of one each.
const MAX_EVENTS_PER_WRITE: usize = 64;

fn write_frame(out: &mut Vec<u8>, event: &SharedEvent) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.event.as_bytes());
    out.extend_from_slice(b"\nid: ");
    out.extend_from_slice(event.seq.to_string().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(event.data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn write_error_frame(out: &mut Vec<u8>, e: &SubscriptionError) {
    tracing::error!(error = %e, "subscription failed");
    let data = serde_json::json!({
        "error": "The run's events could not be read; reconnect with Last-Event-ID to resume.",
        "code": "event_log_unavailable",
    });
    out.extend_from_slice(format!("event: error\ndata: {data}\n\n").as_bytes());
}

/// Frames a burst of events; true when the stream ends with it (after an error).
fn frames(batch: Vec<Result<SharedEvent, SubscriptionError>>) -> (Bytes, bool) {
    let size: usize = batch
        .iter()
        .map(|e| e.as_ref().map_or(256, |e| e.data.len() + 48))
        .sum();
    let mut out = Vec::with_capacity(size);
    for item in batch {
        match item {
            Ok(event) => write_frame(&mut out, &event),
            Err(e) => {
                write_error_frame(&mut out, &e);
                return (Bytes::from(out), true);
            }
        }
    }
    (Bytes::from(out), false)
}

/// The streaming response. `extra_headers` carries `X-Run-Id` and the limit headers.
pub fn sse_response<S>(events: S, keep_alive: Duration, extra_headers: HeaderMap) -> Response
where
    S: Stream<Item = Result<SharedEvent, SubscriptionError>> + Send + 'static,
{
    let blocks = events
        .ready_chunks(MAX_EVENTS_PER_WRITE)
        .scan(false, |ended, batch| {
            if *ended {
                return futures::future::ready(None);
            }
            let (bytes, end) = frames(batch);
            *ended = end;
            futures::future::ready(Some(bytes))
        });
    event_stream_response(blocks, keep_alive, extra_headers)
}

/// A `text/event-stream` response of ready-framed blocks, with keep-alive comments while it
/// is quiet; it ends when `blocks` does.
pub fn event_stream_response<S>(
    blocks: S,
    keep_alive: Duration,
    extra_headers: HeaderMap,
) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let start = tokio::time::Instant::now() + keep_alive;
    let ticker = tokio::time::interval_at(start, keep_alive);
    let guard = crate::metrics::SubscriberGuard::new();
    let body = futures::stream::unfold(
        (Box::pin(blocks), ticker, guard),
        |(mut blocks, mut ticker, guard)| async move {
            tokio::select! {
                block = blocks.next() => Some((block?, (blocks, ticker, guard))),
                _ = ticker.tick() => Some((Bytes::from_static(KEEP_ALIVE_COMMENT), (blocks, ticker, guard))),
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
