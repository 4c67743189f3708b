//! Connects runs to deployments: each new version is enqueued, and before a run's `done` the
//! stream waits (bounded) for the outcome so the user sees it live.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::json;

use super::jobs;
use super::local::LocalPreview;
use super::worker::to_chrono;
use super::{outcome_notice, DeploySettings};
use crate::files::VersionHook;
use crate::runs::sink::{DiffContext, SinkNotice};
use crate::workspace::FileTree;
use entity::{app_versions, apps};

pub struct DeployHook {
    db: DatabaseConnection,
    settings: DeploySettings,
    provider: &'static str,
    preview: Option<Arc<LocalPreview>>,
    /// The deployment each active run waits for.
    pending: Mutex<HashMap<String, String>>,
}

impl DeployHook {
    /// `preview` is set when deployments are local previews, whose URL is known at once.
    pub fn new(
        db: DatabaseConnection,
        settings: DeploySettings,
        provider: &'static str,
        preview: Option<Arc<LocalPreview>>,
    ) -> Self {
        Self {
            db,
            settings,
            provider,
            preview,
            pending: Mutex::new(HashMap::new()),
        }
    }

    async fn report_if_finished(&self, id: &str) -> Option<SinkNotice> {
        let job = jobs::find(&self.db, id).await.ok()??;
        if !jobs::is_terminal(&job.status) {
            return None;
        }
        if !jobs::claim_notification(&self.db, id)
            .await
            .unwrap_or(false)
        {
            return None;
        }
        let (text, metadata) = outcome_notice(&job);
        Some(SinkNotice::Platform { text, metadata })
    }

    /// Where the app will be served, when already known (a local preview's URL is known when
    /// its deployment is queued, a Koyeb service's once the service exists).
    async fn known_url(&self, app_id: &str) -> Option<String> {
        let app = apps::Entity::find_by_id(app_id.to_string())
            .one(&self.db)
            .await
            .ok()??;
        app.app_url.filter(|url| !url.is_empty())
    }
}

#[async_trait]
impl VersionHook for DeployHook {
    async fn on_version(
        &self,
        ctx: &DiffContext,
        version: &app_versions::Model,
        _tree: &FileTree,
    ) -> Vec<SinkNotice> {
        if !self.settings.on_new_version {
            return Vec::new();
        }
        // A local preview's URL is known before it runs: on the app from the start.
        let preview_url = self.preview.as_ref().map(|p| p.url_for(&ctx.app_id));
        let new = jobs::NewDeployment {
            app_id: &ctx.app_id,
            owner_id: &ctx.owner_id,
            version: version.version,
            provider: self.provider,
            queued_deadline: to_chrono(self.settings.queued_deadline),
            watched: true,
            app_url: preview_url.as_deref(),
        };
        let queued = jobs::enqueue_new(&self.db, new).await;
        let job = match queued {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(error = %e, "could not enqueue a deployment");
                return vec![SinkNotice::Error {
                    code: "deployment_not_queued".into(),
                    message:
                        "The new version could not be queued for deployment; deploy it again later."
                            .into(),
                }];
            }
        };
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(ctx.run_id.clone(), job.id.clone());
        }
        let url = self.known_url(&ctx.app_id).await;
        vec![SinkNotice::Platform {
            text: format!("Deploying version {}…", version.version),
            metadata: json!({"type": "deployment_in_progress", "deploymentId": job.id, "deploymentUrl": url,
                "deploymentType": self.provider, "version": version.version}),
        }]
    }

    async fn on_run_end(&self, ctx: &DiffContext, wait: bool) -> Vec<SinkNotice> {
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&ctx.run_id));
        let Some(id) = pending else {
            return Vec::new();
        };
        if wait {
            let deadline = tokio::time::Instant::now() + self.settings.stream_wait;
            while tokio::time::Instant::now() < deadline {
                if let Some(notice) = self.report_if_finished(&id).await {
                    return vec![notice];
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        // Hand the report over to the worker, then check once more so it cannot fall between.
        if let Err(e) = jobs::unwatch(&self.db, &id).await {
            tracing::warn!(error = %e, "could not hand the deployment report over");
        }
        if let Some(notice) = self.report_if_finished(&id).await {
            return vec![notice];
        }
        if !wait {
            return Vec::new();
        }
        let url = self.known_url(&ctx.app_id).await;
        vec![SinkNotice::Platform {
            text:
                "The deployment is still in progress; its result will appear in the app's history."
                    .into(),
            metadata: json!({"type": "deployment_in_progress", "deploymentId": id, "deploymentUrl": url,
                "deploymentType": self.provider, "stillRunning": true}),
        }]
    }
}
