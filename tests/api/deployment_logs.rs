//! `GET /deployments/:id/logs`: JSON for a finished deployment, SSE while one runs (resumable
//! with `Last-Event-ID`, no gaps, no repeats), the bound and its note, masking, ownership.
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use agentgate::deploy::builder::{ImageBuilder, ImageBuilderSettings, RegistryLogin};
use agentgate::deploy::logs::{DeployLog, LogStream, Mask};
use agentgate::deploy::records;
use futures::StreamExt;
use sea_orm::{EntityTrait, TransactionTrait};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{assert_complete_run, spawn_app, spawn_app_with, DbKind, SseReader, TestApp};

/// One SSE block: its event, its id when it has one, its data.
#[derive(Debug, Clone)]
struct Event {
    event: String,
    id: Option<i64>,
    data: Value,
}

/// Reads every SSE block of `response` (comments skipped) until the stream ends, or until
/// `stop_after` line events when given (the connection is then dropped).
async fn read_events(response: reqwest::Response, stop_after: Option<usize>) -> Vec<Event> {
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "text/event-stream");
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = Event {
                event: String::new(),
                id: None,
                data: Value::Null,
            };
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.event = name.to_string();
                } else if let Some(id) = line.strip_prefix("id: ") {
                    event.id = Some(id.parse().expect("numeric id"));
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data = serde_json::from_str(data).expect("JSON data");
                }
            }
            if event.event.is_empty() {
                continue; // a keep-alive comment
            }
            events.push(event);
            let lines = events.iter().filter(|e| e.event == "line").count();
            if stop_after.is_some_and(|n| lines >= n) {
                return events;
            }
        }
        match tokio::time::timeout(Duration::from_secs(20), body.next()).await {
            Ok(Some(Ok(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Some(Err(_))) | Ok(None) => return events,
            Err(_) => panic!("log stream stalled; buffer: {buffer:?}"),
        }
    }
}

async fn get_logs(
    app: &TestApp,
    id: &str,
    token: &str,
    accept: &str,
    after: Option<i64>,
) -> reqwest::Response {
    let mut request = app
        .http
        .get(app.url(&format!("/deployments/{id}/logs")))
        .bearer_auth(token)
        .header("accept", accept);
    if let Some(after) = after {
        request = request.header("last-event-id", after.to_string());
    }
    request.send().await.expect("request")
}

/// A deployment owned by `owner` that no worker here advances (as if another gateway's
/// worker held it): its job is removed. It fails once `deadline` passes and the sweep runs.
async fn foreign_deployment(app: &TestApp, owner: &str, deadline: chrono::Duration) -> String {
    let app_id = uuid::Uuid::new_v4().to_string();
    let new = records::NewDeployment {
        app_id: &app_id,
        owner_id: owner,
        version: 1,
        provider: "local",
        queued_deadline: deadline,
        watched: false,
        app_url: None,
        after: None,
        runner: None,
    };
    let txn = app.state.db.begin().await.expect("txn");
    let (deployment, job) = records::enqueue_new(&txn, new).await.expect("enqueue");
    entity::jobs::Entity::delete_by_id(job.id)
        .exec(&txn)
        .await
        .expect("job removed");
    txn.commit().await.expect("commit");
    deployment.id
}

fn writer(app: &TestApp, id: &str, mask: Mask) -> DeployLog {
    DeployLog::start(
        app.state.db.clone(),
        id,
        app.state.config.deploy.log_lines,
        mask,
    )
}

async fn json_logs(app: &TestApp, id: &str, token: &str) -> Value {
    let response = get_logs(app, id, token, "application/json", None).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

fn texts(logs: &Value) -> Vec<String> {
    logs["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            format!(
                "{}|{}",
                l["stream"].as_str().unwrap(),
                l["text"].as_str().unwrap()
            )
        })
        .collect()
}

async fn a_local_deployment_logs_its_steps_as_json(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let response = app
        .post_message(&token, &json!({"message": "build a todo list app"}))
        .await;
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let app_id = frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string();
    let status: Value = app
        .get(&format!("/deployment-status/{app_id}"), &token)
        .await
        .json()
        .await
        .expect("status");
    assert_eq!(status["status"], "healthy", "{status}");
    let id = status["id"].as_str().expect("deployment id");

    // A finished deployment answers with JSON whatever the client accepts by default.
    let response = app.get(&format!("/deployments/{id}/logs"), &token).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let logs: Value = response.json().await.expect("json");
    assert_eq!(logs["status"], "healthy");
    assert_eq!(logs["active"], false);
    assert_eq!(logs["dropped"], 0);
    assert_eq!(logs["failedLine"], Value::Null);
    let seqs: Vec<i64> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "numbered from 1 without gaps"
    );
    let lines = texts(&logs);
    let url = status["url"].as_str().expect("url");
    assert!(
        lines[0].starts_with("status|queued: version 1"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "status|building", "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("deploy|uploading ") && l.contains(" files from ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| *l == format!("deploy|site published at {url} (version 1)")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!("status|healthy: {url}"),
        "{lines:?}"
    );
    assert!(logs["lines"][0]["at"].as_str().is_some());

    // Asked as a stream, a finished deployment replays after the resume point, then `end`.
    let events = read_events(
        get_logs(&app, id, &token, "text/event-stream", Some(2)).await,
        None,
    )
    .await;
    let ids: Vec<i64> = events.iter().filter_map(|e| e.id).collect();
    assert_eq!(ids, (3..=seqs.len() as i64).collect::<Vec<_>>());
    let end = events.last().expect("end");
    assert_eq!(end.event, "end");
    assert_eq!(end.data["status"], "healthy");
    // Nothing after the last line: 204, so a native EventSource stops.
    let last = *seqs.last().unwrap();
    let response = get_logs(&app, id, &token, "text/event-stream", Some(last)).await;
    assert_eq!(response.status(), 204);
    app.stop().await;
}
db_test!(a_local_deployment_logs_its_steps_as_json);

