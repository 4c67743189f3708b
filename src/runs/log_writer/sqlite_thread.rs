//! The event log on a SQLite file: one connection of the writer's own, on a thread of its own,
//! writing each batch through one prepared statement in one transaction.
//!
//! Why not sqlx here: sqlx runs every SQLite statement on its worker thread and hands each one
//! over through a channel, and it prepares a multi-row INSERT anew for every batch size; that
//! hand-off and parsing cost more than the write itself. Here the whole batching loop runs on
//! the thread that owns the connection, so a batch costs one transaction and no hand-offs.
//!
//! The writer also decides when the WAL is checkpointed: automatic checkpoints are off on its
//! connection (one would run inside a commit, stalling every run's events behind it), and it
//! checkpoints when its queue runs empty. Waiting for another connection's write lock (a run
//! start) polls in microseconds instead of SQLite's default back-off of whole milliseconds.
use std::path::Path;
use std::time::Duration;

use chrono::SecondsFormat;
use rusqlite::{params, Connection, ErrorCode, OpenFlags};
use sea_orm::DbErr;
use tokio::sync::mpsc;

use super::{batches, Append, Request, Store, StoreError};
use crate::cluster::bus::Peers;

/// Commits between checkpoints when the queue runs empty now and then.
const CHECKPOINT_AFTER_COMMITS: u64 = 256;
/// Commits after which a checkpoint runs between two batches even if the queue never empties,
/// so that the WAL stays bounded under a constant flood.
const CHECKPOINT_AT_THE_LATEST: u64 = 4096;

const INSERT_ONE: &str = "INSERT INTO run_events (run_id, seq, event, data, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// Opens the database at `path` and starts the writer thread on it.
pub(super) fn start(
    path: &Path,
    requests: mpsc::Receiver<Request>,
    peers: Peers,
) -> Result<(), DbErr> {
    let store = SqliteStore::open(path)
        .map_err(|e| DbErr::Custom(format!("could not open the event log writer: {e}")))?;
    std::thread::Builder::new()
        .name("event-log-writer".into())
        .spawn(move || {
            futures::executor::block_on(batches::write_batches(vec![store], requests, peers))
        })
        .map_err(|e| DbErr::Custom(format!("could not start the event log writer: {e}")))?;
    Ok(())
}

struct SqliteStore {
    conn: Connection,
    commits_since_checkpoint: u64,
}

impl SqliteStore {
    fn open(path: &Path) -> rusqlite::Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        // The pool set WAL mode on the file already; the rest is per connection.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.busy_handler(Some(wait_for_lock))?;
        Ok(Self {
            conn,
            commits_since_checkpoint: 0,
        })
    }

    fn write(&mut self, rows: &[Append]) -> rusqlite::Result<()> {
        if self.commits_since_checkpoint >= CHECKPOINT_AT_THE_LATEST {
            self.checkpoint();
        }
        // BEGIN and COMMIT as cached statements: `Connection::transaction` parses both anew for
        // every batch, which cost as much as a row's insert.
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let written = (|| {
            let mut insert = self.conn.prepare_cached(INSERT_ONE)?;
            for row in rows {
                // The text sqlx writes for a `DateTime<Utc>`, so every reader decodes it alike.
                let created_at = row.created_at.to_rfc3339_opts(SecondsFormat::AutoSi, false);
                insert.execute(params![
                    row.live.run_id,
                    row.event.seq,
                    row.event.event,
                    row.event.data,
                    created_at
                ])?;
            }
            self.conn.prepare_cached("COMMIT")?.execute([]).map(drop)
        })();
        if written.is_err() && !self.conn.is_autocommit() {
            // All or none: what the batch wrote is undone.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        written?;
        self.commits_since_checkpoint += 1;
        Ok(())
    }

    /// Copies the WAL into the database without waiting for readers; once it is all copied,
    /// the next write starts the WAL over.
    fn checkpoint(&mut self) {
        self.commits_since_checkpoint = 0;
        let result = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
            });
        match result {
            Ok((frames, copied)) => tracing::debug!(frames, copied, "event log checkpoint"),
            Err(e) => tracing::warn!(error = %e, "event log checkpoint failed"),
        }
    }
}

impl Store for SqliteStore {
    async fn insert(&mut self, rows: &[Append], _peers: &Peers) -> Result<(), StoreError> {
        self.write(rows).map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) if is_unique(&e) => StoreError::Duplicate,
            _ => StoreError::Failed(e.to_string()),
        })
    }

    async fn discard_from(&mut self, run_id: &str, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM run_events WHERE run_id = ?1 AND seq >= ?2",
                params![run_id, seq],
            )
            .map(drop)
            .map_err(|e| StoreError::Failed(e.to_string()))
    }

    async fn pause(&mut self, duration: Duration) {
        // This thread does nothing else.
        std::thread::sleep(duration);
    }

    async fn idle(&mut self) {
        if self.commits_since_checkpoint >= CHECKPOINT_AFTER_COMMITS {
            self.checkpoint();
        }
    }
}

