//! Deployment logs: one row per line a deployment wrote (its status changes, the gateway's own
//! steps, the image builder's output, the provider's messages), numbered per deployment. The
//! deployment row counts the lines it ever got (`log_seq`): a writer takes its numbers from it
//! under the row's lock, so lines commit in the order of their numbers and a reader that follows
//! `seq` never skips one. Seq 0 is reserved for the note on lines dropped past the bound.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Deployments {
    Table,
    LogSeq,
}

#[derive(Iden)]
enum DeploymentLogs {
    Table,
    DeploymentId,
    Seq,
    At,
    Stream,
    Text,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deployments::Table)
                    .add_column(
                        ColumnDef::new(Deployments::LogSeq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeploymentLogs::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(DeploymentLogs::DeploymentId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(DeploymentLogs::Seq).big_integer().not_null())
                    .col(
                        ColumnDef::new(DeploymentLogs::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeploymentLogs::Stream)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(DeploymentLogs::Text).text().not_null())
                    .primary_key(
                        Index::create()
                            .col(DeploymentLogs::DeploymentId)
                            .col(DeploymentLogs::Seq),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeploymentLogs::Table).to_owned())
            .await
    }
}
