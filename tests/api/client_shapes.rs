//! The read-side shapes app.build clients parse: `App` and `deployStatus`, `AppPrompts[]`,
//! analytics events, the deployment status sentence, error bodies, the delete answer, and which
//! apps `GET /apps` lists.
use std::time::Duration;

use agentgate::apps::{append_message, NewMessage};
use chrono::Utc;
use entity::{apps, deployments};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use crate::db_test;
use crate::fake_agent::{data_line, event, FakeAgent, Script, Step};
use crate::helpers::{assert_complete_run, spawn_app, spawn_app_with, DbKind, SseReader, TestApp};

/// app.build's `DeployStatus` values: anything else breaks its app details screen.
const DEPLOY_STATUSES: [&str; 5] = ["pending", "deploying", "deployed", "failed", "stopping"];

async fn json_of(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("json")
}

/// Runs one message to its end; returns (app id, trace id of `done`).
async fn send(app: &TestApp, token: &str, body: &Value) -> (String, String) {
    let response = app.post_message(token, body).await;
    assert_eq!(response.status(), 200);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let done = &frames.last().expect("done").data;
    (
        done["appId"].as_str().expect("app id").to_string(),
        done["traceId"].as_str().expect("trace id").to_string(),
    )
}

async fn set_internal_deploy_status(app: &TestApp, app_id: &str, status: Option<&str>) {
    apps::Entity::update_many()
        .col_expr(apps::Column::DeployStatus, Expr::value(status))
        .filter(apps::Column::Id.eq(app_id))
        .exec(&app.state.db)
        .await
        .expect("update");
}

async fn deploy_status_takes_only_app_builds_values_and_the_finer_status_stays_beside_it(
    kind: DbKind,
) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let created = agentgate::apps::create(&app.state.db, "alice", "shapes", None)
        .await
        .expect("create");
    let id = created.id;
    let cases = [
        (None, "pending"),
        (Some("queued"), "deploying"),
        (Some("building"), "deploying"),
        (Some("deploying"), "deploying"),
        (Some("healthy"), "deployed"),
        (Some("failed"), "failed"),
        (Some("superseded"), "stopping"),
        (Some("cancelled"), "stopping"),
    ];
    for (internal, expected) in cases {
        set_internal_deploy_status(&app, &id, internal).await;
        let view = json_of(&app, &format!("/apps/{id}"), &token).await;
        assert_eq!(view["deployStatus"], expected, "{internal:?}");
        assert_eq!(view["deployment"], Value::Null, "never deployed");
        assert_eq!(view["deploymentStatus"], json!(internal), "{internal:?}");
    }

    // A real run and deploy: the list and the detail both say `deployed`.
    let (app_id, _) = send(&app, &token, &json!({"message": "build a todo list app"})).await;
    let mut view = Value::Null;
    for _ in 0..100 {
        view = json_of(&app, &format!("/apps/{app_id}"), &token).await;
        if view["deploymentStatus"] == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["deployStatus"], "deployed", "{view}");
    assert_eq!(
        view["deployment"]["status"], "healthy",
        "the latest deployment in detail"
    );
    assert_eq!(view["deployment"]["url"], view["appUrl"]);
    let list = json_of(&app, "/apps", &token).await;
    for item in list["data"].as_array().expect("data") {
        let status = item["deployStatus"]
            .as_str()
            .expect("deployStatus is a string");
        assert!(DEPLOY_STATUSES.contains(&status), "{item}");
    }
    app.stop().await;
}
db_test!(deploy_status_takes_only_app_builds_values_and_the_finer_status_stays_beside_it);

async fn an_app_carries_app_builds_app_fields_with_the_latest_trace_id_and_client_source(
    kind: DbKind,
) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, first_trace) = send(
        &app,
        &token,
        &json!({"message": "build a todo list app", "clientSource": "cli"}),
    )
    .await;
    let view = json_of(&app, &format!("/apps/{app_id}"), &token).await;
    assert_eq!(view["id"], app_id.as_str());
    assert_eq!(view["traceId"], first_trace.as_str());
    assert_eq!(view["clientSource"], "cli");
    assert_eq!(view["ownerId"], "alice");
    assert_eq!(view["receivedSuccess"], false);
    assert_eq!(view["recompileInProgress"], false);
    assert!(view["name"].is_string(), "{view}");
    assert!(
        view["appName"].is_string(),
        "the demo agent names its app: {view}"
    );
    for key in [
        "techStack",
        "repositoryUrl",
        "appUrl",
        "createdAt",
        "updatedAt",
    ] {
        assert!(view.get(key).is_some(), "{key} in {view}");
    }
    assert!(view.get("agentState").is_none());

    // A follow-up from another client: the trace id is the latest run's, the source the creator's.
    let (_, second_trace) = send(
        &app,
        &token,
        &json!({"message": "make it blue", "applicationId": app_id, "clientSource": "web"}),
    )
    .await;
    assert_ne!(first_trace, second_trace);
    let view = json_of(&app, &format!("/apps/{app_id}"), &token).await;
    assert_eq!(view["traceId"], second_trace.as_str());
    assert_eq!(view["clientSource"], "cli");
    let list = json_of(&app, "/apps", &token).await;
    let item = &list["data"][0];
    assert_eq!(item["id"], app_id.as_str());
    assert_eq!(item["traceId"], second_trace.as_str());
    assert_eq!(item["clientSource"], "cli");
    assert_eq!(item["receivedSuccess"], false);

    // Without a clientSource there is none to show.
    let (other, _) = send(&app, &token, &json!({"message": "build a notes app"})).await;
    let view = json_of(&app, &format!("/apps/{other}"), &token).await;
    assert_eq!(view["clientSource"], Value::Null);
    app.stop().await;
}
db_test!(an_app_carries_app_builds_app_fields_with_the_latest_trace_id_and_client_source);

