//! The database each app gets (created on its first deployment): which provisioner made it,
//! its name there, and its connection URL, encrypted. Also an index for the workers' sweep of
//! deployments whose outcome nobody has reported yet (few rows have `notified` false).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum AppDatabases {
    Table,
    AppId,
    Kind,
    Reference,
    EncryptedUrl,
    CreatedAt,
}

#[derive(Iden)]
enum Deployments {
    Table,
    Notified,
    Status,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AppDatabases::Table)
                    .col(
                        ColumnDef::new(AppDatabases::AppId)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AppDatabases::Kind).string_len(16).not_null())
                    .col(
                        ColumnDef::new(AppDatabases::Reference)
                            .string_len(128)
                            .not_null(),
                    )
                    // NULL while a worker is creating the database.
                    .col(ColumnDef::new(AppDatabases::EncryptedUrl).text())
                    .col(
                        ColumnDef::new(AppDatabases::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployments_unreported")
                    .table(Deployments::Table)
                    .col(Deployments::Notified)
                    .col(Deployments::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("deployments_unreported").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AppDatabases::Table).to_owned())
            .await
    }
}
