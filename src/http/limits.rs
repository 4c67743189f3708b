//! `GET /message-limit` and the privileged `PUT /admin/users/:id/limit`.
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::JsonBody;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::limits::limit_headers;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/message-limit", get(message_limit))
        .route("/admin/users/{id}/limit", put(set_limit))
}

async fn message_limit(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<impl IntoResponse> {
    let status = state.limiter.status(&user.id).await?;
    Ok((limit_headers(&status), Json(status)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetLimit {
    daily_message_limit: u32,
}

async fn set_limit(
    State(state): State<AppState>,
    user: AuthUser,
    Path(target): Path<String>,
    JsonBody(body): JsonBody<SetLimit>,
) -> ApiResult<impl IntoResponse> {
    if !user.privileged {
        return Err(ApiError::Forbidden("privileged users only".into()));
    }
    if target.is_empty() || target.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid_id",
            "user id must be 1..256 characters",
        ));
    }
    state
        .limiter
        .set_override(&target, body.daily_message_limit)
        .await?;
    let status = state.limiter.status(&target).await?;
    Ok((StatusCode::OK, Json(status)))
}