async fn history_is_app_builds_app_prompts_every_row_oldest_first(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let id = agentgate::apps::create(&app.state.db, "alice", "shapes", None)
        .await
        .expect("create")
        .id;
    let notice = json!({"type": "commit_created", "commitUrl": "https://example.com/c/1"});
    let rows = [
        ("user", "UserMessage", "build a todo app", None),
        ("assistant", "RefinementRequest", "Which colours?", None),
        ("user", "UserMessage", "blue", None),
        ("assistant", "StageResult", "", None),
        ("platform", "PlatformMessage", "Committed", Some(&notice)),
        ("assistant", "RuntimeError", "the agent failed", None),
    ];
    for (role, kind_, content, metadata) in rows {
        append_message(
            &app.state.db,
            NewMessage {
                app_id: &id,
                run_id: None,
                role,
                kind: kind_,
                content,
                metadata,
            },
        )
        .await
        .expect("append");
    }
    let history = json_of(&app, &format!("/apps/{id}/history"), &token).await;
    let history = history.as_array().expect("an array");
    assert_eq!(history.len(), rows.len(), "every row");
    let mut last_id = 0_i64;
    for (row, (role, kind_, content, metadata)) in history.iter().zip(rows) {
        for key in [
            "id",
            "appId",
            "prompt",
            "response",
            "kind",
            "messageKind",
            "metadata",
            "createdAt",
            "updatedAt",
        ] {
            assert!(row.get(key).is_some(), "{key} in {row}");
        }
        let row_id: i64 = row["id"]
            .as_str()
            .expect("the id is a string")
            .parse()
            .expect("numeric");
        assert!(row_id > last_id, "oldest first");
        last_id = row_id;
        assert_eq!(row["appId"], id.as_str());
        assert_eq!(row["prompt"], content, "prompt is the text, never null");
        assert!(row["response"].is_string(), "{row}");
        let expected_kind = if role == "user" { "user" } else { "assistant" };
        assert_eq!(row["kind"], expected_kind, "{row}");
        assert_eq!(row["messageKind"], kind_);
        assert_eq!(row["metadata"], metadata.cloned().unwrap_or(Value::Null));
        assert_eq!(row["updatedAt"], row["createdAt"]);
    }
    app.stop().await;
}
db_test!(history_is_app_builds_app_prompts_every_row_oldest_first);

/// The value of `agentgate_analytics_events_total{kind="..."}`, 0 when absent.
async fn analytics_count(app: &TestApp, kind: &str) -> f64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let prefix = format!("agentgate_analytics_events_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn analytics_events_are_accepted_and_counted_by_type_and_bad_bodies_are_400(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let identify_before = analytics_count(&app, "identify").await;
    let track_before = analytics_count(&app, "track").await;

    let response = app
        .http
        .post(app.url("/analytics/event"))
        .json(&json!({"eventType": "identify"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401, "authenticated");

    for body in [
        json!({"eventType": "identify"}),
        json!({"eventType": "track", "eventName": "app_selected"}),
    ] {
        let response = app.post_json("/analytics/event", &token, &body).await;
        assert_eq!(response.status(), 200, "{body}");
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({"ok": true})
        );
    }
    assert!(analytics_count(&app, "identify").await >= identify_before + 1.0);
    assert!(analytics_count(&app, "track").await >= track_before + 1.0);

    for (body, code) in [
        (json!({"eventType": "page"}), "invalid_event_type"),
        (json!({"eventType": "track"}), "missing_event_name"),
        (json!({"eventName": "home"}), "invalid_body"),
        (json!("identify"), "invalid_body"),
    ] {
        let response = app.post_json("/analytics/event", &token, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["code"], code, "{body}");
    }
    app.stop().await;
}
db_test!(analytics_events_are_accepted_and_counted_by_type_and_bad_bodies_are_400);

async fn set_deployment(app: &TestApp, id: &str, status: &str, error: Option<&str>) {
    deployments::Entity::update_many()
        .col_expr(deployments::Column::Status, Expr::value(status))
        .col_expr(deployments::Column::Error, Expr::value(error))
        .col_expr(
            deployments::Column::StatusDeadlineAt,
            Expr::value(Utc::now() + chrono::Duration::hours(1)),
        )
        .filter(deployments::Column::Id.eq(id))
        .exec(&app.state.db)
        .await
        .expect("update");
}

async fn deployment_status_carries_the_sentence_a_client_shows(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, _) = send(&app, &token, &json!({"message": "build a todo list app"})).await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = json_of(&app, &format!("/deployment-status/{app_id}"), &token).await;
        if status["status"] == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = status["url"]
        .as_str()
        .expect("a healthy deployment has a url");
    assert_eq!(status["message"], format!("Your app is live at {url}"));
    assert_eq!(status["type"], "HEALTHY");

    let id = status["id"].as_str().expect("id").to_string();
    for (internal, error, sentence) in [
        (
            "failed",
            Some("no index.html"),
            "Deployment failed: no index.html",
        ),
        ("building", None, "Your app is being deployed (building)"),
        (
            "superseded",
            None,
            "This deployment was stopped: a newer one replaced it",
        ),
    ] {
        set_deployment(&app, &id, internal, error).await;
        let status = json_of(&app, &format!("/deployment-status/{id}"), &token).await;
        assert_eq!(status["message"], sentence, "{internal}");
    }
    app.stop().await;
}
db_test!(deployment_status_carries_the_sentence_a_client_shows);

