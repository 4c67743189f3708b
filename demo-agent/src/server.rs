//! HTTP surface: `POST /message` (SSE), `GET /health`, FastAPI-style errors.

use super::agent::respond;
use super::auth;
use super::request::{is_json_content_type, json_invalid_detail, validate};
use super::stream::{script, sse_body, Shutdown};
use super::switches::Switches;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

/// Upstream has no request-size limit; this only guards memory.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
const SSE_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";

#[derive(Clone)]
struct Ctx {
    token: Option<Arc<str>>,
    shutdown: Shutdown,
}

pub fn build_router(bearer_token: Option<String>, shutdown: Shutdown) -> Router {
    let ctx = Ctx {
        token: bearer_token.filter(|t| !t.is_empty()).map(Arc::from),
        shutdown,
    };
    Router::new()
        .route(
            "/message",
            post(message).fallback(method_not_allowed("POST")),
        )
        .route("/health", get(health).fallback(method_not_allowed("GET")))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "healthy"}))
}

async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, json!({"detail": "Not Found"}))
}

fn method_not_allowed(
    allow: &'static str,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + 'static {
    move || {
        let mut response = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"detail": "Method Not Allowed"}),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        std::future::ready(response)
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn unprocessable(body: Value) -> Response {
    json_response(StatusCode::UNPROCESSABLE_ENTITY, body)
}

/// Order as upstream: JSON syntax (422) → auth (401/403) → fields (422).
async fn message(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed: Option<Value> = match content_type {
        Some(ct) if !is_json_content_type(ct) => None,
        _ if body.is_empty() => None,
        _ => match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(_) => return unprocessable(json_invalid_detail()),
        },
    };

    let auth_header = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if let Err(err) = auth::check(ctx.token.as_deref(), auth_header) {
        let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        return json_response(status, json!({"detail": err.detail()}));
    }

    let Some(value) = parsed else {
        return unprocessable(not_an_object(&body));
    };
    let req = match validate(&value) {
        Ok(req) => req,
        Err(detail) => return unprocessable(detail),
    };

    let sw = Switches::from_settings(req.settings.as_ref());
    if let Some(code) = sw.http_status {
        return plain_status(code);
    }
    let events = respond(&req);
    tracing::info!(
        trace_id = %req.trace_id,
        events = events.len(),
        "demo agent turn"
    );
    let body = sse_body(
        req.trace_id.clone(),
        script(events, &sw),
        sw,
        ctx.shutdown.clone(),
    );
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SSE_CONTENT_TYPE),
    );
    response
}

/// A missing body, or one sent with a non-JSON content type.
fn not_an_object(body: &[u8]) -> Value {
    if body.is_empty() {
        return json!({"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]});
    }
    json!({"detail":[{
        "type":"model_attributes_type",
        "loc":["body"],
        "msg":"Input should be a valid dictionary or object to extract fields from",
        "input": String::from_utf8_lossy(body),
    }]})
}

/// The `httpStatus` switch: a bare status with a plain-text reason body.
fn plain_status(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Internal Server Error");
    let mut response = Response::new(Body::from(reason));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
