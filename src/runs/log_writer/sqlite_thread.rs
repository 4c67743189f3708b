//! The event log on a SQLite file: one connection of the writer's own, on a thread of its own,
//! writing each batch through one prepared statement in one transaction.
//!
//! Why not sqlx here: sqlx runs every SQLite statement on its worker thread and hands each one
//! over through a channel, and it prepares a multi-row INSERT anew for every batch size; that
//! hand-off and parsing cost more than the write itself. Here the whole batching loop runs on
//! the thread that owns the connection, so a batch costs one transaction and no hand-offs.
//!
//! Checkpoints run on a second connection, on a thread of their own (`checkpointer`).
//! Automatic checkpoints are off on the writer's connection: their fsyncs would hold every
//! event that arrived meanwhile. A checkpoint beside a writer cannot let the
//! WAL start over while writes keep coming, so past a size bound the writer checkpoints
//! between two batches itself. Waiting for another connection's write lock (a run start) polls
//! in microseconds instead of SQLite's default back-off of whole milliseconds.
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use rusqlite::hooks::Wal;
use rusqlite::{params, Connection, ErrorCode, OpenFlags};
use sea_orm::DbErr;
use tokio::sync::mpsc;

use super::checkpointer::Checkpointer;
use super::gather::Gather;
use super::{batches, chunks, Append, Request, Store, StoreError};
use crate::cluster::bus::Peers;

/// Commits between two requests to the checkpointer.
const CHECKPOINT_AFTER_COMMITS: u64 = 256;
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
/// whole (a reader held it for seconds, or the checkpointer's own checkpoint did not end).
const BOUND_RETRY_AFTER_COMMITS: u64 = 256;
/// How long the bound's checkpoint waits for the checkpointer's to end (past twice the bound).
const CHECKPOINTER_WAIT: Duration = Duration::from_secs(2);

