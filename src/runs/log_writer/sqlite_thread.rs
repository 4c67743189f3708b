//! The event log on a SQLite file: one connection of the writer's own, on a thread of its own,
//! writing each batch through one prepared statement in one transaction.
//!
//! Why not sqlx here: sqlx runs every SQLite statement on its worker thread and hands each one
//! over through a channel, and it prepares a multi-row INSERT anew for every batch size; that
//! hand-off and parsing cost more than the write itself. Here the whole batching loop runs on
//! the thread that owns the connection, so a batch costs one transaction and no hand-offs.
//!
//! Checkpoints run on a second connection, on a thread of their own (`Checkpointer`): a
//! checkpoint fsyncs the WAL and the database (milliseconds on a VM), and on the writer's
//! thread every event that arrived meanwhile waited for it. Automatic checkpoints are off on
//! the writer's connection for the same reason. A checkpoint beside a writer cannot let the
//! WAL start over while writes keep coming, so past a size bound the writer checkpoints
//! between two batches itself. Waiting for another connection's write lock (a run start) polls
//! in microseconds instead of SQLite's default back-off of whole milliseconds.
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use rusqlite::hooks::Wal;
use rusqlite::{params, Connection, ErrorCode, OpenFlags};
use sea_orm::DbErr;
use tokio::sync::mpsc;

use super::{batches, chunks, Append, Request, Store, StoreError};
use crate::cluster::bus::Peers;

/// Commits between two requests to the checkpointer.
const CHECKPOINT_AFTER_COMMITS: u64 = 256;
/// The checkpointer also runs this often when nothing asked it to: other connections (the
/// pool's) write to the file too.
const CHECKPOINT_AT_LEAST_EVERY: Duration = Duration::from_secs(5);
/// WAL frames (pages) past which the writer checkpoints between two batches itself, so that
/// the WAL starts over under writes that never pause long enough for the checkpointer to copy
/// the WAL whole (about 256 MiB with 4 KiB pages). That checkpoint holds every run's events
/// for its fsyncs (2–10 ms here), so it must be rare: at 2,500 events/s in small batches the
/// WAL grows ≈ 6,000 frames a second, and a bound of 8,192 frames put one in every 1.3 s,
/// which was the p99 of the relay's latency.
const WAL_FRAMES_BOUND: i64 = 65_536;
/// The WAL file is cut back to this size when it starts over, so a burst does not keep its
/// disk space.
const WAL_KEPT_BYTES: i64 = 64 << 20;
/// Commits between two attempts of the bound's checkpoint when one could not copy the WAL
/// whole (the checkpointer was running, or a reader still needed part of it).
const BOUND_RETRY_AFTER_COMMITS: u64 = 256;

const INSERT_ONE: &str = "INSERT INTO run_events (run_id, seq, event, data, sizes, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Opens the database at `path` and starts the writer thread and the checkpointer on it.
pub(super) fn start(
    path: &Path,
    requests: mpsc::Receiver<Request>,
    peers: Peers,
) -> Result<(), DbErr> {
    let checkpointer = Checkpointer::start(path)
        .map_err(|e| DbErr::Custom(format!("could not start the event log checkpointer: {e}")))?;
    let store = SqliteStore::open(path, checkpointer)
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
    checkpointer: Checkpointer,
    commits_since_checkpoint: u64,
    /// [`WAL_FRAMES_BOUND`]; tests lower it.
    wal_frames_bound: i64,
    /// Commits until the bound's checkpoint may be tried again.
    bound_retry_in: u64,
}

thread_local! {
    /// The WAL's size in frames after the last commit on this thread's writer connection.
    /// SQLite reports it to a hook that rusqlite takes as a plain function pointer, and the
    /// writer's connection never leaves its thread, hence a thread-local.
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
    /// When the busy handler was first called for the writer's pending `BEGIN IMMEDIATE`:
    /// another connection held the write lock.
    static LOCK_WAIT_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn note_wal_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|wal| wal.set(frames.into()));
    Ok(())
}

impl SqliteStore {
    fn open(path: &Path, checkpointer: Checkpointer) -> rusqlite::Result<Self> {
        let conn = open_connection(path)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_handler(Some(wait_for_lock))?;
        // After `open_connection`'s `wal_autocheckpoint`, which would replace it.
        conn.wal_hook(Some(note_wal_frames));
        WAL_FRAMES.with(|wal| wal.set(0));
        Ok(Self {
            conn,
            checkpointer,
            commits_since_checkpoint: 0,
            wal_frames_bound: WAL_FRAMES_BOUND,
            bound_retry_in: 0,
        })
    }

