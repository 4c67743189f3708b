//! Where each app's repository lives and which versions have been pushed.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Apps {
    Table,
    RepoOwner,
    LastCommitSha,
}

#[derive(Iden)]
enum AppVersions {
    Table,
    GitStatus,
    CommitSha,
    CommitMessage,
    AppName,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            ColumnDef::new(Apps::RepoOwner).string().to_owned(),
            ColumnDef::new(Apps::LastCommitSha)
                .string_len(64)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Apps::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            // pending (to push) | pushed; NULL when no git host is configured.
            ColumnDef::new(AppVersions::GitStatus)
                .string_len(16)
                .to_owned(),
            ColumnDef::new(AppVersions::CommitSha)
                .string_len(64)
                .to_owned(),
            // What the agent said about this version, kept so a deferred push uses it.
            ColumnDef::new(AppVersions::CommitMessage).text().to_owned(),
            ColumnDef::new(AppVersions::AppName).string().to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AppVersions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        // The push retry loop looks for unpushed versions.
        manager
            .create_index(
                Index::create()
                    .name("app_versions_git_status")
                    .table(AppVersions::Table)
                    .col(AppVersions::GitStatus)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("app_versions_git_status").to_owned())
            .await
    }
}
