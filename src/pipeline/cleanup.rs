//! Clean-up after an app is deleted: one job per resource (deployment, repository, database,
//! stored files), each retried with backoff until done and its outcome recorded. Never blocks
//! the DELETE.
use std::sync::Arc;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, TransactionTrait,
};

use crate::deploy::records::{self, ACTIVE, CANCELLED};
use crate::deploy::Deployer;
use crate::files::versions::FileVersions;
use crate::git::publish::GitPublisher;
use crate::jobs::{self, JobKind, JobStatus, NewJob};
use crate::provision::AppDatabases;
use crate::runs::ACTIVE_STATUSES;
use entity::{app_databases, deployments, jobs as jobs_table, runs};

/// Queues the clean-up of everything the app owns, cancels its pending deployments and the
/// queued work of its versions. Run it in the deleting transaction; wake the workers
/// (`crate::jobs::wake`) once it commits.
pub async fn enqueue_for_app(
    db: &(impl ConnectionTrait + TransactionTrait),
    app_id: &str,
    archive_repository: bool,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let cancelled = deployments::Entity::update_many()
        .col_expr(deployments::Column::Status, Expr::value(CANCELLED))
        .col_expr(
            deployments::Column::Error,
            Expr::value("the app was deleted"),
        )
        .col_expr(deployments::Column::FinishedAt, Expr::value(now))
        .col_expr(deployments::Column::UpdatedAt, Expr::value(now))
        .filter(deployments::Column::AppId.eq(app_id))
        .filter(deployments::Column::Status.is_in(ACTIVE))
        .exec_with_returning(db)
        .await?;
    for deployment in &cancelled {
        let reason = deployment.error.as_deref();
        crate::deploy::logs::status_changed(db, &deployment.id, CANCELLED, reason).await?;
        records::announce(db, deployment).await;
    }
    let effects = [
        JobKind::UploadVersion,
        JobKind::PushVersion,
        JobKind::Deploy,
    ];
    jobs::cancel_for_app(db, app_id, &effects).await?;
    let mut kinds = vec![JobKind::CleanupDeployment, JobKind::CleanupStorage];
    if archive_repository {
        kinds.push(JobKind::CleanupRepository);
    }
    // A database being created right now has its row already (the creation claim).
    if app_databases::Entity::find_by_id(app_id.to_string())
        .one(db)
        .await?
        .is_some()
    {
        kinds.push(JobKind::CleanupDatabase);
    }
    for kind in kinds {
        jobs::enqueue(db, NewJob::new(kind, app_id)).await?;
    }
    Ok(())
}

/// Runs clean-up jobs.
pub struct Cleanup {
    pub db: DatabaseConnection,
    pub deployer: Arc<dyn Deployer>,
    pub git: Option<GitPublisher>,
    pub databases: AppDatabases,
    pub files: FileVersions,
}

impl Cleanup {
    /// One attempt at one clean-up job; an error is retried with backoff.
    pub async fn run(&self, kind: JobKind, app_id: &str) -> Result<(), String> {
        match kind {
            JobKind::CleanupDeployment => self.destroy_deployment(app_id).await,
            JobKind::CleanupRepository => self.archive_repository(app_id).await,
            JobKind::CleanupStorage => self.delete_stored_files(app_id).await,
            JobKind::CleanupDatabase => self
                .databases
                .delete(app_id)
                .await
                .map_err(|e| e.to_string()),
            other => Err(format!("{} is not a clean-up job", other.as_str())),
        }
    }

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
        // until no deploy job of the app is running.
        let leased = jobs_table::Entity::find()
            .filter(jobs_table::Column::AppId.eq(app_id))
            .filter(jobs_table::Column::Kind.eq(JobKind::Deploy))
            .filter(jobs_table::Column::Status.eq(JobStatus::Running))
            .filter(jobs_table::Column::LeaseExpiresAt.gt(Utc::now()))
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
        let uploading = jobs_table::Entity::find()
            .filter(jobs_table::Column::AppId.eq(app_id))
            .filter(jobs_table::Column::Kind.eq(JobKind::UploadVersion))
            .filter(jobs_table::Column::Status.eq(JobStatus::Running))
            .filter(jobs_table::Column::LeaseExpiresAt.gt(Utc::now()))
            .count(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        if uploading > 0 {
            return Err("waiting for an upload of the app to end".into());
        }
        let versions = self
            .files
            .delete_app_objects(app_id)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(app_id, versions, "stored files of a deleted app removed");
        Ok(())
    }
}
