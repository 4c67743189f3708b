//! The pipeline and the queue together, on a real SQLite database and local storage: a diff
//! becomes a version with its jobs in one transaction, and the workers' steps do the rest.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::*;
use crate::files::manifest::sha256_hex;
use crate::files::versions::{archive_key, blob_key, STATUS_STORED};
use crate::files::BlobCache;
use crate::files::{FileEntry, FileMode};
use crate::git::publish::{GitPublisher, PublishSettings};
use crate::git::LocalGitHost;
use crate::jobs::{JobHandler, JobStatus, JobWorker, Step, WorkerSettings};
use crate::storage::{LocalStore, ObjectStore, UrlSigner};
use entity::jobs as jobs_table;

struct Fixture {
    db: DatabaseConnection,
    pipeline: VersionPipeline,
    versions: FileVersions,
    store: Arc<LocalStore>,
    cache_root: std::path::PathBuf,
    git: Option<GitPublisher>,
    app_id: String,
    dir: tempfile::TempDir,
}

/// An app whose version 1 (stored) holds `files`; `push` adds a local git host.
async fn app_with(files: &[(&str, &str)], push: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = crate::db::connect("sqlite::memory:", 1)
        .await
        .expect("database");
    let store = Arc::new(
        LocalStore::new(
            dir.path().join("store"),
            "http://127.0.0.1:1".into(),
            UrlSigner::new(b"test secret"),
        )
        .expect("store"),
    );
    let cache_root = dir.path().join("cache");
    let cache = BlobCache::new(cache_root.clone()).expect("cache");
    let versions = FileVersions::new(db.clone(), store.clone(), cache);
    let app = crate::apps::create(&db, "alice", "app", None)
        .await
        .expect("app");
    let tree: FileTree = files
        .iter()
        .map(|(path, content)| {
            let entry = FileEntry {
                content: content.as_bytes().to_vec(),
                mode: FileMode::Regular,
            };
            (path.to_string(), entry)
        })
        .collect();
    let v1 = versions
        .create(&app.id, None, None, None, &tree)
        .await
        .expect("version");
    versions.upload(&v1).await.expect("upload");
    let git = push.then(|| {
        let host = LocalGitHost::new(dir.path().join("git"), "http://127.0.0.1:1");
        let settings = PublishSettings {
            branch: "main".into(),
            author_name: "agentgate".into(),
            author_email: "agentgate@localhost".into(),
            name_attempts: 3,
            private: true,
        };
        GitPublisher::new(db.clone(), Arc::new(host), versions.clone(), settings)
    });
    let settings = PipelineSettings {
        push,
        stream_wait: Duration::from_secs(5),
        ..PipelineSettings::default()
    };
    Fixture {
        pipeline: VersionPipeline::new(db.clone(), versions.clone(), settings),
        db,
        versions,
        store,
        cache_root,
        git,
        app_id: app.id,
        dir,
    }
}

impl Fixture {
    fn ctx(&self, run: &str) -> DiffContext {
        DiffContext {
            app_id: self.app_id.clone(),
            run_id: run.into(),
            owner_id: "alice".into(),
            app_name: Some("notes".into()),
            commit_message: Some("Edit a.txt".into()),
            base_version: Some(1),
        }
    }

    /// Loses a blob everywhere: from the local cache and from storage.
    async fn lose(&self, content: &str) {
        let sha = sha256_hex(content.as_bytes());
        let cached = self.cache_root.join(&sha[..2]).join(&sha);
        tokio::fs::remove_file(cached).await.expect("remove cached");
        self.store.delete(&blob_key(&sha)).await.expect("delete");
    }

    fn effects(&self) -> Arc<Effects> {
        Arc::new(Effects {
            db: self.db.clone(),
            files: self.versions.clone(),
            git: self.git.clone(),
            deploy: None,
            cleanup: None,
            webhooks: None,
            policies: EffectPolicies::default(),
        })
    }

    /// A worker of this test's own, taking every kind it can run.
    fn worker(&self, id: &str) -> JobWorker {
        JobWorker {
            db: self.db.clone(),
            handler: self.effects(),
            settings: WorkerSettings {
                poll_interval: Duration::from_millis(50),
                lease: Duration::from_secs(30),
                affinity: jobs::Affinity::none(),
            },
            id: id.into(),
            kinds: Some(vec![JobKind::UploadVersion, JobKind::PushVersion]),
            clocks: Default::default(),
        }
    }

