//! `POST /analytics/event`: app.build clients report `identify` and `track` events here. They
//! are counted in `/metrics` by type and go nowhere else (no third-party analytics).
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::JsonBody;
use super::openapi::{ErrorBody, Internal, PayloadTooLarge, Unauthorized, Unavailable};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(record_event))
}

/// app.build's `AnalyticsEventBody`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AnalyticsEvent {
    /// `identify` or `track`.
    #[schema(example = "track", pattern = "^(identify|track)$")]
    event_type: String,
    /// Required for `track`, e.g. `app_selected`; not recorded.
    #[schema(example = "app_selected")]
    event_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Accepted {
    #[schema(example = true)]
    ok: bool,
}

/// Accepts and counts a client analytics event.
#[utoipa::path(
    post,
    path = "/analytics/event",
    operation_id = "analytics_event",
    tag = "analytics",
    security(("bearer" = [])),
    request_body = AnalyticsEvent,
    responses(
        (status = 200, description = "Counted", body = Accepted),
        (status = 400, description = "`invalid_body`, `invalid_event_type` (not `identify` or `track`), or `missing_event_name` (`track` without `eventName`), as app.build answers", body = ErrorBody, examples(
            ("invalid_body" = (value = json!({"code": "invalid_body", "message": "Failed to deserialize the JSON body into the target type: missing field `eventType`", "error": "Failed to deserialize the JSON body into the target type: missing field `eventType`"}))),
            ("invalid_event_type" = (value = json!({"code": "invalid_event_type", "message": "eventType must be identify or track", "error": "eventType must be identify or track"}))),
            ("missing_event_name" = (value = json!({"code": "missing_event_name", "message": "a track event needs an eventName", "error": "a track event needs an eventName"}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn record_event(
    _user: AuthUser,
    JsonBody(event): JsonBody<AnalyticsEvent>,
) -> ApiResult<Json<Accepted>> {
    let kind = match event.event_type.as_str() {
        "identify" => "identify",
        "track"
            if event
                .event_name
                .as_deref()
                .is_some_and(|n| !n.trim().is_empty()) =>
        {
            "track"
        }
        "track" => {
            return Err(ApiError::bad_request(
                "missing_event_name",
                "a track event needs an eventName",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_event_type",
                "eventType must be identify or track",
            ))
        }
    };
    crate::metrics::metrics()
        .analytics_events
        .get_or_create(&crate::metrics::Kind { kind: kind.into() })
        .inc();
    Ok(Json(Accepted { ok: true }))
}