async fn a_failed_deployment_points_at_its_failure_line(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    // Version 7 of an app that has none: the worker fails it for good.
    let deployment = records::enqueue(
        &app.state.db,
        &uuid::Uuid::new_v4().to_string(),
        "alice",
        7,
        "local",
        chrono::Duration::seconds(60),
        false,
    )
    .await
    .expect("enqueue");
    let mut logs = Value::Null;
    for _ in 0..100 {
        logs = json_logs(&app, &deployment.id, &token).await;
        if logs["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logs["status"], "failed", "{logs}");
    let failed = logs["failedLine"].as_i64().expect("failed line");
    let line = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["seq"] == failed)
        .expect("the line");
    assert_eq!(line["stream"], "status");
    let text = line["text"].as_str().unwrap();
    assert!(
        text.starts_with("failed: ") && text.contains("version 7 of app"),
        "{text}"
    );
    app.stop().await;
}
db_test!(a_failed_deployment_points_at_its_failure_line);

async fn a_running_deployment_streams_and_resumes_without_gaps_or_repeats(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let id = foreign_deployment(&app, "alice", chrono::Duration::seconds(3)).await;
    let log = writer(&app, &id, Mask::default());
    for i in 1..=5 {
        log.line(LogStream::Stdout, &format!("step {i}"));
    }
    log.flush().await;

    // Running: SSE by default. Read three lines, then drop the connection.
    let response = get_logs(&app, &id, &token, "*/*", None).await;
    let first = read_events(response, Some(3)).await;
    let seen: Vec<i64> = first.iter().filter_map(|e| e.id).collect();
    assert_eq!(seen, vec![1, 2, 3]);
    assert_eq!(
        first[0].data["text"],
        "queued: version 1 with the local provider"
    );
    assert_eq!(first[1].data["stream"], "stdout");

    // More lines arrive while nobody listens, then the client resumes from 3.
    for i in 6..=8 {
        log.line(LogStream::Stderr, &format!("step {i}"));
    }
    log.flush().await;
    let resumed = tokio::spawn({
        let request = get_logs(&app, &id, &token, "text/event-stream", Some(3)).await;
        read_events(request, None)
    });
    // Lines written while the stream is open come live; then the deadline fails it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    log.line(LogStream::Deploy, "live line");
    log.flush().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    records::fail_overdue(&app.state.db).await.expect("sweep");
    let rest = tokio::time::timeout(Duration::from_secs(20), resumed)
        .await
        .expect("stream ended")
        .expect("task");

    let ids: Vec<i64> = rest.iter().filter_map(|e| e.id).collect();
    assert_eq!(ids, (4..=11).collect::<Vec<_>>(), "{rest:?}");
    let texts: Vec<&str> = rest
        .iter()
        .filter(|e| e.event == "line")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts[0], "step 3");
    assert_eq!(texts[2], "step 5");
    assert_eq!(texts[5], "step 8");
    assert_eq!(texts[6], "live line");
    assert!(texts[7].starts_with("failed: timed out"), "{texts:?}");
    let end = rest.last().unwrap();
    assert_eq!(end.event, "end");
    assert_eq!(end.data["status"], "failed");
    assert_eq!(end.data["failedLine"], 11);
    app.stop().await;
}
db_test!(a_running_deployment_streams_and_resumes_without_gaps_or_repeats);

