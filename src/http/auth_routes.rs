//! `GET /auth/is-privileged-user` and `GET /auth/is-neon-employee`.
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(is_privileged))
        .routes(routes!(is_employee))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Privileged {
    is_privileged_user: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Employee {
    is_neon_employee: bool,
}

/// Whether the caller is privileged (may set other users' limits).
#[utoipa::path(
    get,
    path = "/auth/is-privileged-user",
    operation_id = "is_privileged_user",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's privilege", body = Privileged),
        (status = 401, response = super::openapi::Unauthorized),
    )
)]
async fn is_privileged(user: AuthUser) -> Json<Privileged> {
    Json(Privileged {
        is_privileged_user: user.privileged,
    })
}

/// Whether the caller counts as staff.
///
/// The reference client asks this to unlock staff features; privileged users are our staff.
#[utoipa::path(
    get,
    path = "/auth/is-neon-employee",
    operation_id = "is_neon_employee",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Whether the caller counts as staff (= privileged)", body = Employee),
        (status = 401, response = super::openapi::Unauthorized),
    )
)]
async fn is_employee(user: AuthUser) -> Json<Employee> {
    Json(Employee {
        is_neon_employee: user.privileged,
    })
}
