//! `POST /message`: every check happens before the stream opens, so failures are plain JSON.
use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use chrono::Utc;
use futures::stream;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{parse_id, JsonBody};
use super::openapi::{ErrorBody, Internal, PayloadTooLarge, Unauthorized, Unavailable};
use super::runs::last_event_id;
use super::sse::sse_response;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::limits::limit_headers;
use crate::runs::{
    ensure_same_request, request_digest, RunRef, RunTarget, StartOutcome, StartRun, Subscription,
};
use crate::state::AppState;

const MAX_IDEMPOTENCY_KEY: usize = 200;
/// How long after its run ended a keyless retry of a request still resumes that run (a
/// client's reconnects come within seconds); later, the same message starts a new run.
const RECONNECT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
const MAX_TRACE_ID: usize = 128;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_message))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct MessageRequest {
    /// The prompt; not blank, at most `limits.max_message_bytes` bytes.
    message: String,
    /// Continue this app's conversation; without it a new app is created.
    #[schema(format = "uuid")]
    application_id: Option<String>,
    /// 1..128 characters, passed to the agent.
    trace_id: Option<String>,
    template_id: Option<String>,
    /// Passed to the agent as is; a JSON object.
    settings: Option<Value>,
    /// Which client sent it (app.build's `web`, `cli`, ...); a new app keeps its first 64
    /// characters as its `clientSource`.
    client_source: Option<String>,
}

