//! Local previews of apps as real agents write them: the page in `client/`, `frontend/` (or its
//! built `dist/`) beside a server, and apps with no page at all, which must fail, not go live.
use std::time::Duration;

use serde_json::{json, Value};

use crate::db_test;
use crate::fake_agent::{event, with, FakeAgent, Script};
use crate::helpers::{assert_complete_run, spawn_app_with, DbKind, Frame, SseReader, TestApp};

/// A unified diff that creates each `(path, content)` file.
fn new_files_diff(files: &[(&str, &str)]) -> String {
    files
        .iter()
        .map(|(path, content)| {
            let lines: Vec<&str> = content.lines().collect();
            let body: String = lines.iter().map(|l| format!("+{l}\n")).collect();
            format!(
                "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n{body}",
                lines.len()
            )
        })
        .collect()
}

async fn setup(kind: DbKind) -> (TestApp, FakeAgent) {
    let agent = FakeAgent::start().await;
    let toml = format!("{}[git]\nhost = \"none\"\n", agent.config(""));
    (spawn_app_with(kind, &toml).await, agent)
}

/// One run whose agent answers with a diff creating `files`; returns the app id and frames.
async fn build(app: &TestApp, agent: &FakeAgent, files: &[(&str, &str)]) -> (String, Vec<Frame>) {
    let review = with(
        event("idle", "ReviewResult", Some("Done!")),
        "unifiedDiff",
        json!(new_files_diff(files)),
    );
    agent.push(Script::events(&[with(review, "app_name", json!("shop"))]));
    let response = app
        .post_message(&app.token("alice"), &json!({"message": "build a shop"}))
        .await;
    assert_eq!(response.status(), 200);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let app_id = frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string();
    (app_id, frames)
}

/// The app's latest deployment once it has finished.
async fn settled_deployment(app: &TestApp, app_id: &str) -> Value {
    let token = app.token("alice");
    for _ in 0..150 {
        let response = app
            .get(&format!("/deployment-status/{app_id}"), &token)
            .await;
        if response.status() == 200 {
            let body: Value = response.json().await.expect("json");
            if ["healthy", "failed"].contains(&body["status"].as_str().unwrap_or("")) {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the deployment of {app_id} never finished");
}

async fn fetch(app: &TestApp, path: &str) -> (u16, String) {
    let response = app.http.get(app.url(path)).send().await.expect("get");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn a_client_and_server_app_is_previewed_from_client_without_its_server(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let (app_id, _) = build(
        &app,
        &agent,
        &[
            (
                "client/index.html",
                "<h1>Shop</h1>\n<script src=\"app.js\"></script>",
            ),
            ("client/app.js", "console.log('shop');"),
            ("client/assets/logo.svg", "<svg></svg>"),
            ("server/index.ts", "const secret = 'server-only';"),
            ("package.json", "{}"),
        ],
    )
    .await;
    let deployment = settled_deployment(&app, &app_id).await;
    assert_eq!(deployment["status"], "healthy", "{deployment}");
    let url = deployment["url"].as_str().expect("url");
    assert!(url.ends_with(&format!("/preview/{app_id}/")), "{url}");

    let page = app.http.get(url).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or("")
        .starts_with("sandbox"));
    assert!(page.text().await.expect("html").contains("<h1>Shop</h1>"));
    let base = format!("/preview/{app_id}/");
    assert_eq!(fetch(&app, &format!("{base}app.js")).await.0, 200);
    assert_eq!(fetch(&app, &format!("{base}assets/logo.svg")).await.0, 200);
    // Only the web root is published: the server's code and the app's root stay private.
    for hidden in [
        "server/index.ts",
        "../server/index.ts",
        "..%2Fserver%2Findex.ts",
        "package.json",
        "client/index.html",
    ] {
        let (status, body) = fetch(&app, &format!("{base}{hidden}")).await;
        assert_eq!(status, 404, "{hidden}");
        assert!(!body.contains("server-only"), "{hidden}");
    }
    app.stop().await;
}
db_test!(a_client_and_server_app_is_previewed_from_client_without_its_server);

async fn built_output_in_frontend_dist_is_served_before_its_sources(kind: DbKind) {
    let (app, agent) = setup(kind).await;
    let (app_id, _) = build(
        &app,
        &agent,
        &[
            (
                "frontend/index.html",
                "<script type=\"module\" src=\"/src/main.tsx\"></script>",
            ),
            ("frontend/src/main.tsx", "export {};"),
            ("frontend/dist/index.html", "<h1>Built shop</h1>"),
            ("frontend/dist/assets/index-abc.js", "console.log('built');"),
            ("backend/main.py", "print('api')"),
        ],
    )
    .await;
    let deployment = settled_deployment(&app, &app_id).await;
    assert_eq!(deployment["status"], "healthy", "{deployment}");
    let (status, html) = fetch(&app, &format!("/preview/{app_id}/")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Built shop"), "{html}");
    let (status, js) = fetch(&app, &format!("/preview/{app_id}/assets/index-abc.js")).await;
    assert_eq!((status, js.trim()), (200, "console.log('built');"));
    app.stop().await;
}
db_test!(built_output_in_frontend_dist_is_served_before_its_sources);

async fn an_app_without_a_page_fails_its_deployment_with_the_reason_and_never_goes_live(
    kind: DbKind,
) {
    let (app, agent) = setup(kind).await;
    let (app_id, frames) = build(
        &app,
        &agent,
        &[
            ("server/app.py", "print('api only')"),
            ("server/requirements.txt", "flask"),
            ("src/index.tsx", "export {};"),
        ],
    )
    .await;
    let reason = "no index.html at the root or in frontend/, client/, public/, dist/; \
                  this app needs a build step or the koyeb provider";
    let deployment = settled_deployment(&app, &app_id).await;
    assert_eq!(deployment["status"], "failed", "{deployment}");
    assert_eq!(deployment["isDeployed"], false);
    assert_eq!(deployment["error"], reason);
    // The run's stream tells the user why, and never claims a live URL.
    let stream =
        serde_json::to_string(&frames.iter().map(|f| &f.data).collect::<Vec<_>>()).expect("json");
    assert!(stream.contains(reason), "{stream}");
    assert!(!stream.contains("is live"), "{stream}");
    assert!(
        frames
            .iter()
            .all(|f| f.data["metadata"]["type"] != "deployment_complete"
                && f.data["message"]["metadata"]["type"] != "deployment_complete"),
        "{stream}"
    );
    let view: Value = app
        .get(&format!("/apps/{app_id}"), &app.token("alice"))
        .await
        .json()
        .await
        .expect("json");
    assert!(
        !view["deployStatus"]
            .as_str()
            .is_some_and(|s| s == "healthy" || s == "deployed"),
        "{view}"
    );
    assert_eq!(fetch(&app, &format!("/preview/{app_id}/")).await.0, 404);
    app.stop().await;
}
db_test!(an_app_without_a_page_fails_its_deployment_with_the_reason_and_never_goes_live);
