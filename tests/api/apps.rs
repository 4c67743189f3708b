use serde_json::Value;

use crate::db_test;
use crate::helpers::{spawn_app, DbKind, TestApp};

async fn create_apps(app: &TestApp, owner: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let created = agentgate::apps::create(&app.state.db, owner, &format!("app {i}"), None)
            .await
            .expect("create");
        // An agent reply makes the app one `GET /apps` lists.
        agentgate::apps::append_message(
            &app.state.db,
            agentgate::apps::NewMessage {
                app_id: &created.id,
                run_id: None,
                role: "assistant",
                kind: "StageResult",
                content: "built",
                metadata: None,
            },
        )
        .await
        .expect("append");
        ids.push(created.id);
        // Distinct created_at values keep "newest first" meaningful.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    ids
}

async fn list_paginates_newest_first(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let ids = create_apps(&app, "alice", 12).await;
    create_apps(&app, "bob", 2).await;

    let response = app.get("/apps", &token).await;
    assert_eq!(response.status(), 200);
    for header in [
        "x-dailylimit-limit",
        "x-dailylimit-remaining",
        "x-dailylimit-usage",
        "x-dailylimit-reset",
    ] {
        assert!(response.headers().contains_key(header), "{header}");
    }
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["pagination"]["total"], 12);
    assert_eq!(body["pagination"]["limit"], 10);
    assert_eq!(body["pagination"]["totalPages"], 2);
    let data = body["data"].as_array().expect("array");
    assert_eq!(data.len(), 10);
    assert_eq!(data[0]["id"], ids[11].as_str(), "newest first");
    assert!(data.iter().all(|a| a["ownerId"] == "alice"));
    assert!(data.iter().all(|a| a.get("agentState").is_none()));

    let body: Value = app
        .get("/apps?page=2&limit=10", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"].as_array().expect("array").len(), 2);
    assert_eq!(body["data"][1]["id"], ids[0].as_str());
    let body: Value = app
        .get("/apps?page=9", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["data"].as_array().expect("array").len(),
        0,
        "past the end is empty"
    );
    let body: Value = app
        .get("/apps?limit=100", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"].as_array().expect("array").len(), 12);
    let body: Value = app
        .get("/apps?limit=1", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["pagination"]["totalPages"], 12);

    for bad in [
        "page=0",
        "limit=0",
        "limit=101",
        "limit=abc",
        "page=-1",
        "page=1.5",
        "limit=",
    ] {
        let response = app.get(&format!("/apps?{bad}"), &token).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "invalid_query", "{bad}");
    }
    app.stop().await;
}
db_test!(list_paginates_newest_first);

async fn show_history_and_delete_are_owner_scoped(kind: DbKind) {
    let app = spawn_app(kind).await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let id = create_apps(&app, "alice", 1).await.remove(0);
    for (role, kind_, content) in [
        ("user", "UserMessage", "first"),
        ("assistant", "ReviewResult", "second"),
        ("user", "UserMessage", "third"),
    ] {
        agentgate::apps::append_message(
            &app.state.db,
            agentgate::apps::NewMessage {
                app_id: &id,
                run_id: None,
                role,
                kind: kind_,
                content,
                metadata: None,
            },
        )
        .await
        .expect("append");
    }

    let response = app.get(&format!("/apps/{id}"), &alice).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["id"], id.as_str());
    assert!(body.get("agentState").is_none() && body.get("agent_state").is_none());

    let history: Value = app
        .get(&format!("/apps/{id}/history"), &alice)
        .await
        .json()
        .await
        .expect("json");
    let prompts: Vec<&str> = history
        .as_array()
        .expect("array")
        .iter()
        .filter(|m| m["prompt"] != "built")
        .map(|m| m["prompt"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(prompts, vec!["first", "second", "third"]);

    for path in [format!("/apps/{id}"), format!("/apps/{id}/history")] {
        let response = app.get(&path, &bob).await;
        assert_eq!(response.status(), 404, "foreign app via {path}");
        assert_eq!(
            response.json::<Value>().await.expect("json")["code"],
            "not_found"
        );
    }
    for path in ["/apps/not-a-uuid", "/apps/not-a-uuid/history"] {
        let response = app.get(path, &alice).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(
            response.json::<Value>().await.expect("json")["code"],
            "invalid_id"
        );
    }
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/apps/{missing}"), &alice).await.status(),
        404
    );

    let path = format!("/apps/{id}");
    assert_eq!(
        app.delete(&path, &bob).await.status(),
        404,
        "bob cannot delete alice's app"
    );
    assert_eq!(app.delete(&path, &alice).await.status(), 200);
    assert_eq!(
        app.delete(&path, &alice).await.status(),
        200,
        "delete is idempotent"
    );
    assert_eq!(
        app.get(&format!("/apps/{id}"), &alice).await.status(),
        404,
        "deleted app is gone"
    );
    let body: Value = app.get("/apps", &alice).await.json().await.expect("json");
    assert_eq!(body["pagination"]["total"], 0);
    app.stop().await;
}
db_test!(show_history_and_delete_are_owner_scoped);