/// Sends a message: starts a run and streams its events.
///
/// Every check happens before the stream opens, so failures are plain JSON errors; once the
/// stream is open, failures are `error` events.
#[utoipa::path(
    post,
    path = "/message",
    operation_id = "send_message",
    tag = "runs",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, max_length = 200,
        description = "A retry with the same key attaches to the same run instead of starting another (and costs no message)"),
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0,
        description = "On a retry (the same key, or without a key the same body as the caller's latest run while it runs or up to 10 minutes after it ended): resume that run after this id instead of starting another")),
    request_body = MessageRequest,
    responses(
        (status = 200, description = "The run's events as Server-Sent Events (`message`, `error`, `done`), each with an `id:` to resume from with `GET /runs/{id}/events`",
            content_type = "text/event-stream", body = String, headers(
            ("x-run-id" = String, description = "The run, for `GET /runs/{id}/events` and `POST /runs/{id}/cancel`"),
            ("x-app-id" = String, description = "The app the run builds"),
            ("x-dailylimit-limit" = u32, description = "Messages allowed per UTC day"),
            ("x-dailylimit-remaining" = u32, description = "Messages left today"),
            ("x-dailylimit-usage" = u32, description = "Messages used today"),
            ("x-dailylimit-reset" = String, description = "When the count resets (RFC 3339)"),
        )),
        (status = 400, description = "`invalid_body`, `empty_message`, `message_too_large`, `invalid_trace_id`, `invalid_settings`, `invalid_idempotency_key`, `invalid_last_event_id`, or `invalid_id` (`applicationId` is not a UUID)", body = ErrorBody, examples(
            ("invalid_body" = (value = json!({"code": "invalid_body", "message": "Failed to deserialize the JSON body into the target type: missing field `message`"}))),
            ("empty_message" = (value = json!({"code": "empty_message", "message": "message must not be empty"}))),
            ("message_too_large" = (value = json!({"code": "message_too_large", "message": "message is 70000 bytes; the limit is 65536"}))),
            ("invalid_trace_id" = (value = json!({"code": "invalid_trace_id", "message": "traceId must be 1..128 characters"}))),
            ("invalid_idempotency_key" = (value = json!({"code": "invalid_idempotency_key", "message": "Idempotency-Key must be 1..200 visible ASCII characters"}))),
            ("invalid_id" = (value = json!({"code": "invalid_id", "message": "application id \"x\" is not a UUID"}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: `applicationId` is not one of the caller's apps", body = ErrorBody,
            example = json!({"code": "not_found", "message": "application not found"})),
        (status = 409, description = "`run_active`: the app already has an active run (its id is in `runId`) that another request started (the same body again attaches to it); `idempotency_key_reused`: the `Idempotency-Key` was used for a different request", body = ErrorBody,
            example = json!({"code": "run_active", "message": "this app already has an active run; wait for it or cancel it", "runId": "6f1c1a52-3f0e-4a51-9d3c-2b9f0c1d2e3f"})),
        (status = 413, response = PayloadTooLarge),
        (status = 429, description = "`daily_message_limit_reached`: no messages left today; the `x-dailylimit-*` headers say when more are", body = ErrorBody, headers(
            ("x-dailylimit-limit" = u32, description = "Messages allowed per UTC day"),
            ("x-dailylimit-remaining" = u32, description = "Messages left today"),
            ("x-dailylimit-usage" = u32, description = "Messages used today"),
            ("x-dailylimit-reset" = String, description = "When the count resets (RFC 3339)"),
        ), example = json!({"code": "daily_message_limit_reached", "message": "daily message limit reached"})),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn post_message(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MessageRequest>,
) -> ApiResult<Response> {
    validate(&state, &body)?;
    let idempotency_key = idempotency_key(&headers)?;
    let after = last_event_id(&headers, &HashMap::new())?;
    let digest = request_digest_of(&body);
    let earlier = match &idempotency_key {
        Some(key) => state.runs.find_by_idempotency_key(&user.id, key).await?,
        // A client on event-source-plus sends the same POST again when its stream breaks,
        // with the last id it saw and no key: a reconnect to the run that request started, if
        // that run is still going or only just ended (ids start at 1, so 0 resumes nothing).
        // (app.build's web client retries the same way but drops the id: a follow-up then
        // attaches from the start, see `RunManager::start`.)
        None if after > 0 => state
            .runs
            .find_latest_by_request(&user.id, &digest)
            .await?
            .filter(|run| {
                run.finished_at
                    .is_none_or(|at| Utc::now() - at < RECONNECT_WINDOW)
            }),
        None => None,
    };
    if let Some(run) = earlier {
        ensure_same_request(&run, &digest)?;
        let status = state.limiter.status(&user.id).await?;
        let ended = !crate::runs::ACTIVE_STATUSES.contains(&run.status);
        let run_ref = RunRef {
            run_id: run.id,
            app_id: run.app_id,
        };
        if ended && after >= run.last_seq {
            // Nothing follows: an empty stream ends the client's retries cleanly.
            let headers = run_headers(&run_ref, limit_headers(&status));
            return Ok(sse_response(stream::empty(), state.keep_alive(), headers));
        }
        return Ok(stream_run(&state, run_ref, after, limit_headers(&status)));
    }
    // Kept only on the app a message creates (and never more than 64 characters).
    let client_source = body
        .client_source
        .clone()
        .filter(|_| body.application_id.is_none())
        .map(|s| s.chars().take(64).collect::<String>());
    match start(&state, &user, body, idempotency_key, digest).await? {
        StartOutcome::Started {
            run,
            events,
            limits,
        } => {
            if let Some(source) = client_source {
                if let Err(e) =
                    crate::apps::record_client_source(&state.db, &run.app_id, &source).await
                {
                    tracing::warn!(error = %e, "could not record the app's client source");
                }
            }
            Ok(stream_events(&state, &run, events, limit_headers(&limits)))
        }
        // Lost a race with a retry carrying the same key: that one counted, this one did not.
        StartOutcome::Existing(run) => {
            let status = state.limiter.status(&user.id).await?;
            Ok(stream_run(&state, run, after, limit_headers(&status)))
        }
    }
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
    // Agents validate `settings` as an object: anything else would only fail upstream, after
    // the message was counted.
    if body.settings.as_ref().is_some_and(|s| !s.is_object()) {
        return Err(ApiError::bad_request(
            "invalid_settings",
            "settings must be a JSON object",
        ));
    }
    Ok(())
}

/// What identifies this request for an idempotent retry.
fn request_digest_of(body: &MessageRequest) -> String {
    let settings = body.settings.as_ref().map(|s| s.to_string());
    request_digest(&[
        Some(&body.message),
        body.application_id.as_deref(),
        body.trace_id.as_deref(),
        body.template_id.as_deref(),
        settings.as_deref(),
    ])
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
    request_digest: String,
) -> ApiResult<StartOutcome> {
    let target = match &body.application_id {
        Some(raw) => RunTarget::Existing(parse_id(raw, "application")?),
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
            request_digest,
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

/// An existing run's events after `after`, for a retried request.
fn stream_run(state: &AppState, run: RunRef, after: i64, headers: HeaderMap) -> Response {
    let events = state.runs.subscribe(&run.run_id, after);
    stream_events(state, &run, events, headers)
}

fn stream_events(
    state: &AppState,
    run: &RunRef,
    events: Subscription,
    headers: HeaderMap,
) -> Response {
    let headers = run_headers(run, headers);
    sse_response(events.into_stream(), state.keep_alive(), headers)
}

/// `headers` with the run's and the app's ids.
fn run_headers(run: &RunRef, mut headers: HeaderMap) -> HeaderMap {
    for (name, value) in [("x-run-id", &run.run_id), ("x-app-id", &run.app_id)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
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
