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

/// The highest logged sequence number of a run (0 when empty).
pub async fn last_seq(db: &impl ConnectionTrait, run_id: &str) -> Result<i64, DbErr> {
    let last = run_events::Entity::find()
        .filter(run_events::Column::RunId.eq(run_id))
        .order_by_desc(run_events::Column::Seq)
        .one(db)
        .await?;
    Ok(last.map(|r| r.seq).unwrap_or(0))
}
