//! Database connection, migrations, and the few raw statements that must be atomic in SQL.
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    Value,
};

/// Connects and applies pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let db = Database::connect(options(url, max_connections)).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        migrate_alone(url, &db).await?;
    } else {
        Migrator::up(&db, None).await?;
    }
    Ok(db)
}

/// Gateways starting together on one PostgreSQL database take turns at the migrations: the
/// first applies them while the others wait on an advisory lock, held by a session of its own.
async fn migrate_alone(url: &str, db: &DatabaseConnection) -> Result<(), DbErr> {
    const MIGRATION_LOCK: i64 = 0x6167_656e_7467_6174; // "agentgat"
    let lock = Database::connect(options(url, 1)).await?;
    let call = |sql: &str| {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [MIGRATION_LOCK.into()])
    };
    lock.execute_raw(call("SELECT pg_advisory_lock($1)"))
        .await?;
    let migrated = Migrator::up(db, None).await;
    let unlocked = lock
        .execute_raw(call("SELECT pg_advisory_unlock($1)"))
        .await;
    drop(lock.close().await);
    migrated.and(unlocked.map(|_| ()))
}

/// The event-log writer's connections on PostgreSQL.
const LOG_WRITER_CONNECTIONS: usize = 2;
/// How they name themselves to the server (`pg_stat_activity`), unless the URL names one.
pub const LOG_WRITER_APPLICATION: &str = "agentgate-event-log";

/// The event-log writer's own connection, so that its batches never wait behind request
/// handlers for a pooled connection: for a SQLite file, the file (the writer opens it on a
/// thread of its own); an in-memory SQLite database exists only inside its pool, so there the
/// shared pool is used.
pub async fn connect_log_writer(
    url: &str,
    shared: &DatabaseConnection,
) -> Result<crate::runs::log_writer::WriterDb, DbErr> {
    use crate::runs::log_writer::WriterDb;
    if shared.get_database_backend() == DbBackend::Sqlite {
        let row = shared
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT file FROM pragma_database_list WHERE name = 'main'",
            ))
            .await?;
        let file: String = match row {
            Some(row) => row.try_get("", "file")?,
            None => String::new(),
        };
        return Ok(match file.is_empty() {
            true => WriterDb::Connections(vec![shared.clone()]),
            false => WriterDb::SqliteFile(file.into()),
        });
    }
    // Two, so that a batch commits while the one before it is still committing.
    let mut connections = Vec::with_capacity(LOG_WRITER_CONNECTIONS);
    for _ in 0..LOG_WRITER_CONNECTIONS {
        let mut options = options(url, 1);
        if !url.contains("application_name=") {
            options.set_application_name(LOG_WRITER_APPLICATION);
        }
        connections.push(Database::connect(options).await?);
    }
    Ok(WriterDb::Connections(connections))
}

fn options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings the server on every checkout and again on every return: on PostgreSQL
        // two round trips around each query or transaction, half of all the gateway's round
        // trips (BENCHMARKS.md, round 2, sixth part). The return's ping already finds a
        // connection that broke while in use; one that sat idle for a second is pinged again.
        .test_before_acquire_if_idle_for(Duration::from_secs(1))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            // WAL lets readers (replays, listings) proceed while a run appends events.
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    options
}

/// Builds a statement from SQL written with PostgreSQL-style `$N` placeholders; SQLite gets `?N`.
pub fn statement(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_string(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// True when the error is a unique-constraint violation on either backend.
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use sea_orm::TransactionTrait;

    use super::*;

    /// A full disk makes SQLite roll a transaction back by itself; the connection must know,
    /// or its next transaction keeps the database's write lock for good (the vendored
    /// sqlx-sqlite's fix, see vendor/README.md).
    #[tokio::test]
    async fn a_transaction_sqlite_rolled_back_by_itself_leaves_no_lock_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("full.db");
        let db = connect(&format!("sqlite://{}?mode=rwc", path.display()), 1)
            .await
            .expect("database");
        db.execute_unprepared("CREATE TABLE filler (x BLOB)")
            .await
            .expect("table");
        let pages: i64 = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA page_count",
            ))
            .await
            .expect("page count")
            .expect("row")
            .try_get_by_index(0)
            .expect("pages");
        // The pool's one connection: its database cannot grow past a few pages ("full").
        db.execute_unprepared(&format!("PRAGMA max_page_count = {}", pages + 2))
            .await
            .expect("limit");
        let txn = db.begin().await.expect("begin");
        let full = txn
            .execute_unprepared("INSERT INTO filler VALUES (zeroblob(100000))")
            .await;
        assert!(
            full.as_ref().is_err_and(|e| e.to_string().contains("full")),
            "{full:?}"
        );
        drop(txn);
        db.execute_unprepared("PRAGMA max_page_count = 1000000")
            .await
            .expect("room again");

        // The next transaction on that connection rolls back for real...
        let txn = db.begin().await.expect("begin");
        txn.execute_unprepared("INSERT INTO filler VALUES ('rolled back')")
            .await
            .expect("insert");
        txn.rollback().await.expect("rollback");
        // ...so another connection gets the write lock at once.
        let other = rusqlite::Connection::open(&path).expect("open");
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO filler VALUES ('other'); COMMIT")
            .expect("the write lock is free");
        // And a commit commits.
        let txn = db.begin().await.expect("begin");
        txn.execute_unprepared("INSERT INTO filler VALUES ('committed')")
            .await
            .expect("insert");
        txn.commit().await.expect("commit");
        let rows: i64 = other
            .query_row("SELECT count(*) FROM filler", [], |row| row.get(0))
            .expect("count");
        assert_eq!(rows, 2, "'other' and 'committed'");
    }
}
