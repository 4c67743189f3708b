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

/// Runs the endpoints on `/github/user/*` against `owner`; returns the heads of `main` and of
/// `feature`, a branch the endpoints create from `main`.
async fn exercise(app: &TestApp, owner: &str) -> (String, String) {
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

    // A branch that does not exist yet starts from the default branch's head.
    let extra = json!([{"path": "docs/feature.md", "content": "# feature\n"}]);
    let (status, body) = post(app, &token, "/github/user/commit", json!({"repo": "demo-repo", "owner": owner, "paths": extra, "message": "Start feature", "branch": "feature"})).await;
    assert_eq!(status, 201, "{body}");
    let feature = body["commitSha"].as_str().expect("sha").to_string();
    assert_ne!(feature, second);

    // Names go into paths: anything that could leave its place there is refused up front.
    for (path, body) in [
        ("/github/user/create-repo", json!({"repo": "../evil"})),
        ("/github/user/create-repo", json!({"repo": "evil/x"})),
        (
            "/github/user/initial-commit",
            json!({"repo": "evil?x=1", "owner": owner, "paths": files}),
        ),
        (
            "/github/user/initial-commit",
            json!({"repo": "demo-repo", "owner": "../evil", "paths": files}),
        ),
        (
            "/github/user/commit",
            json!({"repo": "..", "owner": owner, "paths": change, "message": "m", "branch": "main"}),
        ),
        (
            "/github/user/commit",
            json!({"repo": "demo-repo", "owner": "evil/../x", "paths": change, "message": "m", "branch": "main"}),
        ),
    ] {
        let (status, reply) = post(app, &token, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {reply}");
        assert_eq!(reply["code"], "invalid", "{reply}");
    }
    (second, feature)
}

/// The files of `branch`, its head and the head's first parent, read with the git CLI from a
/// bare repository.
fn local_branch(repo: &std::path::Path, branch: &str) -> (Vec<String>, String, String) {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let files = git(&["ls-tree", "-r", "--name-only", branch])
        .lines()
        .map(str::to_string)
        .collect();
    let head = git(&["rev-parse", branch]).trim().to_string();
    let parent = git(&["rev-parse", &format!("{branch}^")])
        .trim()
        .to_string();
    (files, head, parent)
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
    let (head, feature) = exercise(&app, "local").await;
    let repo = app.data_dir.path().join("git/local/demo-repo.git");
    let (files, feature_head, parent) = local_branch(&repo, "feature");
    assert_eq!(files, ["README.md", "docs/feature.md", "src/main.js"]);
    assert_eq!(
        (feature_head, parent),
        (feature, head.clone()),
        "feature starts at main"
    );
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
    let (head, feature) = exercise(&app, USER).await;
    assert_eq!(github.head(USER, "demo-repo", "main"), Some(head.clone()));
    let files = github.files_at(USER, "demo-repo", "main");
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(names, vec!["README.md", "src/main.js"]);
    assert_eq!(
        github.head(USER, "demo-repo", "feature"),
        Some(feature.clone())
    );
    let branch = github.files_at(USER, "demo-repo", "feature");
    let names: Vec<&String> = branch.keys().collect();
    assert_eq!(names, vec!["README.md", "docs/feature.md", "src/main.js"]);
    assert_eq!(
        branch["src/main.js"], files["src/main.js"],
        "main's content"
    );
    let commit = github
        .commit_info(USER, "demo-repo", &feature)
        .expect("feature commit");
    assert_eq!(commit.parents, vec![head], "feature starts at main");
    assert_no_request_mentions(&github, "evil");
    app.stop().await;
}

fn assert_no_request_mentions(github: &FakeGitHub, text: &str) {
    let leaked: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|(_, path)| path.contains(text))
        .collect();
    assert!(
        leaked.is_empty(),
        "refused names reached GitHub: {leaked:?}"
    );
}

