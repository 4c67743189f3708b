//! Batches written through a sqlx connection: PostgreSQL, and an in-memory SQLite database.
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, PgConnection, Postgres};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

use super::chunks::{self, RowBound};
use super::{pg_copy, Append, Store, StoreError};
use crate::cluster::bus::{self, Peers, Signal};
use crate::runs::event_log;

pub(super) struct SqlStore {
    db: DatabaseConnection,
    /// On PostgreSQL, the connection kept checked out between batches. sqlx pings the server
    /// on every checkout and every return to the pool: two round trips a batch, more than the
    /// batch's own. After a failed write it goes back to the pool (which replaces a broken
    /// connection) and the next batch checks one out afresh.
    held: Option<PoolConnection<Postgres>>,
}

impl SqlStore {
    pub(super) fn new(db: DatabaseConnection) -> Self {
        Self { db, held: None }
    }

    async fn postgres_connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let connection = match self.held.take() {
            Some(held) => held,
            None => self.db.get_postgres_connection_pool().acquire().await?,
        };
        Ok(&mut **self.held.insert(connection))
    }
}

impl Store for SqlStore {
    async fn insert(&mut self, rows: &[Append], peers: &Peers) -> Result<(), StoreError> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            let bound = self.row_bound();
            let inserted = match self.postgres_connection().await {
                Ok(connection) if peers.present() || rows.len() < COPY_FROM_EVENTS => {
                    insert_unnest(connection, rows, bound, peers).await
                }
                Ok(connection) => insert_copy(connection, rows, bound).await,
                Err(e) => Err(e),
            };
            if inserted.is_err() {
                self.held = None;
            }
            return inserted.map_err(|e| {
                match e
                    .as_database_error()
                    .is_some_and(|e| e.is_unique_violation())
                {
                    true => StoreError::Duplicate,
                    false => StoreError::Failed(e.to_string()),
                }
            });
        }
        insert_values(&self.db, rows, self.row_bound())
            .await
            .map_err(|e| match crate::db::is_unique_violation(&e) {
                true => StoreError::Duplicate,
                false => StoreError::Failed(e.to_string()),
            })
    }

    async fn discard_from(&mut self, run_id: &str, seq: i64) -> Result<(), StoreError> {
        // The writer's pool has one connection: the held one must go back for this.
        self.held = None;
        event_log::discard_from(&self.db, run_id, seq)
            .await
            .map_err(|e| StoreError::Failed(e.to_string()))
    }

    async fn pause(&mut self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn row_bound(&self) -> RowBound {
        match self.db.get_database_backend() {
            DbBackend::Postgres => RowBound::POSTGRES,
            _ => RowBound::SQLITE,
        }
    }
}

/// Batches of fewer events are one `INSERT ... UNNEST` statement, larger ones a `COPY`. The
/// statement is one message each way; a `COPY` is three messages (the statement, the data, its
/// end) and two round trips, each waking the server, which is most of a small batch's commit
/// (BENCHMARKS.md, round 2, sixth part). For a large batch the server's work on the rows
/// dominates, and `COPY` does less of it (see `pg_copy`).
const COPY_FROM_EVENTS: usize = 64;

/// One statement that inserts the rows and, while other gateways are live, signals them which
/// runs' logs grew (see `cluster::bus`; with no payloads it signals nothing): the notification
/// is delivered at the commit, never before the rows. Its text never changes, so PostgreSQL
/// parses and plans it once per connection: the rows go as six arrays.
const INSERT_UNNEST: &str = "WITH logged AS (\
     INSERT INTO run_events (run_id, seq, event, data, sizes, created_at) \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
       $6::timestamptz[])) \
     SELECT pg_notify($7, payload) FROM UNNEST($8::text[]) AS payload";

async fn insert_unnest(
    connection: &mut PgConnection,
    rows: &[Append],
    bound: RowBound,
    peers: &Peers,
) -> Result<(), sqlx::Error> {
    let chunks: Vec<&[Append]> = chunks::chunks(rows, bound).collect();
    let encoded: Vec<_> = chunks.iter().map(|c| chunks::encode(c)).collect();
    let run_ids: Vec<&str> = chunks.iter().map(|c| c[0].live.run_id.as_str()).collect();
    let seqs: Vec<i64> = encoded.iter().map(|r| r.seq).collect();
    let events: Vec<&str> = encoded.iter().map(|r| r.event).collect();
    let data: Vec<&str> = encoded.iter().map(|r| &*r.data).collect();
    let sizes: Vec<Option<&str>> = encoded.iter().map(|r| r.sizes.as_deref()).collect();
    let created: Vec<DateTime<Utc>> = chunks.iter().map(|c| c[0].created_at).collect();
    let signals = match peers.present() {
        true => bus::payloads(&logged_signals(rows)),
        false => Vec::new(),
    };
    sqlx::query(INSERT_UNNEST)
        .bind(run_ids)
        .bind(seqs)
        .bind(events)
        .bind(data)
        .bind(sizes)
        .bind(created)
        .bind(bus::CHANNEL)
        .bind(signals)
        .execute(connection)
        .await?;
    Ok(())
}

/// The batch as one `COPY ... FROM STDIN` (see `pg_copy`): one transaction, all or none.
async fn insert_copy(
    connection: &mut PgConnection,
    rows: &[Append],
    bound: RowBound,
) -> Result<(), sqlx::Error> {
    let data = pg_copy::encode(rows, bound).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let mut copy = connection.copy_in_raw(pg_copy::COPY_IN).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// One multi-row INSERT (an in-memory SQLite database).
async fn insert_values(
    db: &DatabaseConnection,
    rows: &[Append],
    bound: RowBound,
) -> Result<(), DbErr> {
    let mut sql = String::with_capacity(event_log::INSERT_PREFIX.len() + rows.len() * 12);
    sql.push_str(event_log::INSERT_PREFIX);
    let mut values = Vec::with_capacity(rows.len() * 6);
    for (i, chunk) in chunks::chunks(rows, bound).enumerate() {
        if i > 0 {
            sql.push(',');
        }
        // Anonymous parameters: sqlx looks up the name of every numbered SQLite parameter, a
        // linear search each, which made a 1,000-row batch cost more than its commit.
        sql.push_str("(?,?,?,?,?,?)");
        let row = chunks::encode(chunk);
        values.push(Value::from(chunk[0].live.run_id.as_str()));
        values.push(Value::from(row.seq));
        values.push(Value::from(row.event));
        values.push(Value::from(row.data.into_owned()));
        values.push(Value::from(row.sizes));
        values.push(Value::from(chunk[0].created_at));
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// Each run's last seq in the batch.
fn logged_signals(rows: &[Append]) -> Vec<Signal> {
    let mut last: Vec<(&str, i64)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for row in rows {
        let run_id = row.live.run_id.as_str();
        match index.get(run_id) {
            Some(&i) => last[i].1 = row.event.seq,
            None => {
                index.insert(run_id, last.len());
                last.push((run_id, row.event.seq));
            }
        }
    }
    (last.into_iter())
        .map(|(run_id, last_seq)| Signal::Logged {
            run_id: run_id.to_string(),
            last_seq,
        })
        .collect()
}
