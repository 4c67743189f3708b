//! Batches written through a sqlx connection: PostgreSQL, and an in-memory SQLite database.
use std::fmt::Write;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

use super::{Append, Store, StoreError};
use crate::cluster::bus::{self, Peers, Signal};
use crate::runs::event_log;

pub(super) struct SqlStore {
    db: DatabaseConnection,
}

impl SqlStore {
    pub(super) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

impl Store for SqlStore {
    async fn insert(&mut self, rows: &[Append], peers: &Peers) -> Result<(), StoreError> {
        insert_rows(&self.db, rows, peers).await.map_err(|e| {
            match crate::db::is_unique_violation(&e) {
                true => StoreError::Duplicate,
                false => StoreError::Failed(e.to_string()),
            }
        })
    }

    async fn pause(&mut self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// One multi-row INSERT; for a single row this is the same statement as `event_log::append`.
/// On PostgreSQL, while other gateways are live, the same statement signals them which runs'
/// logs grew (see `cluster::bus`): the notification is delivered at the commit, never before
/// the rows.
async fn insert_rows(db: &DatabaseConnection, rows: &[Append], peers: &Peers) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let announce = backend == DbBackend::Postgres && peers.present();
    let mut sql = String::with_capacity(event_log::INSERT_PREFIX.len() + rows.len() * 32 + 64);
    if announce {
        sql.push_str("WITH logged AS (");
    }
    sql.push_str(event_log::INSERT_PREFIX);
    let mut values = Vec::with_capacity(rows.len() * 5);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        match backend {
            // Anonymous parameters: sqlx looks up the name of every numbered SQLite parameter,
            // a linear search each, which made a 1,000-row batch cost more than its commit.
            DbBackend::Sqlite => sql.push_str("(?,?,?,?,?)"),
            _ => {
                let n = i * 5;
                let _ = write!(
                    sql,
                    "(${},${},${},${},${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5
                );
            }
        }
        values.push(Value::from(row.live.run_id.as_str()));
        values.push(Value::from(row.event.seq));
        values.push(Value::from(row.event.event.as_str()));
        values.push(Value::from(row.event.data.as_str()));
        values.push(Value::from(row.created_at));
    }
    if announce {
        sql.push_str(") SELECT ");
        for (i, payload) in bus::payloads(&logged_signals(rows)).into_iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let n = values.len();
            let _ = write!(sql, "pg_notify(${}, ${})", n + 1, n + 2);
            values.push(Value::from(bus::CHANNEL));
            values.push(Value::from(payload));
        }
    }
    db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
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
