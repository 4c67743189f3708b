//! `GET /metrics` in the Prometheus text format. Unauthenticated; bind it to a separate,
//! private address with `server.metrics_bind` when the API is public.
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    documented().into()
}

/// The same route, with its description.
pub(super) fn documented<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Every metric, in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "metrics",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text", body = String))
)]
async fn metrics() -> Response {
    let mut response = crate::metrics::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