/// `/github/org/*` creates and commits under the organisation named in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_org_endpoints_on_github() {
    const ORG: &str = "octo-org";
    let github = FakeGitHub::start().await;
    let toml = format!(
        "[git]\ndev_endpoints = true\nhost = \"github\"\napi_base = {:?}\nowner = {USER:?}\ntoken = {PERSONAL_TOKEN:?}\nmax_retries = 1\n",
        github.url
    );
    let app = spawn_app_with(DbKind::Sqlite, &toml).await;
    let token = app.token("dev");
    let (status, body) = post(
        &app,
        &token,
        "/github/org/create-repo",
        json!({"repo": "org-repo", "owner": ORG, "appURL": "http://x.test"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["repositoryUrl"],
        format!("{}/{ORG}/org-repo", github.url).as_str()
    );
    assert_eq!(github.repo_names(ORG), vec!["org-repo".to_string()]);
    assert!(github.repo_names(USER).is_empty());
    assert_eq!(
        github.homepage(ORG, "org-repo").as_deref(),
        Some("http://x.test")
    );
    let (status, _) = post(
        &app,
        &token,
        "/github/org/create-repo",
        json!({"repo": "org-repo", "owner": ORG}),
    )
    .await;
    assert_eq!(status, 409, "repo exists");
    let (status, body) = post(
        &app,
        &token,
        "/github/org/create-repo",
        json!({"repo": "other"}),
    )
    .await;
    assert_eq!(status, 400, "missing owner: {body}");
    assert_eq!(body["code"], "missing_field");
    for owner in ["../user", "evil/repos", "evil?x", ".evil"] {
        let (status, body) = post(
            &app,
            &token,
            "/github/org/create-repo",
            json!({"repo": "other", "owner": owner}),
        )
        .await;
        assert_eq!(status, 400, "{owner}: {body}");
        assert_eq!(body["code"], "invalid");
    }

    let files =
        json!([{"path": "README.md", "content": "# org\n"}, {"path": "app.js", "content": "1\n"}]);
    let (status, body) = post(
        &app,
        &token,
        "/github/org/initial-commit",
        json!({"repo": "org-repo", "owner": ORG, "paths": files}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = post(
        &app,
        &token,
        "/github/org/initial-commit",
        json!({"repo": "org-repo", "owner": ORG, "paths": files}),
    )
    .await;
    assert_eq!(status, 409, "history exists");
    let change = json!([{"path": "app.js", "content": "2\n"}]);
    let (status, body) = post(&app, &token, "/github/org/commit", json!({"repo": "org-repo", "owner": ORG, "paths": change, "message": "Bump", "branch": "main"})).await;
    assert_eq!(status, 201, "{body}");
    let second = body["commitSha"].as_str().expect("sha").to_string();
    assert_eq!(github.head(ORG, "org-repo", "main"), Some(second.clone()));
    let commit = github
        .commit_info(ORG, "org-repo", &second)
        .expect("commit");
    assert_eq!(commit.message, "Bump");
    assert_eq!(
        github
            .commit_info(ORG, "org-repo", &commit.parents[0])
            .map(|c| c.parents.len()),
        Some(1),
        "on top of the initial commit (two files: bootstrap + rest)"
    );
    let tree = github.files_at(ORG, "org-repo", "main");
    assert_eq!(tree["app.js"].0, b"2\n");
    assert_eq!(tree["README.md"].0, b"# org\n");

    let release_change = json!([{"path": "app.js", "content": "3\n"}]);
    let (status, body) = post(&app, &token, "/github/org/commit", json!({"repo": "org-repo", "owner": ORG, "paths": release_change, "message": "Try", "branch": "release/1.0"})).await;
    assert_eq!(status, 201, "{body}");
    let release = body["commitSha"].as_str().expect("sha").to_string();
    assert_eq!(
        github
            .commit_info(ORG, "org-repo", &release)
            .expect("commit")
            .parents,
        vec![second],
        "a new branch starts at main"
    );
    let mut expected = tree.clone();
    expected.insert("app.js".into(), (b"3\n".to_vec(), "100644".into()));
    assert_eq!(github.files_at(ORG, "org-repo", "release/1.0"), expected);
    assert_eq!(
        github.files_at(ORG, "org-repo", "main"),
        tree,
        "main unchanged"
    );
    assert_no_request_mentions(&github, "evil");
    assert_no_request_mentions(&github, "..");
    app.stop().await;
}
