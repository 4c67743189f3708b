//! The local host's repositories over git's smart HTTP protocol, driven by the real `git`: the
//! owner clones and fetches with their bearer token as the password, nobody else sees the
//! repository, nothing can be pushed, and no server path ever reaches a client.
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use crate::db_test;
use crate::helpers::{assert_complete_run, spawn_app, DbKind, Frame, SseReader, TestApp};

struct Git {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the real git, never prompting and reading no configuration of this machine.
async fn git(dir: Option<&Path>, args: &[&str]) -> Git {
    let mut command = tokio::process::Command::new("git");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .await
        .expect("run git");
    Git {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `url` with `x:{token}` as its credentials.
fn with_token(url: &str, token: &str) -> String {
    url.replacen("http://", &format!("http://x:{token}@"), 1)
}

async fn run(app: &TestApp, token: &str, body: Value) -> Vec<Frame> {
    let response = app.post_message(token, &body).await;
    assert_eq!(response.status(), 200);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    frames
}

/// Builds an app with the demo agent; returns its id, its repository URL and the stream.
async fn built_app(app: &TestApp, token: &str) -> (String, String, Vec<Frame>) {
    let frames = run(app, token, json!({"message": "build a todo list app"})).await;
    let app_id = frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string();
    let view: Value = app
        .get(&format!("/apps/{app_id}"), token)
        .await
        .json()
        .await
        .expect("json");
    let url = view["repositoryUrl"]
        .as_str()
        .expect("repositoryUrl")
        .to_string();
    (app_id, url, frames)
}

/// Every string value under `key`, anywhere in `value`.
fn strings_under(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

async fn the_owner_clones_and_fetches_the_apps_repository_with_their_token(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, url, frames) = built_app(&app, &token).await;
    assert!(
        url.starts_with(&format!("{}/git/", app.address)) && url.ends_with(".git"),
        "{url}"
    );

    let work = tempfile::tempdir().expect("tempdir");
    let checkout = work.path().join("checkout");
    let checkout_str = checkout.to_str().expect("utf-8");
    let cloned = git(None, &["clone", &with_token(&url, &token), checkout_str]).await;
    assert!(cloned.ok, "{}", cloned.stderr);
    let html = std::fs::read_to_string(checkout.join("index.html")).expect("index.html");
    assert!(html.contains("<h1"), "{html}");
    let head = git(Some(&checkout), &["rev-parse", "HEAD"]).await.stdout;
    let head = head.trim();
    // The stream's commit URL names the commit under the repository's URL.
    let mut commit_urls = Vec::new();
    for frame in &frames {
        strings_under(&frame.data, "commitUrl", &mut commit_urls);
    }
    assert!(!commit_urls.is_empty());
    for commit_url in &commit_urls {
        assert_eq!(commit_url, &format!("{url}/commit/{head}"));
    }
    // The commit URL shows the commit to its owner.
    let page = app
        .http
        .get(&commit_urls[0])
        .basic_auth("x", Some(&token))
        .send()
        .await
        .expect("commit page");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/plain"));
    let shown = page.text().await.expect("text");
    assert!(
        shown.starts_with(&format!("commit {head}")) && shown.contains("index.html"),
        "{shown}"
    );
    let anonymous = app.http.get(&commit_urls[0]).send().await.expect("get");
    assert_eq!(anonymous.status(), 401);
    for missing in [
        "0000000000000000000000000000000000000000",
        "--output=x",
        "HEAD",
    ] {
        let page = app
            .http
            .get(format!("{url}/commit/{missing}"))
            .basic_auth("x", Some(&token))
            .send()
            .await
            .expect("get");
        assert_eq!(page.status(), 404, "{missing}");
    }

    // A follow-up commits again; a fetch (which sends what it has) brings exactly that.
    run(
        &app,
        &token,
        json!({"message": "rename it to Groceries", "applicationId": app_id}),
    )
    .await;
    let fetched = git(Some(&checkout), &["pull", "--ff-only", "--quiet"]).await;
    assert!(fetched.ok, "{}", fetched.stderr);
    let log = git(Some(&checkout), &["log", "--format=%H %s"])
        .await
        .stdout;
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(
        log.lines().nth(1).is_some_and(|l| l.starts_with(head)),
        "{log}"
    );
    let html = std::fs::read_to_string(checkout.join("index.html")).expect("index.html");
    assert!(html.contains("Groceries"), "{html}");
    app.stop().await;
}
db_test!(the_owner_clones_and_fetches_the_apps_repository_with_their_token);

async fn a_gzip_compressed_fetch_request_gets_a_pack(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (_, url, _) = built_app(&app, &token).await;
    let refs = app
        .http
        .get(format!("{url}/info/refs?service=git-upload-pack"))
        .basic_auth("x", Some(&token))
        .send()
        .await
        .expect("refs");
    assert_eq!(refs.status(), 200);
    assert_eq!(
        refs.headers()["content-type"],
        "application/x-git-upload-pack-advertisement"
    );
    let advertised = refs.text().await.expect("text");
    assert!(
        advertised.starts_with("001e# service=git-upload-pack\n0000"),
        "{advertised}"
    );
    // A ref line is `{len:04x}{sha} {ref}`; the first one also carries capabilities.
    let head = advertised
        .lines()
        .find_map(|l| l.strip_suffix(" refs/heads/main"))
        .and_then(|l| l.get(l.len() - 40..))
        .expect("main in the advertisement")
        .to_string();

    // What git sends for a large negotiation: pkt-lines, gzip-compressed.
    let want = format!("want {head}\n");
    let request = format!("{:04x}{want}00000009done\n", want.len() + 4);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(request.as_bytes()).expect("gzip");
    let body = gzip.finish().expect("gzip");
    let answer = app
        .http
        .post(format!("{url}/git-upload-pack"))
        .basic_auth("x", Some(&token))
        .header("content-type", "application/x-git-upload-pack-request")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("upload-pack");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "application/x-git-upload-pack-result"
    );
    let bytes = answer.bytes().await.expect("pack");
    assert!(
        bytes.starts_with(b"0008NAK\n"),
        "{:?}",
        &bytes[..16.min(bytes.len())]
    );
    assert!(bytes.windows(4).any(|w| w == b"PACK"), "a pack follows");
    app.stop().await;
}
db_test!(a_gzip_compressed_fetch_request_gets_a_pack);

async fn only_the_owner_sees_the_repository_and_nobody_can_push(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, url, _) = built_app(&app, &token).await;
    let work = tempfile::tempdir().expect("tempdir");
    let target = |name: &str| work.path().join(name).to_str().expect("utf-8").to_string();

    // No credentials: a Basic challenge, so git asks for them (here it may not, and fails).
    let refs = format!("{url}/info/refs?service=git-upload-pack");
    let anonymous = app.http.get(&refs).send().await.expect("get");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"agentgate\""
    );
    let cloned = git(None, &["clone", &url, &target("anonymous")]).await;
    assert!(
        !cloned.ok && cloned.stderr.contains("terminal prompts disabled"),
        "{}",
        cloned.stderr
    );
    let bad = app
        .http
        .get(&refs)
        .basic_auth("x", Some("not-a-token"))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.headers()["www-authenticate"],
        "Basic realm=\"agentgate\""
    );

    // Another user's token: the repository does not exist for them.
    let bob = app.token("bob");
    let cloned = git(None, &["clone", &with_token(&url, &bob), &target("bob")]).await;
    assert!(
        !cloned.ok && cloned.stderr.contains("not found"),
        "{}",
        cloned.stderr
    );
    let as_bob = app
        .http
        .get(&refs)
        .basic_auth("bob", Some(&bob))
        .send()
        .await
        .expect("get");
    assert_eq!(as_bob.status(), 404);
    assert_eq!(
        as_bob.json::<Value>().await.expect("json")["code"],
        "not_found"
    );

    // The owner cannot push either: the repository is the gateway's to write.
    let checkout = target("alice");
    let authed = with_token(&url, &token);
    assert!(git(None, &["clone", &authed, &checkout]).await.ok);
    let checkout = Path::new(&checkout);
    std::fs::write(checkout.join("extra.txt"), "pushed?").expect("write");
    git(Some(checkout), &["add", "extra.txt"]).await;
    let committed = git(
        Some(checkout),
        &[
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@x",
            "commit",
            "-qm",
            "extra",
        ],
    )
    .await;
    assert!(committed.ok, "{}", committed.stderr);
    let pushed = git(Some(checkout), &["push", &authed, "HEAD:main"]).await;
    assert!(
        !pushed.ok && pushed.stderr.contains("403"),
        "{}",
        pushed.stderr
    );
    let receive = app
        .http
        .post(format!("{url}/git-receive-pack"))
        .basic_auth("x", Some(&token))
        .body("0000")
        .send()
        .await
        .expect("post");
    assert_eq!(receive.status(), 403);

    // A deleted app's repository is gone for everyone.
    assert_eq!(
        app.delete(&format!("/apps/{app_id}"), &token)
            .await
            .status(),
        200
    );
    let gone = app
        .http
        .get(&refs)
        .basic_auth("x", Some(&token))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), 404);
    app.stop().await;
}
db_test!(only_the_owner_sees_the_repository_and_nobody_can_push);

