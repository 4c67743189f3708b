//! Files: versions from diffs, content-addressed uploads, presigned links on the local store and
//! on a real S3 server, hostile diffs, and storage outages.
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::db_test;
use crate::fake_agent::{event, with, FakeAgent, Script};
use crate::helpers::{
    assert_complete_run, kinds, spawn_app, spawn_app_with, DbKind, Frame, SseReader, TestApp,
};
use crate::s3_server::S3Server;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn run(app: &TestApp, token: &str, body: Value) -> Vec<Frame> {
    let response = app.post_message(token, &body).await;
    assert_eq!(response.status(), 200);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    frames
}

fn app_id(frames: &[Frame]) -> String {
    frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string()
}

async fn read_url(app: &TestApp, token: &str, app_id: &str, query: &str) -> reqwest::Response {
    app.get(&format!("/apps/{app_id}/read-url{query}"), token)
        .await
}

/// Path, hash and size of every listed file: what a link names, without the signed URL,
/// whose expiry moves with the clock.
fn file_contents(links: &Value) -> Vec<[Value; 4]> {
    links["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| ["path", "sha256", "size", "mode"].map(|k| f[k].clone()))
        .collect()
}

/// Downloads every listed file and the archive; checks sizes and hashes; returns path -> bytes.
async fn download_all(app: &TestApp, links: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for file in links["files"].as_array().expect("files") {
        let response = app
            .http
            .get(file["url"].as_str().expect("url"))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200, "{file}");
        let bytes = response.bytes().await.expect("bytes").to_vec();
        assert_eq!(
            sha256(&bytes),
            file["sha256"].as_str().expect("sha"),
            "{file}"
        );
        assert_eq!(bytes.len() as u64, file["size"].as_u64().expect("size"));
        files.insert(file["path"].as_str().expect("path").to_string(), bytes);
    }
    let archive = app
        .http
        .get(links["readUrl"].as_str().expect("readUrl"))
        .send()
        .await
        .expect("get");
    assert_eq!(archive.status(), 200);
    let archive = archive.bytes().await.expect("bytes");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.as_ref()));
    let mut from_archive = BTreeMap::new();
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read");
        from_archive.insert(path, content);
    }
    assert_eq!(
        from_archive, files,
        "the archive holds exactly the listed files"
    );
    files
}

fn tamper(url: &str) -> String {
    // Flip the last hex digit of the signature.
    let last = url.chars().last().expect("char");
    let flipped = if last == '0' { '1' } else { '0' };
    format!("{}{flipped}", &url[..url.len() - 1])
}

