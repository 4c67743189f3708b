//! Orphaned runs: a run still marked active that no live gateway process is running (its process
//! died, or this process could not record its end). Its log gets a final `error` and `done`, and
//! it becomes `interrupted`, so no client waits forever.
//!
//! Which runs are orphans: those of no runner (from before runner ids existed), those whose
//! runner's lease ran out, and this process's own runs that are not live in it (at start-up,
//! every run its previous incarnation left behind, since the instance id is stable).
use std::collections::HashSet;

use chrono::Utc;
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

use super::event_log::{self, StoredEvent, EVENT_DONE, EVENT_ERROR};
use super::live::LiveRuns;
use super::ACTIVE_STATUSES;
use crate::agent::protocol::{self, EventContext};
use crate::cluster::bus::{self, Signal};
use entity::runs::RunStatus;
use entity::{apps, runs};

const MESSAGE: &str =
    "The gateway running this run stopped while it was active. Send the message again to retry.";

/// What a sweep asks of this gateway (see [`sweep`]).
#[derive(Debug, Default)]
pub struct SweepActions {
    /// Live here, but their row says another gateway holds them (or they ended): stop.
    pub lost: Vec<String>,
    /// Live here, and a cancel or their app's deletion asks them to stop.
    pub cancel: Vec<String>,
}

/// One pass over the runs: interrupts the orphans (returns how many) and says which of this
/// gateway's live runs must stop. `live` is this gateway's live runs. Leases are renewed and
/// checked by the database's clock on PostgreSQL (see [`db_now`]), so gateways whose clocks
/// disagree never take each other's live runs, and a dead gateway's runs end one lease after
/// its last renewal (at the next sweep). Reads this gateway's active runs once, never by a list
/// of ids that grows with load.
pub async fn sweep(
    db: &DatabaseConnection,
    runner_id: &str,
    live: &LiveRuns,
) -> Result<(usize, SweepActions), DbErr> {
    let mine = |q: sea_orm::Select<runs::Entity>| {
        q.filter(runs::Column::RunnerId.eq(runner_id))
            .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
    };
    let held = mine(runs::Entity::find()).all(db).await?;
    let deleted_apps = Query::select()
        .column(apps::Column::Id)
        .from(apps::Entity)
        .and_where(apps::Column::DeletedAt.is_not_null())
        .to_owned();
    let of_deleted_apps: HashSet<String> = mine(runs::Entity::find())
        .select_only()
        .column(runs::Column::Id)
        .filter(runs::Column::AppId.in_subquery(deleted_apps))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let mut actions = SweepActions::default();
    let mut orphans = Vec::new();
    for run in &held {
        if live.get(&run.id).is_none() {
            orphans.push(run.clone());
        } else if run.cancel_requested_at.is_some() || of_deleted_apps.contains(&run.id) {
            actions.cancel.push(run.id.clone());
        }
    }
    let held_ids: HashSet<&str> = held.iter().map(|r| r.id.as_str()).collect();
    let unheld: Vec<String> = live
        .ids()
        .into_iter()
        .filter(|id| !held_ids.contains(id.as_str()))
        .collect();
    // Usually empty: a run whose row is not committed yet, or one that was taken from us.
    for ids in unheld.chunks(500) {
        let taken: Vec<String> = runs::Entity::find()
            .select_only()
            .column(runs::Column::Id)
            .filter(runs::Column::Id.is_in(ids.iter().map(String::as_str)))
            .filter(
                Condition::any()
                    .add(runs::Column::Status.is_not_in(ACTIVE_STATUSES))
                    .add(runs::Column::RunnerId.ne(runner_id))
                    .add(runs::Column::RunnerId.is_null()),
            )
            .into_tuple()
            .all(db)
            .await?;
        actions.lost.extend(taken);
    }
    orphans.extend(
        runs::Entity::find()
            .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
            .filter(
                Condition::any().add(runs::Column::RunnerId.is_null()).add(
                    Condition::all()
                        .add(runs::Column::RunnerId.ne(runner_id))
                        .add(Expr::col(runs::Column::LeaseExpiresAt).lt(db_now(db))),
                ),
            )
            .all(db)
            .await?,
    );
    let mut interrupted = 0;
    for run in orphans {
        match interrupt(db, &run).await {
            Ok(true) => {
                interrupted += 1;
                tracing::warn!(run_id = %run.id, runner = ?run.runner_id, "interrupted an orphaned run");
            }
            Ok(false) => {}
            // One run's failure does not hold up the others; the next sweep tries again.
            Err(e) => {
                tracing::warn!(run_id = %run.id, error = %e, "could not interrupt an orphaned run")
            }
        }
    }
    Ok((interrupted, actions))
}

