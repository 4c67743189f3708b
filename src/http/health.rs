//! `GET /health`: does the database take a write, does storage take a write and read it back,
//! is the agent reachable. Each answer is cached for a few seconds (see [`checks`]).
mod checks;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use checks::HealthCache;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .layer(Extension(HealthCache::default()))
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
    /// `ok` when the database took a write (a tiny upsert), else `error`.
    #[schema(example = "ok")]
    database: &'static str,
    /// `ok` when object storage took a tiny write and read it back, else `error`.
    #[schema(example = "ok")]
    storage: &'static str,
    /// `ok` when the agent server accepts connections (always, for the built-in one).
    #[schema(example = "ok")]
    agent: &'static str,
}

fn word(passed: bool) -> &'static str {
    if passed {
        "ok"
    } else {
        "error"
    }
}

/// Liveness, and whether the database, storage and agent work.
///
/// Each check runs at most once every 5 seconds; in between its last answer is reused.
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
async fn health(
    State(state): State<AppState>,
    Extension(cache): Extension<HealthCache>,
) -> impl IntoResponse {
    let outcome = cache.run(&state).await;
    let healthy = outcome.database && outcome.storage && outcome.agent;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        uptime: state.started_at.elapsed().as_secs(),
        timestamp: Utc::now(),
        checks: HealthChecks {
            database: word(outcome.database),
            storage: word(outcome.storage),
            agent: word(outcome.agent),
        },
    };
    (status, Json(body))
}
