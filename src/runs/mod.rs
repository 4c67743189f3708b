//! Runs: durable, resumable agent turns. A run is owned by a tracked background task, never by
//! the HTTP connection; clients subscribe to its event log and can leave and come back.
pub mod event_log;
pub mod live;
pub mod log_writer;
pub mod recovery;
pub mod remote;
pub mod subscription;
pub mod task;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::Value;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::agent::protocol::EventContext;
use crate::apps::{self, NewMessage};
use crate::cluster::bus::{self, Peers, Signal, SignalSink};
use crate::error::ApiError;
use crate::limits::{LimitStatus, Limiter};
use entity::runs;
pub use entity::runs::RunStatus;
pub use live::{LiveRuns, StopReason};
pub use remote::RemoteTails;
pub use subscription::{Subscription, Tail};
pub use task::RunDeps;

pub const ACTIVE_STATUSES: [RunStatus; 2] = [RunStatus::Queued, RunStatus::Running];

/// This gateway process as the runner of its runs (see [`recovery`]).
#[derive(Debug, Clone)]
pub struct Runner {
    /// Stable across restarts of the same gateway, distinct between gateways.
    pub id: String,
    /// How long a run's lease lasts without renewal.
    pub lease: Duration,
}

impl Runner {
    fn lease_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(30))
    }
}

