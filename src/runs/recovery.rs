//! Orphaned runs: a run still marked active that no live gateway process is running (its process
//! died, or this process could not record its end). Its log gets a final `error` and `done`, and
//! it becomes `interrupted`, so no client waits forever.
//!
//! Which runs are orphans: those of no runner (from before runner ids existed), those whose
//! runner's lease ran out, and this process's own runs that are not live in it (at start-up,
//! every run its previous incarnation left behind, since the instance id is stable).
use chrono::Utc;
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, TransactionTrait};

use super::event_log::{self, StoredEvent, EVENT_DONE, EVENT_ERROR};
use super::live::LiveRuns;
use super::ACTIVE_STATUSES;
use crate::agent::protocol::{self, EventContext};
use entity::{apps, runs};

const MESSAGE: &str =
    "The gateway running this run stopped while it was active. Send the message again to retry.";

/// Interrupts every orphaned run; returns how many. `runner_id` is this process. A lease counts
/// as expired only `lease` after its stamp ran out, which absorbs clock drift between gateways
/// up to that much.
pub async fn interrupt_orphaned_runs(
    db: &DatabaseConnection,
    runner_id: &str,
    lease: chrono::Duration,
    live: &LiveRuns,
) -> Result<usize, DbErr> {
    let now = Utc::now();
    let candidates = runs::Entity::find()
        .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
        .filter(
            Condition::any()
                .add(runs::Column::RunnerId.is_null())
                .add(runs::Column::RunnerId.eq(runner_id))
                .add(runs::Column::LeaseExpiresAt.lt(now - lease)),
        )
        .all(db)
        .await?;
    let mut interrupted = 0;
    for run in candidates {
        let mine = run.runner_id.as_deref() == Some(runner_id);
        if mine && live.get(&run.id).is_some() {
            continue;
        }
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
    Ok(interrupted)
}

/// Claims the run by moving it out of the active statuses (false when someone else finished
/// or interrupted it first), then completes its log, all in one transaction.
async fn interrupt(db: &DatabaseConnection, run: &runs::Model) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let claimed = runs::Entity::update_many()
        .col_expr(runs::Column::Status, Expr::value("interrupted"))
        .col_expr(runs::Column::Error, Expr::value(MESSAGE))
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
    let mut seq = event_log::last_seq(&txn, &run.id).await?;
    let last_is_done = seq > 0
        && event_log::read_after(&txn, &run.id, seq - 1, 1)
            .await?
            .first()
            .is_some_and(StoredEvent::is_done);
    if !last_is_done {
        for (event, data) in [
            (
                EVENT_ERROR,
                protocol::error_payload(&ctx, "run_interrupted", MESSAGE),
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
    txn.commit().await?;
    Ok(true)
}

/// Extends the leases of the runs `runner_id` runs; returns how many.
pub async fn renew_leases(
    db: &DatabaseConnection,
    runner_id: &str,
    lease: chrono::Duration,
) -> Result<u64, DbErr> {
    let renewed = runs::Entity::update_many()
        .col_expr(
            runs::Column::LeaseExpiresAt,
            Expr::value(Utc::now() + lease),
        )
        .filter(runs::Column::RunnerId.eq(runner_id))
        .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
        .exec(db)
        .await?;
    Ok(renewed.rows_affected)
}