async fn no_server_path_reaches_a_client(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, url, frames) = built_app(&app, &token).await;
    let data_dir = std::fs::canonicalize(app.data_dir.path()).expect("data dir");
    let data_dir = data_dir.to_str().expect("utf-8");
    let raw_dir = app.data_dir.path().to_str().expect("utf-8");
    let mut seen = vec![
        serde_json::to_string(&frames.iter().map(|f| &f.data).collect::<Vec<_>>()).expect("json"),
    ];
    for path in [
        format!("/apps/{app_id}"),
        format!("/apps/{app_id}/history"),
        "/apps".to_string(),
    ] {
        seen.push(app.get(&path, &token).await.text().await.expect("text"));
    }
    for text in &seen {
        assert!(
            !text.contains(data_dir) && !text.contains(raw_dir) && !text.contains("file://"),
            "{text}"
        );
    }
    let mut urls = Vec::new();
    for text in &seen {
        let value: Value = serde_json::from_str(text).expect("json");
        for key in ["repositoryUrl", "githubUrl", "commitUrl"] {
            strings_under(&value, key, &mut urls);
        }
    }
    assert!(urls.len() >= 4, "{urls:?}");
    assert!(urls.iter().all(|u| u.starts_with(&url)), "{urls:?}");
    app.stop().await;
}
db_test!(no_server_path_reaches_a_client);

