//! The repository each version was pushed to (URL, owner, name), next to its commit SHA: an
//! app's repository can be replaced or renamed later, and a commit SHA means nothing without
//! the repository that holds it.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum AppVersions {
    Table,
    RepositoryUrl,
    RepoOwner,
    RepoName,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE. NULL until the version is pushed.
        for column in [
            ColumnDef::new(AppVersions::RepositoryUrl)
                .string()
                .to_owned(),
            ColumnDef::new(AppVersions::RepoOwner).string().to_owned(),
            ColumnDef::new(AppVersions::RepoName).string().to_owned(),
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite drops one column per ALTER TABLE too.
        for column in [
            AppVersions::RepositoryUrl,
            AppVersions::RepoOwner,
            AppVersions::RepoName,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AppVersions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
