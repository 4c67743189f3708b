//! Deployment records: queue one (superseding older work, with the `deploy` job that advances
//! it), record each step's result under the job's lease, fail overdue ones. Every change of a
//! deployment's status queues its `deployment.updated` webhooks with it (in its transaction,
//! or right after an overdue one is failed). The
//! queue itself (claims, leases, retries) is `crate::jobs`.
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use super::logs;
use crate::jobs::{lease_held, JobKind, Lease};
use crate::webhooks::{self, EventType};
use entity::deployments;

pub use entity::deployments::DeploymentStatus;

pub const QUEUED: DeploymentStatus = DeploymentStatus::Queued;
pub const BUILDING: DeploymentStatus = DeploymentStatus::Building;
pub const DEPLOYING: DeploymentStatus = DeploymentStatus::Deploying;
pub const HEALTHY: DeploymentStatus = DeploymentStatus::Healthy;
pub const FAILED: DeploymentStatus = DeploymentStatus::Failed;
pub const SUPERSEDED: DeploymentStatus = DeploymentStatus::Superseded;
pub const CANCELLED: DeploymentStatus = DeploymentStatus::Cancelled;
pub const ACTIVE: [DeploymentStatus; 3] = [QUEUED, BUILDING, DEPLOYING];

pub fn is_terminal(status: DeploymentStatus) -> bool {
    !ACTIVE.contains(&status)
}

/// A deployment to queue, see [`enqueue_new`].
#[derive(Debug, Clone)]
pub struct NewDeployment<'a> {
    pub app_id: &'a str,
    pub owner_id: &'a str,
    pub version: i32,
    pub provider: &'a str,
    pub queued_deadline: ChronoDuration,
    /// A run's stream waits for the outcome (and reports it).
    pub watched: bool,
    /// Where the app will be served, when known before the deployment runs (a local preview's
    /// URL is): clients read it from the app as soon as the deployment is queued.
    pub app_url: Option<&'a str>,
    /// A job the deployment waits for (the push of its commit, when the provider builds from
    /// git).
    pub after: Option<&'a crate::jobs::Job>,
    /// The gateway whose local cache holds the version's files (see `jobs::Affinity`).
    pub runner: Option<&'a str>,
}

/// [`enqueue_new`] on its own: no known URL, no dependency; the workers are woken at once.
pub async fn enqueue(
    db: &DatabaseConnection,
    app_id: &str,
    owner_id: &str,
    version: i32,
    provider: &str,
    queued_deadline: ChronoDuration,
    watched: bool,
) -> Result<deployments::Model, DbErr> {
    let new = NewDeployment {
        app_id,
        owner_id,
        version,
        provider,
        queued_deadline,
        watched,
        app_url: None,
        after: None,
        runner: None,
    };
    let txn = db.begin().await?;
    let (deployment, _job) = enqueue_new(&txn, new).await?;
    txn.commit().await?;
    crate::jobs::wake();
    logs::notify();
    Ok(deployment)
}

