//! `POST /message`: every check happens before the stream opens, so failures are plain JSON.
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use super::extract::{parse_id, JsonBody};
use super::sse::sse_response;
use crate::apps;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::limits::limit_headers;
use crate::runs::{RunRef, RunTarget, StartOutcome, StartRun};
use crate::state::AppState;

const MAX_IDEMPOTENCY_KEY: usize = 200;
const MAX_TRACE_ID: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new().route("/message", post(post_message))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageRequest {
    message: String,
    application_id: Option<String>,
    trace_id: Option<String>,
    template_id: Option<String>,
    settings: Option<Value>,
    #[allow(dead_code)]
    client_source: Option<String>,
}

async fn post_message(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MessageRequest>,
) -> ApiResult<Response> {
    validate(&state, &body)?;
    let idempotency_key = idempotency_key(&headers)?;
    if let Some(key) = &idempotency_key {
        if let Some(run) = state.runs.find_by_idempotency_key(&user.id, key).await? {
            let status = state.limiter.status(&user.id).await?;
            return Ok(stream_run(
                &state,
                RunRef {
                    run_id: run.id,
                    app_id: run.app_id,
                },
                limit_headers(&status),
            ));
        }
    }
    let reservation = state.limiter.reserve(&user.id).await?;
    let started = start(&state, &user, body, idempotency_key).await;
    let outcome = match started {
        Ok(outcome) => outcome,
        Err(e) => {
            state.limiter.release(&reservation).await;
            return Err(e);
        }
    };
    let run = match outcome {
        StartOutcome::Started(run) => run,
        // Lost a race with a retry carrying the same key: that one counts, this one does not.
        StartOutcome::Existing(run) => {
            state.limiter.release(&reservation).await;
            run
        }
    };
    Ok(stream_run(&state, run, limit_headers(&reservation.status)))
}

fn validate(state: &AppState, body: &MessageRequest) -> ApiResult<()> {
    if body.message.trim().is_empty() {
        return Err(ApiError::bad_request(
            "empty_message",
            "message must not be empty",
        ));
    }
    let max = state.config.limits.max_message_bytes;
    if body.message.len() > max {
        return Err(ApiError::bad_request(
            "message_too_large",
            format!(
                "message is {} bytes; the limit is {max}",
                body.message.len()
            ),
        ));
    }
    if body
        .trace_id
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.len() > MAX_TRACE_ID)
    {
        return Err(ApiError::bad_request(
            "invalid_trace_id",
            format!("traceId must be 1..{MAX_TRACE_ID} characters"),
        ));
    }
    Ok(())
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.trim().is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => {
            Ok(Some(key.trim().to_string()))
        }
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )),
    }
}

async fn start(
    state: &AppState,
    user: &AuthUser,
    body: MessageRequest,
    idempotency_key: Option<String>,
) -> ApiResult<StartOutcome> {
    let target = match &body.application_id {
        Some(raw) => {
            let id = parse_id(raw, "application")?;
            let app = apps::find_owned(&state.db, &user.id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("application"))?;
            RunTarget::Existing(Box::new(app))
        }
        None => RunTarget::New {
            name: app_name_from(&body.message),
        },
    };
    state
        .runs
        .start(StartRun {
            owner_id: user.id.clone(),
            target,
            message: body.message,
            trace_id: body.trace_id,
            template_id: body.template_id,
            settings: body.settings,
            idempotency_key,
        })
        .await
}

/// A readable display name from the first prompt.
fn app_name_from(message: &str) -> String {
    let words: Vec<&str> = message.split_whitespace().take(8).collect();
    let mut name = words.join(" ");
    if name.chars().count() > 60 {
        name = name.chars().take(60).collect::<String>() + "…";
    }
    name
}

fn stream_run(state: &AppState, run: RunRef, mut headers: HeaderMap) -> Response {
    for (name, value) in [("x-run-id", &run.run_id), ("x-app-id", &run.app_id)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let events = state.runs.subscribe(&run.run_id, 0).into_stream();
    sse_response(events, state.keep_alive(), headers)
}

#[cfg(test)]
mod tests {
    use super::app_name_from;

    #[test]
    fn names_are_short() {
        assert_eq!(app_name_from("build me a todo app"), "build me a todo app");
        assert!(app_name_from(&"x".repeat(500)).chars().count() <= 61);
    }
}
