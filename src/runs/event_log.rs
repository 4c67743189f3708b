//! The per-run event log. Every event a client can see is stored here, with its sequence number,
//! before any subscriber gets it; replays and resumes read from here.
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use entity::run_events;

pub const EVENT_MESSAGE: &str = "message";
pub const EVENT_ERROR: &str = "error";
pub const EVENT_DONE: &str = "done";

/// One logged event, shared between the live fan-out and subscribers without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: String,
    pub data: String,
}

impl StoredEvent {
    pub fn is_done(&self) -> bool {
        self.event == EVENT_DONE
    }
}

pub type SharedEvent = Arc<StoredEvent>;

/// The start of the group writer's multi-row INSERT (see `log_writer`); rows follow.
pub const INSERT_PREFIX: &str =
    "INSERT INTO run_events (run_id, seq, event, data, created_at) VALUES ";

pub async fn append(
    db: &impl ConnectionTrait,
    run_id: &str,
    event: &StoredEvent,
) -> Result<(), DbErr> {
    run_events::Entity::insert(run_events::ActiveModel {
        run_id: Set(run_id.to_string()),
        seq: Set(event.seq),
        event: Set(event.event.clone()),
        data: Set(event.data.clone()),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Removes a run's events from `seq` on (events that followed one that could not be stored).
pub async fn discard_from(db: &impl ConnectionTrait, run_id: &str, seq: i64) -> Result<(), DbErr> {
    run_events::Entity::delete_many()
        .filter(run_events::Column::RunId.eq(run_id))
        .filter(run_events::Column::Seq.gte(seq))
        .exec(db)
        .await?;
    Ok(())
}

/// Events with `seq > after`, in order, at most `limit`.
pub async fn read_after(
    db: &impl ConnectionTrait,
    run_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<StoredEvent>, DbErr> {
    let rows = run_events::Entity::find()
        .filter(run_events::Column::RunId.eq(run_id))
        .filter(run_events::Column::Seq.gt(after))
        .order_by_asc(run_events::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredEvent {
            seq: r.seq,
            event: r.event,
            data: r.data,
        })
        .collect())
}

/// The last sequence number of a run's log before its first gap (0 when it has no event 1).
/// A run that ended normally has no gap. One whose gateway died while two writer batches
/// overlapped can have events after a gap: nobody saw those (batches are released in order).
pub async fn unbroken_end(db: &impl ConnectionTrait, run_id: &str) -> Result<i64, DbErr> {
    let sql = "SELECT CASE WHEN EXISTS (SELECT 1 FROM run_events WHERE run_id = $1 AND seq = 1) \
         THEN (SELECT MIN(e.seq) FROM run_events e WHERE e.run_id = $1 AND NOT EXISTS \
           (SELECT 1 FROM run_events n WHERE n.run_id = e.run_id AND n.seq = e.seq + 1)) \
         ELSE 0 END AS unbroken";
    let row = db
        .query_one_raw(crate::db::statement(db, sql, vec![run_id.into()]))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<Option<i64>>("", "unbroken")?.unwrap_or(0),
        None => 0,
    })
}
