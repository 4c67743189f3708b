//! Which gateway process runs each active run, and until when its lease holds. Several
//! gateways can share one database: each renews the leases of its own runs, and a run whose
//! lease ran out (its process died) is interrupted by whichever gateway notices first. A cancel
//! that reaches a gateway other than the runner is left here for the runner to act on.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Runs {
    Table,
    RunnerId,
    LeaseExpiresAt,
    CancelRequestedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE. NULL for runs from before this migration:
        // they are treated as orphans when still active.
        for column in [
            ColumnDef::new(Runs::RunnerId).string_len(128).to_owned(),
            ColumnDef::new(Runs::LeaseExpiresAt)
                .timestamp_with_time_zone()
                .to_owned(),
            ColumnDef::new(Runs::CancelRequestedAt)
                .timestamp_with_time_zone()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Runs::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