    fn write(&mut self, rows: &[Append]) -> rusqlite::Result<()> {
        self.bound_retry_in = self.bound_retry_in.saturating_sub(1);
        if self.bound_retry_in == 0 && WAL_FRAMES.with(Cell::get) > self.wal_frames_bound {
            self.checkpoint_here();
        }
        // BEGIN and COMMIT as cached statements: `Connection::transaction` parses both anew for
        // every batch, which cost as much as a row's insert.
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        if let Some(since) = LOCK_WAIT_SINCE.with(Cell::take) {
            crate::metrics::metrics()
                .event_log_lock_wait
                .observe(since.elapsed().as_secs_f64());
        }
        let written = (|| {
            let mut insert = self.conn.prepare_cached(INSERT_ONE)?;
            for chunk in chunks::chunks(rows, self.row_bound()) {
                let row = chunks::encode(chunk);
                // The text sqlx writes for a `DateTime<Utc>`, so every reader decodes it alike.
                let created_at = chunk[0]
                    .created_at
                    .to_rfc3339_opts(SecondsFormat::AutoSi, false);
                insert.execute(params![
                    chunk[0].live.run_id,
                    row.seq,
                    row.event,
                    row.data,
                    row.sizes,
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
        if self.commits_since_checkpoint >= CHECKPOINT_AFTER_COMMITS {
            self.commits_since_checkpoint = 0;
            self.checkpointer.request();
        }
        Ok(())
    }

    /// The size bound's checkpoint, on the writer's own connection between two batches: with
    /// no write beside it, it copies the whole WAL (unless a reader still needs part of it),
    /// so that the next write starts the WAL over.
    fn checkpoint_here(&mut self) {
        match passive_checkpoint(&self.conn) {
            Ok((frames, copied)) if frames >= 0 && frames == copied => {
                tracing::debug!(frames, "event log checkpoint by the writer");
                return;
            }
            Ok((frames, copied)) => {
                tracing::debug!(
                    frames,
                    copied,
                    "event log checkpoint by the writer fell short"
                )
            }
            Err(e) => tracing::warn!(error = %e, "event log checkpoint failed"),
        }
        self.bound_retry_in = BOUND_RETRY_AFTER_COMMITS;
    }
}

/// Opens a connection to the log's file with what both of the writer's connections need.
fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    // The pool set WAL mode on the file already; the rest is per connection.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)?;
    Ok(conn)
}

/// Copies the WAL into the database as far as no reader needs it kept, without waiting for
/// readers or the writer. Returns the frames in the WAL and how many of them are copied now.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

/// A thread with a connection of its own that checkpoints the WAL when the writer asks (and
/// now and then regardless), while the writer goes on writing.
struct Checkpointer {
    requests: std_mpsc::SyncSender<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> std::io::Result<Self> {
        let conn = open_connection(path).map_err(std::io::Error::other)?;
        let (requests, asked) = std_mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("event-log-checkpointer".into())
            .spawn(move || {
                run_only_when_idle();
                checkpoint_until_closed(&conn, &asked)
            })?;
        Ok(Self { requests })
    }

    /// Asks for a checkpoint; one asked for already and not begun stands for both.
    fn request(&self) {
        let _ = self.requests.try_send(());
    }
}

/// Gives the calling thread the lowest CPU priority (Linux `SCHED_IDLE`): a checkpoint copies
/// thousands of pages, and at normal priority the scheduler shared the core with it while
/// events waited. It may wait: when the core never idles, the WAL's size bound applies.
fn run_only_when_idle() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain system call on the calling thread with a valid parameter.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "the checkpointer keeps its CPU priority");
        }
    }
}

