//! The built-in web client: static files compiled into the binary, served at `/`, plus the
//! one-click dev sign-in (`server.dev_login`, never in production).
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const JS: &str = "text/javascript; charset=utf-8";
const PAGE_CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
connect-src 'self' https:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// (path, content type, body) of every asset.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
    ("/app.js", JS, include_str!("../../web/app.js")),
    ("/api.js", JS, include_str!("../../web/api.js")),
    ("/sse.js", JS, include_str!("../../web/sse.js")),
    ("/dom.js", JS, include_str!("../../web/dom.js")),
    ("/events.js", JS, include_str!("../../web/events.js")),
    ("/chat.js", JS, include_str!("../../web/chat.js")),
    ("/files.js", JS, include_str!("../../web/files.js")),
];

pub fn router() -> Router<AppState> {
    let mut router = Router::new().route("/auth/dev-login", get(dev_login_enabled).post(dev_login));
    for (path, content_type, body) in ASSETS {
        router = router.route(path, get(move || asset(content_type, body)));
    }
    router
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
    }
    response
}

fn dev_login_allowed(state: &AppState) -> bool {
    state.config.server.dev_login && state.config.auth.mode == crate::config::AuthMode::Hs256
}

async fn dev_login_enabled(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    if !dev_login_allowed(&state) {
        return Err(ApiError::not_found("route"));
    }
    Ok(Json(json!({"enabled": true})))
}

#[derive(Deserialize)]
struct DevLogin {
    user: String,
}

async fn dev_login(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<DevLogin>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !dev_login_allowed(&state) {
        return Err(ApiError::not_found("route"));
    }
    let user = body.user.trim();
    let valid = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !valid {
        return Err(ApiError::bad_request(
            "invalid_user",
            "user must be 1..64 letters, digits or . _ - @",
        ));
    }
    let token = state
        .auth
        .mint_dev_token(user, false)
        .ok_or_else(|| ApiError::not_found("route"))?;
    Ok((StatusCode::OK, Json(json!({"token": token, "user": user}))))
}
