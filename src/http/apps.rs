//! `/apps` routes: list, read, history, soft delete. Handlers stay thin; see `crate::apps`.
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::extract::{bounded_param, parse_id};
use crate::apps::{self, AppView, Deleted, HistoryEntry};
use crate::auth::AuthUser;
use crate::deploy::cleanup;
use crate::error::{ApiError, ApiResult};
use crate::limits::limit_headers;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list))
        .route("/apps/{id}", get(show).delete(remove))
        .route("/apps/{id}/history", get(history))
}

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
    let body = json!({
        "data": data,
        "pagination": {
            "total": total,
            "page": page,
            "limit": limit,
            "totalPages": total.div_ceil(limit),
        }
    });
    Ok((limit_headers(&status), Json(body)))
}

async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<AppView>> {
    let id = parse_id(&id, "app")?;
    let app = apps::find_owned(&state.db, &user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    Ok(Json(app.into()))
}

async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<HistoryEntry>>> {
    let id = parse_id(&id, "app")?;
    let app = apps::find_owned(&state.db, &user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    let messages = apps::history(&state.db, &app.id).await?;
    Ok(Json(messages.into_iter().map(HistoryEntry::from).collect()))
}

async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "app")?;
    match apps::soft_delete(&state.db, &user.id, id).await? {
        Deleted::NotFound => Err(ApiError::not_found("app")),
        Deleted::Already => Ok(StatusCode::NO_CONTENT),
        Deleted::Now => {
            // Clean-up runs in the background, retried until done; the response never waits.
            if let Err(e) =
                cleanup::enqueue_for_app(&state.db, &id.to_string(), state.git.is_some()).await
            {
                tracing::error!(error = %e, app_id = %id, "could not queue the app's clean-up");
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}
