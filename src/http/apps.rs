//! `/apps` routes: list, read, history, soft delete. Handlers stay thin; see `crate::apps`.
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use sea_orm::TransactionTrait;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{bounded_param, parse_id, OwnedApp};
use super::openapi::{AppNotFound, ErrorBody, Internal, InvalidId, Unauthorized, Unavailable};
use crate::apps::{self, AppPrompt, AppView, Deleted};
use crate::auth::AuthUser;
use crate::deploy::{records as jobs, DeploymentView};
use crate::error::{ApiError, ApiResult};
use crate::limits::limit_headers;
use crate::pipeline::cleanup;
use crate::state::AppState;
use crate::webhooks;
use serde_json::json;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, remove))
        .routes(routes!(history))
}

/// One app in detail: the list's fields plus its latest deployment.
#[derive(Serialize, ToSchema)]
struct AppDetail {
    #[serde(flatten)]
    app: AppView,
    /// The latest deployment, as `GET /deployment-status/{id}` reports it; null before the first.
    deployment: Option<DeploymentView>,
}

/// What app.build answers to a deletion; its clients parse it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AppDeleted {
    #[schema(example = "App deleted successfully")]
    message: &'static str,
    #[schema(format = "uuid")]
    app_id: String,
}

#[derive(Serialize, ToSchema)]
struct AppPage {
    data: Vec<AppView>,
    pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    total: u64,
    page: u64,
    limit: u64,
    total_pages: u64,
}

/// The caller's apps, newest first.
///
/// An app is listed once it has a version, an active run, or an agent reply other than a
/// refinement question or an error; `pagination.total` counts the same apps. An unlisted app
/// (e.g. one whose agent only asked a question) is still readable by id.
#[utoipa::path(
    get,
    path = "/apps",
    operation_id = "list_apps",
    tag = "apps",
    security(("bearer" = [])),
    params(
        ("page" = Option<u64>, Query, minimum = 1, maximum = 1_000_000, description = "1-based page (default 1)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 100, description = "Page size (default 10)"),
    ),
    responses(
        (status = 200, description = "One page of apps", body = AppPage, headers(
            ("x-dailylimit-limit" = u32, description = "Messages allowed per UTC day"),
            ("x-dailylimit-remaining" = u32, description = "Messages left today"),
            ("x-dailylimit-usage" = u32, description = "Messages used today"),
            ("x-dailylimit-reset" = String, description = "When the count resets (RFC 3339)"),
        )),
        (status = 400, description = "`invalid_query`: `page` or `limit` is not an integer in range", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "limit must be an integer from 1 to 100, got \"500\""})),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<impl IntoResponse> {
    let page = bounded_param(query.get("page"), "page", 1, 1, 1_000_000)?;
    let limit = bounded_param(query.get("limit"), "limit", 10, 1, 100)?;
    let (items, total) = apps::list_owned(&state.db, &user.id, page, limit).await?;
    let status = state.limiter.status(&user.id).await?;
    let data: Vec<AppView> = items.into_iter().map(AppView::from).collect();
    let body = AppPage {
        data,
        pagination: Pagination {
            total,
            page,
            limit,
            total_pages: total.div_ceil(limit),
        },
    };
    Ok((limit_headers(&status), Json(body)))
}

/// One of the caller's apps (never its agent state), listed or not.
#[utoipa::path(
    get,
    path = "/apps/{id}",
    operation_id = "get_app",
    tag = "apps",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "App id")),
    responses(
        (status = 200, description = "The app: app.build's `App` fields, then ours", body = AppDetail),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, response = AppNotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<AppDetail>> {
    let id = parse_id(&id, "app")?;
    let app = apps::find_owned_row(&state.db, &user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    let deployment = jobs::latest_for_app(&state.db, &app.app.id).await?;
    Ok(Json(AppDetail {
        app: app.into(),
        deployment: deployment.map(|d| DeploymentView::from(jobs::as_of_now(d))),
    }))
}

/// The app's conversation as app.build's `AppPrompts[]`, every row, oldest first.
///
/// `kind` is `user` or `assistant` (the gateway's own rows are `assistant`); the stored kind is
/// `messageKind`.
#[utoipa::path(
    get,
    path = "/apps/{id}/history",
    operation_id = "app_history",
    tag = "apps",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "App id")),
    responses(
        (status = 200, description = "Every message of the conversation, oldest first", body = Vec<AppPrompt>),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, response = AppNotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn history(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
) -> ApiResult<Json<Vec<AppPrompt>>> {
    let messages = apps::history(&state.db, &app.id).await?;
    Ok(Json(messages.into_iter().map(AppPrompt::from).collect()))
}

/// Soft-deletes the app (idempotent: deleting a deleted app answers the same 200).
///
/// Its active runs are cancelled; its clean-up (preview, repository, database, stored files)
/// runs in the background.
#[utoipa::path(
    delete,
    path = "/apps/{id}",
    operation_id = "delete_app",
    tag = "apps",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "App id")),
    responses(
        (status = 200, description = "Deleted, now or before (app.build's answer)", body = AppDeleted,
            example = json!({"message": "App deleted successfully", "appId": "0b7c6c3e-2f0a-4c55-8d0e-6a1f1b2c3d4e"})),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, response = AppNotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<AppDeleted>> {
    let id = parse_id(&id, "app")?;
    // The deletion and its clean-up jobs commit together: no deleted app is left uncleaned.
    let txn = state.db.begin().await?;
    let deleted = apps::soft_delete(&txn, &user.id, id).await?;
    if deleted == Deleted::Now {
        let archive = state.git.is_some() && state.config.git.archive_on_delete;
        cleanup::enqueue_for_app(&txn, &id.to_string(), archive).await?;
        let app_id = id.to_string();
        let event = webhooks::Event::new(
            webhooks::EventType::AppDeleted,
            &app_id,
            json!({"appId": app_id, "deletedAt": chrono::Utc::now()}),
        );
        webhooks::enqueue_event(&txn, &user.id, event).await;
    }
    txn.commit().await?;
    crate::jobs::wake();
    if deleted == Deleted::NotFound {
        return Err(ApiError::not_found("app"));
    }
    if deleted == Deleted::Now {
        // Work on a deleted app stops; its clean-up runs in the background, never awaited here.
        // The app is deleted either way; a run left going ends at its turn deadline.
        if let Err(e) = state.runs.cancel_app_runs(&id.to_string()).await {
            tracing::warn!(error = %e, "could not ask the deleted app's runs to stop");
        }
    }
    Ok(Json(AppDeleted {
        message: "App deleted successfully",
        app_id: id.to_string(),
    }))
}