/// A diff that means "no change": empty, or an old agent's `# ...` marker line.
pub fn is_noop_diff(diff: &str) -> bool {
    let trimmed = diff.trim_start();
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// The app a new run works on.
pub enum RunTarget {
    /// An app the requester must own (404 otherwise).
    Existing(Uuid),
    New {
        name: String,
    },
}

pub struct StartRun {
    pub owner_id: String,
    pub target: RunTarget,
    pub message: String,
    pub trace_id: Option<String>,
    pub template_id: Option<String>,
    pub settings: Option<Value>,
    pub idempotency_key: Option<String>,
    /// Identifies the request (see [`request_digest`]): a retry with the same idempotency key
    /// must carry the same request.
    pub request_digest: String,
}

/// A digest of what a `POST /message` asked for, to tell an idempotent retry from a different
/// request that reuses its key.
pub fn request_digest(parts: &[Option<&str>]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ, and absent differs from "".
        match part {
            Some(text) => {
                hasher.update((text.len() as u64 + 1).to_be_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update(0u64.to_be_bytes()),
        }
    }
    hex::encode(hasher.finalize())
}

#[derive(Debug, Clone)]
pub struct RunRef {
    pub run_id: String,
    pub app_id: String,
}

pub enum StartOutcome {
    /// A new run, with a subscription that sees it from its first event, and the daily
    /// allowance after the message it took.
    Started {
        run: RunRef,
        events: Subscription,
        limits: LimitStatus,
    },
    /// A run with the same idempotency key exists already; attach to it.
    Existing(RunRef),
}

#[derive(Clone)]
pub struct RunManager {
    deps: RunDeps,
    live: Arc<LiveRuns>,
    remote: Arc<RemoteTails>,
    tracker: TaskTracker,
    live_buffer: usize,
    limiter: Limiter,
    runner: Runner,
}

impl RunManager {
    pub fn new(deps: RunDeps, limiter: Limiter, live_buffer: usize, runner: Runner) -> Self {
        Self {
            deps,
            limiter,
            live: Arc::new(LiveRuns::default()),
            remote: Arc::new(RemoteTails::default()),
            tracker: TaskTracker::new(),
            live_buffer,
            runner,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.deps.db
    }

    pub fn active_count(&self) -> usize {
        self.live.len()
    }

    /// Takes one message of the daily allowance, resolves or creates the app and records the
    /// run, all in one transaction (one commit, and nothing to undo when a check fails), then
    /// spawns the run's task. The checks answer in order: 429, 404, then 409 or an attach.
    pub async fn start(&self, request: StartRun) -> Result<StartOutcome, ApiError> {
        let db = &self.deps.db;
        let run_id = Uuid::new_v4().to_string();
        let txn = db.begin().await.map_err(unavailable)?;
        let reservation = self
            .limiter
            .reserve_in(&txn, &request.owner_id)
            .instrument(tracing::info_span!("limits.reserve"))
            .await?;
        let new_app = matches!(request.target, RunTarget::New { .. });
        let app = match request.target {
            RunTarget::Existing(id) => apps::find_owned(&txn, &request.owner_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("application"))?,
            RunTarget::New { name } => {
                apps::create(&txn, &request.owner_id, &name, request.template_id.clone()).await?
            }
        };
        // app.build clients take the app id from the trace id (`app-` up to the first `.`)
        // and send it back as `applicationId` for follow-ups and refinement answers.
        let trace_id =
            (request.trace_id.clone()).unwrap_or_else(|| format!("app-{}.req-{}", app.id, run_id));
        let now = Utc::now();
        let inserted = runs::ActiveModel {
            id: Set(run_id.clone()),
            app_id: Set(app.id.clone()),
            owner_id: Set(request.owner_id.clone()),
            trace_id: Set(trace_id.clone()),
            idempotency_key: Set(request.idempotency_key.clone()),
            status: Set(RunStatus::Running),
            error: Set(None),
            last_seq: Set(0),
            created_at: Set(now),
            started_at: Set(Some(now)),
            finished_at: Set(None),
            runner_id: Set(Some(self.runner.id.clone())),
            lease_expires_at: Set(Some(now + self.runner.lease_chrono())),
            cancel_requested_at: Set(None),
            request_digest: Set(Some(request.request_digest.clone())),
            error_code: Set(None),
        }
        .insert(&txn)
        .await;
        if let Err(e) = inserted {
            drop(txn.rollback().await);
            return self
                .explain_conflict(
                    e,
                    &request.owner_id,
                    request.idempotency_key.as_deref(),
                    &request.request_digest,
                    &app.id,
                )
                .await;
        }
        // Live before it is visible: whoever finds the committed run (an idempotent retry, a
        // resume, a cancel) also finds its live tail.
        let live = self.live.insert(&run_id, &app.id, self.live_buffer);
        let recorded = async {
            apps::append_message(
                &txn,
                NewMessage {
                    app_id: &app.id,
                    run_id: Some(&run_id),
                    role: "user",
                    kind: "UserMessage",
                    content: &request.message,
                    metadata: None,
                },
            )
            .await?;
            txn.commit().await
        }
        .await;
        if let Err(e) = recorded {
            self.live.remove(&run_id);
            return Err(e.into());
        }

        // A follow-up without a template continues with the app's own: without one the agent
        // would fall back to its default template and rebuild the app as another kind.
        let template_id = request.template_id.or(app.tech_stack.clone());
        let spec = task::RunSpec {
            ctx: EventContext {
                app_id: app.id.clone(),
                trace_id,
                run_id: run_id.clone(),
                tech_stack: template_id.clone(),
            },
            owner_id: request.owner_id,
            template_id,
            settings: request.settings,
            new_app_message: new_app.then_some(request.message),
            runner_id: self.runner.id.clone(),
            usage_day: reservation.day.clone(),
        };
        let events = Subscription::from_start(
            self.deps.db.clone(),
            run_id.clone(),
            live.sender.subscribe(),
        );
        let deps = self.deps.clone();
        let registry = self.live.clone();
        let span = tracing::info_span!("run", run_id = %run_id, app_id = %app.id, user_id = %spec.owner_id);
        let id = run_id.clone();
        self.tracker.spawn(
            async move {
                let active = &crate::metrics::metrics().active_runs;
                active.inc();
                task::drive(deps, spec, live).await;
                registry.remove(&id);
                active.dec();
            }
            .instrument(span),
        );
        Ok(StartOutcome::Started {
            run: RunRef {
                run_id,
                app_id: app.id,
            },
            events,
            limits: reservation.status,
        })
    }

    /// Turns a failed run insert into the right answer: attach (same idempotency key) or 409.
    async fn explain_conflict(
        &self,
        error: DbErr,
        owner_id: &str,
        idempotency_key: Option<&str>,
        request_digest: &str,
        app_id: &str,
    ) -> Result<StartOutcome, ApiError> {
        if !crate::db::is_unique_violation(&error) {
            return Err(error.into());
        }
        if let Some(key) = idempotency_key {
            if let Some(run) = self.find_by_idempotency_key(owner_id, key).await? {
                ensure_same_request(&run, request_digest)?;
                return Ok(StartOutcome::Existing(RunRef {
                    run_id: run.id,
                    app_id: run.app_id,
                }));
            }
        }
        let active = runs::Entity::find()
            .filter(runs::Column::AppId.eq(app_id))
            .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
            .one(&self.deps.db)
            .await?;
        // The same request again while its run is active (a client retrying a broken stream
        // before it saw an id): that run, not a second one.
        if let Some(run) = active.as_ref().filter(|run| {
            run.owner_id == owner_id && run.request_digest.as_deref() == Some(request_digest)
        }) {
            return Ok(StartOutcome::Existing(RunRef {
                run_id: run.id.clone(),
                app_id: run.app_id.clone(),
            }));
        }
        Err(ApiError::Conflict {
            code: "run_active",
            message: "this app already has an active run; wait for it or cancel it".into(),
            details: serde_json::json!({ "runId": active.map(|r| r.id) }),
        })
    }

    pub async fn find_by_idempotency_key(
        &self,
        owner_id: &str,
        key: &str,
    ) -> Result<Option<runs::Model>, DbErr> {
        runs::Entity::find()
            .filter(runs::Column::OwnerId.eq(owner_id))
            .filter(runs::Column::IdempotencyKey.eq(key))
            .one(&self.deps.db)
            .await
    }

    /// The caller's latest run that a request with this digest started (see
    /// [`request_digest`]).
    pub async fn find_latest_by_request(
        &self,
        owner_id: &str,
        request_digest: &str,
    ) -> Result<Option<runs::Model>, DbErr> {
        runs::Entity::find()
            .filter(runs::Column::OwnerId.eq(owner_id))
            .filter(runs::Column::RequestDigest.eq(request_digest))
            .order_by_desc(runs::Column::CreatedAt)
            .one(&self.deps.db)
            .await
    }

    /// The run, if it belongs to `owner_id`.
    pub async fn find_owned(
        &self,
        owner_id: &str,
        run_id: Uuid,
    ) -> Result<Option<runs::Model>, DbErr> {
        runs::Entity::find_by_id(run_id.to_string())
            .filter(runs::Column::OwnerId.eq(owner_id))
            .one(&self.deps.db)
            .await
    }

    /// Events after `after_seq`: the log, then the live tail until `done`, wherever the run
    /// runs.
    pub fn subscribe(&self, run_id: &str, after_seq: i64) -> Subscription {
        let tail = match self.live.get(run_id) {
            Some(run) => Tail::Local(run.sender.subscribe()),
            None => Tail::Remote(self.remote.watch(run_id)),
        };
        Subscription::new(self.deps.db.clone(), run_id.to_string(), after_seq, tail)
    }

    /// Asks an active run to stop: at once when this gateway runs it, else by a signal to the
    /// gateway that does (its next sweep reads the request if the signal is lost). False when
    /// the run is no longer active.
    pub async fn cancel(&self, run_id: &str) -> Result<bool, DbErr> {
        if let Some(run) = self.live.get(run_id) {
            run.stop(StopReason::Cancelled);
            return Ok(true);
        }
        let requested = runs::Entity::update_many()
            .col_expr(runs::Column::CancelRequestedAt, Expr::value(Utc::now()))
            .filter(runs::Column::Id.eq(run_id))
            .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
            .exec(&self.deps.db)
            .await?;
        let requested = requested.rows_affected == 1;
        if requested {
            let signal = Signal::Cancel {
                run_id: run_id.to_string(),
            };
            self.signal_others(signal).await;
        }
        Ok(requested)
    }

    /// Cancels the app's active runs (the app was deleted), wherever they run.
    pub async fn cancel_app_runs(&self, app_id: &str) -> Result<(), DbErr> {
        for run in self.live.of_app(app_id) {
            run.stop(StopReason::Cancelled);
        }
        runs::Entity::update_many()
            .col_expr(runs::Column::CancelRequestedAt, Expr::value(Utc::now()))
            .filter(runs::Column::AppId.eq(app_id))
            .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
            .exec(&self.deps.db)
            .await?;
        let signal = Signal::AppDeleted {
            app_id: app_id.to_string(),
        };
        self.signal_others(signal).await;
        Ok(())
    }

    /// Best effort: the request is in the database, which the runner's sweep reads anyway.
    async fn signal_others(&self, signal: Signal) {
        if let Err(e) = bus::publish(&self.deps.db, &[signal]).await {
            tracing::warn!(error = %e, "could not signal the other gateways; their sweep will see it");
        }
    }

    /// What this gateway does with the other gateways' signals.
    pub fn signal_sink(&self) -> Arc<dyn SignalSink> {
        Arc::new(RunSignals {
            live: self.live.clone(),
            remote: self.remote.clone(),
            peers: self.peers().clone(),
        })
    }

    /// Whether other gateways are live (see [`Peers`]).
    pub fn peers(&self) -> &Peers {
        self.deps.log.peers()
    }

    /// Interrupts runs no live gateway runs (see [`recovery`]) and stops this gateway's live
    /// runs that must not go on: taken by another gateway (lease lapsed), cancelled through
    /// another gateway, or of a deleted app (even one deleted while the run was starting).
    /// At start-up nothing is live yet, so every run this instance left behind is an orphan.
    pub async fn recover_interrupted(&self) -> Result<usize, DbErr> {
        let (interrupted, actions) =
            recovery::sweep(&self.deps.db, &self.runner.id, &self.live).await?;
        for id in &actions.lost {
            tracing::warn!(run_id = %id, "this gateway lost the run; stopping it");
        }
        let stops = (actions.lost.into_iter()).map(|id| (id, StopReason::Interrupted));
        let cancels = (actions.cancel.into_iter()).map(|id| (id, StopReason::Cancelled));
        for (id, reason) in stops.chain(cancels) {
            if let Some(run) = self.live.get(&id) {
                run.stop(reason);
            }
        }
        Ok(interrupted)
    }

    /// Every `every`: renews this process's run leases, then sweeps.
    pub async fn keep_leases(self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            let lease = self.runner.lease_chrono();
            if let Err(e) = recovery::renew_leases(&self.deps.db, &self.runner.id, lease).await {
                tracing::warn!(error = %e, "could not renew run leases");
            }
            if let Err(e) = self.recover_interrupted().await {
                tracing::warn!(error = %e, "could not sweep the runs");
            }
        }
    }

    /// Stops accepting runs, waits up to `grace` for active ones, then interrupts the rest.
    pub async fn shutdown(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return;
        }
        let remaining = self.live.all();
        tracing::warn!(
            runs = remaining.len(),
            "grace period over; interrupting active runs"
        );
        for run in remaining {
            run.stop(StopReason::Interrupted);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                "runs did not stop in time; start-up recovery will mark them interrupted"
            );
        }
    }
}

