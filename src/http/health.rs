//! `GET /health`: is the database reachable.
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok`, or `degraded` when a check fails.
    #[schema(example = "ok")]
    status: &'static str,
    /// Seconds since the process started.
    uptime: u64,
    timestamp: DateTime<Utc>,
    checks: HealthChecks,
}

#[derive(Serialize, ToSchema)]
struct HealthChecks {
    /// `ok` or `error`.
    #[schema(example = "ok")]
    database: &'static str,
}

/// Liveness, and whether the database answers.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "A check failed (`status: degraded`)", body = Health),
    )
)]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let database = match state.db.execute_unprepared("SELECT 1").await {
        Ok(_) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            "error"
        }
    };
    let healthy = database == "ok";
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        uptime: state.started_at.elapsed().as_secs(),
        timestamp: Utc::now(),
        checks: HealthChecks { database },
    };
    (status, Json(body))
}