/// Creates a queued deployment for `version` and the `deploy` job that advances it; older
/// queued or running ones of the app are superseded, since only the newest version matters.
/// The app's deploy status says `queued` (and its URL is set when known). Run it in a
/// transaction, then wake the workers (`crate::jobs::wake`) once it commits.
pub async fn enqueue_new(
    txn: &(impl ConnectionTrait + TransactionTrait),
    new: NewDeployment<'_>,
) -> Result<(deployments::Model, crate::jobs::Job), DbErr> {
    let NewDeployment {
        app_id,
        owner_id,
        version,
        provider,
        queued_deadline,
        watched,
        app_url,
        after,
        runner,
    } = new;
    let now = Utc::now();
    let superseded = deployments::Entity::update_many()
        .col_expr(deployments::Column::Status, Expr::value(SUPERSEDED))
        .col_expr(
            deployments::Column::Error,
            Expr::value(format!("superseded by version {version}")),
        )
        .col_expr(deployments::Column::FinishedAt, Expr::value(now))
        .col_expr(deployments::Column::UpdatedAt, Expr::value(now))
        .filter(deployments::Column::AppId.eq(app_id))
        .filter(deployments::Column::Status.is_in(ACTIVE))
        .filter(deployments::Column::Version.lt(version))
        .exec_with_returning(txn)
        .await?;
    let deployment = deployments::ActiveModel {
        id: Set(Uuid::new_v4().to_string()),
        app_id: Set(app_id.to_string()),
        owner_id: Set(owner_id.to_string()),
        version: Set(version),
        provider: Set(provider.to_string()),
        status: Set(QUEUED),
        provider_state: Set("{}".to_string()),
        url: Set(None),
        error: Set(None),
        status_deadline_at: Set(Some(now + queued_deadline)),
        unknown_since: Set(None),
        watched: Set(watched),
        notified: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
        finished_at: Set(None),
        log_seq: Set(0),
    }
    .insert(txn)
    .await?;
    let job = crate::jobs::NewJob::new(JobKind::Deploy, app_id)
        .version(version)
        .subject(&deployment.id)
        .after(after)
        .on(runner.unwrap_or_default());
    let job = crate::jobs::enqueue(txn, job).await?;
    crate::apps::mark_deploy_queued(txn, app_id, app_url).await?;
    for old in &superseded {
        let reason = old.error.as_deref();
        logs::status_changed(txn, &old.id, SUPERSEDED, reason).await?;
        announce(txn, old).await;
    }
    let detail = format!("version {version} with the {provider} provider");
    logs::status_changed(txn, &deployment.id, QUEUED, Some(&detail)).await?;
    announce(txn, &deployment).await;
    Ok((deployment, job))
}

/// Queues the `deployment.updated` webhooks for the deployment as it now is (never fails: see
/// `webhooks::enqueue_event`).
pub async fn announce(
    db: &(impl ConnectionTrait + TransactionTrait),
    deployment: &deployments::Model,
) -> usize {
    let event = webhooks::Event::new(
        EventType::DeploymentUpdated,
        &deployment.app_id,
        json!({
            "deploymentId": deployment.id,
            "appId": deployment.app_id,
            "version": deployment.version,
            "provider": deployment.provider,
            "status": deployment.status.as_str(),
            "url": deployment.url,
            "error": deployment.error,
        }),
    );
    webhooks::enqueue_event(db, &deployment.owner_id, event).await
}

/// Announces the deployment `id` as it now is, inside `txn`.
async fn announce_id(
    txn: &(impl ConnectionTrait + TransactionTrait),
    id: &str,
) -> Result<(), DbErr> {
    if let Some(deployment) = find(txn, id).await? {
        announce(txn, &deployment).await;
    }
    Ok(())
}

/// A failed deployment takes back an early URL (see [`record_app_url`]) from an app that was
/// never live: a client would show a page that serves nothing.
pub async fn forget_unserved_url(db: &impl ConnectionTrait, app_id: &str) -> Result<(), DbErr> {
    let served = deployments::Entity::find()
        .filter(deployments::Column::AppId.eq(app_id))
        .filter(deployments::Column::Status.eq(HEALTHY))
        .one(db)
        .await?;
    if served.is_some() {
        return Ok(());
    }
    crate::apps::set_app_url(db, app_id, None).await
}

/// Records where the app is (or will be) served, once a provider knows it, unless a newer
/// deployment of the app exists (its own URL wins).
pub async fn record_app_url(
    db: &DatabaseConnection,
    job: &deployments::Model,
    url: &str,
) -> Result<(), DbErr> {
    let newer = deployments::Entity::find()
        .filter(deployments::Column::AppId.eq(job.app_id.as_str()))
        .filter(deployments::Column::Version.gt(job.version))
        .one(db)
        .await?;
    if newer.is_some() {
        return Ok(());
    }
    crate::apps::set_app_url(db, &job.app_id, Some(url)).await
}