fn is_unique(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        ),
        _ => false,
    }
}

/// SQLite's busy handler: true to try again. Another connection holds the write lock for
/// about a transaction (a run start: well under a millisecond), so poll often at first, then
/// back off; give up after about ten seconds, as the pool's connections do.
fn wait_for_lock(attempts: i32) -> bool {
    let pause = match attempts {
        0..50 => Duration::from_micros(20),
        50..200 => Duration::from_micros(200),
        200..5_200 => Duration::from_millis(2),
        _ => return false,
    };
    std::thread::sleep(pause);
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::runs::event_log::StoredEvent;
    use crate::runs::live::LiveRuns;

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE run_events (run_id varchar(36) NOT NULL, seq bigint NOT NULL,
               event varchar(32) NOT NULL, data text NOT NULL,
               created_at timestamp_with_timezone_text NOT NULL, PRIMARY KEY (run_id, seq));",
        )
        .expect("schema");
        (dir, path)
    }

    fn rows(runs: &LiveRuns, run_id: &str, seqs: std::ops::RangeInclusive<i64>) -> Vec<Append> {
        let live = runs.insert(run_id, "app", 16);
        seqs.map(|seq| Append {
            live: live.clone(),
            event: Arc::new(StoredEvent {
                seq,
                event: "message".into(),
                data: format!("{{\"n\":{seq}}}"),
            }),
            created_at: chrono::Utc::now(),
            arrived: std::time::Instant::now(),
        })
        .collect()
    }

    #[test]
    fn a_batch_waits_for_another_connections_write_lock_then_commits() {
        let (_dir, path) = database();
        let mut store = SqliteStore::open(&path).expect("open");
        let holder = Connection::open(&path).expect("open");
        holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            holder.execute_batch("COMMIT").expect("commit");
        });
        let runs = LiveRuns::default();
        let batch = rows(&runs, "r1", 1..=3);
        let started = Instant::now();
        let written = futures::executor::block_on(store.insert(&batch, &Peers::default()));
        assert!(written.is_ok(), "{written:?}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(45), "{waited:?}");
        assert!(waited < Duration::from_millis(500), "{waited:?}");
        release.join().expect("holder");

        let conn = Connection::open(&path).expect("open");
        let (count, created_at): (i64, String) = conn
            .query_row(
                "SELECT count(*), max(created_at) FROM run_events WHERE run_id = 'r1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("count");
        assert_eq!(count, 3);
        assert!(
            chrono::DateTime::parse_from_rfc3339(&created_at).is_ok(),
            "{created_at}"
        );
    }

    #[test]
    fn a_batch_with_a_row_logged_already_is_a_duplicate_and_writes_nothing() {
        let (_dir, path) = database();
        let mut store = SqliteStore::open(&path).expect("open");
        let runs = LiveRuns::default();
        let first = rows(&runs, "r1", 2..=2);
        futures::executor::block_on(store.insert(&first, &Peers::default())).expect("first");
        let again = rows(&runs, "r1", 1..=3);
        let result = futures::executor::block_on(store.insert(&again, &Peers::default()));
        assert!(matches!(result, Err(StoreError::Duplicate)), "{result:?}");
        let conn = Connection::open(&path).expect("open");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM run_events", [], |row| row.get(0))
            .expect("count");
        assert_eq!(count, 1, "the failed batch left no row behind");
    }

    #[test]
    fn the_writer_checkpoints_when_idle_and_keeps_the_wal_bounded() {
        let (_dir, path) = database();
        let mut store = SqliteStore::open(&path).expect("open");
        let runs = LiveRuns::default();
        let wal = path.with_extension("db-wal");
        for seq in 1..=CHECKPOINT_AFTER_COMMITS as i64 {
            let row = rows(&runs, "r1", seq..=seq);
            futures::executor::block_on(store.insert(&row, &Peers::default())).expect("write");
        }
        let grown = std::fs::metadata(&wal).expect("wal").len();
        futures::executor::block_on(store.idle());
        assert_eq!(store.commits_since_checkpoint, 0);
        // Once checkpointed, the next write starts the WAL over instead of growing it.
        for seq in 1000..1010 {
            let row = rows(&runs, "r1", seq..=seq);
            futures::executor::block_on(store.insert(&row, &Peers::default())).expect("write");
        }
        let conn = Connection::open(&path).expect("open");
        let (_, frames, _): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .expect("wal");
        assert!(frames < 100, "the WAL started over: {frames} frames");
        assert!(std::fs::metadata(&wal).expect("wal").len() <= grown);
    }
}
