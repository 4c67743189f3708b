//! A one-row-per-gateway table `/health` writes to, proving the database accepts writes (a
//! `SELECT 1` passes on a read-only or full database).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum HealthChecks {
    Table,
    Probe,
    CheckedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HealthChecks::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(HealthChecks::Probe)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(HealthChecks::CheckedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HealthChecks::Table).to_owned())
            .await
    }
}
