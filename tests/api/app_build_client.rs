//! A whole conversation replayed the way app.build's own clients read it (their terminal client
//! and web client, read from their source): the app id taken from `traceId`, "still streaming"
//! decided by the last event's status, platform message text composed with the URL their type
//! names, `message.metadata.type` checked against app.build's enum, `deployStatus` read from the
//! app-details enum, every history row rendered from `prompt`, and a delete parsed as JSON.
//! Against the embedded defaults: the built-in demo agent, local git and local preview deploys.
use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{assert_complete_run, spawn_app, DbKind, Frame, SseReader, TestApp};

/// app.build's `PlatformMessageType`.
const PLATFORM_MESSAGE_TYPES: [&str; 6] = [
    "repo_created",
    "commit_created",
    "deployment_in_progress",
    "deployment_complete",
    "deployment_failed",
    "deployment_stopping",
];

/// app.build's `DeployStatus`.
const DEPLOY_STATUSES: [&str; 5] = ["pending", "deploying", "deployed", "failed", "stopping"];

/// The terminal client's `extractApplicationId`.
fn application_id_from(trace_id: &str) -> String {
    let app_part = trace_id.split('.').next().unwrap_or("");
    app_part.replacen("app-", "", 1).replacen("temp-", "", 1)
}

/// The terminal client's `getPlatformMessageContent`, `undefined` included.
fn platform_message_url(metadata: &Value) -> String {
    let field = match metadata["type"].as_str() {
        Some("commit_created") => "commitUrl",
        Some("repo_created") => "githubUrl",
        Some("deployment_complete") | Some("deployment_in_progress") => "deploymentUrl",
        _ => return "undefined".into(),
    };
    match metadata[field].as_str() {
        Some(url) => url.to_string(),
        None => "undefined".into(),
    }
}

/// app.build's `DeploymentType` (the web client's schema for the top-level `metadata`).
const DEPLOYMENT_TYPES: [&str; 2] = ["databricks", "koyeb"];

/// The web client's schema for an event's top-level `metadata` (`useSSE`'s `eventSchema`): an
/// event that fails it is dropped whole.
fn check_top_level_metadata(frame: &Frame) {
    let Some(metadata) = frame.data.get("metadata") else {
        return;
    };
    let kind = metadata["type"].as_str().unwrap_or("");
    assert!(PLATFORM_MESSAGE_TYPES.contains(&kind), "{frame:?}");
    for field in ["deploymentId", "githubUrl", "deploymentUrl", "commitUrl"] {
        let value = metadata.get(field).unwrap_or(&Value::Null);
        assert!(value.is_null() || value.is_string(), "{field} in {frame:?}");
    }
    if let Some(provider) = metadata.get("deploymentType") {
        let provider = provider.as_str().unwrap_or("");
        assert!(DEPLOYMENT_TYPES.contains(&provider), "{frame:?}");
    }
    if let Some(status) = metadata.get("deployStatus") {
        let status = status.as_str().unwrap_or("");
        assert!(DEPLOY_STATUSES.contains(&status), "{frame:?}");
    }
}

/// Every line the terminal client would print for these events.
fn terminal_lines(frames: &[Frame]) -> Vec<String> {
    let mut lines = Vec::new();
    for frame in frames.iter().filter(|f| f.event != "done") {
        let event = &frame.data;
        let kind = event["message"]["kind"].as_str().unwrap_or("");
        for message in event["message"]["messages"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let content = message["content"].as_str().unwrap_or("undefined");
            let line = match (&event.get("metadata"), kind) {
                (Some(metadata), "PlatformMessage") => {
                    format!("{content} {}", platform_message_url(metadata))
                }
                _ => content.to_string(),
            };
            lines.push(line);
        }
    }
    lines
}

