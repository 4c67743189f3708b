//! The one place that decides which routes are public. Everything else needs a valid bearer token.
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use super::dev_login::{refuse_unless_local, DEV_LOGIN_PATH};
use super::path::normalize_request_path;
use crate::error::ApiError;
use crate::state::AppState;

/// Paths reachable without a token. Keep this list short.
pub const PUBLIC_PATH_PREFIXES: &[&str] = &[
    "/health",
    "/metrics",
    "/openapi.json",
    "/docs",
    // The demo agent checks its own bearer secret, like a real agent server.
    "/demo-agent",
    // Local storage download links carry their own signature and expiry.
    "/files",
    // Deployed previews are public sites, served sandboxed.
    "/preview",
    // Local repositories over git's smart HTTP: git sends Basic credentials, checked there.
    "/git",
    // The web client's page and assets, and its dev sign-in (off unless server.dev_login).
    "/",
    "/index.html",
    "/app.css",
    "/app.js",
    "/api.js",
    "/sse.js",
    "/dom.js",
    "/events.js",
    "/chat.js",
    "/files.js",
    "/versions.js",
    "/deploylogs.js",
    "/auth/dev-login",
];

/// The authenticated caller: `sub` of the token, plus whether they are privileged.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub privileged: bool,
}

fn is_public(path: &str) -> bool {
    PUBLIC_PATH_PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

pub async fn require_auth(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = normalize_request_path(request.uri().path());
    // The dev sign-in mints tokens, so it is public only to this machine.
    if path == DEV_LOGIN_PATH && state.config.server.dev_login {
        refuse_unless_local(
            request.extensions().get::<ConnectInfo<SocketAddr>>(),
            request.headers(),
        )?;
    }
    // Public only when the path is public both as routed (raw) and as it resolves: either
    // alone lets an encoded `..` move a private route's path into a public prefix or out of it.
    if is_public(&path) && is_public(request.uri().path()) {
        return Ok(next.run(request).await);
    }
    let token = bearer_token(request.headers().get(AUTHORIZATION))
        .or_else(|| event_source_token(request.uri()))
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let user = state
        .auth
        .authenticate(token)
        .await
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}

/// A browser's native `EventSource` cannot send headers, so the run-events stream (and only
/// it) also takes the token as `?access_token=`. Request logs carry the path, never the query.
fn event_source_token(uri: &axum::http::Uri) -> Option<&str> {
    let is_run_events = uri
        .path()
        .strip_prefix("/runs/")
        .and_then(|rest| rest.strip_suffix("/events"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    if !is_run_events {
        return None;
    }
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
        .filter(|token| !token.is_empty())
}

fn bearer_token(value: Option<&axum::http::HeaderValue>) -> Option<&str> {
    let value = value?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthUser>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_are_exact_prefixes() {
        assert!(is_public("/health"));
        assert!(is_public("/demo-agent/message"));
        assert!(!is_public("/healthz"));
        assert!(!is_public("/apps"));
        assert!(!is_public("/demo-agentx"));
        assert!(is_public("/"));
        assert!(!is_public("/message"));
        assert!(!is_public("/runs/x/events"));
        assert!(!is_public("/app.jsx"));
        assert!(is_public("/openapi.json"));
        assert!(is_public("/docs"));
        assert!(is_public("/docs/redoc.standalone.js"));
        assert!(!is_public("/openapi.jsonx"));
        assert!(!is_public("/docsx"));
    }

    #[test]
    fn bearer_parsing() {
        let v = axum::http::HeaderValue::from_static("Bearer abc");
        assert_eq!(bearer_token(Some(&v)), Some("abc"));
        let v = axum::http::HeaderValue::from_static("Basic abc");
        assert_eq!(bearer_token(Some(&v)), None);
        let v = axum::http::HeaderValue::from_static("Bearer ");
        assert_eq!(bearer_token(Some(&v)), None);
    }
}
