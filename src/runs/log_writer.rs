//! Group commit for the event log. Every run hands its events to one writer task, which owns a
//! database connection of its own and writes whatever queued up while its previous write was in
//! flight as one multi-row INSERT (one statement, one commit). Only after that commit does it
//! broadcast the events to the runs' subscribers, so nothing reaches a client before the log
//! has it.
//!
//! Appends are pipelined: a run does not wait for its event to commit before it reads the next
//! one from the agent. Order per run holds because the queue is FIFO and batches commit one
//! after another. There is no waiting window: a lone event is written at once, and batches
//! grow by themselves under load. The queue is bounded, so a flood of events slows the runs
//! that produce it instead of growing memory.
//!
//! A write that fails is retried as a batch, then row by row, so a failure reaches only the
//! runs whose events could not be stored: their `LiveRun` records the failure, the writer drops
//! their later events until the run has taken it, and the run ends with an error (see
//! `task::Emitter`), so neither the log nor a stream ever has a gap.
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use tokio::sync::{mpsc, oneshot};

use super::event_log::{self, SharedEvent};
use super::live::LiveRun;
use crate::cluster::bus::{self, Peers, Signal};

/// Rows per INSERT at most: 5 bind values each, far below SQLite's and PostgreSQL's limits.
const MAX_ROWS: usize = 1000;
/// Event data per INSERT at most (a single larger event is written alone), so that a burst of
/// large events does not become one huge statement.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Requests the queue holds before appends wait (the back-pressure point).
const QUEUE: usize = 8192;
/// Attempts at a whole batch before it is split into single rows.
const BATCH_ATTEMPTS: u64 = 3;

struct Append {
    live: Arc<LiveRun>,
    event: SharedEvent,
    created_at: DateTime<Utc>,
    /// When the run handed the event over; the relay latency metric ends at the broadcast.
    arrived: Instant,
}

enum Request {
    Append(Append),
    /// Answered once everything queued before it has been written (or has failed).
    Flush(oneshot::Sender<()>),
}

/// A handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    queue: mpsc::Sender<Request>,
    peers: Peers,
    /// Used when the writer task is gone (the runtime is shutting down).
    fallback: DatabaseConnection,
}

impl LogWriter {
    /// Starts the writer task on `writer_db`, which should be a connection of its own so that
    /// batches never queue behind request handlers for a pooled connection.
    pub fn start(writer_db: DatabaseConnection, fallback: DatabaseConnection) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE);
        let peers = Peers::default();
        tokio::spawn(write_batches(writer_db, requests, peers.clone()));
        Self {
            queue,
            peers,
            fallback,
        }
    }

    /// Whether other gateways are live, so that batches are announced to them.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Queues `event` for the run's log. It is broadcast to the run's subscribers once it has
    /// committed; a failure is recorded on `live` (see [`LiveRun::record_log_failure`]).
    pub async fn append(&self, live: &Arc<LiveRun>, event: SharedEvent) {
        let append = Append {
            live: live.clone(),
            event,
            created_at: Utc::now(),
            arrived: Instant::now(),
        };
        if let Err(mpsc::error::SendError(Request::Append(append))) =
            self.queue.send(Request::Append(append)).await
        {
            let mut one = [append];
            write_rows_one_by_one(&self.fallback, &mut one, &self.peers).await;
        }
    }

    /// Returns once every event appended before the call has been written or has failed.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Request::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

async fn write_batches(
    db: DatabaseConnection,
    mut requests: mpsc::Receiver<Request>,
    peers: Peers,
) {
    let mut received = Vec::with_capacity(MAX_ROWS);
    let mut batch = Vec::with_capacity(MAX_ROWS);
    let mut batch_bytes = 0;
    let mut flushes = Vec::new();
    while requests.recv_many(&mut received, MAX_ROWS).await > 0 {
        for request in received.drain(..) {
            match request {
                // Queued behind an event that failed: storing it would leave a gap.
                Request::Append(append) if append.live.log_failed() => {}
                Request::Append(append) => {
                    let size = append.event.data.len();
                    if batch_bytes + size > MAX_BATCH_BYTES {
                        write(&db, &mut batch, &peers).await;
                        batch_bytes = 0;
                    }
                    batch_bytes += size;
                    batch.push(append);
                }
                Request::Flush(done) => flushes.push(done),
            }
        }
        write(&db, &mut batch, &peers).await;
        batch_bytes = 0;
        // Everything queued before these flushes was in this or an earlier batch.
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes `batch` (emptying it) and broadcasts what committed.
async fn write(db: &DatabaseConnection, batch: &mut Vec<Append>, peers: &Peers) {
    if batch.is_empty() {
        return;
    }
    let mut result = Ok(());
    for attempt in 0..BATCH_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        let started = Instant::now();
        result = insert_rows(db, batch, peers).await;
        tracing::debug!(
            rows = batch.len(),
            micros = started.elapsed().as_micros() as u64,
            "event log batch"
        );
        match &result {
            Ok(()) => break,
            // A retry after a commit whose answer was lost: the rows are there already; row by
            // row below tells which.
            Err(e) if attempt > 0 && crate::db::is_unique_violation(e) => break,
            Err(e) => {
                tracing::warn!(error = %e, rows = batch.len(), attempt, "event log write failed")
            }
        }
    }
    match result {
        Ok(()) => batch.drain(..).for_each(broadcast),
        // Row by row, so that only the runs whose rows fail hear about it.
        Err(_) => write_rows_one_by_one(db, batch, peers).await,
    }
    batch.clear();
}

async fn write_rows_one_by_one(db: &DatabaseConnection, rows: &mut [Append], peers: &Peers) {
    for row in rows.iter() {
        if row.live.log_failed() {
            continue;
        }
        match insert_rows(db, std::slice::from_ref(row), peers).await {
            Ok(()) => broadcast_ref(row),
            Err(e) if crate::db::is_unique_violation(&e) => broadcast_ref(row),
            Err(e) => {
                tracing::error!(error = %e, run_id = %row.live.run_id, seq = row.event.seq, "could not log an event");
                row.live.record_log_failure(row.event.seq, e.to_string());
            }
        }
    }
}

fn broadcast(append: Append) {
    broadcast_ref(&append);
}

fn broadcast_ref(append: &Append) {
    // No receivers is fine: the event is in the log for whoever comes later.
    let _ = append.live.sender.send(append.event.clone());
    let metrics = crate::metrics::metrics();
    metrics.events_relayed.inc();
    metrics
        .relay_latency
        .observe(append.arrived.elapsed().as_secs_f64());
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