const INSERT_ONE: &str = "INSERT INTO run_events (run_id, seq, event, data, sizes, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Opens the database at `path` and starts the writer thread and the checkpointer on it.
pub(super) fn start(
    path: &Path,
    requests: mpsc::Receiver<Request>,
    peers: Peers,
) -> Result<(), DbErr> {
    let checkpointer = open_connection(path)
        .map_err(std::io::Error::other)
        .and_then(Checkpointer::start)
        .map_err(|e| DbErr::Custom(format!("could not start the event log checkpointer: {e}")))?;
    let store = SqliteStore::open(path, checkpointer)
        .map_err(|e| DbErr::Custom(format!("could not open the event log writer: {e}")))?;
    std::thread::Builder::new()
        .name("event-log-writer".into())
        .spawn(move || {
            futures::executor::block_on(batches::write_batches(
                vec![store],
                requests,
                Gather::yielding_when_busy(),
                peers,
            ))
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

    /// The size bound's checkpoint, on the writer's own connection between two batches, so
    /// that the next write starts the WAL over. A passive checkpoint could not do that under
    /// steady reads: it copies only as far as the oldest reader's snapshot, and subscribers
    /// that fall behind re-read the log, so the WAL was never copied whole and grew without
    /// end. A `RESTART` checkpoint waits for the readers of the moment instead (a page of the
    /// log each: milliseconds); readers that begin once the WAL is copied read the database
    /// file and do not hold it up.
    ///
    /// While the checkpointer runs a checkpoint of its own, SQLite refuses a second one at once
    /// (the busy handler is not asked). Then the writer tries again later, as its wait would
    /// hold every event. But the checkpointer runs only on an idle core, and on a core that is
    /// never idle it was stopped half-way for good, holding that lock, so the bound's
    /// checkpoint never ran: past twice the bound, the writer lifts the checkpointer's priority
    /// and waits for its checkpoint to end (see `checkpointer`).
    fn checkpoint_here(&mut self) {
        let starved = WAL_FRAMES.with(Cell::get) > self.wal_frames_bound.saturating_mul(2);
        let checkpoint = self.restart_checkpoint_after_the_checkpointers(starved);
        // Waiting for readers is not waiting for the write lock: the histogram is for batches.
        LOCK_WAIT_SINCE.with(Cell::take);
        match checkpoint {
            Ok(WalCheckpoint {
                restarted: true,
                frames,
                ..
            }) => {
                tracing::debug!(frames, "event log checkpoint by the writer");
                return;
            }
            Ok(WalCheckpoint { frames, copied, .. }) => {
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

    fn restart_checkpoint_after_the_checkpointers(
        &self,
        wait: bool,
    ) -> rusqlite::Result<WalCheckpoint> {
        let deadline = Instant::now() + CHECKPOINTER_WAIT;
        loop {
            let checkpoint = restart_checkpoint(&self.conn)?;
            if !wait || !checkpoint.another_was_running() || Instant::now() >= deadline {
                return Ok(checkpoint);
            }
            self.checkpointer.hurry();
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// What `PRAGMA wal_checkpoint` reports.
struct WalCheckpoint {
    /// Whether it did all its mode asks (`RESTART`: the next write starts the WAL over).
    restarted: bool,
    /// Frames in the WAL, and how many of them are in the database now.
    frames: i64,
    copied: i64,
}

impl WalCheckpoint {
    /// SQLite reports no frames when it did not begin: another connection was checkpointing.
    fn another_was_running(&self) -> bool {
        !self.restarted && self.frames < 0
    }
}

/// Copies the whole WAL into the database, waiting (through the busy handler) for readers of
/// older snapshots, and readies the WAL to start over at the next write.
fn restart_checkpoint(conn: &Connection) -> rusqlite::Result<WalCheckpoint> {
    conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
        Ok(WalCheckpoint {
            restarted: row.get::<_, i64>(0)? == 0,
            frames: row.get(1)?,
            copied: row.get(2)?,
        })
    })
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
    use std::sync::atomic::Ordering;
    use std::sync::mpsc as std_mpsc;
    use std::sync::Arc;

    use super::super::checkpointer::{passive_checkpoint, Priority};
    #[cfg(target_os = "linux")]
    use super::super::one_cpu::OneCpu;
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
        open_store_at(path, Priority::for_this_process())
    }

    fn open_store_at(path: &Path, priority: Priority) -> SqliteStore {
        let conn = open_connection(path).expect("open");
        let checkpointer = Checkpointer::start_at(conn, priority).expect("checkpointer");
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
        let checkpointer = Checkpointer::without_thread(requests);
        let mut store = SqliteStore::open(path, checkpointer).expect("open");
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

    /// A connection that reads the log over and over, as lagging subscribers do, each read a
    /// transaction of about a millisecond; stops when dropped.
    struct SteadyReader {
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<u64>>,
    }

    impl SteadyReader {
        fn start(path: &Path) -> Self {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let reader = Connection::open(path).expect("open");
            let stopped = stop.clone();
            let thread = std::thread::spawn(move || {
                let mut reads = 0;
                while !stopped.load(Ordering::Relaxed) {
                    reader.execute_batch("BEGIN").expect("begin");
                    let _: i64 = reader
                        .query_row("SELECT count(*) FROM run_events", [], |row| row.get(0))
                        .expect("read");
                    std::thread::sleep(Duration::from_millis(1));
                    reader.execute_batch("COMMIT").expect("end");
                    reads += 1;
                }
                reads
            });
            Self {
                stop,
                thread: Some(thread),
            }
        }

        fn stop(mut self) -> u64 {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().expect("thread").join().expect("reader")
        }
    }

    impl Drop for SteadyReader {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Before, the bound's checkpoint copied only as far as the oldest reader's snapshot, so
    /// under steady reads it never copied the WAL whole and the WAL grew without end (no
    /// start-over in these writes). A checkpoint that still falls short (the reader's snapshot
    /// outlasted the writer's patience, as on a loaded CI machine) is tried again later.
    #[test]
    fn steady_readers_do_not_keep_the_wal_from_starting_over() {
        let (_dir, path) = database();
        let runs = LiveRuns::default();
        let (mut store, _asked) = store_without_checkpoints(&path, 64);
        let reader = SteadyReader::start(&path);
        let frames: Vec<i64> = (1..=1_200)
            .map(|seq| write_one(&mut store, &runs, seq))
            .collect();
        let reads = reader.stop();
        assert!(reads > 10, "the reader read {reads} times");
        let starts_over = frames.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(starts_over >= 3, "the WAL started over {starts_over} times");
    }

    /// A thread that keeps its CPU busy at normal priority until dropped.
    struct Spinner {
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Spinner {
        fn start() -> Self {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stopped = stop.clone();
            let thread = std::thread::spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
            Self {
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Spinner {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// The checkpointer runs only on an idle CPU where it can be lifted again. Before, one
    /// that began a checkpoint and then found the CPU busy for good kept SQLite's checkpoint
    /// lock, the bound's checkpoint could never run, and the WAL grew without end (1.7 GB in
    /// one firehose benchmark round).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_checkpoint_the_idle_checkpointer_began_before_its_cpu_got_busy_does_not_keep_the_wal_growing(
    ) {
        if Priority::for_this_process() == Priority::WhenIdle {
            the_wal_starts_over_past_a_checkpoint_the_checkpointer_is_in(Priority::WhenIdle);
        }
    }

    /// Where the process may not lift it, the checkpointer runs at normal priority: the bound's
    /// checkpoint waits for its checkpoint to end.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_checkpoint_a_normal_priority_checkpointer_is_in_does_not_keep_the_wal_growing() {
        the_wal_starts_over_past_a_checkpoint_the_checkpointer_is_in(Priority::Normal);
    }

    #[cfg(target_os = "linux")]
    fn the_wal_starts_over_past_a_checkpoint_the_checkpointer_is_in(priority: Priority) {
        let _pinned = OneCpu::pin();
        let (_dir, path) = database();
        let runs = LiveRuns::default();
        // Its checkpointer thread shares the test's CPU.
        let mut store = open_store_at(&path, priority);
        store.wal_frames_bound = i64::MAX;
        let probe = Connection::open(&path).expect("open");
        let mut last_seq = 0;
        let mut tries = 0;
        let _spinner = loop {
            tries += 1;
            assert!(
                tries <= 50,
                "the checkpointer was never caught in a checkpoint"
            );
            // A WAL of thousands of pages, so that copying it takes a while.
            let seqs = last_seq + 1..=last_seq + 5_000;
            last_seq += 5_000;
            let mut batch = rows(&runs, "r1", seqs);
            for row in &mut batch {
                let padded = format!("{}{}", row.event.data, " ".repeat(2_000));
                row.event = Arc::new(StoredEvent {
                    data: padded,
                    ..(*row.event).clone()
                });
            }
            futures::executor::block_on(store.insert(&batch, &Peers::default())).expect("write");
            store.checkpointer.request();
            // The CPU idles, so the checkpointer begins; from now on it never idles.
            std::thread::sleep(Duration::from_millis(1));
            let spinner = Spinner::start();
            // No frames: the probe did not begin, another checkpoint is running.
            let (frames, _) = passive_checkpoint(&probe).expect("probe");
            if frames < 0 {
                break spinner;
            }
        };
        store.wal_frames_bound = 64;
        let frames = write_one(&mut store, &runs, last_seq + 1);
        assert!(frames <= 8, "the WAL did not start over: {frames} frames");
    }
}
