//! `GET /apps/:id/versions` (an app's versions, newest first, with what each changed) and
//! `GET /apps/:id/diff` (a git-style unified diff between two versions).
use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{bounded_param, OwnedApp};
use super::openapi::{ErrorBody, Internal, Unauthorized, Unavailable};
use crate::error::{ApiError, ApiResult};
use crate::files::diff::{ChangeCounts, DiffLimits};
use crate::files::versions::STATUS_STORED;
use crate::files::Manifest;
use crate::state::AppState;

/// The most versions one page lists.
const MAX_PAGE: u64 = 100;
const DEFAULT_PAGE: u64 = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_versions))
        .routes(routes!(version_diff))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct VersionList {
    /// Newest first.
    versions: Vec<VersionSummary>,
    /// Pass as `?cursor=` for the next (older) page; `null` on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct VersionSummary {
    version: i32,
    /// The version it was made from; `null` for the first.
    parent_version: Option<i32>,
    /// The agent's commit message, when it gave one.
    message: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    /// The run that made it.
    run_id: Option<String>,
    file_count: i32,
    total_bytes: i64,
    /// `pending` until its files are in object storage, then `stored`.
    #[schema(example = "stored")]
    status: String,
    /// Files added, modified (content or mode) and deleted against the parent version.
    changes: ChangeCounts,
}

fn version_number(query: &HashMap<String, String>, name: &str, min: i32) -> ApiResult<Option<i32>> {
    let Some(raw) = query.get(name) else {
        return Ok(None);
    };
    raw.trim()
        .parse::<i32>()
        .ok()
        .filter(|n| *n >= min)
        .map(Some)
        .ok_or_else(|| {
            let what = if min == 0 {
                "a non-negative integer"
            } else {
                "a positive integer"
            };
            ApiError::bad_request(
                "invalid_query",
                format!("{name} must be {what}, got {raw:?}"),
            )
        })
}

