//! Extractors whose rejections are JSON errors with stable codes, never axum's plain text.
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// `Json<T>` with rejections mapped to `invalid_body` (400) or `payload_too_large` (413).
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(map_json_rejection(rejection)),
        }
    }
}

fn map_json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge("request body is too large".into());
    }
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body with Content-Type: application/json".to_string()
        }
        other => other.body_text(),
    };
    ApiError::bad_request("invalid_body", message)
}

/// Parses a path id; a malformed id is a 400, never a lookup.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request("invalid_id", format!("{what} id {raw:?} is not a UUID"))
    })
}

/// Parses an optional integer query parameter within `min..=max`.
pub fn bounded_param(
    value: Option<&String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let Some(raw) = value else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be an integer from {min} to {max}, got {raw:?}"),
        )),
    }
}

/// The caller's app named by the route's `{id}`: a malformed id is a 400, another user's (or a
/// deleted) app a 404, exactly as if it did not exist.
pub struct OwnedApp {
    pub app: entity::apps::Model,
    pub user: crate::auth::AuthUser,
}

impl axum::extract::FromRequestParts<crate::state::AppState> for OwnedApp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = crate::auth::AuthUser::from_request_parts(parts, state).await?;
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found("app"))?;
        let id = parse_id(&raw, "app")?;
        let app = crate::apps::find_owned(&state.db, &user.id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("app"))?;
        Ok(Self { app, user })
    }
}
