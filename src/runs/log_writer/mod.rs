//! Group commit for the event log. Every run hands its events to one writer task, which owns
//! database connections of its own and writes whatever queued up while its previous write was in
//! flight as one statement and one commit (a multi-row `INSERT`, or on PostgreSQL a `COPY` for a
//! large batch: `sql_store`), with a row for each run's consecutive events (`chunks`,
//! `event_log::rows`). Only after that commit does it broadcast
//! the events to the runs' subscribers, so nothing reaches a client before the log has it.
//!
//! Appends are pipelined: a run does not wait for its event to commit before it reads the next
//! one from the agent. Order per run holds because the queue is FIFO and batches commit one
//! after another. There is no waiting window: a lone event is written at once, and batches
//! grow by themselves under load (on SQLite's own thread, helped by a yield of its CPU when
//! events arrive fast: `gather`). The queue is bounded, so a flood of events slows the runs
//! that produce it instead of growing memory.
//!
//! A write that fails is retried as a batch, then chunk by chunk and event by event, so a
//! failure reaches only the runs whose events could not be stored: their `LiveRun` records
//! the failure, the writer drops their later events until the run has taken it, and the run
//! ends with an error (see `task::Emitter`), so neither the log nor a stream ever has a gap.
//!
//! Where the rows go is a [`Store`]: on a SQLite file, a connection of its own on a thread of
//! its own (`sqlite_thread`); on PostgreSQL (and an in-memory SQLite database), a sqlx
//! connection (`sql_store`).
mod batches;
mod checkpointer;
mod chunks;
mod gather;
#[cfg(all(test, target_os = "linux"))]
mod one_cpu;
mod pg_copy;
mod sql_store;
mod sqlite_thread;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{mpsc, oneshot};

use super::event_log::SharedEvent;
use super::live::LiveRun;
use crate::cluster::bus::Peers;
use gather::Gather;
use sql_store::SqlStore;

/// Events per batch at most (and so rows per INSERT, 6 bind values each: far below SQLite's
/// and PostgreSQL's limits).
const MAX_ROWS: usize = 1000;
/// Event data per INSERT at most (a single larger event is written alone), so that a burst of
/// large events does not become one huge statement.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Requests the queue holds before appends wait (the back-pressure point).
const QUEUE: usize = 8192;
/// Attempts at a whole batch before it is split into single rows.
const BATCH_ATTEMPTS: u64 = 3;

#[derive(Clone)]
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

/// Why a batch could not be stored.
#[derive(Debug)]
enum StoreError {
    /// A row is there already (a retry after a commit whose answer was lost).
    Duplicate,
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Duplicate => f.write_str("the event is logged already"),
            Self::Failed(e) => f.write_str(e),
        }
    }
}

/// Where batches are written.
trait Store: Send {
    /// Writes `rows` in one transaction, all or none: a row of the log per chunk of them (see
    /// `chunks`; `rows` come grouped by run).
    fn insert(
        &mut self,
        rows: &[Append],
        peers: &Peers,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the run's events from `seq` on: they followed an event of the run that could
    /// not be stored (see `batches`).
    fn discard_from(
        &mut self,
        run_id: &str,
        seq: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Waits before a retry.
    fn pause(&mut self, duration: Duration) -> impl Future<Output = ()> + Send;

    /// How much of a run's events one row may hold.
    fn row_bound(&self) -> chunks::RowBound;
}

/// The database the writer writes to.
pub enum WriterDb {
    /// sqlx connections of its own, each writing one batch at a time while the others commit
    /// theirs (PostgreSQL; or the shared pool of an in-memory SQLite database, which exists
    /// only inside that pool).
    Connections(Vec<DatabaseConnection>),
    /// A SQLite database file, written by a thread of the writer's own.
    SqliteFile(PathBuf),
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
    /// Starts the writer on `writer_db`; `fallback` writes when the writer is gone (the
    /// runtime shutting down).
    pub fn start(writer_db: WriterDb, fallback: DatabaseConnection) -> Result<Self, DbErr> {
        let (queue, requests) = mpsc::channel(QUEUE);
        let peers = Peers::default();
        match writer_db {
            WriterDb::Connections(connections) => {
                let stores = connections.into_iter().map(SqlStore::new).collect();
                tokio::spawn(batches::write_batches(
                    stores,
                    requests,
                    Gather::as_queued(),
                    peers.clone(),
                ));
            }
            WriterDb::SqliteFile(path) => sqlite_thread::start(&path, requests, peers.clone())?,
        }
        Ok(Self {
            queue,
            peers,
            fallback,
        })
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
            // Boxed: every run task awaits `append`, and a whole store's commit (a `COPY`'s
            // state on PostgreSQL) inside this future made each run's task ≈ 15 KiB larger.
            Box::pin(self.write_without_the_writer(append)).await;
        }
    }

    async fn write_without_the_writer(&self, append: Append) {
        let mut store = SqlStore::new(self.fallback.clone());
        let committed = batches::commit(&mut store, vec![append], &self.peers).await;
        batches::broadcast(&committed);
    }

    /// Returns once every event appended before the call has been written or has failed.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Request::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::event_log::StoredEvent;
    use crate::runs::live::LiveRuns;

    /// Every run task holds this future while an event is queued, so its size is paid per
    /// live run: a store's commit must not be inlined into it (it once added ≈ 15 KiB a run;
    /// unboxed, this test measures 4,920 bytes in a debug build).
    #[test]
    fn appending_an_event_is_a_small_future() {
        let (queue, _requests) = mpsc::channel(1);
        let writer = LogWriter {
            queue,
            peers: Peers::default(),
            fallback: DatabaseConnection::default(),
        };
        let runs = LiveRuns::default();
        let live = runs.insert("run", "app", 16);
        let event = Arc::new(StoredEvent {
            seq: 1,
            event: "message".into(),
            data: "{}".into(),
        });
        let append = writer.append(&live, event);
        let size = std::mem::size_of_val(&append);
        assert!(size <= 512, "{size} bytes");
    }
}
