//! `GET /preview/:app_id/*path`: local preview deploys. Public, like any deployed site, but
//! sandboxed by CSP so an app's scripts run in an opaque origin and can never read the
//! gateway's tokens or call its API with them.
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::files::mime::content_type_for;
use crate::state::AppState;
use crate::workspace::normalize_path;

const SANDBOX: &str = "sandbox allow-scripts allow-forms allow-modals allow-popups allow-downloads";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/preview/{app_id}", get(redirect_to_dir))
        .route("/preview/{app_id}/", get(index))
        .route("/preview/{app_id}/{*path}", get(file))
}

async fn redirect_to_dir(Path(app_id): Path<String>) -> Redirect {
    Redirect::permanent(&format!("/preview/{app_id}/"))
}

async fn index(state: State<AppState>, Path(app_id): Path<String>) -> Result<Response, ApiError> {
    serve(&state, &app_id, "").await
}

async fn file(
    state: State<AppState>,
    Path((app_id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    serve(&state, &app_id, &path).await
}

async fn serve(state: &AppState, app_id: &str, path: &str) -> Result<Response, ApiError> {
    let preview = state
        .preview
        .as_ref()
        .ok_or_else(|| ApiError::not_found("preview"))?;
    let root = preview
        .current_dir(app_id)
        .ok_or_else(|| ApiError::not_found("preview"))?;
    let relative = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let relative = normalize_path(&relative).map_err(|_| ApiError::not_found("file"))?;
    let mut target = root.join(&relative);
    if tokio::fs::metadata(&target)
        .await
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        target = target.join("index.html");
    }
    // The published tree holds no symlinks, but check anyway that nothing resolves outside.
    let resolved = tokio::fs::canonicalize(&target)
        .await
        .map_err(|_| ApiError::not_found("file"))?;
    if !resolved.starts_with(&root) {
        return Err(ApiError::not_found("file"));
    }
    let bytes = tokio::fs::read(&resolved)
        .await
        .map_err(|_| ApiError::not_found("file"))?;
    let name = resolved.to_string_lossy().into_owned();
    let mut response = (StatusCode::OK, Body::from(bytes)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type_for(&name)),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
