//! The `deployment_logs` table: append numbered lines, keep the newest `bound` of them (plus one
//! note on how many were dropped), read them back after a `seq`.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use entity::deployment_logs::{self as logs, LogStream};
use entity::deployments;

/// Seq of the note on dropped lines; real lines count from 1.
pub const NOTE_SEQ: i64 = 0;

/// A line to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub at: DateTime<Utc>,
    pub stream: LogStream,
    pub text: String,
}

impl NewLine {
    pub fn now(stream: LogStream, text: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            stream,
            text: text.into(),
        }
    }
}

/// Appends `lines` to the deployment's log and returns the seq of the last one (0 when the
/// deployment does not exist). The numbers come from the deployment row, whose update holds
/// its lock until the caller's transaction commits: lines commit in seq order.
pub async fn append(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    lines: Vec<NewLine>,
) -> Result<i64, DbErr> {
    if lines.is_empty() {
        return Ok(0);
    }
    let count = lines.len() as i64;
    let updated = deployments::Entity::update_many()
        .col_expr(
            deployments::Column::LogSeq,
            Expr::col(deployments::Column::LogSeq).add(count),
        )
        .filter(deployments::Column::Id.eq(deployment_id))
        .exec_with_returning(db)
        .await?;
    let Some(last) = updated.first().map(|d| d.log_seq) else {
        return Ok(0);
    };
    let first = last - count + 1;
    let rows = lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| logs::ActiveModel {
            deployment_id: Set(deployment_id.to_string()),
            seq: Set(first + i as i64),
            at: Set(line.at),
            stream: Set(line.stream),
            text: Set(line.text),
        });
    logs::Entity::insert_many(rows).exec(db).await?;
    Ok(last)
}

/// Drops the oldest lines past `bound` and keeps the note on how many are gone, given that
/// `last` is the deployment's latest seq. Seqs have no holes, so the count is exact whoever
/// dropped what before.
pub async fn trim(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    last: i64,
    bound: usize,
) -> Result<(), DbErr> {
    let dropped = last - bound as i64;
    if dropped <= 0 {
        return Ok(());
    }
    logs::Entity::delete_many()
        .filter(logs::Column::DeploymentId.eq(deployment_id))
        .filter(logs::Column::Seq.between(NOTE_SEQ + 1, dropped))
        .exec(db)
        .await?;
    let note = logs::ActiveModel {
        deployment_id: Set(deployment_id.to_string()),
        seq: Set(NOTE_SEQ),
        at: Set(Utc::now()),
        stream: Set(LogStream::Note),
        text: Set(format!(
            "{dropped} earlier lines dropped (the log keeps the last {bound})"
        )),
    };
    logs::Entity::insert(note)
        .on_conflict(
            OnConflict::columns([logs::Column::DeploymentId, logs::Column::Seq])
                .update_columns([logs::Column::At, logs::Column::Text])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Up to `limit` lines with a seq above `after`, oldest first (the note is seq 0: pass -1 to
/// include it).
pub async fn after(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<logs::Model>, DbErr> {
    logs::Entity::find()
        .filter(logs::Column::DeploymentId.eq(deployment_id))
        .filter(logs::Column::Seq.gt(after))
        .order_by_asc(logs::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// The texts already stored on `stream`, so a provider's repeated messages are written once.
pub async fn texts_on(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    stream: LogStream,
) -> Result<Vec<String>, DbErr> {
    logs::Entity::find()
        .select_only()
        .column(logs::Column::Text)
        .filter(logs::Column::DeploymentId.eq(deployment_id))
        .filter(logs::Column::Stream.eq(stream))
        .into_tuple()
        .all(db)
        .await
}

/// The seq of the latest status line: a failed deployment's reason.
pub async fn last_status_line(
    db: &impl ConnectionTrait,
    deployment_id: &str,
) -> Result<Option<i64>, DbErr> {
    logs::Entity::find()
        .select_only()
        .column(logs::Column::Seq)
        .filter(logs::Column::DeploymentId.eq(deployment_id))
        .filter(logs::Column::Stream.eq(LogStream::Status))
        .order_by_desc(logs::Column::Seq)
        .into_tuple()
        .one(db)
        .await
}