    /// Runs due jobs with one worker until none is due.
    async fn drain(&self) {
        let worker = self.worker("test-worker");
        let kinds = worker.kinds.clone();
        while let Some(job) = jobs::claim(
            &self.db,
            "test-worker",
            Duration::from_secs(30),
            kinds.as_deref(),
        )
        .await
        .expect("claim")
        {
            worker.process(job).await;
        }
    }

    /// The app's (first) job of `kind`.
    async fn job(&self, kind: JobKind) -> jobs_table::Model {
        self.jobs()
            .await
            .into_iter()
            .find(|j| j.kind == kind)
            .unwrap_or_else(|| panic!("no {} job", kind.as_str()))
    }

    async fn jobs(&self) -> Vec<jobs_table::Model> {
        jobs_table::Entity::find()
            .filter(jobs_table::Column::AppId.eq(self.app_id.as_str()))
            .all(&self.db)
            .await
            .expect("jobs")
    }
}

fn created(notices: &[Notice]) -> bool {
    notices.iter().any(
        |n| matches!(n, Notice::Platform { metadata, .. } if metadata["type"] == "version_created"),
    )
}

fn types(notices: &[Notice]) -> Vec<String> {
    notices
        .iter()
        .map(|n| match n {
            Notice::Platform { metadata, .. } => metadata["type"].as_str().unwrap_or("").into(),
            Notice::Error { code, .. } | Notice::Rejected { code, .. } => code.clone(),
        })
        .collect()
}

const EDIT_A: &str = "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+A\n";

#[tokio::test]
async fn a_diff_reads_only_the_files_it_touches() {
    let f = app_with(&[("a.txt", "a\n"), ("b.txt", "b\n")], false).await;
    // Reading b.txt would fail now: the whole-tree load refused the diff (files_unavailable).
    f.lose("b\n").await;
    let notices = f
        .pipeline
        .apply(&f.ctx("run-1"), EDIT_A, &mut Pending::default())
        .await;
    assert!(created(&notices), "{notices:?}");
    let v2 = f.versions.get(&f.app_id, 2).await.expect("query");
    let manifest = Manifest::from_json(&v2.expect("version 2").manifest).expect("manifest");
    assert_eq!(manifest.files["a.txt"].sha256, sha256_hex(b"A\n"));
    assert_eq!(manifest.files["b.txt"].sha256, sha256_hex(b"b\n"));
}

#[tokio::test]
async fn a_version_comes_with_its_jobs_and_the_upload_job_stores_it() {
    let f = app_with(&[("a.txt", "a\n"), ("b.txt", "b\n")], true).await;
    let mut pending = Pending::default();
    assert!(created(
        &f.pipeline
            .apply(&f.ctx("run-1"), EDIT_A, &mut pending)
            .await
    ));
    let queued = f.jobs().await;
    let kinds: Vec<JobKind> = queued.iter().map(|j| j.kind).collect();
    assert!(
        kinds.contains(&JobKind::UploadVersion) && kinds.contains(&JobKind::PushVersion),
        "{kinds:?}"
    );
    assert!(queued
        .iter()
        .all(|j| j.version == Some(2) && j.status == JobStatus::Queued));
    let v2 = f
        .versions
        .get(&f.app_id, 2)
        .await
        .expect("query")
        .expect("v2");
    assert_eq!(
        v2.git_status,
        Some(entity::app_versions::GitStatus::Pending)
    );
    assert_eq!(v2.commit_message.as_deref(), Some("Edit a.txt"));

    f.drain().await;
    let v2 = f
        .versions
        .get(&f.app_id, 2)
        .await
        .expect("query")
        .expect("v2");
    assert_eq!(v2.status, STATUS_STORED);
    assert!(f
        .store
        .exists(&archive_key(&f.app_id, 2))
        .await
        .expect("exists"));
    let tree = f.versions.load_tree(&v2).await.expect("tree");
    assert_eq!(tree["a.txt"].content, b"A\n");
    // The run reports the push: the repository, then the commit.
    let notices = f
        .pipeline
        .finish(pending, true, std::future::pending())
        .await;
    assert_eq!(types(&notices), ["repo_created", "commit_created"]);
    assert!(f.jobs().await.iter().all(|j| j.status == JobStatus::Done));
}

