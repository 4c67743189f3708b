//! `GET /auth/is-privileged-user` and `GET /auth/is-neon-employee`.
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::AuthUser;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/is-privileged-user", get(is_privileged))
        .route("/auth/is-neon-employee", get(is_employee))
}

async fn is_privileged(user: AuthUser) -> Json<Value> {
    Json(json!({ "isPrivilegedUser": user.privileged }))
}

/// The reference client asks this to unlock staff features; privileged users are our staff.
async fn is_employee(user: AuthUser) -> Json<Value> {
    Json(json!({ "isNeonEmployee": user.privileged }))
}