async fn every_error_body_carries_error_next_to_code_and_message(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let unauthenticated = app.http.get(app.url("/apps")).send().await.expect("get");
    let method = app.http.put(app.url("/health")).send().await.expect("put");
    for (response, status, code) in [
        (app.get("/apps/not-a-uuid", &token).await, 400, "invalid_id"),
        (app.get("/no-such-route", &token).await, 404, "not_found"),
        (unauthenticated, 401, "unauthorized"),
        // Made by axum before any handler runs.
        (method, 405, "method_not_allowed"),
    ] {
        assert_eq!(response.status(), status, "{code}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], code);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(body["error"], body["message"], "{body}");
    }
    app.stop().await;
}
db_test!(every_error_body_carries_error_next_to_code_and_message);

async fn deleting_an_app_answers_app_builds_json_and_a_second_delete_the_same(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let id = agentgate::apps::create(&app.state.db, "alice", "shapes", None)
        .await
        .expect("create")
        .id;
    let expected = json!({"message": "App deleted successfully", "appId": id});
    for attempt in ["first", "second"] {
        let response = app.delete(&format!("/apps/{id}"), &token).await;
        assert_eq!(response.status(), 200, "{attempt}");
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            expected,
            "{attempt}"
        );
    }
    let response = app.delete(&format!("/apps/{id}"), &app.token("bob")).await;
    assert_eq!(response.status(), 404, "another user's app");
    app.stop().await;
}
db_test!(deleting_an_app_answers_app_builds_json_and_a_second_delete_the_same);

fn listed_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

async fn apps_are_listed_once_they_have_a_version_an_active_run_or_a_real_reply(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");

    // Only a question before anything exists: not listed, but readable and answerable by id.
    agent.push(Script::events(&[event(
        "idle",
        "RefinementRequest",
        Some("What should it do?"),
    )]));
    let (asked, _) = send(&app, &token, &json!({"message": "build me something"})).await;
    // An upstream failure before any reply: not listed either.
    agent.push(Script::status(401, "bad secret"));
    let response = app
        .post_message(&token, &json!({"message": "build another thing"}))
        .await;
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let failed = frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string();

    let list = json_of(&app, "/apps", &token).await;
    assert_eq!(list["pagination"]["total"], 0, "{list}");
    assert!(listed_ids(&list).is_empty());
    assert_eq!(
        json_of(&app, &format!("/apps/{asked}"), &token).await["id"],
        asked.as_str()
    );
    assert_eq!(
        json_of(&app, &format!("/apps/{failed}"), &token).await["id"],
        failed.as_str()
    );

    // The answer goes to the same app; while it runs, the app is listed.
    agent.push(Script::steps(vec![
        Step::Pause(Duration::from_millis(1500)),
        Step::Send(data_line(&event("idle", "StageResult", Some("Planned it")))),
    ]));
    let response = app
        .post_message(
            &token,
            &json!({"message": "a todo list", "applicationId": asked}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let reader = SseReader::new(response);
    let list = json_of(&app, "/apps", &token).await;
    assert_eq!(
        listed_ids(&list),
        vec![asked.clone()],
        "an active run is listed"
    );
    let frames = reader.collect().await;
    assert_complete_run(&frames);
    // A reply other than a question keeps it listed after the run.
    let list = json_of(&app, "/apps", &token).await;
    assert_eq!(listed_ids(&list), vec![asked.clone()]);
    assert_eq!(list["pagination"]["total"], 1);

    // A version alone lists an app too.
    apps::Entity::update_many()
        .col_expr(apps::Column::CurrentVersion, Expr::value(1))
        .filter(apps::Column::Id.eq(failed.as_str()))
        .exec(&app.state.db)
        .await
        .expect("update");
    let list = json_of(&app, "/apps", &token).await;
    assert_eq!(list["pagination"]["total"], 2);
    assert_eq!(listed_ids(&list), vec![failed, asked], "newest first");
    app.stop().await;
}
db_test!(apps_are_listed_once_they_have_a_version_an_active_run_or_a_real_reply);