#[tokio::test]
async fn a_diff_that_changes_nothing_makes_no_version_and_no_job() {
    let f = app_with(&[("a.txt", "a\n")], true).await;
    let same = "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+a\n";
    let mut pending = Pending::default();
    assert_eq!(
        f.pipeline.apply(&f.ctx("run-1"), same, &mut pending).await,
        Vec::new()
    );
    assert!(f.versions.get(&f.app_id, 2).await.expect("query").is_none());
    assert!(f.jobs().await.is_empty());
    assert!(pending.is_empty());
}

#[tokio::test]
async fn a_version_whose_jobs_cannot_be_queued_is_not_saved() {
    let f = app_with(&[("a.txt", "a\n")], false).await;
    // The queue's table is gone: the version's transaction must fail as a whole.
    use sea_orm::ConnectionTrait;
    f.db.execute_unprepared("DROP TABLE jobs")
        .await
        .expect("drop");
    let notices = f
        .pipeline
        .apply(&f.ctx("run-1"), EDIT_A, &mut Pending::default())
        .await;
    assert_eq!(types(&notices), ["version_not_saved"]);
    assert!(
        f.versions.get(&f.app_id, 2).await.expect("query").is_none(),
        "no version without its jobs"
    );
}

#[tokio::test]
async fn a_failed_push_is_reported_at_once_and_pushed_by_its_retry() {
    let f = app_with(&[("a.txt", "a\n")], true).await;
    // The git root is a file: every push fails until it is removed.
    let blocker = f.dir.path().join("git");
    std::fs::write(&blocker, b"not a directory").expect("block");
    let mut pending = Pending::default();
    assert!(created(
        &f.pipeline
            .apply(&f.ctx("run-1"), EDIT_A, &mut pending)
            .await
    ));
    f.drain().await;
    let push = f.job(JobKind::PushVersion).await;
    assert_eq!((push.status, push.attempts), (JobStatus::Queued, 1));
    assert!(push.last_error.is_some());
    assert!(
        push.run_at > chrono::Utc::now(),
        "retried later, not at once"
    );
    // The run does not wait out the backoff: it says the push will follow.
    let started = std::time::Instant::now();
    let notices = f
        .pipeline
        .finish(pending, true, std::future::pending())
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(types(&notices), ["commit_pending"]);

    // The retry (made due now) pushes it and, nobody watching, tells the app's history.
    std::fs::remove_file(&blocker).expect("unblock");
    jobs_table::Entity::update_many()
        .col_expr(
            jobs_table::Column::RunAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now()),
        )
        .filter(jobs_table::Column::Id.eq(push.id.as_str()))
        .exec(&f.db)
        .await
        .expect("due now");
    f.drain().await;
    let v2 = f
        .versions
        .get(&f.app_id, 2)
        .await
        .expect("query")
        .expect("v2");
    assert_eq!(v2.git_status, Some(entity::app_versions::GitStatus::Pushed));
    let history = crate::apps::history(&f.db, &f.app_id)
        .await
        .expect("history");
    let told: Vec<&str> = history.iter().map(|m| m.content.as_str()).collect();
    assert!(
        told.iter().any(|t| t.starts_with("Committed version 2")),
        "{told:?}"
    );
}

#[tokio::test]
async fn a_newer_push_supersedes_one_waiting_for_its_retry() {
    let f = app_with(&[("a.txt", "a\n")], true).await;
    let blocker = f.dir.path().join("git");
    std::fs::write(&blocker, b"not a directory").expect("block");
    assert!(created(
        &f.pipeline
            .apply(&f.ctx("run-1"), EDIT_A, &mut Pending::default())
            .await
    ));
    f.drain().await;
    std::fs::remove_file(&blocker).expect("unblock");
    // The next version's push does the backlog (version 2) too, at once, and its run reports
    // the repository and both commits.
    let mut ctx = f.ctx("run-2");
    ctx.base_version = Some(2);
    let edit = "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-A\n+AA\n";
    let mut pending = Pending::default();
    assert!(created(&f.pipeline.apply(&ctx, edit, &mut pending).await));
    f.drain().await;
    let notices = f
        .pipeline
        .finish(pending, true, std::future::pending())
        .await;
    assert_eq!(
        types(&notices),
        ["repo_created", "commit_created", "commit_created"]
    );
    let pushes: Vec<JobStatus> = f
        .jobs()
        .await
        .iter()
        .filter(|j| j.kind == JobKind::PushVersion)
        .map(|j| j.status)
        .collect();
    assert!(
        pushes.contains(&JobStatus::Cancelled) && pushes.contains(&JobStatus::Done),
        "{pushes:?}"
    );
}

