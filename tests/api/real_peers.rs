//! What real app.build clients and agent servers need from a run: trace ids they can parse,
//! idle platform messages, follow-ups that keep the app's template and a state that matches its
//! files, and outcomes that say what happened, in the stream, the run and the history alike.
use serde_json::{json, Value};

use crate::db_test;
use crate::fake_agent::{event, with, FakeAgent, Script};
use crate::helpers::{
    assert_complete_run, current_usage, settled_run_status, spawn_app_with, DbKind, Frame,
    SseReader, TestApp,
};

async fn setup(kind: DbKind) -> (TestApp, FakeAgent) {
    setup_with(
        kind,
        "[deploy]\non_new_version = false\n[git]\nhost = \"none\"\n",
    )
    .await
}

async fn setup_with(kind: DbKind, toml: &str) -> (TestApp, FakeAgent) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &format!("{}{toml}", agent.config(""))).await;
    (app, agent)
}

async fn run(app: &TestApp, token: &str, body: Value) -> Vec<Frame> {
    let response = app.post_message(token, &body).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    frames
}

const INDEX_DIFF: &str = "diff --git a/index.html b/index.html\nnew file mode 100644\n--- /dev/null\n+++ b/index.html\n@@ -0,0 +1 @@\n+<h1>Todo</h1>\n";
/// Creates index.html again: rejected (`file_exists`) once the first diff applied.
const CONFLICTING_DIFF: &str = INDEX_DIFF;

fn review(diff: &str, state: Value) -> Value {
    let e = with(
        event("idle", "ReviewResult", Some("Done!")),
        "unifiedDiff",
        json!(diff),
    );
    with(e, "agentState", state)
}

/// A first turn that creates the app with `index.html` (version 1) and agent `state`.
async fn build_first_version(
    app: &TestApp,
    agent: &FakeAgent,
    token: &str,
    state: Value,
) -> String {
    agent.push(Script::events(&[review(INDEX_DIFF, state)]));
    let frames = run(app, token, json!({"message": "build a todo app"})).await;
    app_id_of(&frames)
}

fn app_id_of(frames: &[Frame]) -> String {
    frames[0].data["appId"].as_str().expect("appId").to_string()
}

async fn json_of(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

async fn run_view(app: &TestApp, token: &str, frames: &[Frame]) -> Value {
    let run_id = frames[0].data["runId"].as_str().expect("runId");
    settled_run_status(app, run_id).await;
    json_of(app, &format!("/runs/{run_id}"), token).await
}

async fn trace_ids_name_the_app_and_the_run(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    agent.push(Script::events(&[review(INDEX_DIFF, json!({"s": 1}))]));
    let frames = run(&app, &token, json!({"message": "build a todo app"})).await;
    let app_id = app_id_of(&frames);
    let run_id = frames[0].data["runId"].as_str().expect("runId");
    let expected = format!("app-{app_id}.req-{run_id}");
    for frame in &frames {
        assert_eq!(frame.data["traceId"], expected.as_str(), "{frame:?}");
    }
    // The agent gets the same trace id.
    assert_eq!(agent.requests()[0].body["traceId"], expected.as_str());
    // A client takes the app id from it (`app-` up to the first `.`) for its follow-up.
    let parsed = expected
        .strip_prefix("app-")
        .and_then(|rest| rest.split('.').next())
        .expect("app id in trace id");
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    let frames = run(
        &app,
        &token,
        json!({"message": "more", "applicationId": parsed, "traceId": "client-trace"}),
    )
    .await;
    // A client's own trace id is kept as is.
    assert!(frames.iter().all(|f| f.data["traceId"] == "client-trace"));
    app.stop().await;
}
db_test!(trace_ids_name_the_app_and_the_run);

async fn platform_messages_are_idle_and_agent_fields_pass_through(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    let mut stage = event("running", "StageResult", Some("Stage"));
    stage["timestamp"] = json!("2026-11-21T22:23:33.823579");
    stage["agentOnlyField"] = json!({"n": 1});
    agent.push(Script::events(&[stage, review(INDEX_DIFF, json!({}))]));
    let frames = run(&app, &token, json!({"message": "build a todo app"})).await;
    assert_eq!(frames[0].data["timestamp"], "2026-11-21T22:23:33.823579");
    assert_eq!(frames[0].data["agentOnlyField"], json!({"n": 1}));
    let platform: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.data["message"]["kind"] == "PlatformMessage")
        .collect();
    assert!(!platform.is_empty());
    assert!(platform.iter().all(|f| f.data["status"] == "idle"));
    // app.build clients decide "still streaming" from the last event before `done`.
    let last = &frames[frames.len() - 2];
    assert_eq!(last.data["status"], "idle", "{last:?}");
    // Nothing secret or internal reaches clients.
    assert!(frames
        .iter()
        .all(|f| f.data["message"].get("agentState").is_none()
            && f.data["message"].get("unifiedDiff").is_none()));
    app.stop().await;
}
db_test!(platform_messages_are_idle_and_agent_fields_pass_through);

