//! The per-run event log. Every event a client can see is stored here, with its sequence number,
//! before any subscriber gets it; replays and resumes read from here. A row may hold several
//! consecutive events (see `rows`).
pub mod rows;

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

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
    "INSERT INTO run_events (run_id, seq, event, data, sizes, created_at) VALUES ";

/// Rows read per query: enough for a page of events in a few rows, and a bound on memory when
/// rows are large (a row holds at most `log_writer`'s row bytes, plus one event).
const ROWS_PER_READ: u64 = 64;

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
        sizes: Set(None),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Removes a run's events from `seq` on (events that followed one that could not be stored,
/// or a gap). Whole rows: a row never holds both sides of `seq`, because a row is one batch's
/// events of a run, an event that fails is found row by row (see `log_writer::batches`), and
/// a gap lies between rows.
pub async fn discard_from(db: &impl ConnectionTrait, run_id: &str, seq: i64) -> Result<(), DbErr> {
    run_events::Entity::delete_many()
        .filter(run_events::Column::RunId.eq(run_id))
        .filter(run_events::Column::Seq.gte(seq))
        .exec(db)
        .await?;
    Ok(())
}

/// Events with `seq > after`, in order, at most `limit`; fewer only when the log has no more.
pub async fn read_after(
    db: &impl ConnectionTrait,
    run_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<StoredEvent>, DbErr> {
    // From the row that holds `after + 1`: the last one that starts at or before it.
    let sql = "SELECT seq, event, data, sizes FROM run_events WHERE run_id = $1 AND seq >= \
         COALESCE((SELECT MAX(seq) FROM run_events WHERE run_id = $1 AND seq <= $2), 0) \
         ORDER BY seq LIMIT $3";
    let mut events = Vec::new();
    // Every event up to here is taken (or was not asked for).
    let mut done = after;
    loop {
        let values = vec![run_id.into(), (done + 1).into(), ROWS_PER_READ.into()];
        let page = db
            .query_all_raw(crate::db::statement(db, sql, values))
            .await?;
        let full = page.len() as u64 == ROWS_PER_READ;
        for row in page {
            let seq: i64 = row.try_get("", "seq")?;
            let sizes: Option<String> = row.try_get("", "sizes")?;
            let end = seq + run_events::event_count(sizes.as_deref()) - 1;
            if end <= done {
                continue;
            }
            let event: String = row.try_get("", "event")?;
            let decoded = rows::decode(seq, &event, row.try_get("", "data")?, sizes.as_deref())
                .map_err(|e| DbErr::Custom(e.to_string()))?;
            events.extend(decoded.into_iter().filter(|e| e.seq > done));
            done = end;
            if events.len() as u64 >= limit {
                events.truncate(limit as usize);
                return Ok(events);
            }
        }
        if !full {
            return Ok(events);
        }
    }
}

/// The last sequence number of a run's log before its first gap (0 when it has no event 1).
/// A run that ended normally has no gap. One whose gateway died while two writer batches
/// overlapped can have events after a gap: nobody saw those (batches are released in order).
pub async fn unbroken_end(db: &impl ConnectionTrait, run_id: &str) -> Result<i64, DbErr> {
    let sql = "SELECT seq, sizes FROM run_events WHERE run_id = $1 ORDER BY seq";
    let logged = db
        .query_all_raw(crate::db::statement(db, sql, vec![run_id.into()]))
        .await?;
    let mut next = 1;
    for row in logged {
        let seq: i64 = row.try_get("", "seq")?;
        if seq != next {
            break;
        }
        let sizes: Option<String> = row.try_get("", "sizes")?;
        next = seq + run_events::event_count(sizes.as_deref());
    }
    Ok(next - 1)
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveModelTrait, DatabaseConnection};

    use super::*;

    /// Logs events `seqs` of run "r" as rows of `per_row` (a row never spans a gap in `seqs`).
    async fn log(db: &DatabaseConnection, seqs: &[i64], per_row: usize) {
        let events: Vec<StoredEvent> = (seqs.iter())
            .map(|&seq| StoredEvent {
                seq,
                event: EVENT_MESSAGE.into(),
                data: format!(r#"{{"n":{seq}}}"#),
            })
            .collect();
        let refs: Vec<&StoredEvent> = events.iter().collect();
        for run in refs.chunk_by(|a, b| b.seq == a.seq + 1) {
            for group in run.chunks(per_row) {
                let row = rows::encode(group);
                run_events::ActiveModel {
                    run_id: Set("r".into()),
                    seq: Set(row.seq),
                    event: Set(row.event.to_string()),
                    data: Set(row.data.into_owned()),
                    sizes: Set(row.sizes),
                    created_at: Set(Utc::now()),
                }
                .insert(db)
                .await
                .expect("insert");
            }
        }
    }

    async fn database() -> DatabaseConnection {
        crate::db::connect("sqlite::memory:", 1)
            .await
            .expect("database")
    }

    async fn seqs_after(db: &DatabaseConnection, after: i64, limit: u64) -> Vec<i64> {
        let events = read_after(db, "r", after, limit).await.expect("read");
        for event in &events {
            assert_eq!(event.data, format!(r#"{{"n":{}}}"#, event.seq));
        }
        events.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn reads_go_on_past_a_gap_between_rows_without_repeating_an_event() {
        let db = database().await;
        // Rows of five; 321..=323 are missing (a later batch committed before an earlier
        // one), right after the first read's 64 rows, so the second read starts in the gap.
        let seqs: Vec<i64> = (1..=320).chain(324..=700).collect();
        log(&db, &seqs, 5).await;
        let all = seqs_after(&db, 0, 10_000).await;
        assert_eq!(
            all, seqs,
            "every event once, across several reads of 64 rows"
        );
        assert_eq!(seqs_after(&db, 318, 4).await, [319, 320, 324, 325]);
        assert_eq!(seqs_after(&db, 320, 2).await, [324, 325]);
        assert_eq!(seqs_after(&db, 322, 2).await, [324, 325]);
        assert_eq!(seqs_after(&db, 3, 500).await.len(), 500);
        assert_eq!(seqs_after(&db, 700, 10).await, Vec::<i64>::new());
        assert_eq!(unbroken_end(&db, "r").await.expect("end"), 320);
    }

    #[tokio::test]
    async fn the_unbroken_end_counts_the_events_of_every_row() {
        let db = database().await;
        assert_eq!(unbroken_end(&db, "r").await.expect("end"), 0);
        log(&db, &(2..=9).collect::<Vec<_>>(), 4).await;
        assert_eq!(unbroken_end(&db, "r").await.expect("end"), 0, "no event 1");
        log(&db, &[1], 1).await;
        assert_eq!(unbroken_end(&db, "r").await.expect("end"), 9);
        discard_from(&db, "r", 6).await.expect("discard");
        assert_eq!(unbroken_end(&db, "r").await.expect("end"), 5);
    }

    #[tokio::test]
    async fn a_malformed_row_is_an_error_for_the_reader() {
        let db = database().await;
        log(&db, &[1, 2, 3], 3).await;
        run_events::Entity::update_many()
            .col_expr(run_events::Column::Sizes, "7,99".into())
            .exec(&db)
            .await
            .expect("damage");
        let read = read_after(&db, "r", 0, 10).await;
        assert!(
            read.as_ref()
                .is_err_and(|e| e.to_string().contains("malformed")),
            "{read:?}"
        );
    }
}
