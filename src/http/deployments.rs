//! `GET /deployment-status/:id` (a deployment id, or an app id meaning its latest deployment)
//! and `POST /apps/:id/deploy`.
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{parse_id, OwnedApp};
use super::openapi::{AppNotFound, ErrorBody, Internal, InvalidId, Unauthorized, Unavailable};
use crate::auth::AuthUser;
use crate::deploy::{records as jobs, DeploymentView};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use sea_orm::TransactionTrait;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(deploy))
}

/// A deployment as `GET /deployment-status` answers it: app.build's `{type, isDeployed,
/// message}` among our fields.
#[derive(Serialize, ToSchema)]
struct DeploymentStatus {
    #[serde(flatten)]
    deployment: DeploymentView,
    /// The sentence a client shows, e.g. "Your app is live at https://...".
    #[schema(example = "Your app is live at https://todo.example.app")]
    message: String,
}

impl From<DeploymentView> for DeploymentStatus {
    fn from(deployment: DeploymentView) -> Self {
        Self {
            message: status_sentence(&deployment),
            deployment,
        }
    }
}

/// The human sentence for a deployment's state, by the same grouping as its `type`.
fn status_sentence(d: &DeploymentView) -> String {
    match (d.kind, d.status.as_str()) {
        ("HEALTHY", _) => match &d.url {
            Some(url) => format!("Your app is live at {url}"),
            None => "Your app is live".to_string(),
        },
        ("DEPLOYMENT_IN_PROGRESS", status) => {
            format!("Your app is being deployed ({status})")
        }
        ("STOPPING", status) if status == jobs::SUPERSEDED.as_str() => {
            "This deployment was stopped: a newer one replaced it".to_string()
        }
        ("STOPPING", _) => "This deployment was cancelled".to_string(),
        (_, status) => {
            let reason = d
                .error
                .clone()
                .unwrap_or_else(|| format!("deployment {status}"));
            format!("Deployment failed: {reason}")
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeployQueued {
    deployment_id: String,
    app_id: String,
    version: i32,
    /// `queued`.
    #[schema(example = "queued")]
    status: String,
}

/// A deployment, or an app's latest deployment.
///
/// `id` is a deployment's id or an app's. A deployment past its deadline is reported as the
/// failure it is.
#[utoipa::path(
    get,
    path = "/deployment-status/{id}",
    operation_id = "deployment_status",
    tag = "deployments",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "Deployment id, or app id for its latest deployment")),
    responses(
        (status = 200, description = "The deployment, with the sentence a client shows", body = DeploymentStatus),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such deployment of the caller's", body = ErrorBody,
            example = json!({"code": "not_found", "message": "deployment not found"})),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<DeploymentStatus>> {
    let id = parse_id(&id, "deployment")?.to_string();
    let job = match jobs::find(&state.db, &id).await? {
        Some(job) => Some(job),
        None => jobs::latest_for_app(&state.db, &id).await?,
    };
    let job = job
        .filter(|j| j.owner_id == user.id)
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    // A status past its deadline is reported as the failure it is (the workers record it).
    Ok(Json(DeploymentView::from(jobs::as_of_now(job)).into()))
}

/// Queues a deployment of the app's current version.
#[utoipa::path(
    post,
    path = "/apps/{id}/deploy",
    operation_id = "deploy_app",
    tag = "deployments",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "App id")),
    responses(
        (status = 202, description = "Queued; follow it with `GET /deployment-status/{deploymentId}`", body = DeployQueued),
        (status = 400, response = InvalidId),
        (status = 401, response = Unauthorized),
        (status = 404, response = AppNotFound),
        (status = 409, description = "`no_files`: the app has no version to deploy yet", body = ErrorBody,
            example = json!({"code": "no_files", "message": "the app has no files to deploy yet"})),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn deploy(
    State(state): State<AppState>,
    OwnedApp { app, user }: OwnedApp,
) -> ApiResult<(StatusCode, Json<DeployQueued>)> {
    if app.current_version < 1 {
        return Err(ApiError::Conflict {
            code: "no_files",
            message: "the app has no files to deploy yet".into(),
            details: json!({}),
        });
    }
    let provider = state.deploy_provider;
    let deadline = chrono::Duration::seconds(state.config.deploy.queued_deadline_secs as i64);
    let preview_url = state.preview.as_ref().map(|p| p.url_for(&app.id));
    let new = jobs::NewDeployment {
        app_id: &app.id,
        owner_id: &user.id,
        version: app.current_version,
        provider,
        queued_deadline: deadline,
        watched: false,
        app_url: preview_url.as_deref(),
        // A version still being pushed: the deployment waits for it (see `DeployRunner`).
        after: None,
        runner: None,
    };
    let txn = state.db.begin().await?;
    let (job, _) = jobs::enqueue_new(&txn, new).await?;
    txn.commit().await?;
    crate::jobs::wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(DeployQueued {
            deployment_id: job.id,
            app_id: app.id,
            version: job.version,
            status: job.status.as_str().to_string(),
        }),
    ))
}