async fn follow_ups_reuse_the_apps_template(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    agent.push(Script::events(&[review(INDEX_DIFF, json!({"s": 1}))]));
    let frames = run(
        &app,
        &token,
        json!({"message": "build a todo app", "templateId": "trpc_agent"}),
    )
    .await;
    let app_id = app_id_of(&frames);
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    run(
        &app,
        &token,
        json!({"message": "add dark mode", "applicationId": app_id}),
    )
    .await;
    let requests = agent.requests();
    assert_eq!(requests[0].body["templateId"], "trpc_agent");
    assert_eq!(requests[1].body["templateId"], "trpc_agent");
    // A follow-up that names a template still wins.
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    run(
        &app,
        &token,
        json!({"message": "again", "applicationId": app_id, "templateId": "nicegui_agent"}),
    )
    .await;
    assert_eq!(agent.requests()[2].body["templateId"], "nicegui_agent");
    app.stop().await;
}
db_test!(follow_ups_reuse_the_apps_template);

async fn a_rejected_turn_keeps_the_agent_state_and_fails_the_run(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    let app_id = build_first_version(&app, &agent, &token, json!({"turn": 1})).await;
    let first = json_of(&app, &format!("/apps/{app_id}"), &token).await;
    assert_eq!(first["latestRun"]["status"], "succeeded", "{first}");

    // The second turn's diff does not apply: neither its files nor its state are kept.
    agent.push(Script::events(&[
        with(
            event("running", "StageResult", Some("planning")),
            "agentState",
            json!({"turn": "2-early"}),
        ),
        review(CONFLICTING_DIFF, json!({"turn": 2})),
    ]));
    let frames = run(
        &app,
        &token,
        json!({"message": "change it", "applicationId": app_id}),
    )
    .await;
    let error = frames
        .iter()
        .find(|f| f.event == "error")
        .expect("error event");
    assert_eq!(error.data["code"], "file_exists");
    let view = run_view(&app, &token, &frames).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["errorCode"], "file_exists", "{view}");
    // The app says so too.
    let details = json_of(&app, &format!("/apps/{app_id}"), &token).await;
    assert_eq!(details["latestRun"]["status"], "failed", "{details}");
    assert_eq!(
        details["latestRun"]["errorCode"], "file_exists",
        "{details}"
    );
    assert_eq!(details["latestRun"]["id"], view["id"], "{details}");

    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    run(
        &app,
        &token,
        json!({"message": "third", "applicationId": app_id}),
    )
    .await;
    assert_eq!(agent.requests()[2].body["agentState"], json!({"turn": 1}));
    app.stop().await;
}
db_test!(a_rejected_turn_keeps_the_agent_state_and_fails_the_run);

/// Each diff of a run repeats the earlier ones (AGENT_PROTOCOL §5.6): when a later diff of the
/// same run applies, an earlier rejected one no longer decides how the run ends.
async fn a_rejected_diff_superseded_by_one_that_applies_does_not_fail_the_turn(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    let app_id = build_first_version(&app, &agent, &token, json!({"turn": 1})).await;
    let edit = "diff --git a/index.html b/index.html\n--- a/index.html\n+++ b/index.html\n@@ -1 +1 @@\n-<h1>Todo</h1>\n+<h1>Todos</h1>\n";
    let stage = with(
        with(
            event("running", "StageResult", Some("first try")),
            "unifiedDiff",
            json!(CONFLICTING_DIFF),
        ),
        "agentState",
        json!({"turn": "2-early"}),
    );
    agent.push(Script::events(&[stage, review(edit, json!({"turn": 2}))]));
    let frames = run(
        &app,
        &token,
        json!({"message": "rename it", "applicationId": app_id}),
    )
    .await;
    assert!(frames.iter().any(|f| f.data["code"] == "file_exists"));
    let view = run_view(&app, &token, &frames).await;
    assert_eq!(view["status"], "succeeded", "{view}");
    let details = json_of(&app, &format!("/apps/{app_id}"), &token).await;
    assert_eq!(details["version"], 2, "{details}");
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    run(
        &app,
        &token,
        json!({"message": "third", "applicationId": app_id}),
    )
    .await;
    assert_eq!(agent.requests()[2].body["agentState"], json!({"turn": 2}));
    app.stop().await;
}
db_test!(a_rejected_diff_superseded_by_one_that_applies_does_not_fail_the_turn);

