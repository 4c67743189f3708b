//! `GET /deployment-status/:id` (a deployment id, or an app id meaning its latest deployment)
//! and `POST /apps/:id/deploy`.
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::extract::parse_id;
use crate::apps;
use crate::auth::AuthUser;
use crate::deploy::{jobs, DeploymentView};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/deployment-status/{id}", get(status))
        .route("/apps/{id}/deploy", post(deploy))
}

async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<DeploymentView>> {
    let id = parse_id(&id, "deployment")?.to_string();
    // Reconcile first: a status past its deadline is reported as the failure it is.
    jobs::fail_overdue(&state.db).await?;
    let job = match jobs::find(&state.db, &id).await? {
        Some(job) => Some(job),
        None => jobs::latest_for_app(&state.db, &id).await?,
    };
    let job = job
        .filter(|j| j.owner_id == user.id)
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    Ok(Json(job.into()))
}

async fn deploy(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = parse_id(&id, "app")?;
    let app = apps::find_owned(&state.db, &user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    if app.current_version < 1 {
        return Err(ApiError::Conflict {
            code: "no_files",
            message: "the app has no files to deploy yet".into(),
            details: json!({}),
        });
    }
    let provider = state.deploy_provider;
    let deadline = chrono::Duration::seconds(state.config.deploy.queued_deadline_secs as i64);
    let job = jobs::enqueue(
        &state.db,
        &app.id,
        &user.id,
        app.current_version,
        provider,
        deadline,
        false,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({"deploymentId": job.id, "appId": app.id, "version": job.version, "status": job.status}),
        ),
    ))
}