/// The app's versions, newest first.
///
/// Each with its commit message and how many files it added, modified and deleted against
/// its parent version (counted from the manifests).
#[utoipa::path(
    get,
    path = "/apps/{id}/versions",
    operation_id = "list_versions",
    tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = "uuid", description = "App id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Versions per page (default 20, at most 100)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of versions, newest first; empty when the app has no files yet", body = VersionList),
        (status = 400, description = "`invalid_id`: the app id is not a UUID; `invalid_query`: `limit` or `cursor` is not valid", body = ErrorBody, examples(
            ("invalid_id" = (value = json!({"code": "invalid_id", "message": "app id \"x\" is not a UUID"}))),
            ("invalid_query" = (value = json!({"code": "invalid_query", "message": "limit must be an integer from 1 to 100, got \"0\""}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such app of the caller's", body = ErrorBody,
            example = json!({"code": "not_found", "message": "app not found"})),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn list_versions(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<VersionList>> {
    let limit = bounded_param(query.get("limit"), "limit", DEFAULT_PAGE, 1, MAX_PAGE)?;
    // The cursor is the number of the last version listed: the next page starts below it.
    let before = version_number(&query, "cursor", 1)?;
    let (page, more) = state
        .files
        .page(&app.id, before, limit)
        .await
        .map_err(ApiError::Internal)?;
    let next_cursor = more
        .then(|| page.last().map(|(row, _)| row.version.to_string()))
        .flatten();
    let versions = page
        .into_iter()
        .map(|(row, changes)| VersionSummary {
            version: row.version,
            parent_version: row.parent_version,
            message: row.commit_message,
            created_at: row.created_at,
            run_id: row.run_id,
            file_count: row.file_count,
            total_bytes: row.total_bytes,
            status: if row.status == STATUS_STORED {
                "stored"
            } else {
                "pending"
            }
            .to_string(),
            changes,
        })
        .collect();
    Ok(Json(VersionList {
        versions,
        next_cursor,
    }))
}

/// What changed between two versions, as a git-style unified diff.
///
/// `text/x-diff` that `git apply` accepts (`git apply` in a checkout of version `from` makes
/// version `to`): per file `diff --git a/p b/p`, `new file mode` / `deleted file mode` /
/// `old mode` + `new mode`, an `index` line, `---`/`+++` and hunks with 3 lines of context.
/// Binary files (a NUL byte in their first 8000 bytes) are named, not shown. A diff is limited
/// to 4 MiB of text made from at most 16 MiB of files: files are shown in path order while
/// they fit, and the rest are named after a `# diff truncated` line (patch tools skip it), with
/// `X-Diff-Truncated: true`.
#[utoipa::path(
    get,
    path = "/apps/{id}/diff",
    operation_id = "version_diff",
    tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = "uuid", description = "App id"),
        ("to" = i32, Query, minimum = 1, description = "The version to show"),
        ("from" = Option<i32>, Query, minimum = 0, description = "The version to compare with; 0 is the empty tree (the whole of `to` as additions). Default: the parent of `to`"),
    ),
    responses(
        (status = 200, description = "The diff; empty when the versions hold the same files", content_type = "text/x-diff", body = String, headers(
            ("x-diff-files" = u32, description = "Changed files shown in the diff"),
            ("x-diff-truncated" = bool, description = "`true` when changed files were left out to keep within the limits"),
        )),
        (status = 400, description = "`invalid_id`: the app id is not a UUID; `invalid_query`: `to` is missing or not a positive integer, or `from` is not a non-negative integer", body = ErrorBody, examples(
            ("invalid_id" = (value = json!({"code": "invalid_id", "message": "app id \"x\" is not a UUID"}))),
            ("invalid_query" = (value = json!({"code": "invalid_query", "message": "to must be a positive integer, got \"x\""}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such app of the caller's, or no such version", body = ErrorBody, examples(
            ("app" = (value = json!({"code": "not_found", "message": "app not found"}))),
            ("version" = (value = json!({"code": "not_found", "message": "version 7 not found"}))),
        )),
        (status = 409, description = "`version_pending`: a version's files are not in storage yet and this gateway does not have them (its number is in `version`); try again shortly", body = ErrorBody,
            example = json!({"code": "version_pending", "message": "version 3 is still being uploaded to storage; try again shortly", "version": 3})),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn version_diff(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let to = version_number(&query, "to", 1)?.ok_or_else(|| {
        ApiError::bad_request("invalid_query", "to (the version to show) is required")
    })?;
    let from = version_number(&query, "from", 0)?;
    let manifest_of = |version: i32| {
        let state = state.clone();
        let app_id = app.id.clone();
        async move {
            let row = state
                .files
                .get(&app_id, version)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("version {version} not found")))?;
            let manifest =
                Manifest::from_json(&row.manifest).map_err(|e| ApiError::Internal(e.into()))?;
            Ok::<_, ApiError>((row, manifest))
        }
    };
    let (to_row, to_manifest) = manifest_of(to).await?;
    let (from_row, from_manifest) = match from.or(to_row.parent_version) {
        None | Some(0) => (None, Manifest::default()),
        Some(n) => {
            let (row, manifest) = manifest_of(n).await?;
            (Some(row), manifest)
        }
    };
    let rendered = state
        .files
        .diff(&from_manifest, &to_manifest, DiffLimits::default())
        .await
        .map_err(|e| {
            // A version still being uploaded has its files only in the cache of the gateway
            // that made it; elsewhere that is a wait, as for `read-url`.
            let pending = [Some(&to_row), from_row.as_ref()]
                .into_iter()
                .flatten()
                .find(|row| row.status != STATUS_STORED);
            if let Some(row) = pending {
                tracing::warn!(
                    error = format!("{e:#}"),
                    version = row.version,
                    "diff of a pending version failed"
                );
                return ApiError::Conflict {
                    code: "version_pending",
                    message: format!(
                        "version {} is still being uploaded to storage; try again shortly",
                        row.version
                    ),
                    details: serde_json::json!({ "version": row.version }),
                };
            }
            tracing::error!(error = format!("{e:#}"), "diff failed");
            ApiError::Unavailable("storage is unavailable".into())
        })?;
    let mut response = (StatusCode::OK, rendered.text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/x-diff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-diff-files", HeaderValue::from(rendered.files));
    headers.insert(
        "x-diff-truncated",
        HeaderValue::from_static(if rendered.omitted > 0 {
            "true"
        } else {
            "false"
        }),
    );
    Ok(response)
}