const INTERRUPTED_CODE: &str = "run_interrupted";

/// Claims the run by moving it out of the active statuses (false when someone else finished
/// or interrupted it first), then completes its log, all in one transaction.
async fn interrupt(db: &DatabaseConnection, run: &runs::Model) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let claimed = runs::Entity::update_many()
        .col_expr(runs::Column::Status, Expr::value(RunStatus::Interrupted))
        .col_expr(runs::Column::Error, Expr::value(MESSAGE))
        .col_expr(runs::Column::ErrorCode, Expr::value(INTERRUPTED_CODE))
        .col_expr(runs::Column::FinishedAt, Expr::value(Utc::now()))
        .filter(runs::Column::Id.eq(run.id.as_str()))
        .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    let tech_stack = apps::Entity::find_by_id(run.app_id.clone())
        .one(&txn)
        .await?
        .and_then(|a| a.tech_stack);
    let ctx = EventContext {
        app_id: run.app_id.clone(),
        trace_id: run.trace_id.clone(),
        run_id: run.id.clone(),
        tech_stack,
    };
    let mut seq = event_log::unbroken_end(&txn, &run.id).await?;
    // Whatever follows a gap was never released to anyone: the log continues from the gap.
    event_log::discard_from(&txn, &run.id, seq + 1).await?;
    let last_is_done = seq > 0
        && event_log::read_after(&txn, &run.id, seq - 1, 1)
            .await?
            .first()
            .is_some_and(StoredEvent::is_done);
    if !last_is_done {
        // Kept in the history too, so a reload still shows why the run ended.
        crate::apps::append_message(
            &txn,
            crate::apps::NewMessage {
                app_id: &run.app_id,
                run_id: Some(&run.id),
                role: "platform",
                kind: protocol::KIND_RUNTIME_ERROR,
                content: MESSAGE,
                metadata: Some(&crate::notices::error_metadata(INTERRUPTED_CODE)),
            },
        )
        .await?;
        for (event, data) in [
            (
                EVENT_ERROR,
                protocol::error_payload(&ctx, INTERRUPTED_CODE, MESSAGE),
            ),
            (EVENT_DONE, protocol::done_payload(&ctx)),
        ] {
            seq += 1;
            let stored = StoredEvent {
                seq,
                event: event.into(),
                data: data.to_string(),
            };
            event_log::append(&txn, &run.id, &stored).await?;
        }
    }
    runs::Entity::update_many()
        .col_expr(runs::Column::LastSeq, Expr::value(seq))
        .filter(runs::Column::Id.eq(run.id.as_str()))
        .exec(&txn)
        .await?;
    // Its subscribers on every gateway read the end now, and its runner, if it still lives,
    // stops at once.
    let signals = [
        Signal::Logged {
            run_id: run.id.clone(),
            last_seq: seq,
        },
        Signal::LeaseLost {
            run_id: run.id.clone(),
        },
    ];
    bus::publish(&txn, &signals).await?;
    let finished = super::task::run_finished(
        &ctx,
        RunStatus::Interrupted,
        Some(INTERRUPTED_CODE),
        Some(MESSAGE),
    );
    crate::webhooks::enqueue_event(&txn, &run.owner_id, finished).await;
    txn.commit().await?;
    crate::jobs::wake();
    Ok(true)
}

/// Now, by the clock every gateway shares: the database's on PostgreSQL; on SQLite there is
/// one machine, so its clock.
fn db_now(db: &DatabaseConnection) -> sea_orm::sea_query::SimpleExpr {
    match db.get_database_backend() {
        DbBackend::Postgres => Expr::cust("now()"),
        _ => Expr::value(Utc::now()),
    }
}

/// Extends the leases of the runs `runner_id` runs; returns how many.
pub async fn renew_leases(
    db: &DatabaseConnection,
    runner_id: &str,
    lease: chrono::Duration,
) -> Result<u64, DbErr> {
    let expires = match db.get_database_backend() {
        DbBackend::Postgres => Expr::cust_with_values(
            "now() + make_interval(secs => $1)",
            [lease.num_milliseconds() as f64 / 1000.0],
        ),
        _ => Expr::value(Utc::now() + lease),
    };
    let renewed = runs::Entity::update_many()
        .col_expr(runs::Column::LeaseExpiresAt, expires)
        .filter(runs::Column::RunnerId.eq(runner_id))
        .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
        .exec(db)
        .await?;
    Ok(renewed.rows_affected)
}
