//! `GET /apps/:id/read-url` (presigned links to a version's files) and, for the local store,
//! `GET /files/*key`, which serves objects to whoever holds a valid signed link.
mod page;

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::OwnedApp;
use super::openapi::{Binary, ErrorBody, Internal, Unauthorized, Unavailable};
use crate::error::{ApiError, ApiResult};
use crate::files::mime::content_type_for;
use crate::files::versions::{archive_key, blob_key, STATUS_STORED};
use crate::files::Manifest;
use crate::state::AppState;
use crate::storage::signing::SignatureError;
use crate::storage::{ObjectStore, StorageError};
use crate::workspace::normalize_path;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read_url))
        .routes(routes!(download))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ReadUrl {
    /// The whole version as a `.tar.gz`.
    read_url: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    version: i32,
    /// One page of the version's files, in path order (`?limit`, at most 1000).
    files: Vec<FileUrl>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct FileUrl {
    path: String,
    size: u64,
    sha256: String,
    mode: u32,
    url: String,
}

fn storage_error(e: StorageError) -> ApiError {
    tracing::error!(error = %e, "presigning failed");
    ApiError::Unavailable("storage is unavailable".into())
}

/// Presigned links to one version of the app's files.
///
/// The whole version as a `.tar.gz`, and each file (or only `path`), a page at a time.
#[utoipa::path(
    get,
    path = "/apps/{id}/read-url",
    operation_id = "read_url",
    tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = "uuid", description = "App id"),
        ("version" = Option<i32>, Query, minimum = 1, description = "Version number (default: the latest)"),
        ("path" = Option<String>, Query, description = "Only this file, relative to the app root"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Files per page (default and most: 1000)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "Links that expire at `expiresAt` (`storage.presign_ttl_secs`)", body = ReadUrl),
        (status = 400, description = "`invalid_id`: the app id is not a UUID; `invalid_query`: `version` is not a positive integer; `invalid_path`: `path` is not a safe relative path", body = ErrorBody, examples(
            ("invalid_id" = (value = json!({"code": "invalid_id", "message": "app id \"x\" is not a UUID"}))),
            ("invalid_query" = (value = json!({"code": "invalid_query", "message": "version must be a positive integer, got \"0\""}))),
            ("invalid_limit" = (value = json!({"code": "invalid_query", "message": "limit must be an integer from 1 to 1000, got \"5000\""}))),
            ("invalid_path" = (value = json!({"code": "invalid_path", "message": "unsafe path ../x: leaves the app root (`..` component)"}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such app of the caller's, no such version, no files yet, or no such file in the version", body = ErrorBody, examples(
            ("app" = (value = json!({"code": "not_found", "message": "app not found"}))),
            ("version" = (value = json!({"code": "not_found", "message": "version not found"}))),
            ("no files" = (value = json!({"code": "not_found", "message": "the app has no files yet"}))),
        )),
        (status = 409, description = "`version_pending`: the version is still being uploaded to storage (its number is in `version`); try again shortly", body = ErrorBody,
            example = json!({"code": "version_pending", "message": "version 3 is still being uploaded to storage; try again shortly", "version": 3})),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn read_url(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<ReadUrl>> {
    let version = match query.get("version") {
        Some(raw) => {
            let n = raw.parse::<i32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("version must be a positive integer, got {raw:?}"),
                )
            })?;
            state
                .files
                .get(&app.id, n)
                .await?
                .ok_or_else(|| ApiError::not_found("version"))?
        }
        None => state
            .files
            .latest(&app.id)
            .await?
            .ok_or_else(|| ApiError::NotFound("the app has no files yet".into()))?,
    };
    if version.status != STATUS_STORED {
        return Err(ApiError::Conflict {
            code: "version_pending",
            message: format!(
                "version {} is still being uploaded to storage; try again shortly",
                version.version
            ),
            details: serde_json::json!({ "version": version.version }),
        });
    }
    let manifest =
        Manifest::from_json(&version.manifest).map_err(|e| ApiError::Internal(e.into()))?;
    let page = page::PageRequest::from_query(&query)?;
    let (selected, next_cursor) = match query.get("path") {
        Some(raw) => {
            let path = normalize_path(raw)
                .map_err(|e| ApiError::bad_request("invalid_path", e.to_string()))?;
            let (path, entry) = manifest.files.get_key_value(&path).ok_or_else(|| {
                ApiError::NotFound(format!("no file {path:?} in version {}", version.version))
            })?;
            (vec![(path, entry)], None)
        }
        None => page.select(&manifest.files),
    };
    let ttl = Duration::from_secs(state.config.storage.presign_ttl_secs);
    let store = state.files.store();
    let archive_name = format!("{}-v{}.tar.gz", app.id, version.version);
    let read_url = store
        .presign_get(
            &archive_key(&app.id, version.version),
            ttl,
            Some(&archive_name),
        )
        .await
        .map_err(storage_error)?;
    let mut files = Vec::with_capacity(selected.len());
    for (path, entry) in selected {
        let name = path.rsplit('/').next().unwrap_or(path);
        let url = store
            .presign_get(&blob_key(&entry.sha256), ttl, Some(name))
            .await
            .map_err(storage_error)?;
        files.push(FileUrl {
            path: path.clone(),
            size: entry.size,
            sha256: entry.sha256.clone(),
            mode: entry.mode,
            url,
        });
    }
    Ok(Json(ReadUrl {
        read_url,
        expires_at: chrono::Utc::now() + ttl,
        version: version.version,
        files,
        next_cursor,
    }))
}

/// Serves a local object to the holder of a valid link.
///
/// The signature is the credential. Only with local object storage; links come from
/// `GET /apps/{id}/read-url`.
#[utoipa::path(
    get,
    path = "/files/{*key}",
    operation_id = "download_file",
    tag = "files",
    params(
        ("key" = String, Path, description = "The object key (may contain `/`)"),
        ("expires" = i64, Query, description = "Unix time after which the link is refused"),
        ("name" = Option<String>, Query, description = "Download name; sets the content type and `Content-Disposition`"),
        ("sig" = String, Query, description = "The link's HMAC signature"),
    ),
    responses(
        (status = 200, description = "The object, with a content type from `name`", content_type = "application/octet-stream", body = Binary, headers(
            ("content-disposition" = String, description = "`attachment; filename=\"...\"` when `name` is given"),
            ("x-content-type-options" = String, description = "`nosniff`"),
            ("content-security-policy" = String, description = "`sandbox`: the content never runs as a page of this origin"),
        )),
        (status = 403, description = "`link_expired` or `invalid_signature`", body = ErrorBody, examples(
            ("link_expired" = (value = json!({"code": "link_expired", "message": "the link has expired"}))),
            ("invalid_signature" = (value = json!({"code": "invalid_signature", "message": "the link signature is invalid"}))),
        )),
        (status = 404, description = "`not_found`: no such object, or storage is not local", body = ErrorBody,
            example = json!({"code": "not_found", "message": "object not found"})),
        (status = 503, response = Unavailable),
    )
)]
async fn download(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let Some(local) = state.local_store.as_ref() else {
        return Err(ApiError::not_found("route"));
    };
    let expires = query
        .get("expires")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let name = query.get("name").map(String::as_str).unwrap_or("");
    let signature = query.get("sig").map(String::as_str).unwrap_or("");
    match local.signer().verify(
        &key,
        expires,
        name,
        signature,
        chrono::Utc::now().timestamp(),
    ) {
        Ok(()) => {}
        Err(SignatureError::Expired) => {
            return Err(ApiError::ForbiddenCode {
                code: "link_expired",
                message: "the link has expired".into(),
            })
        }
        Err(SignatureError::Invalid) => {
            return Err(ApiError::ForbiddenCode {
                code: "invalid_signature",
                message: "the link signature is invalid".into(),
            })
        }
    }
    let bytes = local
        .get(&key)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "local object read failed");
            ApiError::Unavailable("storage is unavailable".into())
        })?
        .ok_or_else(|| ApiError::not_found("object"))?;
    let content_type = if name.is_empty() {
        "application/octet-stream"
    } else {
        content_type_for(name)
    };
    let mut response = (StatusCode::OK, Body::from(bytes)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    // App content is untrusted: a browser must neither sniff it into HTML nor run it as a
    // page of this origin, even when opened directly.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' || *c == ' ')
        .collect();
    if !safe.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}
