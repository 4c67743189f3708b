//! The dev-only /github/* endpoints on the local git host and on GitHub (the fake).
use serde_json::{json, Value};

use crate::db_test;
use crate::fake_github::{FakeGitHub, PERSONAL_TOKEN, USER};
use crate::helpers::{spawn_app, spawn_app_with, DbKind, TestApp};

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let response = app.post_json(path, token, &body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn exercise(app: &TestApp, owner: &str) -> String {
    let token = app.token("dev");
    let (status, body) = post(
        app,
        &token,
        "/github/user/create-repo",
        json!({"repo": "demo-repo", "appURL": "http://x.test"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "success");
    assert!(body["repositoryUrl"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    let (status, body) = post(
        app,
        &token,
        "/github/user/create-repo",
        json!({"repo": "demo-repo"}),
    )
    .await;
    assert_eq!(status, 409, "repo exists: {body}");
    assert_eq!(body["status"], "error");
    let (status, _) = post(
        app,
        &token,
        "/github/user/create-repo",
        json!({"appURL": "x"}),
    )
    .await;
    assert_eq!(status, 400, "missing repo");

    let files = json!([{"path": "README.md", "content": "# demo\n"}, {"path": "src/main.js", "content": "console.log(1)\n"}]);
    let (status, body) = post(
        app,
        &token,
        "/github/user/initial-commit",
        json!({"repo": "demo-repo", "owner": owner, "paths": files}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let first = body["commitSha"].as_str().expect("sha").to_string();
    let (status, body) = post(
        app,
        &token,
        "/github/user/initial-commit",
        json!({"repo": "demo-repo", "owner": owner, "paths": files}),
    )
    .await;
    assert_eq!(status, 409, "history exists: {body}");
    let (status, _) = post(
        app,
        &token,
        "/github/user/initial-commit",
        json!({"repo": "demo-repo", "owner": owner}),
    )
    .await;
    assert_eq!(status, 400, "missing paths");

    let change = json!([{"path": "src/main.js", "content": "console.log(2)\n"}]);
    let (status, body) = post(app, &token, "/github/user/commit", json!({"repo": "demo-repo", "owner": owner, "paths": change, "message": "Bump", "branch": "main"})).await;
    assert_eq!(status, 201, "{body}");
    let second = body["commitSha"].as_str().expect("sha").to_string();
    assert_ne!(first, second);
    let (status, _) = post(
        app,
        &token,
        "/github/user/commit",
        json!({"repo": "demo-repo", "owner": owner, "paths": change, "branch": "main"}),
    )
    .await;
    assert_eq!(status, 400, "missing message");
    let (status, _) = post(
        app,
        &token,
        "/github/user/commit",
        json!({"repo": "nope", "owner": owner, "paths": change, "message": "m", "branch": "main"}),
    )
    .await;
    assert_eq!(status, 404, "unknown repo");
    second
}

async fn dev_endpoints_are_off_by_default(kind: DbKind) {
    let app = spawn_app(kind).await;
    let (status, _) = post(
        &app,
        &app.token("dev"),
        "/github/user/create-repo",
        json!({"repo": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    app.stop().await;
}
db_test!(dev_endpoints_are_off_by_default);

async fn dev_endpoints_on_the_local_host(kind: DbKind) {
    let app = spawn_app_with(kind, "[git]\ndev_endpoints = true\n").await;
    let head = exercise(&app, "local").await;
    let repo = app.data_dir.path().join("git/local/demo-repo.git");
    let clone = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(&repo)
        .arg(clone.path().join("c"))
        .status()
        .expect("git");
    assert!(status.success());
    let checkout = clone.path().join("c");
    assert_eq!(
        std::fs::read_to_string(checkout.join("src/main.js")).expect("file"),
        "console.log(2)\n"
    );
    assert_eq!(
        std::fs::read_to_string(checkout.join("README.md")).expect("file"),
        "# demo\n"
    );
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&checkout)
        .output()
        .expect("git");
    assert_eq!(String::from_utf8_lossy(&rev.stdout).trim(), head);
    app.stop().await;
}
db_test!(dev_endpoints_on_the_local_host);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_endpoints_on_github() {
    let github = FakeGitHub::start().await;
    let toml = format!(
        "[git]\ndev_endpoints = true\nhost = \"github\"\napi_base = {:?}\nowner = {USER:?}\ntoken = {PERSONAL_TOKEN:?}\nmax_retries = 1\n",
        github.url
    );
    let app = spawn_app_with(DbKind::Sqlite, &toml).await;
    let head = exercise(&app, USER).await;
    assert_eq!(github.head(USER, "demo-repo", "main"), Some(head));
    let files = github.files_at(USER, "demo-repo", "main");
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(names, vec!["README.md", "src/main.js"]);
    app.stop().await;
}
