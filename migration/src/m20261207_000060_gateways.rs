//! The gateways sharing this database, with a heartbeat each, so that a gateway can tell it is
//! not alone, and what the others keep on their own disks (see `cluster::members`). A job may
//! name the gateway it must run on while that gateway lives (`jobs.runner`): a new version's
//! blobs are in its creator's local cache until they are uploaded.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Gateways {
    Table,
    Id,
    LocalState,
    SecretsDigest,
    StartedAt,
    HeartbeatAt,
}

#[derive(Iden)]
enum Jobs {
    Table,
    Runner,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Gateways::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Gateways::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Gateways::LocalState).text().not_null())
                    .col(ColumnDef::new(Gateways::SecretsDigest).string().not_null())
                    .col(
                        ColumnDef::new(Gateways::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Gateways::HeartbeatAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(ColumnDef::new(Jobs::Runner).string().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .drop_column(Jobs::Runner)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Gateways::Table).to_owned())
            .await
    }
}