async fn store_contract(app: &TestApp) {
    let store = app.state.files.store().clone();
    let key = "contract/some object.bin";
    let body = Bytes::from_static(b"\x00\x01 hello \xff");
    assert!(!store.exists(key).await.expect("exists"));
    assert_eq!(store.get(key).await.expect("get"), None);
    store
        .put(key, body.clone(), "application/octet-stream")
        .await
        .expect("put");
    assert!(store.exists(key).await.expect("exists"));
    assert_eq!(store.get(key).await.expect("get"), Some(body.clone()));
    assert!(
        store.put("../escape", body.clone(), "x").await.is_err(),
        "keys cannot climb out"
    );

    let url = store
        .presign_get(key, Duration::from_secs(60), Some("obj.bin"))
        .await
        .expect("presign");
    let response = app.http.get(&url).send().await.expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("bytes"), body);
    let forged = app.http.get(tamper(&url)).send().await.expect("get");
    assert_eq!(forged.status(), 403, "a wrong signature is refused");

    let short = store
        .presign_get(key, Duration::from_secs(1), None)
        .await
        .expect("presign");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = app.http.get(&short).send().await.expect("get");
    assert_eq!(expired.status(), 403, "an expired link is refused");

    store.delete(key).await.expect("delete");
    assert!(!store.exists(key).await.expect("exists"));
    store.check().await.expect("check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_contract() {
    let app = spawn_app(DbKind::Sqlite).await;
    assert_eq!(app.state.files.store().kind(), "local");
    store_contract(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_contract() {
    let s3 = S3Server::start().await;
    let app = spawn_app_with(DbKind::Sqlite, &s3.config()).await;
    assert_eq!(app.state.files.store().kind(), "s3");
    store_contract(&app).await;
    app.stop().await;
}

/// Builds with the demo agent, follows up, and checks versions, links and uploads.
async fn demo_app_versions(app: &TestApp, blob_count: impl Fn() -> usize) {
    let token = app.token("alice");
    let frames = run(app, &token, json!({"message": "build a todo list app"})).await;
    let id = app_id(&frames);
    let platform: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.data["message"]["kind"] == "PlatformMessage")
        .collect();
    assert_eq!(
        crate::helpers::notice_kind(&platform[0].data),
        "version_created"
    );
    let response = read_url(app, &token, &id, "").await;
    assert_eq!(response.status(), 200);
    let v1: Value = response.json().await.expect("json");
    assert_eq!(v1["version"], 1);
    let expires =
        chrono::DateTime::parse_from_rfc3339(v1["expiresAt"].as_str().expect("expiresAt"))
            .expect("date");
    let ttl = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!(
        (880..=900).contains(&ttl),
        "15 minutes by default, got {ttl} s"
    );
    let v1_files = download_all(app, &v1).await;
    assert!(
        v1_files.contains_key("index.html") && v1_files.contains_key("app.js"),
        "{:?}",
        v1_files.keys()
    );
    let blobs_after_v1 = blob_count();
    assert_eq!(blobs_after_v1, v1_files.len(), "one blob per distinct file");

    let frames = run(
        app,
        &token,
        json!({"message": "rename it to Groceries", "applicationId": id}),
    )
    .await;
    assert!(
        kinds(&frames).contains(&"PlatformMessage".to_string()),
        "{:?}",
        kinds(&frames)
    );
    let v2: Value = read_url(app, &token, &id, "")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v2["version"], 2);
    let v2_files = download_all(app, &v2).await;
    let changed = v2_files
        .iter()
        .filter(|(p, c)| v1_files.get(*p) != Some(*c))
        .count();
    assert!(
        changed >= 1 && changed < v2_files.len(),
        "a follow-up changes some files, not all: {changed}"
    );
    assert_eq!(
        blob_count() - blobs_after_v1,
        changed,
        "only changed files were uploaded"
    );
    assert!(String::from_utf8_lossy(&v2_files["index.html"]).contains("Groceries"));

    let old: Value = read_url(app, &token, &id, "?version=1")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        download_all(app, &old).await,
        v1_files,
        "older versions stay readable"
    );
    let one: Value = read_url(app, &token, &id, "?path=index.html")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(one["files"].as_array().expect("files").len(), 1);
    assert_eq!(one["files"][0]["path"], "index.html");

    for (query, status) in [
        ("?version=0", 400),
        ("?version=x", 400),
        ("?version=9", 404),
        ("?path=nope.txt", 404),
        ("?path=../etc/passwd", 400),
    ] {
        assert_eq!(
            read_url(app, &token, &id, query).await.status(),
            status,
            "{query}"
        );
    }
    assert_eq!(
        read_url(app, &app.token("bob"), &id, "").await.status(),
        404,
        "foreign app"
    );
    let app_view: Value = app
        .get(&format!("/apps/{id}"), &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(app_view["version"], 2);
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut count = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                count += count_files(&entry.path());
            } else {
                count += 1;
            }
        }
    }
    count
}

