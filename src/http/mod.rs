//! The HTTP surface: one router per resource, assembled here with the cross-cutting layers.
mod analytics;
mod apps;
mod auth_routes;
mod deployment_logs;
mod deployments;
mod docs;
mod extract;
mod files;
mod git_http;
mod github;
mod health;
mod limits;
mod messages;
pub mod metrics;
pub mod openapi;
mod preview;
mod runs;
pub mod sse;
mod versions;
mod web;
mod webhooks;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::middleware::from_fn_with_state;
use axum::{Extension, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::require_auth;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API; fails only if its OpenAPI description cannot be serialised.
pub fn router(state: AppState, extra: Router<AppState>) -> serde_json::Result<Router> {
    let config = &state.config.server;
    let (routes, collected) = documented(config).split_for_parts();
    let spec = docs::Spec::new(&openapi::finish(collected))?;
    let router = routes
        .merge(extra)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(Extension(spec))
        .layer(axum::middleware::map_response(crate::error::json_errors))
        .layer(from_fn_with_state(state.clone(), require_auth))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(cors(&config.cors_origins))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id);
                crate::telemetry::context::adopt_parent(&span, request.headers());
                span
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state);
    Ok(router)
}

/// The OpenAPI description of every route that `router` serves with this configuration.
pub fn openapi(config: &ServerConfig) -> utoipa::openapi::OpenApi {
    openapi::finish(documented(config).into_openapi())
}

/// Every route with its description: `routes!` adds a handler and its `#[utoipa::path]`
/// together, so what is served and what is documented come from the same place.
fn documented(config: &ServerConfig) -> OpenApiRouter<AppState> {
    // Streaming routes get idle timeouts from the stream itself, never an absolute deadline.
    let streaming = OpenApiRouter::default()
        .merge(messages::router())
        .merge(runs::router())
        // A clone streams a pack for as long as it takes.
        .merge(git_http::router());
    let request_timeout = Duration::from_secs(config.request_timeout_secs);
    let api = OpenApiRouter::default()
        .merge(health::router())
        .merge(auth_routes::router())
        .merge(apps::router())
        .merge(analytics::router())
        .merge(limits::router())
        .merge(files::router())
        .merge(versions::router())
        .merge(deployments::router())
        .merge(deployment_logs::router())
        .merge(webhooks::router())
        .merge(github::router())
        .merge(preview::router())
        .merge(web::router())
        .merge(docs::router())
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(timeout_error))
                .timeout(request_timeout),
        );
    let mut root = OpenApiRouter::default().merge(api).merge(streaming);
    if config.metrics_bind.is_none() {
        root = root.merge(metrics::documented());
    }
    root
}

async fn timeout_error(error: tower::BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Unavailable("the request took too long".into())
    } else {
        ApiError::Internal(anyhow::anyhow!(error))
    }
}

/// CORS from an explicit allow-list; an unlisted origin is never reflected.
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-dailylimit-limit"),
            HeaderName::from_static("x-dailylimit-remaining"),
            HeaderName::from_static("x-dailylimit-usage"),
            HeaderName::from_static("x-dailylimit-reset"),
            HeaderName::from_static("x-run-id"),
            HeaderName::from_static("x-app-id"),
            HeaderName::from_static("x-diff-files"),
            HeaderName::from_static("x-diff-truncated"),
            REQUEST_ID,
        ])
}
