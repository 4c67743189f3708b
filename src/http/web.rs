//! The built-in web client: static files compiled into the binary, served at `/`, plus the
//! one-click dev sign-in (`server.dev_login`, never in production).
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};
use utoipa::openapi::{ContentBuilder, Object, ResponseBuilder, Type};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use super::extract::JsonBody;
use super::openapi::{ErrorBody, PayloadTooLarge};
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
    ("/versions.js", JS, include_str!("../../web/versions.js")),
    (
        "/deploylogs.js",
        JS,
        include_str!("../../web/deploylogs.js"),
    ),
];

pub fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new().routes(routes!(dev_login_enabled, dev_login));
    for (path, content_type, body) in ASSETS {
        router = router.routes(asset_route(path, content_type, body));
    }
    router
}

/// `routes!` for a static asset: its handler, and an operation describing it.
fn asset_route(
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
) -> UtoipaMethodRouter<AppState> {
    let name: String = path
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let media_type = content_type.split(';').next().unwrap_or(content_type);
    let operation = OperationBuilder::new()
        .tag("web")
        .summary(Some(format!("The web client's `{path}`")))
        .operation_id(Some(format!(
            "web_asset_{}",
            if name.is_empty() { "root" } else { &name }
        )))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The asset, compiled into the binary")
                .content(
                    media_type,
                    ContentBuilder::new()
                        .schema(Some(Object::with_type(Type::String)))
                        .build(),
                ),
        )
        .build();
    let paths = PathsBuilder::new()
        .path(path, PathItem::new(HttpMethod::Get, operation))
        .build();
    (Vec::new(), paths, get(move || asset(content_type, body)))
}

#[derive(Serialize, ToSchema)]
struct DevLoginStatus {
    /// Always `true`: when the sign-in is off, this route is a 404.
    enabled: bool,
}

#[derive(Serialize, ToSchema)]
struct DevToken {
    /// A bearer token for `user` (HS256, not privileged).
    token: String,
    user: String,
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

/// Whether the dev sign-in is on.
///
/// It is with `server.dev_login` and HS256 auth; never in production.
#[utoipa::path(
    get,
    path = "/auth/dev-login",
    operation_id = "dev_login_enabled",
    tag = "auth",
    responses(
        (status = 200, description = "The dev sign-in is on", body = DevLoginStatus),
        (status = 403, description = "`dev_login_not_local` or `dev_login_forwarded`: the caller is not on this machine, or came through a proxy", body = ErrorBody,
            example = json!({"code": "dev_login_forwarded", "message": "the dev sign-in does not answer forwarded requests (x-forwarded-for)"})),
        (status = 404, description = "`not_found`: the dev sign-in is off", body = ErrorBody,
            example = json!({"code": "not_found", "message": "route not found"})),
    )
)]
async fn dev_login_enabled(State(state): State<AppState>) -> ApiResult<Json<DevLoginStatus>> {
    if !dev_login_allowed(&state) {
        return Err(ApiError::not_found("route"));
    }
    Ok(Json(DevLoginStatus { enabled: true }))
}

#[derive(Deserialize, ToSchema)]
struct DevLogin {
    /// 1..64 letters, digits or `. _ - @`.
    user: String,
}

/// Mints a token for any user name, when the dev sign-in is on.
#[utoipa::path(
    post,
    path = "/auth/dev-login",
    operation_id = "dev_login",
    tag = "auth",
    request_body = DevLogin,
    responses(
        (status = 200, description = "A token for the user", body = DevToken),
        (status = 400, description = "`invalid_body`, or `invalid_user`: the name is not 1..64 letters, digits or `. _ - @`", body = ErrorBody, examples(
            ("invalid_body" = (value = json!({"code": "invalid_body", "message": "Failed to deserialize the JSON body into the target type: missing field `user`"}))),
            ("invalid_user" = (value = json!({"code": "invalid_user", "message": "user must be 1..64 letters, digits or . _ - @"}))),
        )),
        (status = 403, description = "`dev_login_not_local`: the caller is not on this machine; `dev_login_forwarded`: the request came through a proxy (`Forwarded`, `X-Forwarded-For` or `X-Real-IP`); `dev_login_privileged`: the user is privileged", body = ErrorBody,
            example = json!({"code": "dev_login_not_local", "message": "the dev sign-in answers only requests from this machine"})),
        (status = 404, description = "`not_found`: the dev sign-in is off", body = ErrorBody,
            example = json!({"code": "not_found", "message": "route not found"})),
        (status = 413, response = PayloadTooLarge),
    )
)]
async fn dev_login(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<DevLogin>,
) -> ApiResult<(StatusCode, Json<DevToken>)> {
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
    let token = crate::auth::mint_dev_login_token(&state.auth, user)?;
    Ok((
        StatusCode::OK,
        Json(DevToken {
            token,
            user: user.to_string(),
        }),
    ))
}
