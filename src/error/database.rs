//! Which database errors mean "the database cannot serve us right now" (503) rather than a bug
//! or a bad query (500): no connection, I/O failures, a read-only, full or locked database.
use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};

/// True when `e` says the database is unreachable, unwritable or busy, not that the query
/// was wrong.
pub fn is_unavailable(e: &DbErr) -> bool {
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_unavailable(e)
        }
        _ => false,
    }
}

fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                postgres_unavailable(pg.code())
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .is_some_and(sqlite_unavailable)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// SQLSTATE classes and codes for a server that cannot take the statement now.
fn postgres_unavailable(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") // connection exception
        || sqlstate.starts_with("53") // insufficient resources (disk full, too many connections)
        || sqlstate.starts_with("57P") // shutting down, crashed, cannot connect now
        || sqlstate == "25006" // read-only transaction (a read-only replica or database)
        || sqlstate == "58030" // I/O error
}

/// SQLite primary result codes (the low byte of the extended code).
fn sqlite_unavailable(extended: i32) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    matches!(
        extended & 0xff,
        BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_by_primary_kind() {
        assert!(sqlite_unavailable(5)); // SQLITE_BUSY
        assert!(sqlite_unavailable(517)); // SQLITE_BUSY_SNAPSHOT
        assert!(sqlite_unavailable(8)); // SQLITE_READONLY
        assert!(sqlite_unavailable(1032)); // SQLITE_READONLY_DBMOVED
        assert!(sqlite_unavailable(266)); // SQLITE_IOERR_READ
        assert!(!sqlite_unavailable(19)); // SQLITE_CONSTRAINT
        assert!(!sqlite_unavailable(2067)); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!sqlite_unavailable(1)); // SQLITE_ERROR
    }

    #[test]
    fn postgres_states() {
        assert!(postgres_unavailable("08006"));
        assert!(postgres_unavailable("53100"));
        assert!(postgres_unavailable("57P01"));
        assert!(postgres_unavailable("25006"));
        assert!(!postgres_unavailable("23505"));
        assert!(!postgres_unavailable("42P01"));
    }

    #[test]
    fn pool_errors_are_unavailable() {
        let timeout = DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout);
        assert!(is_unavailable(&timeout));
        assert!(!is_unavailable(&DbErr::RecordNotFound("x".into())));
    }
}
