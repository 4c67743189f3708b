//! The job queue's migration moves the old queues' work over without loss.
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, EntityTrait, QueryOrder};

use entity::jobs::{self, JobKind, JobStatus};

/// Inserts a row with SQL of the old schema.
async fn insert(db: &sea_orm::DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.expect(sql);
}

#[tokio::test]
async fn queued_work_of_the_old_tables_becomes_jobs() {
    let db = Database::connect("sqlite::memory:")
        .await
        .expect("database");
    // Every migration before the job queue's.
    let before_queue = Migrator::migrations()
        .iter()
        .position(|m| m.name().contains("job_queue"))
        .expect("the job queue migration") as u32;
    Migrator::up(&db, Some(before_queue))
        .await
        .expect("migrate to the old schema");
    let app = crate::apps::create(&db, "alice", "app", None)
        .await
        .expect("app");
    let gone = crate::apps::create(&db, "alice", "gone", None)
        .await
        .expect("app");
    let at = "2026-12-01 10:00:00+00:00";
    for (id, version, status, git) in [
        (&app.id, 1, "stored", "'pushed'"),
        (&app.id, 2, "pending", "'pending'"),
        (&gone.id, 1, "pending", "'pending'"),
    ] {
        insert(&db, &format!(
            "INSERT INTO app_versions (app_id, version, manifest, status, file_count, total_bytes, created_at, git_status) \
             VALUES ('{id}', {version}, '{{}}', '{status}', 0, 0, '{at}', {git})"
        ))
        .await;
    }
    insert(
        &db,
        &format!(
            "UPDATE apps SET deleted_at = '{at}' WHERE id = '{}'",
            gone.id
        ),
    )
    .await;
    for (id, status, attempts) in [("d-live", "building", 2), ("d-done", "healthy", 0)] {
        insert(&db, &format!(
            "INSERT INTO deployments (id, app_id, owner_id, version, provider, status, provider_state, attempts, \
             next_attempt_at, watched, notified, created_at, updated_at) \
             VALUES ('{id}', '{}', 'alice', 1, 'local', '{status}', '{{}}', {attempts}, '{at}', false, false, '{at}', '{at}')",
            app.id
        ))
        .await;
    }
    for (id, kind, status) in [("c-1", "deployment", "pending"), ("c-2", "storage", "done")] {
        insert(&db, &format!(
            "INSERT INTO cleanup_jobs (id, app_id, kind, status, attempts, next_attempt_at, last_error, created_at, updated_at) \
             VALUES ('{id}', '{}', '{kind}', '{status}', 3, '{at}', 'provider down', '{at}', '{at}')",
            gone.id
        ))
        .await;
    }

    Migrator::up(&db, None).await.expect("the queue migration");
    let rows = jobs::Entity::find()
        .order_by_asc(jobs::Column::Id)
        .all(&db)
        .await
        .expect("jobs");
    let summary: Vec<(String, JobKind, JobStatus, i32, Option<i32>)> = rows
        .iter()
        .map(|j| (j.id.clone(), j.kind, j.status, j.attempts, j.version))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "c-1".into(),
                JobKind::CleanupDeployment,
                JobStatus::Queued,
                3,
                None
            ),
            (
                "c-2".into(),
                JobKind::CleanupStorage,
                JobStatus::Done,
                3,
                None
            ),
            (
                "deploy-d-live".into(),
                JobKind::Deploy,
                JobStatus::Queued,
                2,
                Some(1)
            ),
            (
                format!("push-{}-2", app.id),
                JobKind::PushVersion,
                JobStatus::Queued,
                0,
                Some(2)
            ),
            (
                format!("upload-{}-2", app.id),
                JobKind::UploadVersion,
                JobStatus::Queued,
                0,
                Some(2)
            ),
        ],
        "a deleted app's versions and finished deployments get no job"
    );
    let deploy = rows
        .iter()
        .find(|j| j.kind == JobKind::Deploy)
        .expect("deploy");
    assert_eq!(deploy.subject.as_deref(), Some("d-live"));
    let cleanup = rows.iter().find(|j| j.id == "c-1").expect("clean-up");
    assert_eq!(cleanup.last_error.as_deref(), Some("provider down"));
    // The old queue's table is gone; the deployments keep their records.
    assert!(db
        .execute_unprepared("SELECT 1 FROM cleanup_jobs")
        .await
        .is_err());
    let deployments = entity::deployments::Entity::find()
        .all(&db)
        .await
        .expect("deployments");
    assert_eq!(deployments.len(), 2);
}
