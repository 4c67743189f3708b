//! A deadline for a request's whole body. tower-http's `TimeoutBody` restarts its timer at every
//! frame, so a body trickling one byte every few seconds would never hit it; this one counts
//! from the headers. Once it passes, the body fails, the handler's extractor rejects the request,
//! and the connection answers 408 `request_timeout` instead and closes.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

const REQUEST_ID: &str = "x-request-id";

/// Set once the deadline has failed the body.
#[derive(Clone, Default)]
pub(super) struct Expired(Arc<AtomicBool>);

impl Expired {
    pub(super) fn is_expired(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub(super) struct DeadlineBody {
    inner: Incoming,
    deadline: Option<Instant>,
    /// Made on the first poll that has to wait, so bodies read at once never arm a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Expired,
}

impl DeadlineBody {
    pub(super) fn new(inner: Incoming, limit: Option<Duration>) -> (Self, Expired) {
        let expired = Expired::default();
        let body = Self {
            inner,
            deadline: limit.map(|limit| Instant::now() + limit),
            sleep: None,
            expired: expired.clone(),
        };
        (body, expired)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(super) struct BodyTimedOut;

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.expired.is_expired() {
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let Some(deadline) = self.deadline else {
            return Poll::Pending;
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.expired.0.store(true, Ordering::Release);
        Poll::Ready(Some(Err(BodyTimedOut.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer for a request whose body ran out of time, in place of the handler's rejection
/// (keeping its request id). The rest of the body is never read, so the connection closes.
pub(super) fn request_timeout(rejected: Response) -> Response {
    let mut response = ApiError::RequestTimeout(
        "the request body did not arrive in time; send it promptly".into(),
    )
    .into_response();
    if let Some(id) = rejected.headers().get(REQUEST_ID) {
        response.headers_mut().insert(REQUEST_ID, id.clone());
    }
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
