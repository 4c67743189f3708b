//! `GET /preview/:app_id/*path`: local preview deploys. Public, like any deployed site, but
//! sandboxed by CSP so an app's scripts run in an opaque origin and can never read the
//! gateway's tokens or call its API with them. Paths are relative to the version's web root
//! (`client/`, `frontend/dist/`, ... see `deploy::local::web_root`): only that folder is published.
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{Binary, ErrorBody, Unavailable};
use crate::error::ApiError;
use crate::files::mime::content_type_for;
use crate::state::AppState;
use crate::workspace::normalize_path;

const SANDBOX: &str = "sandbox allow-scripts allow-forms allow-modals allow-popups allow-downloads";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(redirect_to_dir))
        .routes(routes!(index))
        .routes(routes!(file))
}

/// Redirects to the preview's directory, so its relative links resolve.
#[utoipa::path(
    get,
    path = "/preview/{app_id}",
    operation_id = "preview_redirect",
    tag = "preview",
    params(("app_id" = String, Path, description = "App id")),
    responses((status = 308, description = "To `/preview/{app_id}/`", headers(("location" = String))))
)]
async fn redirect_to_dir(Path(app_id): Path<String>) -> Redirect {
    Redirect::permanent(&format!("/preview/{app_id}/"))
}

/// The preview's `index.html`: the one in the version's web root.
#[utoipa::path(
    get,
    path = "/preview/{app_id}/",
    operation_id = "preview_index",
    tag = "preview",
    params(("app_id" = String, Path, description = "App id")),
    responses(
        (status = 200, description = "The page, sandboxed by `Content-Security-Policy`", content_type = "text/html", body = String),
        (status = 404, description = "`not_found`: no preview of this app, or no `index.html`", body = ErrorBody,
            example = json!({"code": "not_found", "message": "preview not found"})),
        (status = 503, response = Unavailable),
    )
)]
async fn index(state: State<AppState>, Path(app_id): Path<String>) -> Result<Response, ApiError> {
    serve(&state, &app_id, "").await
}

/// A file of the preview; a directory serves its `index.html`.
#[utoipa::path(
    get,
    path = "/preview/{app_id}/{*path}",
    operation_id = "preview_file",
    tag = "preview",
    params(
        ("app_id" = String, Path, description = "App id"),
        ("path" = String, Path, description = "The file, relative to the web root (may contain `/`)"),
    ),
    responses(
        (status = 200, description = "The file, with a content type from its extension, sandboxed by `Content-Security-Policy`", content_type = "application/octet-stream", body = Binary),
        (status = 404, description = "`not_found`: no preview of this app, or no such file", body = ErrorBody,
            example = json!({"code": "not_found", "message": "file not found"})),
        (status = 503, response = Unavailable),
    )
)]
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
    let relative = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let relative = normalize_path(&relative).map_err(|_| ApiError::not_found("file"))?;
    let bytes = (preview.read(app_id, &relative).await)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::not_found("file"))?;
    let name = relative;
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
