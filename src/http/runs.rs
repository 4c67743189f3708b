//! `GET /runs/:id/events` (replay + live, resumable) and `POST /runs/:id/cancel`.
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::extract::parse_id;
use super::sse::sse_response;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/events", get(events))
        .route("/runs/{id}/cancel", post(cancel))
}

async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_id(&id, "run")?;
    let run = state
        .runs
        .find_owned(&user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("run"))?;
    let after = last_event_id(&headers, &query)?;
    let mut extra = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&run.id) {
        extra.insert(HeaderName::from_static("x-run-id"), value);
    }
    let events = state.runs.subscribe(&run.id, after).into_stream();
    Ok(sse_response(events, state.keep_alive(), extra))
}

/// `Last-Event-ID` (what a native EventSource sends on reconnect) or `?lastEventId=`.
fn last_event_id(headers: &HeaderMap, query: &HashMap<String, String>) -> ApiResult<i64> {
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("lastEventId").cloned());
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

async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id, "run")?;
    let run = state
        .runs
        .find_owned(&user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("run"))?;
    if state.runs.cancel(&run.id) {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "runId": run.id, "status": "cancelling" })),
        ));
    }
    Err(ApiError::Conflict {
        code: "run_not_active",
        message: format!("run is not active (status: {})", run.status),
        details: json!({ "runId": run.id, "status": run.status }),
    })
}
