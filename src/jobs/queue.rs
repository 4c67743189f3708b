//! The queue's table: enqueue inside the caller's transaction, claim with a lease (`FOR UPDATE
//! SKIP LOCKED` on PostgreSQL; one statement under SQLite's writer lock), finish with the
//! step's outcome. Every write that ends a step checks the lease, so a worker that lost its
//! lease (it stalled past it and another took over) cannot overwrite the newer state.
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::sea_query::{Expr, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
};
use serde_json::Value;
use uuid::Uuid;

use super::backoff::{backoff, RetryPolicy};
use super::worker::Lease;
use crate::db::statement;
use entity::jobs::{self, JobKind, JobStatus};

/// The PostgreSQL channel an enqueue notifies, so idle workers of every gateway wake at once.
pub const CHANNEL: &str = "agentgate_jobs";

/// Wakes this process's idle workers (see [`wake`]).
static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Wakes this process's idle workers: call it after the transaction that enqueued commits
/// (woken earlier, a worker would not see the job yet and sleep again).
pub fn wake() {
    WAKE.notify_waiters();
}

/// Resolves at the next [`wake`]; `enable` it before looking for work so a wake-up that comes
/// meanwhile is not missed.
pub fn woken() -> tokio::sync::futures::Notified<'static> {
    WAKE.notified()
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub app_id: String,
    pub version: Option<i32>,
    pub subject: Option<String>,
    pub max_attempts: u32,
    pub depends_on: Option<String>,
    /// A run's stream reports the outcome (see [`claim_report`]).
    pub watched: bool,
    /// The gateway that must run it while it lives (see [`Affinity`]).
    pub runner: Option<String>,
}

/// Who claims: jobs naming a gateway go to that gateway while its heartbeat is recent (a
/// version's blobs are in its local cache until uploaded), to anyone once it is gone.
#[derive(Debug, Clone)]
pub struct Affinity {
    /// This process's gateway id; "" for a process that is no gateway.
    pub gateway: String,
    /// How recent a gateway's heartbeat must be for it to count as live.
    pub alive: Duration,
}

impl Affinity {
    /// A claimant of no gateway: takes unowned jobs and those of gateways that are gone.
    pub fn none() -> Self {
        Self {
            gateway: String::new(),
            alive: Duration::from_secs(90),
        }
    }
}

impl NewJob {
    pub fn new(kind: JobKind, app_id: &str) -> Self {
        Self {
            kind,
            app_id: app_id.to_string(),
            version: None,
            subject: None,
            max_attempts: 0,
            depends_on: None,
            watched: false,
            runner: None,
        }
    }

    /// Runs on `gateway` while it is live.
    pub fn on(self, gateway: &str) -> Self {
        Self {
            runner: (!gateway.is_empty()).then(|| gateway.to_string()),
            ..self
        }
    }

    pub fn version(self, version: i32) -> Self {
        Self {
            version: Some(version),
            ..self
        }
    }

    pub fn subject(self, subject: &str) -> Self {
        Self {
            subject: Some(subject.to_string()),
            ..self
        }
    }

    pub fn max_attempts(self, max_attempts: u32) -> Self {
        Self {
            max_attempts,
            ..self
        }
    }

    pub fn after(self, job: Option<&jobs::Model>) -> Self {
        Self {
            depends_on: job.map(|j| j.id.clone()),
            ..self
        }
    }

    pub fn watched(self, watched: bool) -> Self {
        Self { watched, ..self }
    }
}

