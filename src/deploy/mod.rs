//! Deployments: records with deadlines, advanced by `deploy` jobs through a `Deployer` (local
//! preview, Koyeb). The version pipeline queues a deployment per new version and the run
//! reports its outcome in its stream; later outcomes land in the app's history.
pub mod builder;
pub mod ecr;
pub mod koyeb;
pub mod local;
pub mod logs;
pub mod provider;
pub mod records;
pub mod runner;

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

pub use local::LocalPreview;
pub use provider::Deployer;
pub use runner::DeployRunner;

use entity::deployments;

#[derive(Debug, Clone)]
pub struct DeploySettings {
    pub on_new_version: bool,
    pub stream_wait: Duration,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub max_attempts: u32,
    pub queued_deadline: Duration,
    pub building_deadline: Duration,
    pub deploying_deadline: Duration,
    pub unknown_status_wait: Duration,
    /// The branch a deployment from git builds (`git.branch`).
    pub git_branch: String,
    /// Log lines kept per deployment (`deploy.log_lines`).
    pub log_lines: usize,
    /// The configured secrets, masked in deployment logs (with each app's own).
    pub log_mask: logs::Mask,
}

/// The text and metadata of the `PlatformMessage` that reports a finished deployment.
pub fn outcome_notice(job: &deployments::Model) -> (String, Value) {
    match job.status {
        records::HEALTHY => {
            let url = job.url.clone().unwrap_or_default();
            (
                // app.build's terminal client appends `deploymentUrl` to the text.
                format!("Version {} is live:", job.version),
                json!({"type": "deployment_complete", "deploymentUrl": url, "deploymentId": job.id,
                    "deploymentType": job.provider, "version": job.version}),
            )
        }
        _ => {
            let reason = job
                .error
                .clone()
                .unwrap_or_else(|| format!("deployment {}", job.status.as_str()));
            (
                format!("Deployment of version {} failed: {reason}", job.version),
                json!({"type": "deployment_failed", "reason": reason, "error": reason, "deploymentId": job.id, "version": job.version}),
            )
        }
    }
}

/// `GET /deployment-status/:id` as app.build clients read it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    pub id: String,
    pub app_id: String,
    pub version: i32,
    pub status: String,
    pub url: Option<String>,
    pub error: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub is_deployed: bool,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl From<deployments::Model> for DeploymentView {
    fn from(job: deployments::Model) -> Self {
        let kind = match job.status {
            records::HEALTHY => "HEALTHY",
            records::QUEUED | records::BUILDING | records::DEPLOYING => "DEPLOYMENT_IN_PROGRESS",
            records::SUPERSEDED | records::CANCELLED => "STOPPING",
            _ => "ERROR",
        };
        Self {
            is_deployed: job.status == records::HEALTHY,
            id: job.id,
            app_id: job.app_id,
            version: job.version,
            status: job.status.as_str().to_string(),
            url: job.url,
            error: job.error,
            updated_at: job.updated_at,
            kind,
        }
    }
}
