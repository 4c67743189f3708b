//! Clean-up after an app is deleted: one job per resource (deployment, repository, database,
//! stored files), each retried with backoff until done and its outcome recorded. Never blocks
//! the DELETE.
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio_util::sync::CancellationToken;

use super::jobs::{ACTIVE, CANCELLED};
use super::provider::Deployer;
use crate::files::versions::FileVersions;
use crate::git::publish::GitPublisher;
use crate::provision::AppDatabases;
use crate::runs::ACTIVE_STATUSES;
use entity::{app_databases, cleanup_jobs, deployments, runs};

pub const KIND_DEPLOYMENT: &str = "deployment";
pub const KIND_REPOSITORY: &str = "repository";
/// The app's provisioned database (nothing to do when it has none).
pub const KIND_DATABASE: &str = "database";
/// Each version's manifest and archive in object storage.
pub const KIND_STORAGE: &str = "storage";
/// Retries back off exponentially up to this; a job is never given up (an outage of the
/// provider must not leak what the app owned). `last_error` shows why it is still pending.
const MAX_BACKOFF_SECS: i64 = 3600;

/// Queues the clean-up of everything the app owns and cancels its pending deployments.
pub async fn enqueue_for_app(
    db: &impl ConnectionTrait,
    app_id: &str,
    archive_repository: bool,
) -> Result<(), DbErr> {
    let now = Utc::now();
    deployments::Entity::update_many()
        .col_expr(deployments::Column::Status, Expr::value(CANCELLED))
        .col_expr(
            deployments::Column::Error,
            Expr::value("the app was deleted"),
        )
        .col_expr(deployments::Column::FinishedAt, Expr::value(now))
        .col_expr(deployments::Column::UpdatedAt, Expr::value(now))
        .filter(deployments::Column::AppId.eq(app_id))
        .filter(deployments::Column::Status.is_in(ACTIVE))
        .exec(db)
        .await?;
    let mut kinds = vec![KIND_DEPLOYMENT, KIND_STORAGE];
    if archive_repository {
        kinds.push(KIND_REPOSITORY);
    }
    // A database being created right now has its row already (the creation claim).
    if app_databases::Entity::find_by_id(app_id.to_string())
        .one(db)
        .await?
        .is_some()
    {
        kinds.push(KIND_DATABASE);
    }
    for kind in kinds {
        insert_job(db, app_id, kind).await?;
    }
    Ok(())
}

/// Queues dropping the database of an app deleted while the database was being created,
/// unless such a job is already waiting.
pub async fn enqueue_database(db: &DatabaseConnection, app_id: &str) -> Result<(), DbErr> {
    let waiting = cleanup_jobs::Entity::find()
        .filter(cleanup_jobs::Column::AppId.eq(app_id))
        .filter(cleanup_jobs::Column::Kind.eq(KIND_DATABASE))
        .filter(cleanup_jobs::Column::Status.eq("pending"))
        .one(db)
        .await?;
    if waiting.is_none() {
        insert_job(db, app_id, KIND_DATABASE).await?;
    }
    Ok(())
}