/// Signals from other gateways, applied to this gateway's runs and subscribers.
struct RunSignals {
    live: Arc<LiveRuns>,
    remote: Arc<RemoteTails>,
    peers: Peers,
}

impl SignalSink for RunSignals {
    fn signal(&self, signal: Signal) {
        match signal {
            Signal::Logged { run_id, last_seq } => self.remote.logged(&run_id, last_seq),
            Signal::Cancel { run_id } => {
                if let Some(run) = self.live.get(&run_id) {
                    run.stop(StopReason::Cancelled);
                }
            }
            Signal::AppDeleted { app_id } => {
                for run in self.live.of_app(&app_id) {
                    run.stop(StopReason::Cancelled);
                }
            }
            Signal::LeaseLost { run_id } => {
                if let Some(run) = self.live.get(&run_id) {
                    tracing::warn!(run_id = %run_id, "another gateway took the run over; stopping it");
                    run.stop(StopReason::Interrupted);
                }
            }
            Signal::Joined { .. } => self.peers.set(true),
        }
    }

    fn resync(&self) {
        // A gateway may have joined meanwhile; the next heartbeat looks it up.
        self.peers.set(true);
        self.remote.wake_all();
    }
}

/// An idempotency key names one request: reusing it with a different body is a client bug
/// that must not silently attach to the old run and drop the new message.
pub fn ensure_same_request(run: &runs::Model, request_digest: &str) -> Result<(), ApiError> {
    match run.request_digest.as_deref() {
        Some(stored) if stored != request_digest => Err(ApiError::Conflict {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used for a different request; use a new key".into(),
            details: serde_json::json!({ "runId": run.id }),
        }),
        _ => Ok(()),
    }
}

/// Without a transaction no message can be counted: refuse it (the limiter fails closed).
fn unavailable(e: DbErr) -> ApiError {
    tracing::error!(error = %e, "could not begin the run transaction");
    ApiError::Unavailable("the database is temporarily unavailable".into())
}