#[tokio::test]
async fn an_upload_that_cannot_succeed_is_retried_without_blocking_others() {
    let f = app_with(&[("a.txt", "a\n")], false).await;
    let mut pending = Pending::default();
    assert!(created(
        &f.pipeline
            .apply(&f.ctx("run-1"), EDIT_A, &mut pending)
            .await
    ));
    // Version 2's only new blob is lost before its upload: the job fails and backs off.
    let sha = sha256_hex(b"A\n");
    tokio::fs::remove_file(f.cache_root.join(&sha[..2]).join(&sha))
        .await
        .expect("lose");
    f.drain().await;
    let other = crate::apps::create(&f.db, "bob", "other", None)
        .await
        .expect("app");
    let tree = FileTree::from([(
        "x.txt".to_string(),
        FileEntry {
            content: b"x".to_vec(),
            mode: FileMode::Regular,
        },
    )]);
    let v1 = f
        .versions
        .create(&other.id, None, None, None, &tree)
        .await
        .expect("version");
    jobs::enqueue_now(
        &f.db,
        NewJob::new(JobKind::UploadVersion, &other.id).version(1),
    )
    .await
    .expect("enqueue");
    f.drain().await;
    let stored = f
        .versions
        .get(&other.id, v1.version)
        .await
        .expect("query")
        .expect("v1");
    assert_eq!(
        stored.status, STATUS_STORED,
        "the other app's upload went through"
    );
    let broken = f.job(JobKind::UploadVersion).await;
    assert_eq!((broken.status, broken.attempts), (JobStatus::Queued, 1));
    assert!(broken.last_error.unwrap_or_default().contains("missing"));
    assert_eq!(
        types(
            &f.pipeline
                .finish(pending, true, std::future::pending())
                .await
        ),
        ["storage_pending"]
    );
}