/// Moves a queued job the worker holds to `building` with the building deadline, before its
/// provider starts (an image build can take longer than the queued deadline allows).
pub async fn mark_building(
    db: &DatabaseConnection,
    id: &str,
    lease: &Lease,
    state: &serde_json::Map<String, serde_json::Value>,
    deadline: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let result = deployments::Entity::update_many()
        .col_expr(deployments::Column::Status, Expr::value(BUILDING))
        .col_expr(deployments::Column::StatusDeadlineAt, Expr::value(deadline))
        .col_expr(
            deployments::Column::ProviderState,
            Expr::value(serde_json::Value::Object(state.clone()).to_string()),
        )
        .col_expr(deployments::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(deployments::Column::Id.eq(id))
        .filter(lease_held(&lease.job_id, &lease.worker))
        .filter(deployments::Column::Status.eq(QUEUED))
        .exec(&txn)
        .await?;
    let moved = result.rows_affected == 1;
    if moved {
        logs::status_changed(&txn, id, BUILDING, None).await?;
        announce_id(&txn, id).await?;
    }
    txn.commit().await?;
    logs::notify();
    Ok(moved)
}

/// What a step did to the deployment; written only if the worker still holds its job's lease
/// and the deployment was not superseded meanwhile.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub status: Option<DeploymentStatus>,
    pub provider_state: Option<String>,
    pub url: Option<String>,
    pub error: Option<String>,
    pub status_deadline_at: Option<Option<DateTime<Utc>>>,
    pub unknown_since: Option<Option<DateTime<Utc>>>,
}