async fn paths_stored_by_an_earlier_version_become_urls_at_start(kind: DbKind) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, url, frames) = built_app(&app, &token).await;
    let run_id = frames[0].data["traceId"]
        .as_str()
        .and_then(|t| t.split(".req-").nth(1))
        .expect("run id in the trace id")
        .to_string();
    let name = url.rsplit('/').next().expect("name").to_string();
    // What the local host used to store: the bare repository's path, and file:// commit URLs.
    let root = std::path::absolute(app.data_dir.path().join("git")).expect("absolute");
    let path = format!("{}/local/{name}", root.to_str().expect("utf-8"));
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let db = &app.state.db;
    entity::apps::Entity::update_many()
        .col_expr(
            entity::apps::Column::RepositoryUrl,
            Expr::value(path.clone()),
        )
        .filter(entity::apps::Column::Id.eq(app_id.as_str()))
        .exec(db)
        .await
        .expect("update");
    entity::app_versions::Entity::update_many()
        .col_expr(
            entity::app_versions::Column::RepositoryUrl,
            Expr::value(path.clone()),
        )
        .filter(entity::app_versions::Column::AppId.eq(app_id.as_str()))
        .exec(db)
        .await
        .expect("update");
    let old = json!({"type": "commit_created", "commitUrl": format!("file://{path}#{sha}"), "githubUrl": path});
    entity::app_messages::Entity::update_many()
        .col_expr(
            entity::app_messages::Column::Metadata,
            Expr::value(old.to_string()),
        )
        .filter(entity::app_messages::Column::AppId.eq(app_id.as_str()))
        .filter(entity::app_messages::Column::Role.eq("platform"))
        .exec(db)
        .await
        .expect("update");
    // In a row of several events, as the log writer stores a batch.
    let event = json!({"appId": app_id, "message": {"metadata": old}});
    let rows = crate::helpers::relog(&app, &run_id, 3, |seq, payload| match seq {
        2 => event.to_string(),
        _ => payload.to_string(),
    })
    .await;
    assert!(rows > 1, "{rows}");

    let app = app.restart("").await;
    let new_url = format!("{}/git/local/{name}", app.address);
    let view: Value = app
        .get(&format!("/apps/{app_id}"), &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(view["repositoryUrl"], new_url.as_str());
    let root = root.to_str().expect("utf-8");
    for route in [
        format!("/apps/{app_id}/history"),
        format!("/runs/{run_id}/events"),
    ] {
        let text = app.get(&route, &token).await.text().await.expect("text");
        assert!(!text.contains(root) && !text.contains("file://"), "{text}");
        assert!(
            text.contains(&format!("{new_url}/commit/{sha}")),
            "{route}: {text}"
        );
    }
    let version = entity::app_versions::Entity::find()
        .filter(entity::app_versions::Column::AppId.eq(app_id.as_str()))
        .one(&app.state.db)
        .await
        .expect("query")
        .expect("version");
    assert_eq!(version.repository_url.as_deref(), Some(new_url.as_str()));
    app.stop().await;
}
db_test!(paths_stored_by_an_earlier_version_become_urls_at_start);