/// What both clients require of one stream.
fn check_stream(frames: &[Frame]) -> String {
    assert_complete_run(frames);
    for frame in frames {
        let trace_id = frame.data["traceId"]
            .as_str()
            .expect("traceId on every event");
        assert!(trace_id.starts_with("app-"), "{trace_id}");
        check_top_level_metadata(frame);
        // The web client drops an event whose message.metadata.type is not app.build's.
        if let Some(kind) = frame.data["message"]["metadata"].get("type") {
            let kind = kind.as_str().unwrap_or("");
            assert!(
                PLATFORM_MESSAGE_TYPES.contains(&kind),
                "{kind} in {frame:?}"
            );
        }
    }
    // "Still streaming" is the last event's status.
    let last = &frames[frames.len() - 2];
    assert_eq!(last.data["status"], "idle", "{last:?}");
    for line in terminal_lines(frames) {
        assert!(!line.contains("undefined"), "{line:?}");
        // The client appends the URL itself: a text that has it already shows it twice.
        assert!(line.matches("http").count() <= 1, "{line:?}");
    }
    application_id_from(frames[0].data["traceId"].as_str().unwrap_or(""))
}

async fn send(app: &TestApp, token: &str, body: Value) -> Vec<Frame> {
    let response = app.post_message(token, &body).await;
    assert_eq!(response.status(), 200, "{body}");
    SseReader::new(response).collect().await
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

async fn an_app_build_client_can_refine_build_and_iterate(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");

    // A vague prompt: the agent asks back; the answer goes to the application id the client
    // took from the trace id.
    let frames = send(&app, &token, json!({"message": "hi"})).await;
    let app_id = check_stream(&frames);
    assert!(frames
        .iter()
        .any(|f| f.data["message"]["kind"] == "RefinementRequest"));
    let frames = send(
        &app,
        &token,
        json!({"message": "a todo list", "applicationId": app_id}),
    )
    .await;
    assert_eq!(check_stream(&frames), app_id);
    let types: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.data.get("metadata").and_then(|m| m["type"].as_str()))
        .collect();
    // A local preview's URL is known when it is queued: the in-progress notice carries it.
    for expected in [
        "repo_created",
        "commit_created",
        "deployment_in_progress",
        "deployment_complete",
    ] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }

    // A follow-up the same way.
    let frames = send(
        &app,
        &token,
        json!({"message": "add a dark mode", "applicationId": app_id}),
    )
    .await;
    assert_eq!(check_stream(&frames), app_id);

    // The app details screen maps deployStatus to a symbol; an unknown value crashes it.
    let details = get_json(&app, &format!("/apps/{app_id}"), &token).await;
    let status = details["deployStatus"].as_str().expect("deployStatus");
    assert!(DEPLOY_STATUSES.contains(&status), "{status}");
    assert_eq!(status, "deployed");
    for field in ["traceId", "appName", "name", "ownerId", "techStack"] {
        assert!(details.get(field).is_some(), "{field} in {details}");
    }
    assert_eq!(details["receivedSuccess"], false);
    assert_eq!(details["recompileInProgress"], false);
    // No server paths: the repository is a URL clients can open.
    let repository = details["repositoryUrl"].as_str().expect("repositoryUrl");
    assert!(repository.starts_with("http"), "{repository}");
    let listed = get_json(&app, "/apps", &token).await;
    for item in listed["data"].as_array().expect("data") {
        let status = item["deployStatus"].as_str().expect("deployStatus");
        assert!(DEPLOY_STATUSES.contains(&status), "{status}");
    }

    // The history view renders every row's prompt as markdown.
    let history = get_json(&app, &format!("/apps/{app_id}/history"), &token).await;
    let rows = history.as_array().expect("rows");
    assert!(rows.len() >= 6, "{history}");
    for row in rows {
        assert!(row["prompt"].is_string(), "{row}");
        assert!(["user", "assistant"].contains(&row["kind"].as_str().unwrap_or("")));
        if let Some(kind) = row["metadata"].get("type") {
            let kind = kind.as_str().unwrap_or("");
            assert!(PLATFORM_MESSAGE_TYPES.contains(&kind), "{row}");
        }
    }
    assert_eq!(rows[0]["prompt"], "hi");

    // The web client parses every successful response as JSON, deletes included.
    let deleted = app.delete(&format!("/apps/{app_id}"), &token).await;
    assert_eq!(deleted.status(), 200);
    let body: Value = deleted.json().await.expect("a JSON body");
    assert_eq!(body["appId"], app_id.as_str());
    assert!(body["message"].is_string());
    app.stop().await;
}
db_test!(an_app_build_client_can_refine_build_and_iterate);
