//! `GET /openapi.json` (the description of every route, built from the same routers that serve
//! them) and `GET /docs`, a Redoc page whose script is vendored in `web/docs/` and compiled in.
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

const PAGE: &str = include_str!("../../web/docs/index.html");
const SCRIPT: &str = include_str!("../../web/docs/redoc.standalone.js");
/// Redoc styles with inline `<style>` blocks and searches in a `blob:` worker; it loads nothing
/// from another origin.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; \
frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The serialized description, shared by every request.
#[derive(Clone)]
pub struct Spec(Bytes);

impl Spec {
    pub fn new(openapi: &utoipa::openapi::OpenApi) -> serde_json::Result<Self> {
        Ok(Self(Bytes::from(serde_json::to_vec(openapi)?)))
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(page))
        .routes(routes!(script))
}

/// The OpenAPI 3.1 description of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "docs",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
async fn openapi_json(Extension(spec): Extension<Spec>) -> Response {
    respond("application/json", spec.0, "no-cache")
}

/// A page that renders `/openapi.json` with Redoc.
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs_page",
    tag = "docs",
    responses((status = 200, description = "The docs page", content_type = "text/html", body = String))
)]
async fn page() -> Response {
    let mut response = respond(
        "text/html; charset=utf-8",
        Bytes::from_static(PAGE.as_bytes()),
        "no-cache",
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    response
}

/// The docs page's script.
///
/// Redoc's standalone bundle (MIT), vendored in `web/docs/`.
#[utoipa::path(
    get,
    path = "/docs/redoc.standalone.js",
    operation_id = "docs_script",
    tag = "docs",
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String))
)]
async fn script() -> Response {
    respond(
        "text/javascript; charset=utf-8",
        Bytes::from_static(SCRIPT.as_bytes()),
        "public, max-age=86400",
    )
}

fn respond(content_type: &'static str, body: Bytes, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}