async fn insert_job(db: &impl ConnectionTrait, app_id: &str, kind: &str) -> Result<(), DbErr> {
    let now = Utc::now();
    cleanup_jobs::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        app_id: Set(app_id.to_string()),
        kind: Set(kind.to_string()),
        status: Set("pending".into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub struct CleanupRunner {
    pub db: DatabaseConnection,
    pub deployer: Arc<dyn Deployer>,
    pub git: Option<GitPublisher>,
    pub databases: AppDatabases,
    pub files: FileVersions,
}

impl CleanupRunner {
    async fn archive_repository(&self, app_id: &str) -> Result<(), String> {
        let Some(git) = &self.git else {
            return Ok(());
        };
        let app = entity::apps::Entity::find_by_id(app_id.to_string())
            .one(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        match app.as_ref().and_then(|a| git.repo_of(a)) {
            Some(repo) => git
                .host()
                .archive_repo(&repo)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    async fn destroy_deployment(&self, app_id: &str) -> Result<(), String> {
        // A worker still inside a step (an image build) could recreate what we remove: wait
        // until no deployment of the app is leased. Cancelled jobs release theirs promptly.
        let leased = deployments::Entity::find()
            .filter(deployments::Column::AppId.eq(app_id))
            .filter(deployments::Column::LeaseExpiresAt.gt(Utc::now()))
            .count(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        if leased > 0 {
            return Err(format!(
                "waiting for a deploy worker to finish its step on {leased} deployment(s)"
            ));
        }
        self.deployer
            .destroy(app_id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete_stored_files(&self, app_id: &str) -> Result<(), String> {
        // A run still ending may upload one more version: wait until the app has none active.
        let active = runs::Entity::find()
            .filter(runs::Column::AppId.eq(app_id))
            .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
            .count(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        if active > 0 {
            return Err(format!(
                "waiting for {active} active run(s) of the app to end"
            ));
        }
        let versions = self
            .files
            .delete_app_objects(app_id)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(app_id, versions, "stored files of a deleted app removed");
        Ok(())
    }

    pub async fn run(self, every: Duration, stop: CancellationToken) {
        loop {
            if let Err(e) = self.run_due().await {
                tracing::warn!(error = %e, "clean-up pass failed");
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Runs every due job once. Jobs are claimed by moving their next attempt forward first,
    /// so two runners never work on the same job at the same time.
    pub async fn run_due(&self) -> Result<usize, DbErr> {
        let due = cleanup_jobs::Entity::find()
            .filter(cleanup_jobs::Column::Status.eq("pending"))
            .filter(cleanup_jobs::Column::NextAttemptAt.lte(Utc::now()))
            .order_by_asc(cleanup_jobs::Column::NextAttemptAt)
            .limit(20)
            .all(&self.db)
            .await?;
        let mut done = 0;
        for job in due {
            let claim = cleanup_jobs::Entity::update_many()
                .col_expr(
                    cleanup_jobs::Column::NextAttemptAt,
                    Expr::value(Utc::now() + chrono::Duration::minutes(5)),
                )
                .filter(cleanup_jobs::Column::Id.eq(job.id.as_str()))
                .filter(cleanup_jobs::Column::NextAttemptAt.eq(job.next_attempt_at))
                .exec(&self.db)
                .await?;
            if claim.rows_affected != 1 {
                continue;
            }
            let result = match job.kind.as_str() {
                KIND_DEPLOYMENT => self.destroy_deployment(&job.app_id).await,
                KIND_REPOSITORY => self.archive_repository(&job.app_id).await,
                KIND_STORAGE => self.delete_stored_files(&job.app_id).await,
                KIND_DATABASE => self
                    .databases
                    .delete(&job.app_id)
                    .await
                    .map_err(|e| e.to_string()),
                other => Err(format!("unknown clean-up kind {other:?}")),
            };
            let attempts = job.attempts + 1;
            let (status, error, next) = match result {
                Ok(()) => ("done", None, Utc::now()),
                Err(e) => {
                    let backoff = 2i64.pow(attempts.clamp(0, 12) as u32).min(MAX_BACKOFF_SECS);
                    let next = Utc::now() + chrono::Duration::seconds(backoff);
                    tracing::warn!(app_id = %job.app_id, kind = %job.kind, attempts, error = %e, "clean-up step failed; will retry");
                    ("pending", Some(e), next)
                }
            };
            tracing::info!(app_id = %job.app_id, kind = %job.kind, status, "clean-up step");
            cleanup_jobs::Entity::update_many()
                .col_expr(cleanup_jobs::Column::Status, Expr::value(status))
                .col_expr(cleanup_jobs::Column::Attempts, Expr::value(attempts))
                .col_expr(cleanup_jobs::Column::LastError, Expr::value(error))
                .col_expr(cleanup_jobs::Column::NextAttemptAt, Expr::value(next))
                .col_expr(cleanup_jobs::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(cleanup_jobs::Column::Id.eq(job.id.as_str()))
                .exec(&self.db)
                .await?;
            if status == "done" {
                done += 1;
            }
        }
        Ok(done)
    }
}