/// Inserts a queued job, due now. Call [`wake`] once the surrounding transaction commits; on
/// PostgreSQL the other gateways are notified at that commit.
pub async fn enqueue(db: &impl ConnectionTrait, new: NewJob) -> Result<jobs::Model, DbErr> {
    let now = Utc::now();
    let job = jobs::ActiveModel {
        id: Set(Uuid::new_v4().to_string()),
        kind: Set(new.kind),
        app_id: Set(new.app_id),
        version: Set(new.version),
        subject: Set(new.subject),
        status: Set(JobStatus::Queued),
        attempts: Set(0),
        max_attempts: Set(new.max_attempts.min(i32::MAX as u32) as i32),
        run_at: Set(now),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        depends_on: Set(new.depends_on),
        last_error: Set(None),
        result: Set(None),
        watched: Set(new.watched),
        reported: Set(false),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        updated_at: Set(now),
        runner: Set(new.runner),
        traceparent: Set(crate::telemetry::context::current_traceparent()),
    }
    .insert(db)
    .await?;
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_raw(statement(
            db,
            "SELECT pg_notify($1, $2)",
            vec![CHANNEL.into(), new.kind.as_str().into()],
        ))
        .await?;
    }
    crate::metrics::metrics().job_enqueued(new.kind);
    Ok(job)
}

/// [`enqueue`] on its own, waking the workers at once.
pub async fn enqueue_now(db: &DatabaseConnection, new: NewJob) -> Result<jobs::Model, DbErr> {
    let job = enqueue(db, new).await?;
    wake();
    Ok(job)
}

/// Leases the next due job to `worker` until `now + lease`; None when nothing is due.
///
/// Due: queued and past `run_at`, the earliest first. Not before the job it depends on has
/// finished, and an app's pushes one at a time in version order. The statement walks the
/// `jobs_due` index in `run_at` order and stops at the first job that qualifies, so a claim
/// costs the same with ten jobs queued or ten thousand (a sort over every due job made each
/// claim cost milliseconds, under SQLite's writer lock). Jobs whose worker died are put back
/// in the queue by [`requeue_expired`].
pub async fn claim(
    db: &DatabaseConnection,
    worker: &str,
    lease: Duration,
    kinds: Option<&[JobKind]>,
) -> Result<Option<jobs::Model>, DbErr> {
    claim_for(db, worker, &Affinity::none(), lease, kinds).await
}

