//! PostgreSQL keeps a log row in the table's own page when it fits one (8,160 bytes at most),
//! instead of moving it to TOAST once it passes about 2 KB. The writer keeps its rows under
//! that (`log_writer::chunks::RowBound::POSTGRES`): a row in TOAST costs a heap tuple and an
//! index entry per 2 KB chunk besides its own, which was most of the server's CPU per logged
//! event. Rows written before stay where they are; the setting applies to new rows.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "ALTER TABLE run_events SET (toast_tuple_target = 8160)",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, "ALTER TABLE run_events RESET (toast_tuple_target)").await
    }
}

/// A table option only PostgreSQL has; SQLite has no TOAST.
async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == DbBackend::Postgres {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}
