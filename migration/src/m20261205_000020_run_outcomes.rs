//! What a run's request was and why it ended. `request_digest` lets a retried `POST /message`
//! with the same `Idempotency-Key` be told apart from a different request reusing the key;
//! `error_code` is the stable code of a failed run (`diff_hunk_failed`, `deployment_failed`,
//! `upstream_http_error`, ...), so clients can show why without parsing the message.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Runs {
    Table,
    RequestDigest,
    ErrorCode,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE; both stay NULL for older runs.
        for column in [
            ColumnDef::new(Runs::RequestDigest)
                .string_len(64)
                .to_owned(),
            ColumnDef::new(Runs::ErrorCode).string_len(64).to_owned(),
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