/// [`claim`] by a worker of a gateway: it also takes the jobs that must run on that gateway
/// (see [`Affinity`]).
pub async fn claim_for(
    db: &DatabaseConnection,
    worker: &str,
    affinity: &Affinity,
    lease: Duration,
    kinds: Option<&[JobKind]>,
) -> Result<Option<jobs::Model>, DbErr> {
    let now = Utc::now();
    let lock = match db.get_database_backend() {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    // Kinds are our own constants, never input: inlined, the statement stays one shape.
    let only = match kinds {
        Some(kinds) => {
            let names: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
            format!(" AND j.kind IN ({})", names.join(", "))
        }
        None => String::new(),
    };
    let sql = format!(
        "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             started_at = $3, updated_at = $3 \
         WHERE id = (SELECT j.id FROM jobs j \
             WHERE j.status = 'queued' AND j.run_at <= $3{only} \
               AND (j.depends_on IS NULL OR NOT EXISTS (SELECT 1 FROM jobs d \
                    WHERE d.id = j.depends_on AND d.status IN ('queued', 'running'))) \
               AND (j.kind <> 'push_version' OR NOT EXISTS (SELECT 1 FROM jobs o \
                    WHERE o.app_id = j.app_id AND o.kind = 'push_version' AND o.id <> j.id \
                      AND (o.status = 'running' \
                           OR (o.status = 'queued' AND o.version < j.version)))) \
               AND (j.runner IS NULL OR j.runner = $4 OR NOT EXISTS (SELECT 1 FROM gateways g \
                    WHERE g.id = j.runner AND g.heartbeat_at > $5)) \
             ORDER BY j.run_at \
             LIMIT 1{lock}) \
         RETURNING *"
    );
    let lease = ChronoDuration::from_std(lease).unwrap_or(ChronoDuration::seconds(60));
    let row = db
        .query_one_raw(statement(
            db,
            &sql,
            vec![
                worker.into(),
                (now + lease).into(),
                now.into(),
                affinity.gateway.as_str().into(),
                (now - chrono(affinity.alive)).into(),
            ],
        ))
        .await?;
    row.map(|row| jobs::Model::from_query_result(&row, ""))
        .transpose()
}

/// An update of jobs that gives their lease up.
fn releasing_lease() -> sea_orm::UpdateMany<jobs::Entity> {
    jobs::Entity::update_many()
        .col_expr(
            jobs::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            jobs::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
}

/// Puts jobs whose lease expired (their worker died or stalled) back in the queue, due now; a
/// late outcome of the old worker is discarded (see [`finish`]). Returns how many.
pub async fn requeue_expired(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let now = Utc::now();
    let result = releasing_lease()
        .col_expr(jobs::Column::Status, Expr::value(JobStatus::Queued))
        .col_expr(jobs::Column::RunAt, Expr::value(now))
        .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
        .filter(jobs::Column::Status.eq(JobStatus::Running))
        .filter(jobs::Column::LeaseExpiresAt.lt(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Extends a lease the worker still holds; false when it was lost.
pub async fn extend_lease(
    db: &DatabaseConnection,
    id: &str,
    worker: &str,
    lease: Duration,
) -> Result<bool, DbErr> {
    let lease = ChronoDuration::from_std(lease).unwrap_or(ChronoDuration::seconds(60));
    let result = jobs::Entity::update_many()
        .col_expr(
            jobs::Column::LeaseExpiresAt,
            Expr::value(Utc::now() + lease),
        )
        .filter(jobs::Column::Id.eq(id))
        .filter(jobs::Column::LeaseOwner.eq(worker))
        .filter(jobs::Column::Status.eq(JobStatus::Running))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A condition true while `worker` holds `job_id`'s lease: a handler adds it to the writes that
/// record what its step did, so a step whose lease was taken over writes nothing.
pub fn lease_held(job_id: &str, worker: &str) -> SimpleExpr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(jobs::Entity)
            .and_where(jobs::Column::Id.eq(job_id))
            .and_where(jobs::Column::LeaseOwner.eq(worker))
            .and_where(jobs::Column::Status.eq(JobStatus::Running))
            .to_owned(),
    )
}

/// Keeps what a step did so far as the job's result, while `lease` is held (a step that fails
/// halfway, whose progress its run still reports).
pub async fn save_result(
    db: &DatabaseConnection,
    lease: &Lease,
    result: &Value,
) -> Result<(), DbErr> {
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Result, Expr::value(result.to_string()))
        .filter(jobs::Column::Id.eq(lease.job_id.as_str()))
        .filter(jobs::Column::LeaseOwner.eq(lease.worker.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Cancels an app's queued jobs of `kind`: a newer job of the kind does their work (a push
/// pushes every unpushed version of the app).
pub async fn supersede(
    db: &impl ConnectionTrait,
    app_id: &str,
    kind: JobKind,
    by_version: i32,
) -> Result<u64, DbErr> {
    let now = Utc::now();
    let result = jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, Expr::value(JobStatus::Cancelled))
        .col_expr(
            jobs::Column::LastError,
            Expr::value(format!("superseded by version {by_version}'s job")),
        )
        .col_expr(jobs::Column::FinishedAt, Expr::value(now))
        .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
        .filter(jobs::Column::AppId.eq(app_id))
        .filter(jobs::Column::Kind.eq(kind))
        .filter(jobs::Column::Status.eq(JobStatus::Queued))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// What one step of a job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Finished; the result (JSON) is kept for whoever reports it.
    Done(Option<Value>),
    /// Not finished but nothing failed (a provider still building): run again after the delay.
    /// Resets the failure count.
    Again(Duration),
    /// A transient failure: retried with backoff, never before `retry_after`, until the kind's
    /// `max_attempts` failures in a row.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// A permanent failure.
    Fail(String),
}

/// Records the step's outcome if `worker` still holds the job; false otherwise (its result is
/// discarded). Returns the job as it now is when it finished (done or failed), for reporting.
pub async fn finish(
    db: &DatabaseConnection,
    job: &jobs::Model,
    worker: &str,
    policy: &RetryPolicy,
    step: Step,
) -> Result<(bool, Option<jobs::Model>), DbErr> {
    let now = Utc::now();
    let mut update = releasing_lease().col_expr(jobs::Column::UpdatedAt, Expr::value(now));
    let finished = |status: JobStatus| {
        [
            (jobs::Column::Status, Expr::value(status)),
            (jobs::Column::FinishedAt, Expr::value(now)),
        ]
    };
    let mut ends = false;
    match step {
        Step::Done(result) => {
            ends = true;
            for (col, value) in finished(JobStatus::Done) {
                update = update.col_expr(col, value);
            }
            update = update
                .col_expr(
                    jobs::Column::Result,
                    Expr::value(result.map(|r| r.to_string())),
                )
                .col_expr(jobs::Column::LastError, Expr::value(Option::<String>::None));
        }
        Step::Again(after) => {
            update = update
                .col_expr(jobs::Column::Status, Expr::value(JobStatus::Queued))
                .col_expr(jobs::Column::Attempts, Expr::value(0))
                .col_expr(jobs::Column::RunAt, Expr::value(now + chrono(after)));
        }
        Step::Retry { error, retry_after } => {
            let attempts = job.attempts.saturating_add(1);
            let max = job.max_attempts.max(0) as u32;
            update = update.col_expr(jobs::Column::Attempts, Expr::value(attempts));
            if max > 0 && attempts as u32 >= max {
                ends = true;
                for (col, value) in finished(JobStatus::Failed) {
                    update = update.col_expr(col, value);
                }
                update = update.col_expr(
                    jobs::Column::LastError,
                    Expr::value(format!("gave up after {attempts} attempts: {error}")),
                );
            } else {
                let delay = backoff(policy, attempts as u32, retry_after);
                update = update
                    .col_expr(jobs::Column::Status, Expr::value(JobStatus::Queued))
                    .col_expr(jobs::Column::RunAt, Expr::value(now + chrono(delay)))
                    .col_expr(jobs::Column::LastError, Expr::value(error));
            }
        }
        Step::Fail(error) => {
            ends = true;
            for (col, value) in finished(JobStatus::Failed) {
                update = update.col_expr(col, value);
            }
            update = update.col_expr(jobs::Column::LastError, Expr::value(error));
        }
    }
    let result = update
        .filter(jobs::Column::Id.eq(job.id.as_str()))
        .filter(jobs::Column::LeaseOwner.eq(worker))
        .filter(jobs::Column::Status.eq(JobStatus::Running))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Ok((false, None));
    }
    let finished = match ends {
        true => find(db, &job.id).await?,
        false => None,
    };
    Ok((true, finished))
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<jobs::Model>, DbErr> {
    jobs::Entity::find_by_id(id.to_string()).one(db).await
}

/// Cancels an app's queued work of `kinds` (its app was deleted). A running job finishes its
/// step; its handler sees the app is gone.
pub async fn cancel_for_app(
    db: &impl ConnectionTrait,
    app_id: &str,
    kinds: &[JobKind],
) -> Result<u64, DbErr> {
    let now = Utc::now();
    let result = jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, Expr::value(JobStatus::Cancelled))
        .col_expr(jobs::Column::LastError, Expr::value("the app was deleted"))
        .col_expr(jobs::Column::FinishedAt, Expr::value(now))
        .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
        .filter(jobs::Column::AppId.eq(app_id))
        .filter(jobs::Column::Kind.is_in(kinds.iter().copied()))
        .filter(jobs::Column::Status.eq(JobStatus::Queued))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Takes the right to report a finished job's outcome: true for exactly one caller (a run's
/// stream or the worker writing the app's history).
pub async fn claim_report(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let result = jobs::Entity::update_many()
        .col_expr(jobs::Column::Reported, Expr::value(true))
        .filter(jobs::Column::Id.eq(id))
        .filter(jobs::Column::Reported.eq(false))
        .filter(jobs::Column::Status.is_in([JobStatus::Done, JobStatus::Failed]))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The stream stopped waiting: whoever finishes the job reports it to the app's history.
pub async fn unwatch(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Watched, Expr::value(false))
        .filter(jobs::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

fn chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::days(1))
}
