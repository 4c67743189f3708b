//! `/webhooks`: the caller's webhook endpoints (Standard Webhooks) and their deliveries. A
//! secret is shown once, in the answer that creates it; another user's endpoint is a 404.
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{parse_id, JsonBody};
use super::openapi::{ErrorBody, Internal, InvalidId, PayloadTooLarge, Unauthorized, Unavailable};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::webhooks::{self, EventType, NewWebhook};

/// How long registration waits for the URL's host to resolve.
const RESOLVE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Deliveries listed per endpoint, newest first.
const DELIVERIES_LISTED: u64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(remove))
        .routes(routes!(deliveries))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateWebhook {
    /// Where deliveries are posted: https, to a public address.
    #[schema(example = "https://hooks.example.com/agentgate")]
    url: String,
    /// The event types to receive (`run.finished`, `version.created`, `deployment.updated`,
    /// `app.deleted`); all when absent.
    events: Option<Vec<String>>,
}

/// An endpoint, as listed (never with its secret).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    id: String,
    url: String,
    /// The event types it receives.
    events: Vec<String>,
    created_at: DateTime<Utc>,
}

/// A new endpoint with its secret: the only answer that shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreatedWebhook {
    #[serde(flatten)]
    webhook: Webhook,
    /// `whsec_` + base64 of 32 random bytes: verify each delivery's `webhook-signature` with
    /// it, as the Standard Webhooks libraries do.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
}

impl From<entity::webhooks::Model> for Webhook {
    fn from(row: entity::webhooks::Model) -> Self {
        let events = row
            .event_types
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_else(|| {
                EventType::ALL
                    .iter()
                    .map(|t| t.as_str().to_string())
                    .collect()
            });
        Self {
            id: row.id,
            url: row.url,
            events,
            created_at: row.created_at,
        }
    }
}

/// One event sent (or being sent) to the endpoint; `id` is its `webhook-id`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    #[schema(example = "msg_2b0c5e0f8a8d4c1e9f0a6b7c8d9e0f1a")]
    id: String,
    #[schema(example = "run.finished")]
    event_type: String,
    app_id: String,
    /// `pending` (being retried), `delivered`, `failed` (given up) or `cancelled` (the
    /// endpoint was deleted).
    #[schema(example = "delivered")]
    status: String,
    /// Attempts made so far.
    attempts: i32,
    /// The HTTP status of the last attempt, when it got an answer.
    last_status: Option<i32>,
    /// Why the last attempt failed.
    last_error: Option<String>,
    /// The body sent: `{type, timestamp, data}`.
    #[schema(value_type = Object)]
    payload: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

impl From<entity::webhook_deliveries::Model> for Delivery {
    fn from(row: entity::webhook_deliveries::Model) -> Self {
        Self {
            payload: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
            id: row.id,
            event_type: row.event_type,
            app_id: row.app_id,
            status: row.status,
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            delivered_at: row.delivered_at,
        }
    }
}

/// Registers an endpoint for the caller's events.
///
/// The URL must be https and its host must resolve to public addresses only (the gateway's
/// operator may allow loopback, over http too, and some internal networks); deliveries check
/// the addresses again each time. The answer is the only one that shows the secret.
#[utoipa::path(
    post,
    path = "/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Registered; keep the secret, it is not shown again", body = CreatedWebhook),
        (status = 400, description = "`invalid_body`; `invalid_webhook_url`; `webhook_url_not_https`; `webhook_address_refused` (the host is or resolves to an internal address); `webhook_host_unresolved`; `invalid_event_type`; `too_many_webhooks`", body = ErrorBody, examples(
            ("invalid_body" = (value = json!({"code": "invalid_body", "message": "Failed to deserialize the JSON body into the target type: missing field `url`", "error": "Failed to deserialize the JSON body into the target type: missing field `url`"}))),
            ("invalid_webhook_url" = (value = json!({"code": "invalid_webhook_url", "message": "hooks is not a webhook URL: relative URL without a base", "error": "hooks is not a webhook URL: relative URL without a base"}))),
            ("webhook_url_not_https" = (value = json!({"code": "webhook_url_not_https", "message": "webhook URLs must use https (http only to a loopback address, when the gateway allows it)", "error": "webhook URLs must use https (http only to a loopback address, when the gateway allows it)"}))),
            ("webhook_address_refused" = (value = json!({"code": "webhook_address_refused", "message": "10.0.0.5 is an internal address deliveries may not reach", "error": "10.0.0.5 is an internal address deliveries may not reach"}))),
            ("webhook_host_unresolved" = (value = json!({"code": "webhook_host_unresolved", "message": "hooks.example.invalid could not be resolved: no addresses", "error": "hooks.example.invalid could not be resolved: no addresses"}))),
            ("invalid_event_type" = (value = json!({"code": "invalid_event_type", "message": "run.exploded is not an event type (run.finished, version.created, deployment.updated, app.deleted)", "error": "run.exploded is not an event type (run.finished, version.created, deployment.updated, app.deleted)"}))),
            ("too_many_webhooks" = (value = json!({"code": "too_many_webhooks", "message": "a user may register 20 webhooks", "error": "a user may register 20 webhooks"}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let settings = &state.config.webhooks;
    let event_types = match body.events {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|name| {
                    EventType::parse(name).ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_event_type",
                            format!("{name:?} is not an event type (run.finished, version.created, deployment.updated, app.deleted)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let policy = settings
        .network_policy()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let refused = |r: webhooks::Refusal| ApiError::bad_request(r.code(), r.to_string());
    let target = policy.check_url(&body.url).map_err(refused)?;
    policy
        .resolve(&target, RESOLVE_LIMIT)
        .await
        .map_err(refused)?;
    let registered = webhooks::list_owned(&state.db, &user.id).await?;
    if registered.len() >= settings.max_per_user as usize {
        return Err(ApiError::bad_request(
            "too_many_webhooks",
            format!("a user may register {} webhooks", settings.max_per_user),
        ));
    }
    let new = NewWebhook {
        owner_id: &user.id,
        url: target.url.as_str(),
        event_types,
    };
    let row = webhooks::create(&state.db, new).await?;
    let secret = row.secret.clone();
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: row.into(),
            secret,
        }),
    ))
}

/// The caller's endpoints, oldest first (without their secrets).
#[utoipa::path(
    get,
    path = "/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's endpoints", body = Vec<Webhook>),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Vec<Webhook>>> {
    let rows = webhooks::list_owned(&state.db, &user.id).await?;
    Ok(Json(rows.into_iter().map(Webhook::from).collect()))
}

/// Deletes an endpoint; its pending deliveries are cancelled.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such webhook of the caller's", body = ErrorBody,
            example = json!({"code": "not_found", "message": "webhook not found"})),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "webhook")?.to_string();
    match webhooks::delete_owned(&state.db, &user.id, &id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found("webhook")),
    }
}

/// The endpoint's latest deliveries (at most 100), newest first, with their last attempt.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    operation_id = "webhook_deliveries",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "Webhook id")),
    responses(
        (status = 200, description = "Its deliveries", body = Vec<Delivery>),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such webhook of the caller's", body = ErrorBody,
            example = json!({"code": "not_found", "message": "webhook not found"})),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn deliveries(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Delivery>>> {
    let id = parse_id(&id, "webhook")?.to_string();
    let webhook = webhooks::find_owned(&state.db, &user.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    let rows = webhooks::deliveries_of(&state.db, &webhook.id, DELIVERIES_LISTED).await?;
    Ok(Json(rows.into_iter().map(Delivery::from).collect()))
}
