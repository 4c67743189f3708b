//! Start-up recovery: a run still marked active belongs to a process that died. Its log gets a
//! final `error` and `done`, and it becomes `interrupted`, so no client waits forever.
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use super::event_log::{self, StoredEvent, EVENT_DONE, EVENT_ERROR};
use super::task::finish_run;
use super::ACTIVE_STATUSES;
use crate::agent::protocol::{self, EventContext};
use entity::{apps, runs};

const MESSAGE: &str =
    "The gateway restarted while this run was active. Send the message again to retry.";

pub async fn interrupt_orphaned_runs(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let orphans = runs::Entity::find()
        .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
        .all(db)
        .await?;
    for run in &orphans {
        let tech_stack = apps::Entity::find_by_id(run.app_id.clone())
            .one(db)
            .await?
            .and_then(|a| a.tech_stack);
        let ctx = EventContext {
            app_id: run.app_id.clone(),
            trace_id: run.trace_id.clone(),
            run_id: run.id.clone(),
            tech_stack,
        };
        let mut seq = event_log::last_seq(db, &run.id).await?;
        let last_is_done = seq > 0
            && event_log::read_after(db, &run.id, seq - 1, 1)
                .await?
                .first()
                .is_some_and(StoredEvent::is_done);
        if !last_is_done {
            seq += 1;
            let error = protocol::error_payload(&ctx, "run_interrupted", MESSAGE);
            event_log::append(
                db,
                &run.id,
                &StoredEvent {
                    seq,
                    event: EVENT_ERROR.into(),
                    data: error.to_string(),
                },
            )
            .await?;
            seq += 1;
            let done = protocol::done_payload(&ctx);
            event_log::append(
                db,
                &run.id,
                &StoredEvent {
                    seq,
                    event: EVENT_DONE.into(),
                    data: done.to_string(),
                },
            )
            .await?;
        }
        finish_run(db, &run.id, "interrupted", Some(MESSAGE), seq).await?;
        tracing::warn!(run_id = %run.id, "interrupted a run orphaned by a previous process");
    }
    Ok(orphans.len())
}