async fn settings_must_be_an_object_and_cost_nothing_otherwise(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    for settings in [json!(5), json!("x"), json!([1]), json!(true)] {
        let response = app
            .post_message(&token, &json!({"message": "hi", "settings": settings}))
            .await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "invalid_settings");
    }
    assert_eq!(current_usage(&app, &token).await, 0);
    assert!(agent.requests().is_empty());
    let apps = json_of(&app, "/apps", &token).await;
    assert_eq!(apps["pagination"]["total"], 0);
    // An object (and null) are fine and reach the agent.
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    run(
        &app,
        &token,
        json!({"message": "hi", "settings": {"max_iterations": 3}}),
    )
    .await;
    assert_eq!(
        agent.requests()[0].body["settings"],
        json!({"max_iterations": 3})
    );
    app.stop().await;
}
db_test!(settings_must_be_an_object_and_cost_nothing_otherwise);

async fn an_idempotency_key_reused_with_another_body_is_a_conflict(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    let send = |body: Value| {
        app.http
            .post(app.url("/message"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "key-1")
            .json(&body)
            .send()
    };
    let first = send(json!({"message": "build a todo app"}))
        .await
        .expect("send");
    assert_eq!(first.status(), 200);
    let run_id = first.headers()["x-run-id"]
        .to_str()
        .expect("id")
        .to_string();
    SseReader::new(first).collect().await;
    // The same request again attaches to the same run.
    let again = send(json!({"message": "build a todo app"}))
        .await
        .expect("send");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["x-run-id"], run_id.as_str());
    SseReader::new(again).collect().await;
    // Another message under the same key is refused, not silently dropped.
    let other = send(json!({"message": "build a blog"}))
        .await
        .expect("send");
    assert_eq!(other.status(), 409);
    let body: Value = other.json().await.expect("json");
    assert_eq!(body["code"], "idempotency_key_reused");
    assert_eq!(agent.requests().len(), 1);
    assert_eq!(current_usage(&app, &token).await, 1);
    app.stop().await;
}
db_test!(an_idempotency_key_reused_with_another_body_is_a_conflict);

async fn gateway_errors_are_kept_in_the_history(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    let app_id = build_first_version(&app, &agent, &token, json!({})).await;
    // A follow-up whose agent answers 500 after a first event.
    agent.push(Script::status(500, "boom"));
    let frames = run(
        &app,
        &token,
        json!({"message": "change it", "applicationId": app_id}),
    )
    .await;
    let error = frames.iter().find(|f| f.event == "error").expect("error");
    let code = error.data["code"].as_str().expect("code").to_string();
    let text = error.data["error"].as_str().expect("text").to_string();
    let view = run_view(&app, &token, &frames).await;
    assert_eq!(view["status"], "failed");
    assert_eq!(view["errorCode"], code.as_str());
    let history = json_of(&app, &format!("/apps/{app_id}/history"), &token).await;
    let rows = history.as_array().expect("rows");
    let last = rows.last().expect("a row");
    assert_eq!(last["kind"], "assistant", "{last}");
    assert_eq!(last["messageKind"], "RuntimeError", "{last}");
    assert_eq!(last["prompt"], text.as_str(), "{last}");
    assert_eq!(last["metadata"]["code"], code.as_str(), "{last}");
    // The agent never gets the gateway's own errors as conversation.
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    run(
        &app,
        &token,
        json!({"message": "third", "applicationId": app_id}),
    )
    .await;
    let conversation = &agent.requests()[2].body["allMessages"];
    assert!(!conversation.to_string().contains(&text), "{conversation}");
    app.stop().await;
}
db_test!(gateway_errors_are_kept_in_the_history);

