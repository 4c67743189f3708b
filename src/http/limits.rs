//! `GET /message-limit` and the privileged `PUT /admin/users/:id/limit`.
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::JsonBody;
use super::openapi::{ErrorBody, Internal, PayloadTooLarge, Unauthorized, Unavailable};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::limits::{limit_headers, LimitStatus};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(message_limit))
        .routes(routes!(set_limit))
}

/// The caller's daily message limit and today's usage.
#[utoipa::path(
    get,
    path = "/message-limit",
    operation_id = "message_limit",
    tag = "limits",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's limit status", body = LimitStatus, headers(
            ("x-dailylimit-limit" = u32, description = "Messages allowed per UTC day"),
            ("x-dailylimit-remaining" = u32, description = "Messages left today"),
            ("x-dailylimit-usage" = u32, description = "Messages used today"),
            ("x-dailylimit-reset" = String, description = "When the count resets (RFC 3339)"),
        )),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
async fn message_limit(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<impl IntoResponse> {
    let status = state.limiter.status(&user.id).await?;
    Ok((limit_headers(&status), Json(status)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetLimit {
    daily_message_limit: u32,
}

/// Privileged: overrides a user's daily message limit.
#[utoipa::path(
    put,
    path = "/admin/users/{id}/limit",
    operation_id = "set_user_limit",
    tag = "limits",
    security(("bearer" = [])),
    params(("id" = String, Path, min_length = 1, max_length = 256, description = "The user's id (their token's `sub`)")),
    request_body = SetLimit,
    responses(
        (status = 200, description = "The user's limit status after the change", body = LimitStatus),
        (status = 400, description = "`invalid_body`: the body is not a `SetLimit`; `invalid_id`: the user id is not 1..256 characters", body = ErrorBody, examples(
            ("invalid_body" = (value = json!({"code": "invalid_body", "message": "expected a JSON body with Content-Type: application/json"}))),
            ("invalid_id" = (value = json!({"code": "invalid_id", "message": "user id must be 1..256 characters"}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: the caller is not privileged", body = ErrorBody,
            example = json!({"code": "forbidden", "message": "privileged users only"})),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
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
