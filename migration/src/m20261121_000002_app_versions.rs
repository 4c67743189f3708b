//! Versions of an app's files: one manifest per applied diff.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum AppVersions {
    Table,
    AppId,
    Version,
    ParentVersion,
    Manifest,
    DiffSha256,
    RunId,
    Status,
    FileCount,
    TotalBytes,
    CreatedAt,
    StoredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AppVersions::Table)
                    .col(ColumnDef::new(AppVersions::AppId).string_len(36).not_null())
                    .col(ColumnDef::new(AppVersions::Version).integer().not_null())
                    .col(ColumnDef::new(AppVersions::ParentVersion).integer())
                    .col(ColumnDef::new(AppVersions::Manifest).text().not_null())
                    .col(ColumnDef::new(AppVersions::DiffSha256).string_len(64))
                    .col(ColumnDef::new(AppVersions::RunId).string_len(36))
                    .col(
                        ColumnDef::new(AppVersions::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AppVersions::FileCount).integer().not_null())
                    .col(
                        ColumnDef::new(AppVersions::TotalBytes)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AppVersions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AppVersions::StoredAt).timestamp_with_time_zone())
                    .primary_key(
                        Index::create()
                            .col(AppVersions::AppId)
                            .col(AppVersions::Version),
                    )
                    .to_owned(),
            )
            .await?;
        // The upload retry loop looks for pending versions.
        manager
            .create_index(
                Index::create()
                    .name("app_versions_status")
                    .table(AppVersions::Table)
                    .col(AppVersions::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AppVersions::Table).to_owned())
            .await
    }
}