async fn the_log_keeps_its_bound_and_says_how_many_lines_went(kind: DbKind) {
    let app = spawn_app_with(kind, "[deploy]\nlog_lines = 10\n").await;
    let token = app.token("alice");
    let id = foreign_deployment(&app, "alice", chrono::Duration::seconds(60)).await;
    let log = writer(&app, &id, Mask::default());
    for i in 1..=25 {
        log.line(LogStream::Stdout, &format!("line {i}"));
    }
    log.flush().await;
    let logs = json_logs(&app, &id, &token).await;
    // 26 lines (the queued status and 25), the last 10 kept.
    assert_eq!(logs["dropped"], 16, "{logs}");
    let lines = logs["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 11);
    assert_eq!(lines[0]["seq"], 0);
    assert_eq!(lines[0]["stream"], "note");
    assert_eq!(
        lines[0]["text"],
        "16 earlier lines dropped (the log keeps the last 10)"
    );
    assert_eq!(lines[1]["seq"], 17);
    assert_eq!(lines[1]["text"], "line 16");
    assert_eq!(lines[10]["text"], "line 25");

    // A stream from the start is told about the gap before the first kept line.
    let events = read_events(
        get_logs(&app, &id, &token, "text/event-stream", None).await,
        Some(10),
    )
    .await;
    assert_eq!(events[0].event, "note");
    assert_eq!(events[0].data["dropped"], 16);
    assert_eq!(events[1].id, Some(17));
    app.stop().await;
}
db_test!(the_log_keeps_its_bound_and_says_how_many_lines_went);

const REGISTRY_PASSWORD: &str = "registry-pass-Zq81x";
const DATABASE_URL: &str = "postgres://app_user:db-pass-9f2k@db.example:5432/app";

async fn secrets_in_build_output_are_masked_before_storage(kind: DbKind) {
    let app = spawn_app_with(kind, "[agent]\nsecret = \"agent-secret-7Hq2p\"\n").await;
    let token = app.token("alice");
    let id = foreign_deployment(&app, "alice", chrono::Duration::seconds(60)).await;
    // The runner's mask: the configured secrets and the app's database URL.
    let mut mask = Mask::new(app.state.config.secret_values());
    mask.extend([DATABASE_URL]);
    let log = writer(&app, &id, mask);
    let dir = tempfile::tempdir().expect("tempdir");
    let tool = dir.path().join("fake-docker");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\necho \"login $REGISTRY_USERNAME:$REGISTRY_PASSWORD\"\necho \"auth $(cat \"$REGISTRY_AUTH_FILE\")\"\necho \"db {DATABASE_URL} pw db-pass-9f2k\" >&2\necho \"agent agent-secret-7Hq2p\"\nprintf 'no newline at the end'\n"
        ),
    )
    .expect("tool");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("mode");
    let builder = ImageBuilder::new(ImageBuilderSettings {
        program: tool.display().to_string(),
        steps: vec![vec!["build".into(), "{dir}".into()]],
        work_root: Some(dir.path().to_path_buf()),
        ..ImageBuilderSettings::default()
    });
    let login = RegistryLogin {
        endpoint: "registry.example".into(),
        username: "AWS".into(),
        password: SecretString::from(REGISTRY_PASSWORD.to_string()),
    };
    let files = crate::koyeb::tree(&[(
        "Dockerfile",
        "FROM scratch\n",
        agentgate::files::FileMode::Regular,
    )]);
    builder
        .build_and_push_logged(&files, "registry.example/app:v1", Some(&login), &log)
        .await
        .expect("build");
    log.flush().await;

    let logs = json_logs(&app, &id, &token).await;
    let lines = texts(&logs);
    let all = lines.join("\n");
    for secret in [
        REGISTRY_PASSWORD,
        DATABASE_URL,
        "db-pass-9f2k",
        "agent-secret-7Hq2p",
    ] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
    assert!(
        !all.contains("QVdTOnJlZ2lzdHJ5"),
        "basic auth leaked: {all}"
    );
    assert!(
        lines.contains(&"stdout|login AWS:[redacted]".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"stderr|db [redacted] pw [redacted]".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"stdout|agent [redacted]".to_string()),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("deploy|$ ") && l.contains(" build ")),
        "{lines:?}"
    );
    // An unterminated last line is kept too.
    assert!(
        lines.contains(&"stdout|no newline at the end".to_string()),
        "{lines:?}"
    );
    app.stop().await;
}
db_test!(secrets_in_build_output_are_masked_before_storage);

async fn only_the_owner_reads_a_log_and_bad_input_is_an_error(kind: DbKind) {
    let app = spawn_app(kind).await;
    let id = foreign_deployment(&app, "alice", chrono::Duration::seconds(60)).await;
    let bob = app.token("bob");
    for accept in ["application/json", "text/event-stream"] {
        let response = get_logs(&app, &id, &bob, accept, None).await;
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "not_found");
    }
    let alice = app.token("alice");
    let response = app.get("/deployments/not-a-uuid/logs", &alice).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "invalid_id");
    let response = app
        .http
        .get(app.url(&format!("/deployments/{id}/logs")))
        .bearer_auth(&alice)
        .header("last-event-id", "-1")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "invalid_last_event_id");
    let response = app
        .http
        .get(app.url(&format!("/deployments/{id}/logs")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    app.stop().await;
}
db_test!(only_the_owner_reads_a_log_and_bad_input_is_an_error);
