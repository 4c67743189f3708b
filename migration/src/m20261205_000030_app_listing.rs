//! The client that created an app (app.build's `clientSource`), and the indexes `GET /apps`
//! needs: each app's latest run (for its trace id), and the agent replies that make an app
//! worth listing (anything but a refinement question or an error).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Apps {
    Table,
    ClientSource,
}

#[derive(Iden)]
enum Runs {
    Table,
    AppId,
    CreatedAt,
}

#[derive(Iden)]
enum AppMessages {
    Table,
    AppId,
    Role,
    Kind,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Apps::Table)
                    .add_column(ColumnDef::new(Apps::ClientSource).string_len(64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runs_app_created")
                    .table(Runs::Table)
                    .col(Runs::AppId)
                    .col(Runs::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // Not a partial index: a query's bound parameters never prove a partial index's predicate.
        manager
            .create_index(
                Index::create()
                    .name("app_messages_app_role_kind")
                    .table(AppMessages::Table)
                    .col(AppMessages::AppId)
                    .col(AppMessages::Role)
                    .col(AppMessages::Kind)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("app_messages_app_role_kind").to_owned())
            .await?;
        manager
            .drop_index(Index::drop().name("runs_app_created").to_owned())
            .await
    }
}
