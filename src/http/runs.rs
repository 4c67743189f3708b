//! `GET /runs/:id` (how a run ended), `GET /runs/:id/events` (replay + live, resumable) and
//! `POST /runs/:id/cancel`.
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::parse_id;
use super::openapi::{ErrorBody, Internal, InvalidId, Unauthorized};
use super::sse::sse_response;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_run))
        .routes(routes!(events))
        .routes(routes!(cancel))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Cancelling {
    run_id: String,
    /// Always `cancelling`.
    #[schema(example = "cancelling")]
    status: &'static str,
}

/// A run as its owner sees it: whether it is still going and, once it ended, how.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    #[schema(format = "uuid")]
    id: String,
    #[schema(format = "uuid")]
    app_id: String,
    trace_id: String,
    /// `running`, `succeeded`, `failed`, `cancelled` or `interrupted`. A run succeeds only when
    /// the agent finished, its changes applied and their deployment (if it reported back during
    /// the run) did not fail.
    #[schema(example = "failed")]
    status: String,
    /// Why a run did not succeed, as a stable code (`diff_hunk_failed`, `deployment_failed`,
    /// `upstream_http_error`, `agent_error`, `run_cancelled`, ...).
    #[schema(example = "diff_hunk_failed")]
    error_code: Option<String>,
    /// The same in words.
    error: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<entity::runs::Model> for RunView {
    fn from(run: entity::runs::Model) -> Self {
        Self {
            id: run.id,
            app_id: run.app_id,
            trace_id: run.trace_id,
            status: run.status.as_str().to_string(),
            error_code: run.error_code,
            error: run.error,
            created_at: run.created_at,
            finished_at: run.finished_at,
        }
    }
}

/// One of the caller's runs: its status and, when it did not succeed, why.
#[utoipa::path(
    get,
    path = "/runs/{id}",
    operation_id = "get_run",
    tag = "runs",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "Run id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such run of the caller's", body = ErrorBody,
            example = json!({"code": "not_found", "message": "run not found"})),
        (status = 500, response = Internal),
    )
)]
async fn get_run(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let run = owned_run(&state, &user, &id).await?;
    Ok(Json(run.into()))
}

/// A run's events, resumable.
///
/// A replay of the log after `Last-Event-ID`, then the live tail until `done`. Reconnect with the
/// last `id:` seen to resume without loss.
#[utoipa::path(
    get,
    path = "/runs/{id}/events",
    operation_id = "run_events",
    tag = "runs",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = "uuid", description = "Run id (`x-run-id` of `POST /message`)"),
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "Resume after this event id (what a native EventSource sends on reconnect)"),
        ("lastEventId" = Option<i64>, Query, minimum = 0, description = "The same, for clients that cannot set headers; the header wins"),
        ("access_token" = Option<String>, Query, description = "The bearer token, for a native EventSource (which cannot send headers); only this route takes it"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events (`message`, `error`, `done`), each with an `id:`",
            content_type = "text/event-stream", body = String, headers(
            ("x-run-id" = String, description = "The run"),
        )),
        (status = 204, description = "The run has ended and nothing follows `Last-Event-ID` (a native EventSource stops reconnecting)"),
        (status = 400, description = "`invalid_id`: the run id is not a UUID; `invalid_last_event_id`: the resume point is not a non-negative integer", body = ErrorBody, examples(
            ("invalid_id" = (value = json!({"code": "invalid_id", "message": "run id \"x\" is not a UUID"}))),
            ("invalid_last_event_id" = (value = json!({"code": "invalid_last_event_id", "message": "Last-Event-ID must be a non-negative integer, got \"-1\""}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such run of the caller's", body = ErrorBody,
            example = json!({"code": "not_found", "message": "run not found"})),
        (status = 500, response = Internal),
    )
)]
async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run = owned_run(&state, &user, &id).await?;
    let after = last_event_id(&headers, &query)?;
    if !crate::runs::ACTIVE_STATUSES.contains(&run.status) && after >= run.last_seq {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut extra = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&run.id) {
        extra.insert(HeaderName::from_static("x-run-id"), value);
    }
    let events = state.runs.subscribe(&run.id, after).into_stream();
    Ok(sse_response(events, state.keep_alive(), extra))
}

/// `Last-Event-ID` (what a native EventSource sends on reconnect) or `?lastEventId=`.
pub(super) fn last_event_id(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> ApiResult<i64> {
    // A header that is not visible ASCII is refused like any other bad value, not ignored.
    let raw = match headers.get("last-event-id") {
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        None => query.get("lastEventId").cloned(),
    };
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(0),
        Some(raw) => raw.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_last_event_id",
                format!("Last-Event-ID must be a non-negative integer, got {raw:?}"),
            )
        }),
    }
}

/// Cancels the caller's active run.
///
/// Its stream then ends with `error` and `done`.
#[utoipa::path(
    post,
    path = "/runs/{id}/cancel",
    operation_id = "cancel_run",
    tag = "runs",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "Run id")),
    responses(
        (status = 202, description = "Cancellation requested", body = Cancelling),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such run of the caller's", body = ErrorBody,
            example = json!({"code": "not_found", "message": "run not found"})),
        (status = 409, description = "`run_not_active`: the run has already ended; `runId` and `status` say how", body = ErrorBody,
            example = json!({"code": "run_not_active", "message": "run is not active (status: succeeded)", "runId": "6f1c1a52-3f0e-4a51-9d3c-2b9f0c1d2e3f", "status": "succeeded"})),
        (status = 500, response = Internal),
    )
)]
async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let run = owned_run(&state, &user, &id).await?;
    if state.runs.cancel(&run.id).await? {
        return Ok((
            StatusCode::ACCEPTED,
            Json(Cancelling {
                run_id: run.id,
                status: "cancelling",
            }),
        ));
    }
    Err(ApiError::Conflict {
        code: "run_not_active",
        message: format!("run is not active (status: {})", run.status.as_str()),
        details: json!({ "runId": run.id, "status": run.status.as_str() }),
    })
}

/// The caller's run by its id in the path: 400 for a malformed id, 404 for a run that is not
/// theirs.
async fn owned_run(state: &AppState, user: &AuthUser, id: &str) -> ApiResult<entity::runs::Model> {
    let id = parse_id(id, "run")?;
    state
        .runs
        .find_owned(&user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("run"))
}
