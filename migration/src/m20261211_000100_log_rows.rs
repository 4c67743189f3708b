//! A row of the event log may hold several consecutive events of a run: `sizes` lists their
//! payloads' lengths (NULL for a row of one event, which is every row written before). On
//! PostgreSQL the payloads are stored without compression: a row of many events is larger
//! than the point (about 2 KB) where PostgreSQL would otherwise compress it (pglz) on every
//! insert, on the database's CPU, which is the log's scarce resource; the rows take more disk.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum RunEvents {
    Table,
    Sizes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RunEvents::Table)
                    .add_column(ColumnDef::new(RunEvents::Sizes).text().null())
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE run_events ALTER COLUMN data SET STORAGE EXTERNAL")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RunEvents::Table)
                    .drop_column(RunEvents::Sizes)
                    .to_owned(),
            )
            .await
    }
}