#[tokio::test]
async fn a_job_whose_worker_died_is_taken_over_once_its_lease_expires() {
    let f = app_with(&[("a.txt", "a\n")], false).await;
    assert!(created(
        &f.pipeline
            .apply(&f.ctx("run-1"), EDIT_A, &mut Pending::default())
            .await
    ));
    let only = Some(&[JobKind::UploadVersion][..]);
    let taken = jobs::claim(&f.db, "dead", Duration::from_millis(200), only)
        .await
        .expect("claim")
        .expect("due");
    assert!(
        jobs::claim(&f.db, "live", Duration::from_secs(30), only)
            .await
            .expect("claim")
            .is_none(),
        "leased"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The sweep puts it back in the queue; then any worker takes it.
    assert_eq!(jobs::requeue_expired(&f.db).await.expect("requeue"), 1);
    let again = jobs::claim(&f.db, "live", Duration::from_secs(30), only)
        .await
        .expect("claim")
        .expect("the expired lease is taken over");
    assert_eq!(again.id, taken.id);
    // The dead worker's late outcome is discarded; the live one's counts.
    let policy = f.effects().policy(JobKind::UploadVersion);
    let (kept, _) = jobs::finish(&f.db, &taken, "dead", &policy, Step::Done(None))
        .await
        .expect("finish");
    assert!(!kept);
    f.worker("live").process(again).await;
    let v2 = f
        .versions
        .get(&f.app_id, 2)
        .await
        .expect("query")
        .expect("v2");
    assert_eq!(v2.status, STATUS_STORED);
}

/// A new version's upload runs on the gateway whose cache holds its blobs while that gateway
/// lives, and on any other once its heartbeat is stale.
#[tokio::test]
async fn a_job_of_a_live_gateway_waits_for_it() {
    let f = app_with(&[("a.txt", "a\n")], false).await;
    let heartbeat = |at: chrono::DateTime<chrono::Utc>| {
        crate::db::statement(
            &f.db,
            "INSERT INTO gateways (id, local_state, secrets_digest, started_at, heartbeat_at) \
             VALUES ('gw-a', '', '', $1, $1) ON CONFLICT (id) DO UPDATE SET heartbeat_at = $1",
            vec![at.into()],
        )
    };
    use sea_orm::ConnectionTrait;
    f.db.execute_raw(heartbeat(chrono::Utc::now()))
        .await
        .expect("gateway a");
    let job = NewJob::new(JobKind::UploadVersion, &f.app_id)
        .version(1)
        .on("gw-a");
    let job = jobs::enqueue_now(&f.db, job).await.expect("enqueue");
    let as_gateway = |gateway: &str| jobs::Affinity {
        gateway: gateway.into(),
        alive: Duration::from_secs(30),
    };
    let lease = Duration::from_secs(30);
    let by_b = jobs::claim_for(&f.db, "w-b", &as_gateway("gw-b"), lease, None).await;
    assert!(by_b.expect("claim").is_none(), "gateway a is live");

    let stale = chrono::Utc::now() - chrono::Duration::seconds(60);
    f.db.execute_raw(heartbeat(stale)).await.expect("stale");
    let by_b = jobs::claim_for(&f.db, "w-b", &as_gateway("gw-b"), lease, None).await;
    assert_eq!(by_b.expect("claim").map(|j| j.id), Some(job.id));
}

#[tokio::test]
async fn a_job_waits_for_the_job_it_depends_on() {
    let f = app_with(&[("a.txt", "a\n")], false).await;
    let first = jobs::enqueue_now(
        &f.db,
        NewJob::new(JobKind::UploadVersion, &f.app_id).version(1),
    )
    .await
    .expect("enqueue");
    let second = NewJob::new(JobKind::UploadVersion, &f.app_id)
        .version(1)
        .after(Some(&first));
    let second = jobs::enqueue_now(&f.db, second).await.expect("enqueue");
    let claimed = jobs::claim(&f.db, "w", Duration::from_secs(30), None)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(claimed.id, first.id);
    assert!(
        jobs::claim(&f.db, "w", Duration::from_secs(30), None)
            .await
            .expect("claim")
            .is_none(),
        "the second waits"
    );
    let policy = f.effects().policy(JobKind::UploadVersion);
    jobs::finish(&f.db, &claimed, "w", &policy, Step::Done(None))
        .await
        .expect("finish");
    let next = jobs::claim(&f.db, "w", Duration::from_secs(30), None)
        .await
        .expect("claim")
        .expect("due now");
    assert_eq!(next.id, second.id);
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let f = app_with(&[("a.txt", "a\n")], false).await;
    let job = NewJob::new(JobKind::UploadVersion, &f.app_id)
        .version(1)
        .max_attempts(2);
    jobs::enqueue_now(&f.db, job).await.expect("enqueue");
    let policy = crate::jobs::RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(2),
        max_attempts: 2,
    };
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let claimed = jobs::claim(&f.db, "w", Duration::from_secs(30), None)
            .await
            .expect("claim")
            .expect("due");
        let step = Step::Retry {
            error: "storage down".into(),
            retry_after: None,
        };
        let (_, finished) = jobs::finish(&f.db, &claimed, "w", &policy, step)
            .await
            .expect("finish");
        outcomes.push(finished.map(|j| (j.status, j.attempts)));
    }
    assert_eq!(outcomes, [None, Some((JobStatus::Failed, 2))]);
}

#[tokio::test]
async fn a_run_stopped_while_it_waits_hands_its_effects_over_at_once() {
    let f = app_with(&[("a.txt", "a\n")], true).await;
    let mut pending = Pending::default();
    assert!(created(
        &f.pipeline
            .apply(&f.ctx("run-1"), EDIT_A, &mut pending)
            .await
    ));
    // No worker runs: without the stop, the run would wait its whole bound (5 s here).
    let started = std::time::Instant::now();
    f.pipeline
        .finish(pending, true, std::future::ready(()))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let push = f.job(JobKind::PushVersion).await;
    assert!(
        !push.watched,
        "the push reports to the history when it is done"
    );
}
