//! `GET /metrics` in the Prometheus text format. Unauthenticated; bind it to a separate,
//! private address with `server.metrics_bind` when the API is public.
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics() -> Response {
    let mut response = crate::metrics::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