async fn the_repository_is_also_cloneable_by_the_apps_id(kind: DbKind) {
    let app = spawn_app(kind).await;
    let token = app.token("alice");
    let (app_id, url, _) = built_app(&app, &token).await;
    let work = tempfile::tempdir().expect("tempdir");
    let target = |name: &str| work.path().join(name).to_str().expect("utf-8").to_string();
    let by_id = format!("{}/git/{app_id}.git", app.address);

    let cloned = git(None, &["clone", &with_token(&by_id, &token), &target("id")]).await;
    assert!(cloned.ok, "{}", cloned.stderr);
    let cloned = git(None, &["clone", &with_token(&url, &token), &target("name")]).await;
    assert!(cloned.ok, "{}", cloned.stderr);
    let head = |name: &str| {
        let dir = work.path().join(name);
        async move { git(Some(&dir), &["rev-parse", "HEAD"]).await.stdout }
    };
    assert_eq!(head("id").await, head("name").await);

    let bob = app.token("bob");
    let cloned = git(None, &["clone", &with_token(&by_id, &bob), &target("bob")]).await;
    assert!(
        !cloned.ok && cloned.stderr.contains("not found"),
        "{}",
        cloned.stderr
    );
    let anonymous = app
        .http
        .get(format!("{by_id}/info/refs?service=git-upload-pack"))
        .send()
        .await
        .expect("get");
    assert_eq!(anonymous.status(), 401);
    let push = app
        .http
        .post(format!("{by_id}/git-receive-pack"))
        .basic_auth("x", Some(&token))
        .body("0000")
        .send()
        .await
        .expect("post");
    assert_eq!(push.status(), 403);
    app.stop().await;
}
db_test!(the_repository_is_also_cloneable_by_the_apps_id);