/// The checkpointer's loop; it ends when the writer is gone.
fn checkpoint_until_closed(conn: &Connection, asked: &std_mpsc::Receiver<()>) {
    loop {
        match asked.recv_timeout(CHECKPOINT_AT_LEAST_EVERY) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        match passive_checkpoint(conn) {
            Ok((frames, copied)) => tracing::debug!(frames, copied, "event log checkpoint"),
            // Another checkpoint is running (the writer's, or a pool connection's automatic
            // one): the next request tries again.
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {}
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
        let deleted = self.conn.execute(
            "DELETE FROM run_events WHERE run_id = ?1 AND seq >= ?2",
            params![run_id, seq],
        );
        // The histogram is for batches: a wait here is not counted at the next one.
        LOCK_WAIT_SINCE.with(Cell::take);
        deleted
            .map(drop)
            .map_err(|e| StoreError::Failed(e.to_string()))
    }

    async fn pause(&mut self, duration: Duration) {
        // This thread does nothing else.
        std::thread::sleep(duration);
    }

    fn row_bound(&self) -> chunks::RowBound {
        chunks::RowBound::SQLITE
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
    if attempts == 0 {
        LOCK_WAIT_SINCE.with(|since| since.set(Some(Instant::now())));
    }
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
               event varchar(32) NOT NULL, data text NOT NULL, sizes text,
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
        let mut store = open_store(&path);
        let holder = Connection::open(&path).expect("open");
        holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            holder.execute_batch("COMMIT").expect("commit");
        });
        let runs = LiveRuns::default();
        let batch = rows(&runs, "r1", 1..=3);
        let waits_before = lock_waits();
        let started = Instant::now();
        let written = futures::executor::block_on(store.insert(&batch, &Peers::default()));
        assert!(written.is_ok(), "{written:?}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(45), "{waited:?}");
        assert!(waited < Duration::from_millis(500), "{waited:?}");
        release.join().expect("holder");
        // The wait is in the writer's histogram (other tests may add theirs beside it).
        let (count, seconds) = lock_waits();
        assert!(count > waits_before.0, "{count}");
        assert!(seconds - waits_before.1 >= 0.045, "{seconds}");

        let conn = Connection::open(&path).expect("open");
        let (count, created_at, sizes): (i64, String, Option<String>) = conn
            .query_row(
                "SELECT count(*), max(created_at), max(sizes) FROM run_events WHERE run_id = 'r1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .expect("count");
        assert_eq!(count, 1, "one row for the run's three events");
        assert_eq!(sizes.as_deref(), Some("7,7,7"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(&created_at).is_ok(),
            "{created_at}"
        );
    }

    /// The lock-wait histogram's (count, sum) from the metrics page.
    fn lock_waits() -> (u64, f64) {
        let page = crate::metrics::render();
        let value = |name: &str| {
            page.lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            value("agentgate_event_log_lock_wait_seconds_count") as u64,
            value("agentgate_event_log_lock_wait_seconds_sum"),
        )
    }

    #[test]
    fn a_batch_with_a_row_logged_already_is_a_duplicate_and_writes_nothing() {
        let (_dir, path) = database();
        let mut store = open_store(&path);
        let runs = LiveRuns::default();
        let first = rows(&runs, "r1", 1..=3);
        futures::executor::block_on(store.insert(&first, &Peers::default())).expect("first");
        // The same events again (a retry whose first commit's answer was lost), after another
        // run's events in the same batch.
        let mut again = rows(&runs, "r2", 1..=2);
        again.extend(first.iter().cloned());
        let result = futures::executor::block_on(store.insert(&again, &Peers::default()));
        assert!(matches!(result, Err(StoreError::Duplicate)), "{result:?}");
        let conn = Connection::open(&path).expect("open");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM run_events", [], |row| row.get(0))
            .expect("count");
        assert_eq!(count, 1, "the failed batch left no row behind");
    }

    /// (seq, sizes) of the run's rows, in order.
    fn logged_rows(path: &Path, run_id: &str) -> Vec<(i64, Option<String>)> {
        let conn = Connection::open(path).expect("open");
        let mut query = conn
            .prepare("SELECT seq, sizes FROM run_events WHERE run_id = ?1 ORDER BY seq")
            .expect("prepare");
        query
            .query_map([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn an_event_that_cannot_be_stored_fails_alone_and_its_chunk_is_written_up_to_it() {
        let (_dir, path) = database();
        let mut store = open_store(&path);
        Connection::open(&path)
            .expect("open")
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON run_events WHEN NEW.data LIKE '%\"n\":4}%' \
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END",
            )
            .expect("trigger");
        let runs = LiveRuns::default();
        let mut batch = rows(&runs, "r1", 1..=6);
        batch.extend(rows(&runs, "r2", 1..=2));
        let committed =
            futures::executor::block_on(batches::commit(&mut store, batch, &Peers::default()));
        let seqs: Vec<(String, i64)> = (committed.iter())
            .map(|r| (r.live.run_id.clone(), r.event.seq))
            .collect();
        let expected: Vec<(String, i64)> = [("r1", 1), ("r1", 2), ("r1", 3), ("r2", 1), ("r2", 2)]
            .map(|(run, seq)| (run.to_string(), seq))
            .into();
        assert_eq!(seqs, expected);
        assert_eq!(
            logged_rows(&path, "r1"),
            [(1, None), (2, None), (3, None)],
            "the failed chunk's events before the refused one, each alone"
        );
        assert_eq!(logged_rows(&path, "r2"), [(1, Some("7,7".to_string()))]);
        let failure = runs.get("r1").expect("run").take_log_failure();
        assert_eq!(failure.map(|f| f.seq), Some(4));
    }

    #[test]
    fn a_batch_written_again_after_a_lost_answer_is_taken_as_committed_once() {
        let (_dir, path) = database();
        let mut store = open_store(&path);
        let runs = LiveRuns::default();
        let batch = rows(&runs, "r1", 1..=5);
        futures::executor::block_on(store.insert(&batch, &Peers::default())).expect("first");
        let committed =
            futures::executor::block_on(batches::commit(&mut store, batch, &Peers::default()));
        assert_eq!(committed.len(), 5, "every event is logged");
        assert_eq!(
            logged_rows(&path, "r1"),
            [(1, Some("7,7,7,7,7".to_string()))]
        );
        assert!(runs.get("r1").expect("run").take_log_failure().is_none());
    }

    #[test]
    fn a_chunk_whose_row_is_there_is_not_written_again_event_by_event() {
        let (_dir, path) = database();
        let mut store = open_store(&path);
        let runs = LiveRuns::default();
        let chunk = rows(&runs, "r1", 1..=4);
        // Its write committed, and the answer was lost.
        futures::executor::block_on(store.insert(&chunk, &Peers::default())).expect("first");
        let committed = futures::executor::block_on(batches::commit_one_by_one(
            &mut store,
            chunk,
            &Peers::default(),
        ));
        assert_eq!(committed.len(), 4, "every event is logged");
        assert_eq!(
            logged_rows(&path, "r1"),
            [(1, Some("7,7,7,7".to_string()))],
            "no event twice"
        );
    }

    fn open_store(path: &Path) -> SqliteStore {
        let checkpointer = Checkpointer::start(path).expect("checkpointer");
        SqliteStore::open(path, checkpointer).expect("open")
    }

    /// Writes one row in a batch of its own; returns the WAL's frames after the commit.
    fn write_one(store: &mut SqliteStore, runs: &LiveRuns, seq: i64) -> i64 {
        let row = rows(runs, "r1", seq..=seq);
        futures::executor::block_on(store.insert(&row, &Peers::default())).expect("write");
        WAL_FRAMES.with(Cell::get)
    }

    #[test]
    fn the_checkpointer_copies_the_wal_beside_the_writer_so_it_starts_over() {
        let (_dir, path) = database();
        let mut store = open_store(&path);
        let runs = LiveRuns::default();
        let mut frames = 0;
        for seq in 1..=CHECKPOINT_AFTER_COMMITS as i64 {
            frames = write_one(&mut store, &runs, seq);
        }
        assert!(frames >= CHECKPOINT_AFTER_COMMITS as i64, "{frames}");
        // The writer asked for a checkpoint and never ran one itself; once the checkpointer
        // has copied everything, the next write starts the WAL over. The checkpointer runs
        // only on an idle core (SCHED_IDLE): with both cores busy (builds, the other tests)
        // it waited past 10 s once, hence the long bound; a pass does not wait for it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seq = 10_000;
        while frames > 10 {
            assert!(
                Instant::now() < deadline,
                "the WAL never started over: {frames}"
            );
            std::thread::sleep(Duration::from_millis(10));
            seq += 1;
            frames = write_one(&mut store, &runs, seq);
        }
        let conn = Connection::open(&path).expect("open");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM run_events", [], |row| row.get(0))
            .expect("count");
        assert_eq!(count, seq - 10_000 + CHECKPOINT_AFTER_COMMITS as i64);
    }

    /// A store whose checkpointer never runs: what the writer does on its own.
    fn store_without_checkpoints(path: &Path, bound: i64) -> (SqliteStore, std_mpsc::Receiver<()>) {
        let (requests, asked) = std_mpsc::sync_channel(1);
        let mut store = SqliteStore::open(path, Checkpointer { requests }).expect("open");
        store.wal_frames_bound = bound;
        (store, asked)
    }

    #[test]
    fn past_its_size_bound_the_writer_checkpoints_itself_and_the_wal_starts_over() {
        let (_dir, path) = database();
        let runs = LiveRuns::default();
        let (mut store, _asked) = store_without_checkpoints(&path, 64);
        let most = (1..=300)
            .map(|seq| write_one(&mut store, &runs, seq))
            .max()
            .expect("frames");
        assert!(most <= 64 + 8, "the WAL grew to {most} frames");

        // The same writes without the bound: the WAL only grows.
        let (_dir, path) = database();
        let (mut store, _asked) = store_without_checkpoints(&path, i64::MAX);
        let last = (1..=300)
            .map(|seq| write_one(&mut store, &runs, seq))
            .last()
            .expect("frames");
        assert!(last > 300, "{last}");
    }
}
