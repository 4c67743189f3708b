//! One durable job queue for every background effect. Moves today's queued work over without
//! loss: clean-up jobs keep their ids, attempts and errors; every active deployment gets its
//! `deploy` job (attempts and due time kept); versions still waiting for storage or the git
//! host get `upload_version` / `push_version` jobs. Then the old queue's table and the
//! deployments' lease columns go.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Jobs {
    Table,
    Id,
    Kind,
    AppId,
    Version,
    Subject,
    Status,
    Attempts,
    MaxAttempts,
    RunAt,
    LeaseOwner,
    LeaseExpiresAt,
    DependsOn,
    LastError,
    Result,
    Watched,
    Reported,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum Deployments {
    Table,
    Attempts,
    NextAttemptAt,
    LeaseOwner,
    LeaseExpiresAt,
}

#[derive(Iden)]
enum CleanupJobs {
    Table,
}

fn ts<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().to_owned()
}

/// The rows moved over, in `INSERT INTO jobs (...) SELECT ...` form (portable SQL).
const MOVES: [&str; 4] = [
    // Clean-up jobs keep their ids; `pending` is `queued` now.
    "INSERT INTO jobs (id, kind, app_id, version, subject, status, attempts, max_attempts, run_at, \
        last_error, watched, reported, created_at, updated_at, finished_at) \
     SELECT id, 'cleanup_' || kind, app_id, NULL, NULL, \
        CASE status WHEN 'pending' THEN 'queued' ELSE status END, attempts, 0, next_attempt_at, \
        last_error, false, true, created_at, updated_at, \
        CASE status WHEN 'pending' THEN NULL ELSE updated_at END \
     FROM cleanup_jobs",
    // Each active deployment is advanced by its own deploy job.
    "INSERT INTO jobs (id, kind, app_id, version, subject, status, attempts, max_attempts, run_at, \
        last_error, watched, reported, created_at, updated_at) \
     SELECT 'deploy-' || id, 'deploy', app_id, version, id, 'queued', attempts, 0, next_attempt_at, \
        error, false, true, created_at, updated_at \
     FROM deployments WHERE status IN ('queued', 'building', 'deploying')",
    "INSERT INTO jobs (id, kind, app_id, version, status, attempts, max_attempts, run_at, \
        watched, reported, created_at, updated_at) \
     SELECT 'upload-' || app_id || '-' || version, 'upload_version', app_id, version, 'queued', 0, 0, \
        created_at, false, true, created_at, created_at \
     FROM app_versions WHERE status = 'pending' \
        AND app_id IN (SELECT id FROM apps WHERE deleted_at IS NULL)",
    "INSERT INTO jobs (id, kind, app_id, version, status, attempts, max_attempts, run_at, \
        watched, reported, created_at, updated_at) \
     SELECT 'push-' || app_id || '-' || version, 'push_version', app_id, version, 'queued', 0, 0, \
        created_at, false, false, created_at, created_at \
     FROM app_versions WHERE git_status = 'pending' \
        AND app_id IN (SELECT id FROM apps WHERE deleted_at IS NULL)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(
                        ColumnDef::new(Jobs::Id)
                            .string_len(80)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Jobs::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(Jobs::AppId).string_len(36).not_null())
                    .col(ColumnDef::new(Jobs::Version).integer())
                    .col(ColumnDef::new(Jobs::Subject).string_len(80))
                    .col(ColumnDef::new(Jobs::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Jobs::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Jobs::MaxAttempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ts(Jobs::RunAt).not_null())
                    .col(ColumnDef::new(Jobs::LeaseOwner).string())
                    .col(ts(Jobs::LeaseExpiresAt))
                    .col(ColumnDef::new(Jobs::DependsOn).string_len(80))
                    .col(ColumnDef::new(Jobs::LastError).text())
                    .col(ColumnDef::new(Jobs::Result).text())
                    .col(
                        ColumnDef::new(Jobs::Watched)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Jobs::Reported)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ts(Jobs::CreatedAt).not_null())
                    .col(ts(Jobs::StartedAt))
                    .col(ts(Jobs::FinishedAt))
                    .col(ts(Jobs::UpdatedAt).not_null())
                    .to_owned(),
            )
            .await?;
        // Workers claim due jobs by status and time.
        manager
            .create_index(
                Index::create()
                    .name("jobs_due")
                    .table(Jobs::Table)
                    .col(Jobs::Status)
                    .col(Jobs::RunAt)
                    .to_owned(),
            )
            .await?;
        // Per-app ordering (pushes of one app in version order) and an app's clean-up.
        manager
            .create_index(
                Index::create()
                    .name("jobs_app_kind")
                    .table(Jobs::Table)
                    .col(Jobs::AppId)
                    .col(Jobs::Kind)
                    .col(Jobs::Version)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_subject")
                    .table(Jobs::Table)
                    .col(Jobs::Subject)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for sql in MOVES {
            db.execute_unprepared(sql).await?;
        }
        manager
            .drop_table(Table::drop().table(CleanupJobs::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("deployments_due")
                    .table(Deployments::Table)
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite alters one at a time.
        for column in [
            Deployments::Attempts,
            Deployments::NextAttemptAt,
            Deployments::LeaseOwner,
            Deployments::LeaseExpiresAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Deployments::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The moved rows cannot be split back into the old tables faithfully.
        Err(DbErr::Migration(
            "the job queue migration cannot be reverted".into(),
        ))
    }
}
