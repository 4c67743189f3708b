//! W3C Trace Context at our edges: a caller's `traceparent` parents its request's span, the
//! agent request carries ours, and a job keeps the context of whoever enqueued it. Each is a
//! no-op while spans are not exported.
use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const TRACEPARENT: &str = "traceparent";

/// Makes `span` a child of the caller's span, when the headers carry a valid `traceparent`.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !super::exporting() {
        return;
    }
    let carrier = opentelemetry_http::HeaderExtractor(headers);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Only fails for a span the OTel layer does not see (filtered out): it stays a root.
        drop(span.set_parent(parent));
    }
}

/// The current span as a `traceparent` value, for a request or job that continues its trace.
pub fn current_traceparent() -> Option<String> {
    if !super::exporting() {
        return None;
    }
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Links `span` to the span a stored `traceparent` names (a job to the run that enqueued it):
/// a link, not a parent, as the job may run long after that trace ended, and more than once.
pub fn link_to(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| super::exporting()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}