pub async fn apply(
    db: &DatabaseConnection,
    id: &str,
    lease: &Lease,
    update: Update,
) -> Result<bool, DbErr> {
    let Some(status) = update.status else {
        return apply_on(db, id, lease, update).await;
    };
    // A step repeats the status while the provider works; only a change is announced. Asked by
    // a write (SQLite: a transaction that reads first may not be able to write after).
    let txn = db.begin().await?;
    let changes = deployments::Entity::update_many()
        .col_expr(deployments::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(deployments::Column::Id.eq(id))
        .filter(lease_held(&lease.job_id, &lease.worker))
        .filter(deployments::Column::Status.is_in(ACTIVE))
        .filter(deployments::Column::Status.ne(status))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    // Its reason (a failure's first line: a build's output is in the log already) or its URL.
    let detail = (update.error.as_deref())
        .and_then(|e| e.lines().next())
        .or(update.url.as_deref())
        .map(str::to_string);
    let applied = apply_on(&txn, id, lease, update).await?;
    if applied && changes {
        logs::status_changed(&txn, id, status, detail.as_deref()).await?;
        announce_id(&txn, id).await?;
    }
    txn.commit().await?;
    logs::notify();
    Ok(applied)
}

async fn apply_on(
    db: &impl ConnectionTrait,
    id: &str,
    lease: &Lease,
    update: Update,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let mut query = deployments::Entity::update_many()
        .col_expr(deployments::Column::UpdatedAt, Expr::value(now));
    if let Some(status) = update.status {
        query = query.col_expr(deployments::Column::Status, Expr::value(status));
        if status == HEALTHY && update.error.is_none() {
            // Errors of earlier, retried steps no longer describe the deployment.
            query = query.col_expr(
                deployments::Column::Error,
                Expr::value(Option::<String>::None),
            );
        }
        if is_terminal(status) {
            query = query
                .col_expr(deployments::Column::FinishedAt, Expr::value(now))
                .col_expr(
                    deployments::Column::StatusDeadlineAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                );
        }
    }
    if let Some(state) = update.provider_state {
        query = query.col_expr(deployments::Column::ProviderState, Expr::value(state));
    }
    if let Some(url) = update.url {
        query = query.col_expr(deployments::Column::Url, Expr::value(url));
    }
    if let Some(error) = update.error {
        query = query.col_expr(deployments::Column::Error, Expr::value(error));
    }
    if let Some(deadline) = update.status_deadline_at {
        query = query.col_expr(deployments::Column::StatusDeadlineAt, Expr::value(deadline));
    }
    if let Some(since) = update.unknown_since {
        query = query.col_expr(deployments::Column::UnknownSince, Expr::value(since));
    }
    let result = query
        .filter(deployments::Column::Id.eq(id))
        .filter(lease_held(&lease.job_id, &lease.worker))
        .filter(deployments::Column::Status.is_in(ACTIVE))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Fails every active deployment whose status deadline has passed, whoever holds it. This is
/// what guarantees that no status is ever stuck, even with no worker running: the app's deploy
/// status follows when it is the app's latest deployment, and a worker reports the outcome to
/// the history if no run's stream does (see [`unreported_failures`]).
pub async fn fail_overdue(db: &(impl ConnectionTrait + TransactionTrait)) -> Result<u64, DbErr> {
    let now = Utc::now();
    let overdue = deployments::Entity::find()
        .filter(deployments::Column::Status.is_in(ACTIVE))
        .filter(deployments::Column::StatusDeadlineAt.lt(now))
        .all(db)
        .await?;
    let mut failed = 0;
    for job in overdue {
        let reason = overdue_reason(job.status);
        let result = deployments::Entity::update_many()
            .col_expr(deployments::Column::Status, Expr::value(FAILED))
            .col_expr(deployments::Column::Error, Expr::value(reason.clone()))
            .col_expr(deployments::Column::FinishedAt, Expr::value(now))
            .col_expr(deployments::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                deployments::Column::StatusDeadlineAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(deployments::Column::Id.eq(job.id.as_str()))
            .filter(deployments::Column::Status.eq(job.status))
            .exec(db)
            .await?;
        if result.rows_affected == 0 {
            continue;
        }
        logs::status_changed(db, &job.id, FAILED, Some(&reason)).await?;
        announce_id(db, &job.id).await?;
        failed += result.rows_affected;
        crate::metrics::metrics()
            .deployments
            .get_or_create(&crate::metrics::Outcome {
                outcome: FAILED.as_str().to_string(),
            })
            .inc();
        let newer = deployments::Entity::find()
            .filter(deployments::Column::AppId.eq(job.app_id.as_str()))
            .filter(deployments::Column::Version.gt(job.version))
            .one(db)
            .await?;
        if newer.is_none() {
            crate::apps::record_deploy_status(db, &job.app_id, FAILED, None).await?;
            forget_unserved_url(db, &job.app_id).await?;
        }
    }
    if failed > 0 {
        logs::notify();
    }
    Ok(failed)
}

fn overdue_reason(status: DeploymentStatus) -> String {
    format!("timed out: still {} at its deadline", status.as_str())
}

/// The deployment as a reader should see it: one whose status is past its deadline is the
/// failure it is, even before a worker's sweep records it (a read does not write).
pub fn as_of_now(mut deployment: deployments::Model) -> deployments::Model {
    let overdue = deployment
        .status_deadline_at
        .is_some_and(|deadline| deadline < Utc::now());
    if ACTIVE.contains(&deployment.status) && overdue {
        deployment.error = Some(overdue_reason(deployment.status));
        deployment.status = FAILED;
    }
    deployment
}

/// Failed deployments nobody has reported yet and no run's stream is waiting for: those that
/// timed out (failed by [`fail_overdue`], not by a worker's step). A short grace period leaves
/// a worker's own failures to the worker.
pub async fn unreported_failures(
    db: &DatabaseConnection,
    limit: u64,
) -> Result<Vec<deployments::Model>, DbErr> {
    use sea_orm::QuerySelect;
    deployments::Entity::find()
        .filter(deployments::Column::Status.eq(FAILED))
        .filter(deployments::Column::Notified.eq(false))
        .filter(deployments::Column::Watched.eq(false))
        .filter(deployments::Column::FinishedAt.lt(Utc::now() - ChronoDuration::seconds(2)))
        .order_by_asc(deployments::Column::FinishedAt)
        .limit(limit)
        .all(db)
        .await
}

pub async fn find(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<deployments::Model>, DbErr> {
    deployments::Entity::find_by_id(id.to_string())
        .one(db)
        .await
}

pub async fn latest_for_app(
    db: &DatabaseConnection,
    app_id: &str,
) -> Result<Option<deployments::Model>, DbErr> {
    deployments::Entity::find()
        .filter(deployments::Column::AppId.eq(app_id))
        .order_by_desc(deployments::Column::CreatedAt)
        .one(db)
        .await
}

/// Takes the right to report a terminal outcome; exactly one caller wins.
pub async fn claim_notification(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let result = deployments::Entity::update_many()
        .col_expr(deployments::Column::Notified, Expr::value(true))
        .filter(deployments::Column::Id.eq(id))
        .filter(deployments::Column::Notified.eq(false))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A run stops waiting; from now on the worker reports the outcome to the app's history.
pub async fn unwatch(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    deployments::Entity::update_many()
        .col_expr(deployments::Column::Watched, Expr::value(false))
        .filter(deployments::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}