async fn demo_run_creates_versions_on_the_local_store(kind: DbKind) {
    let app = spawn_app(kind).await;
    let blobs = app.data_dir.path().join("objects/blobs");
    demo_app_versions(&app, || count_files(&blobs)).await;
    // Tampered and expired local links are refused with 403 JSON.
    let token = app.token("alice");
    let apps: Value = app.get("/apps", &token).await.json().await.expect("json");
    let id = apps["data"][0]["id"].as_str().expect("id").to_string();
    let links: Value = read_url(&app, &token, &id, "")
        .await
        .json()
        .await
        .expect("json");
    let url = links["files"][0]["url"].as_str().expect("url");
    let response = app.http.get(tamper(url)).send().await.expect("get");
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.expect("json")["code"],
        "invalid_signature"
    );
    let expired = url.replace("expires=", "expires=1");
    assert_eq!(
        app.http.get(expired).send().await.expect("get").status(),
        403,
        "changing the expiry breaks the signature"
    );
    app.stop().await;
}
db_test!(demo_run_creates_versions_on_the_local_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_run_creates_versions_on_s3() {
    let s3 = S3Server::start().await;
    let app = spawn_app_with(DbKind::Sqlite, &s3.config()).await;
    demo_app_versions(&app, || s3.object_count("blobs")).await;
    app.stop().await;
}

const GOOD_DIFF: &str = "diff --git a/index.html b/index.html\nnew file mode 100644\n--- /dev/null\n+++ b/index.html\n@@ -0,0 +1,2 @@\n+<h1>One</h1>\n+<p>two</p>\n";

fn review(diff: &str) -> Value {
    with(
        event("idle", "ReviewResult", Some("done")),
        "unifiedDiff",
        json!(diff),
    )
}

async fn hostile_and_broken_diffs_change_nothing(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    agent.push(Script::events(&[review(GOOD_DIFF)]));
    let frames = run(&app, &token, json!({"message": "build a page"})).await;
    let id = app_id(&frames);
    let before: Value = read_url(&app, &token, &id, "")
        .await
        .json()
        .await
        .expect("json");

    let traversal = "diff --git a/../../outside.txt b/../../outside.txt\nnew file mode 100644\n--- /dev/null\n+++ b/../../outside.txt\n@@ -0,0 +1 @@\n+pwned\n";
    let half_good = format!("{}diff --git a/index.html b/index.html\n--- a/index.html\n+++ b/index.html\n@@ -1,2 +1,2 @@\n-<h1>Wrong context</h1>\n+<h1>Three</h1>\n <p>two</p>\n", "diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+new\n");
    for (diff, code, mention) in [
        (traversal.to_string(), "unsafe_path", "outside.txt"),
        (half_good, "diff_hunk_failed", "index.html"),
        (
            "diff --git a/x b/x\n@@ garbage".to_string(),
            "diff_empty",
            "",
        ),
    ] {
        agent.push(Script::events(&[review(&diff)]));
        let frames = run(
            &app,
            &token,
            json!({"message": "change it", "applicationId": id}),
        )
        .await;
        let error = frames
            .iter()
            .find(|f| f.event == "error")
            .unwrap_or_else(|| panic!("an error event for {code}: {:?}", kinds(&frames)));
        assert_eq!(error.data["code"], code, "{:?}", error.data);
        let text = error.data["error"].as_str().expect("text");
        assert!(text.contains(mention), "the error names the file: {text}");
        assert!(text.contains("version 1 stays current"), "{text}");
        assert_eq!(frames.last().map(|f| f.event.as_str()), Some("done"));
        let after: Value = read_url(&app, &token, &id, "")
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(after["version"], 1);
        assert_eq!(
            file_contents(&after),
            file_contents(&before),
            "the files are untouched"
        );
    }
    assert!(!app.data_dir.path().join("outside.txt").exists());
    assert!(!app
        .data_dir
        .path()
        .parent()
        .expect("parent")
        .join("outside.txt")
        .exists());
    app.stop().await;
}
db_test!(hostile_and_broken_diffs_change_nothing);

/// A new file `path` holding `lines`, as git prints it.
fn new_file(path: &str, lines: &[&str]) -> String {
    let body: String = lines.iter().map(|l| format!("+{l}\n")).collect();
    format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n{body}",
        lines.len()
    )
}

/// Paths and sizes of the app's current version, and its number.
async fn current_files(app: &TestApp, token: &str, id: &str) -> (i64, Vec<(String, i64)>) {
    let links: Value = read_url(app, token, id, "")
        .await
        .json()
        .await
        .expect("json");
    let files = links["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().expect("path").to_string(),
                f["size"].as_i64().expect("size"),
            )
        })
        .collect();
    (links["version"].as_i64().expect("version"), files)
}

