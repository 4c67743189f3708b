//! Deployments with the embedded local preview: live outcome in the stream, the reconciled
//! status route, manual deploys, lease expiry, supersede and deadlines.
use std::time::Duration;

use agentgate::deploy::records as jobs;
use entity::jobs::{JobKind, JobStatus};

const CLEANUP_KINDS: [JobKind; 4] = [
    JobKind::CleanupDeployment,
    JobKind::CleanupRepository,
    JobKind::CleanupDatabase,
    JobKind::CleanupStorage,
];
use agentgate::files::versions::{archive_key, manifest_key};
use sea_orm::EntityTrait;
use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{
    accept_events_and_compare_the_replay, assert_complete_run, refuse_events_containing, spawn_app,
    spawn_app_with, DbKind, Frame, SseReader, TestApp,
};

fn metadata_types(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| {
            crate::helpers::notice_kind(&f.data)
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

async fn build_app(app: &TestApp, token: &str, prompt: &str) -> (String, Vec<Frame>) {
    let response = app.post_message(token, &json!({"message": prompt})).await;
    assert_eq!(response.status(), 200);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    (
        frames[0].data["appId"]
            .as_str()
            .expect("app id")
            .to_string(),
        frames,
    )
}

async fn wait_for_status(app: &TestApp, token: &str, id: &str, want: &str) -> Value {
    for _ in 0..100 {
        let response = app.get(&format!("/deployment-status/{id}"), token).await;
        if response.status() == 200 {
            let body: Value = response.json().await.expect("json");
            if body["status"] == want {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deployment {id} never reached {want}");
}

async fn demo_run_deploys_a_working_preview(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, frames) = build_app(&app, &token, "build a todo list app").await;
    let types = metadata_types(&frames);
    assert_eq!(
        types,
        // The version's effects are queued with it; the run reports each as it finishes,
        // the push before the deployment.
        vec![
            "version_created",
            "deployment_in_progress",
            "repo_created",
            "commit_created",
            "deployment_complete"
        ],
        "{types:?}"
    );
    let complete = frames
        .iter()
        .find(|f| crate::helpers::notice_kind(&f.data) == "deployment_complete")
        .expect("complete");
    let url = complete.data["message"]["metadata"]["deploymentUrl"]
        .as_str()
        .expect("url")
        .to_string();
    assert!(url.ends_with(&format!("/preview/{app_id}/")), "{url}");

    let page = app.http.get(&url).send().await.expect("preview");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or("")
        .starts_with("sandbox"));
    let html = page.text().await.expect("html");
    assert!(html.contains("<h1") && html.contains("app.js"), "{html}");
    let js = app
        .http
        .get(format!("{url}app.js"))
        .send()
        .await
        .expect("js");
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/javascript"));
    // An encoded traversal normalises to a path outside /preview, which is not public (401);
    // a missing file is 404. Neither serves anything.
    for (bad, expected) in [
        ("..%2F..%2Fetc%2Fpasswd", 401),
        ("%2e%2e%2f%2e%2e%2fetc%2fpasswd", 401),
        ("nope.js", 404),
    ] {
        assert_eq!(
            app.http
                .get(format!("{url}{bad}"))
                .send()
                .await
                .expect("get")
                .status(),
            expected,
            "{bad}"
        );
    }

    let by_app = wait_for_status(&app, &token, &app_id, "healthy").await;
    assert_eq!(by_app["type"], "HEALTHY");
    assert_eq!(by_app["isDeployed"], true);
    assert_eq!(by_app["url"], url.as_str());
    let by_id = wait_for_status(&app, &token, by_app["id"].as_str().expect("id"), "healthy").await;
    assert_eq!(by_id["appId"], app_id.as_str());
    assert_eq!(
        app.get(&format!("/deployment-status/{app_id}"), &app.token("bob"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/deployment-status/nope", &token).await.status(),
        400
    );
    let view: Value = app
        .get(&format!("/apps/{app_id}"), &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(view["deployStatus"], "deployed");
    assert_eq!(view["deploymentStatus"], "healthy");
    assert_eq!(view["appUrl"], url.as_str());

    // A follow-up replaces the preview atomically with the new version.
    let response = app
        .post_message(
            &token,
            &json!({"message": "rename it to Groceries", "applicationId": app_id}),
        )
        .await;
    let frames = SseReader::new(response).collect().await;
    assert!(metadata_types(&frames).contains(&"deployment_complete".to_string()));
    let html = app
        .http
        .get(&url)
        .send()
        .await
        .expect("preview")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Groceries"));
    app.stop().await;
}
db_test!(demo_run_deploys_a_working_preview);

/// A worker takes a queued job at once (it is woken when the job is queued) and a job's next
/// step right after the last, however long the poll interval: a 10 s interval must not delay
/// a local preview by 10 s, nor several of them by 10 s each.
/// The log refuses the deployment's notice, which the run reports after the agent finished:
/// the run fails with an error event in the notice's place (the stream must not end as if it
/// had succeeded), and once the log takes rows again it holds what was streamed.
async fn a_final_notice_the_log_cannot_store_fails_the_run(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    refuse_events_containing(&app, "deployment_complete").await;
    let (_, frames) = build_app(&app, &token, "build a todo list app").await;
    let last: Vec<&str> = frames
        .iter()
        .rev()
        .take(2)
        .map(|f| f.event.as_str())
        .collect();
    assert_eq!(last, ["done", "error"]);
    let error = &frames[frames.len() - 2];
    assert_eq!(error.data["code"], "internal_error");
    assert!(!metadata_types(&frames).contains(&"deployment_complete".to_string()));

    accept_events_and_compare_the_replay(&app, &token, &frames, "failed").await;
    app.stop().await;
}
db_test!(a_final_notice_the_log_cannot_store_fails_the_run);

async fn workers_take_new_jobs_and_next_steps_at_once(kind: DbKind) {
    let app = spawn_app_with(kind, "[deploy]\npoll_interval_ms = 10000\nworkers = 2\n").await;
    let token = app.token("alice");
    // Let the workers go idle first: they now sleep for the whole poll interval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let runs = [
        "build a todo list",
        "make a counter app",
        "build a notes app",
    ]
    .map(|prompt| build_app(&app, &token, prompt));
    for (_, frames) in futures::future::join_all(runs).await {
        let types = metadata_types(&frames);
        assert!(
            types.contains(&"deployment_complete".to_string()),
            "{types:?}"
        );
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    app.stop().await;
}
db_test!(workers_take_new_jobs_and_next_steps_at_once);

async fn manual_deploy_reports_to_history(kind: DbKind) {
    let app = spawn_app_with(kind, "[deploy]\non_new_version = false\n").await;
    let token = app.token("alice");
    let (app_id, frames) = build_app(&app, &token, "build a todo list app").await;
    assert_eq!(
        metadata_types(&frames),
        vec!["version_created", "repo_created", "commit_created"]
    );
    assert_eq!(
        app.get(&format!("/deployment-status/{app_id}"), &token)
            .await
            .status(),
        404,
        "never deployed"
    );
    let response = app
        .post_json(&format!("/apps/{app_id}/deploy"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    wait_for_status(
        &app,
        &token,
        body["deploymentId"].as_str().expect("id"),
        "healthy",
    )
    .await;
    let mut found = false;
    for _ in 0..50 {
        let history: Value = app
            .get(&format!("/apps/{app_id}/history"), &token)
            .await
            .json()
            .await
            .expect("json");
        found = history
            .as_array()
            .expect("array")
            .iter()
            .any(|m| m["metadata"]["type"] == "deployment_complete");
        if found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        found,
        "the outcome of a deploy nobody streams lands in the history"
    );
    assert_eq!(
        app.post_json(
            &format!("/apps/{app_id}/deploy"),
            &app.token("bob"),
            &json!({})
        )
        .await
        .status(),
        404
    );
    app.stop().await;
}
db_test!(manual_deploy_reports_to_history);

async fn dead_worker_lease_expires_and_the_job_is_retried(kind: DbKind) {
    let app = spawn_app_with(kind, "[deploy]\non_new_version = false\n").await;
    let token = app.token("alice");
    let (app_id, _) = build_app(&app, &token, "build a todo list app").await;
    // No worker of the gateway's own may take the job while we play the dead one.
    let mut app = app;
    app.stop_server().await;
    let db = &app.state.db;
    let job = jobs::enqueue(
        db,
        &app_id,
        "alice",
        1,
        "local",
        chrono::Duration::minutes(10),
        false,
    )
    .await
    .expect("enqueue");
    // A worker claims the job, moves it to building, and dies inside its provider's start.
    let stolen = agentgate::jobs::claim(db, "dead-worker", Duration::from_secs(1), None)
        .await
        .expect("claim")
        .expect("the job is due");
    assert_eq!(stolen.subject.as_deref(), Some(job.id.as_str()));
    let lease = agentgate::jobs::Lease {
        job_id: stolen.id.clone(),
        worker: "dead-worker".into(),
    };
    let mut state = serde_json::Map::new();
    state.insert("starting".into(), true.into());
    let deadline = chrono::Utc::now() + chrono::Duration::minutes(10);
    assert!(jobs::mark_building(db, &job.id, &lease, &state, deadline)
        .await
        .expect("mark"));
    assert!(
        agentgate::jobs::claim(db, "other", Duration::from_secs(30), None)
            .await
            .expect("claim")
            .is_none(),
        "a leased job is not claimed twice"
    );
    // Once the lease has expired, a live worker takes the job over and finishes the start.
    let app = app.restart("[deploy]\non_new_version = false\n").await;
    let healthy = wait_for_status(&app, &token, &job.id, "healthy").await;
    assert_eq!(healthy["type"], "HEALTHY");
    let row = jobs::find(&app.state.db, &job.id)
        .await
        .expect("find")
        .expect("row");
    assert!(
        !row.provider_state.contains("starting"),
        "{}",
        row.provider_state
    );
    app.stop().await;
}
db_test!(dead_worker_lease_expires_and_the_job_is_retried);

async fn newer_versions_supersede_and_deadlines_fail_stuck_jobs(kind: DbKind) {
    let app = spawn_app_with(kind, "[deploy]\non_new_version = false\n").await;
    let token = app.token("alice");
    let (app_id, _) = build_app(&app, &token, "build a todo list app").await;
    // Stop the workers so the queue stays as we leave it.
    let mut app = app;
    app.stop_server().await;
    let db = &app.state.db;
    let first = jobs::enqueue(
        db,
        &app_id,
        "alice",
        1,
        "local",
        chrono::Duration::minutes(10),
        false,
    )
    .await
    .expect("enqueue");
    let second = jobs::enqueue(
        db,
        &app_id,
        "alice",
        2,
        "local",
        chrono::Duration::milliseconds(300),
        false,
    )
    .await
    .expect("enqueue");
    let first = jobs::find(db, &first.id).await.expect("find").expect("row");
    assert_eq!(first.status.as_str(), "superseded");
    let row = entity::apps::Entity::find_by_id(app_id.clone())
        .one(db)
        .await
        .expect("query")
        .expect("app");
    assert_eq!(
        row.deploy_status.as_deref(),
        Some("queued"),
        "the app says so too"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The status route reconciles: a queued job past its deadline is failed with a reason.
    let restarted = app
        .restart("[deploy]\non_new_version = false\nworkers = 1\n")
        .await;
    let body: Value = restarted
        .get(&format!("/deployment-status/{}", second.id), &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["type"], "ERROR");
    assert!(
        body["error"].as_str().unwrap_or("").contains("timed out"),
        "{body}"
    );
    restarted.stop().await;
}
db_test!(newer_versions_supersede_and_deadlines_fail_stuck_jobs);

async fn deleting_an_app_cleans_up_its_deployment(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, frames) = build_app(&app, &token, "build a todo list app").await;
    let url = frames
        .iter()
        .find_map(|f| f.data["message"]["metadata"]["deploymentUrl"].as_str())
        .expect("deployed")
        .to_string();
    assert_eq!(app.http.get(&url).send().await.expect("get").status(), 200);
    let version = app
        .state
        .files
        .latest(&app_id)
        .await
        .expect("versions")
        .expect("a version")
        .version;
    let store = app.state.files.store();
    for key in [
        manifest_key(&app_id, version),
        archive_key(&app_id, version),
    ] {
        assert!(store.exists(&key).await.expect("exists"), "{key} is stored");
    }
    let started = std::time::Instant::now();
    let response = app.delete(&format!("/apps/{app_id}"), &token).await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the response does not wait for clean-up"
    );
    let mut gone = false;
    for _ in 0..50 {
        if app.http.get(&url).send().await.expect("get").status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the preview is removed");
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    // Each clean-up step (preview, repository archive) finishes on its own schedule.
    let mut jobs = Vec::new();
    for _ in 0..100 {
        jobs = entity::jobs::Entity::find()
            .filter(entity::jobs::Column::AppId.eq(app_id.as_str()))
            .filter(entity::jobs::Column::Kind.is_in(CLEANUP_KINDS))
            .all(&app.state.db)
            .await
            .expect("jobs");
        if !jobs.is_empty() && jobs.iter().all(|j| j.status == JobStatus::Done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !jobs.is_empty() && jobs.iter().all(|j| j.status == JobStatus::Done),
        "{jobs:?}"
    );
    let kinds: Vec<JobKind> = jobs.iter().map(|j| j.kind).collect();
    assert!(kinds.contains(&JobKind::CleanupStorage), "{kinds:?}");
    let store = app.state.files.store();
    for key in [
        manifest_key(&app_id, version),
        archive_key(&app_id, version),
    ] {
        assert!(
            !store.exists(&key).await.expect("exists"),
            "{key} is removed"
        );
    }
    app.stop().await;
}
db_test!(deleting_an_app_cleans_up_its_deployment);

/// On PostgreSQL a job enqueued by another gateway wakes this one's idle workers at once
/// (`NOTIFY` at the enqueuing commit), not at their next poll a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_elsewhere_wakes_idle_workers_on_postgres() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    use sea_orm::{ColumnTrait, QueryFilter, TransactionTrait};
    let app = spawn_app_with(DbKind::Postgres, "[deploy]\npoll_interval_ms = 60000\n").await;
    let token = app.token("alice");
    let (app_id, _) = build_app(&app, &token, "build a todo list app").await;
    // Another gateway's connection: its enqueue wakes nobody in this process but by NOTIFY.
    let other = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("connect");
    // Once the run's own jobs are done, every worker sleeps until woken or a minute passes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let txn = other.begin().await.expect("begin");
    let job = agentgate::jobs::NewJob::new(JobKind::UploadVersion, &app_id).version(1);
    let job = agentgate::jobs::enqueue(&txn, job).await.expect("enqueue");
    txn.commit().await.expect("commit");
    let started = std::time::Instant::now();
    loop {
        let row = entity::jobs::Entity::find()
            .filter(entity::jobs::Column::Id.eq(job.id.as_str()))
            .one(&app.state.db)
            .await
            .expect("query")
            .expect("job");
        if row.status == JobStatus::Done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the job waited for a poll: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
