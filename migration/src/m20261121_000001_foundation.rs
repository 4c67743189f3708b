//! Apps, conversation history, runs and their event logs, and the daily message limits.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Apps {
    Table,
    Id,
    OwnerId,
    Name,
    RepoName,
    TechStack,
    RepositoryUrl,
    AppUrl,
    DeployStatus,
    AgentState,
    CurrentVersion,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(Iden)]
enum AppMessages {
    Table,
    Id,
    AppId,
    RunId,
    Role,
    Kind,
    Content,
    Metadata,
    CreatedAt,
}

#[derive(Iden)]
enum Runs {
    Table,
    Id,
    AppId,
    OwnerId,
    TraceId,
    IdempotencyKey,
    Status,
    Error,
    LastSeq,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(Iden)]
enum RunEvents {
    Table,
    RunId,
    Seq,
    Event,
    Data,
    CreatedAt,
}

#[derive(Iden)]
enum UserLimits {
    Table,
    UserId,
    DailyLimit,
    UpdatedAt,
}

#[derive(Iden)]
enum UsageCounters {
    Table,
    UserId,
    Day,
    Count,
}

fn id_column<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().to_owned()
}

fn timestamp<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Apps::Table)
                    .col(id_column(Apps::Id).primary_key())
                    .col(ColumnDef::new(Apps::OwnerId).string().not_null())
                    .col(ColumnDef::new(Apps::Name).string().not_null())
                    .col(ColumnDef::new(Apps::RepoName).string())
                    .col(ColumnDef::new(Apps::TechStack).string())
                    .col(ColumnDef::new(Apps::RepositoryUrl).string())
                    .col(ColumnDef::new(Apps::AppUrl).string())
                    .col(ColumnDef::new(Apps::DeployStatus).string())
                    .col(ColumnDef::new(Apps::AgentState).text())
                    .col(
                        ColumnDef::new(Apps::CurrentVersion)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(Apps::CreatedAt))
                    .col(timestamp(Apps::UpdatedAt))
                    .col(ColumnDef::new(Apps::DeletedAt).timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        // GET /apps: the owner's live apps, newest first.
        manager
            .create_index(
                Index::create()
                    .name("apps_owner_live_created")
                    .table(Apps::Table)
                    .col(Apps::OwnerId)
                    .col(Apps::DeletedAt)
                    .col(Apps::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AppMessages::Table)
                    .col(
                        ColumnDef::new(AppMessages::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(id_column(AppMessages::AppId))
                    .col(ColumnDef::new(AppMessages::RunId).string_len(36))
                    .col(ColumnDef::new(AppMessages::Role).string().not_null())
                    .col(ColumnDef::new(AppMessages::Kind).string().not_null())
                    .col(ColumnDef::new(AppMessages::Content).text().not_null())
                    .col(ColumnDef::new(AppMessages::Metadata).text())
                    .col(timestamp(AppMessages::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // GET /apps/:id/history and the agent request's history, in order.
        manager
            .create_index(
                Index::create()
                    .name("app_messages_app_order")
                    .table(AppMessages::Table)
                    .col(AppMessages::AppId)
                    .col(AppMessages::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(id_column(Runs::Id).primary_key())
                    .col(id_column(Runs::AppId))
                    .col(ColumnDef::new(Runs::OwnerId).string().not_null())
                    .col(ColumnDef::new(Runs::TraceId).string().not_null())
                    .col(ColumnDef::new(Runs::IdempotencyKey).string())
                    .col(ColumnDef::new(Runs::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Runs::Error).text())
                    .col(
                        ColumnDef::new(Runs::LastSeq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(Runs::CreatedAt))
                    .col(ColumnDef::new(Runs::StartedAt).timestamp_with_time_zone())
                    .col(ColumnDef::new(Runs::FinishedAt).timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        // Idempotent POST /message: one run per (user, key). NULL keys never collide.
        manager
            .create_index(
                Index::create()
                    .name("runs_owner_idempotency_key")
                    .table(Runs::Table)
                    .col(Runs::OwnerId)
                    .col(Runs::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Start-up recovery looks up unfinished runs.
        manager
            .create_index(
                Index::create()
                    .name("runs_status")
                    .table(Runs::Table)
                    .col(Runs::Status)
                    .to_owned(),
            )
            .await?;
        // At most one active run per app, enforced by the database so two concurrent POSTs cannot
        // both win. Partial indexes have the same syntax on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX runs_one_active_per_app ON runs (app_id) \
                 WHERE status IN ('queued', 'running')",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RunEvents::Table)
                    .col(id_column(RunEvents::RunId))
                    .col(ColumnDef::new(RunEvents::Seq).big_integer().not_null())
                    .col(ColumnDef::new(RunEvents::Event).string_len(32).not_null())
                    .col(ColumnDef::new(RunEvents::Data).text().not_null())
                    .col(timestamp(RunEvents::CreatedAt))
                    .primary_key(Index::create().col(RunEvents::RunId).col(RunEvents::Seq))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserLimits::Table)
                    .col(
                        ColumnDef::new(UserLimits::UserId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(UserLimits::DailyLimit).integer().not_null())
                    .col(timestamp(UserLimits::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UsageCounters::Table)
                    .col(ColumnDef::new(UsageCounters::UserId).string().not_null())
                    .col(ColumnDef::new(UsageCounters::Day).string_len(10).not_null())
                    .col(ColumnDef::new(UsageCounters::Count).integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(UsageCounters::UserId)
                            .col(UsageCounters::Day),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UsageCounters::Table.into_iden(),
            UserLimits::Table.into_iden(),
            RunEvents::Table.into_iden(),
            Runs::Table.into_iden(),
            AppMessages::Table.into_iden(),
            Apps::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