/// Real LLM agents send the template diff, then a final diff that is cumulative from the same
/// snapshot (it repeats the template's new files). Both must apply, each against the files the
/// run sent, not against the version the first diff made.
async fn cumulative_diffs_apply_to_the_files_the_run_sent(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    let template = new_file("index.html", &["<h1>One</h1>", "<p>two</p>"]);
    let running = |diff: &str| {
        with(
            event("running", "ReviewResult", Some("Application initialized")),
            "unifiedDiff",
            json!(diff),
        )
    };
    agent.push(Script::events(&[
        running(&template),
        event("running", "SomeFutureKind", Some("opaque")),
        review(&format!("{template}{}", new_file("app.js", &["go();"]))),
    ]));
    let frames = run(&app, &token, json!({"message": "build a page"})).await;
    assert!(
        !frames.iter().any(|f| f.event == "error"),
        "{:?}",
        frames
            .iter()
            .filter(|f| f.event == "error")
            .collect::<Vec<_>>()
    );
    let id = app_id(&frames);
    let (version, files) = current_files(&app, &token, &id).await;
    assert_eq!(version, 2);
    assert_eq!(
        files,
        vec![("app.js".to_string(), 6), ("index.html".to_string(), 24)]
    );

    // The follow-up sends version 2; both of its diffs are relative to that snapshot.
    let edit = "diff --git a/index.html b/index.html\n--- a/index.html\n+++ b/index.html\n@@ -1,2 +1,2 @@\n-<h1>One</h1>\n+<h1>Uno</h1>\n <p>two</p>\n";
    agent.push(Script::events(&[
        running(edit),
        review(&format!("{edit}{}", new_file("style.css", &["h1{}"]))),
    ]));
    let frames = run(
        &app,
        &token,
        json!({"message": "translate it", "applicationId": id}),
    )
    .await;
    assert!(!frames.iter().any(|f| f.event == "error"));
    let (version, files) = current_files(&app, &token, &id).await;
    assert_eq!(version, 4);
    assert_eq!(
        files,
        vec![
            ("app.js".to_string(), 6),
            ("index.html".to_string(), 24),
            ("style.css".to_string(), 5)
        ]
    );
    let request = &agent.requests()[1].body;
    assert_eq!(
        request["allFiles"].as_array().map(Vec::len),
        Some(2),
        "{request}"
    );
    // Agents reject assistant kinds they do not know; a passed-through one is not re-sent.
    let kinds: Vec<&Value> = request["allMessages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m.get("kind"))
        .collect();
    assert!(!kinds.contains(&&json!("SomeFutureKind")), "{kinds:?}");
    assert!(kinds.contains(&&json!("ReviewResult")), "{kinds:?}");
    app.stop().await;
}
db_test!(cumulative_diffs_apply_to_the_files_the_run_sent);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_keeps_the_version_and_retries() {
    let mut s3 = S3Server::start().await;
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(
        DbKind::Sqlite,
        &format!("{}{}", agent.config(""), s3.config()),
    )
    .await;
    let token = app.token("alice");
    s3.stop();
    agent.push(Script::events(&[review(GOOD_DIFF)]));
    let frames = run(&app, &token, json!({"message": "build a page"})).await;
    let types: Vec<Value> = frames
        .iter()
        .map(|f| crate::helpers::notice_kind(&f.data).clone())
        .collect();
    assert!(types.contains(&json!("version_created")), "{types:?}");
    assert!(
        types.contains(&json!("storage_pending")),
        "the user is told: {types:?}"
    );
    assert!(
        !frames.iter().any(|f| f.event == "error"),
        "the run does not fail"
    );
    let id = app_id(&frames);
    let pending = read_url(&app, &token, &id, "").await;
    assert_eq!(pending.status(), 409);
    assert_eq!(
        pending.json::<Value>().await.expect("json")["code"],
        "version_pending"
    );

    s3.resume().await;
    let mut stored = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let response = read_url(&app, &token, &id, "").await;
        if response.status() == 200 {
            stored = Some(response.json::<Value>().await.expect("json"));
            break;
        }
    }
    let links = stored.expect("the background retry stored the version");
    let files = download_all(&app, &links).await;
    assert_eq!(
        String::from_utf8_lossy(&files["index.html"]),
        "<h1>One</h1>\n<p>two</p>\n"
    );
    app.stop().await;
}