async fn a_run_the_agent_never_answered_gives_the_message_back(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    // A wrong agent secret: the agent refuses every request.
    for _ in 0..2 {
        agent.push(Script::status(401, "{\"detail\":\"Invalid token\"}"));
        let frames = run(&app, &token, json!({"message": "build a todo app"})).await;
        assert!(frames.iter().any(|f| f.event == "error"));
    }
    assert_eq!(current_usage(&app, &token).await, 0);
    let apps = json_of(&app, "/apps", &token).await;
    assert_eq!(apps["pagination"]["total"], 0, "{apps}");
    assert_eq!(apps["data"], json!([]));
    // A run the agent did answer counts, even when it failed later.
    agent.push(Script::events(&[
        event("running", "StageResult", Some("working")),
        event("idle", "RuntimeError", Some("the model failed")),
    ]));
    run(&app, &token, json!({"message": "build a todo app"})).await;
    assert_eq!(current_usage(&app, &token).await, 1);
    app.stop().await;
}
db_test!(a_run_the_agent_never_answered_gives_the_message_back);

async fn questions_before_the_first_app_do_not_count(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let token = app.token("alice");
    agent.push(Script::events(&[event(
        "idle",
        "RefinementRequest",
        Some("Which features?"),
    )]));
    let frames = run(&app, &token, json!({"message": "build an app"})).await;
    let app_id = app_id_of(&frames);
    assert_eq!(current_usage(&app, &token).await, 0);
    assert_eq!(
        json_of(&app, "/apps", &token).await["pagination"]["total"],
        0
    );
    // The answer goes to the same application id, and builds the app: that one counts.
    agent.push(Script::events(&[review(INDEX_DIFF, json!({}))]));
    let frames = run(
        &app,
        &token,
        json!({"message": "a todo list", "applicationId": app_id}),
    )
    .await;
    assert_eq!(app_id_of(&frames), app_id);
    assert_eq!(current_usage(&app, &token).await, 1);
    let apps = json_of(&app, "/apps", &token).await;
    assert_eq!(apps["data"][0]["id"], app_id.as_str(), "{apps}");
    // Once the app has files, a question is a turn like any other.
    agent.push(Script::events(&[event(
        "idle",
        "RefinementRequest",
        Some("Which colour?"),
    )]));
    run(
        &app,
        &token,
        json!({"message": "make it nicer", "applicationId": app_id}),
    )
    .await;
    assert_eq!(current_usage(&app, &token).await, 2);
    app.stop().await;
}
db_test!(questions_before_the_first_app_do_not_count);

async fn every_platform_event_is_in_the_history_when_it_arrives(kind: DbKind) {
    let (app, agent) = setup_with(kind, "[deploy]\non_new_version = true\n").await;
    let token = app.token("alice");
    agent.push(Script::events(&[review(INDEX_DIFF, json!({}))]));
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    assert_eq!(response.status(), 200);
    let app_id = response.headers()["x-app-id"]
        .to_str()
        .expect("app id")
        .to_string();
    let mut reader = SseReader::new(response);
    let mut seen = 0;
    while let Some(frame) = reader.next().await {
        let kind = frame.data["message"]["kind"].as_str().unwrap_or("");
        if frame.event != "message" || !["PlatformMessage", "RuntimeError"].contains(&kind) {
            continue;
        }
        // Read the history the moment the event arrives, as a client that refetches does.
        let text = frame.data["message"]["messages"][0]["content"].clone();
        let history = json_of(&app, &format!("/apps/{app_id}/history"), &token).await;
        assert!(
            history
                .as_array()
                .expect("rows")
                .iter()
                .any(|row| row["prompt"] == text),
            "{text} not yet in {history}"
        );
        seen += 1;
    }
    assert!(seen >= 3, "version, commit and deployment notices: {seen}");
    app.stop().await;
}
db_test!(every_platform_event_is_in_the_history_when_it_arrives);

async fn a_failed_deployment_fails_the_run_as_a_runtime_error(kind: DbKind) {
    let (app, agent) = setup_with(kind, "[deploy]\non_new_version = true\n").await;
    let token = app.token("alice");
    // No index.html anywhere: a local preview cannot serve it.
    let server_only = "diff --git a/server/main.py b/server/main.py\nnew file mode 100644\n--- /dev/null\n+++ b/server/main.py\n@@ -0,0 +1 @@\n+print('hi')\n";
    agent.push(Script::events(&[review(server_only, json!({}))]));
    let frames = run(&app, &token, json!({"message": "build an api"})).await;
    let failure = frames
        .iter()
        .find(|f| crate::helpers::notice_kind(&f.data) == "deployment_failed")
        .expect("deployment failure in the stream");
    assert_eq!(failure.data["message"]["kind"], "RuntimeError");
    assert!(failure.data.get("metadata").is_none(), "{:?}", failure.data);
    let view = run_view(&app, &token, &frames).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["errorCode"], "deployment_failed", "{view}");
    app.stop().await;
}
db_test!(a_failed_deployment_fails_the_run_as_a_runtime_error);
