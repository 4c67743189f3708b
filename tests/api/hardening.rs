//! Hardening: required token claims, dev sign-in rules, path normalisation before the
//! allow-list, path and file-count limits, Retry-After, failing closed on an unwritable
//! database or unreachable storage/agent, and inert downloads.
use std::time::Duration;

use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::db_test;
use crate::fake_agent::{event, with, FakeAgent, Script};
use crate::helpers::{assert_complete_run, spawn_app_with, DbKind, Frame, SseReader, TestApp};

const SECRET: &str = "hardening-test-secret-0123456789-abcdefghijklmnop";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "agentgate-tests";
const PRIVATE_PEM: &[u8] = include_bytes!("../fixtures/jwks/rsa_private.pem");
const JWKS: &str = include_str!("../fixtures/jwks/jwks.json");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("encode")
}

fn rs256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let key = EncodingKey::from_rsa_pem(PRIVATE_PEM).expect("rsa key");
    jsonwebtoken::encode(&header, claims, &key).expect("encode")
}

/// Serves the test key set; returns its URL.
async fn jwks_server() -> String {
    let router = axum::Router::new().route(
        "/jwks.json",
        get(|| async { ([("content-type", "application/json")], JWKS) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

/// Each claim set but the complete one leaves out `iss` or `aud`; only the complete one passes.
async fn assert_claims_required(app: &TestApp, sign: fn(&Value) -> String, mode: &str) {
    let full = json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
    assert_eq!(app.get("/apps", &sign(&full)).await.status(), 200, "{mode}");
    for missing in ["iss", "aud"] {
        let mut claims = full.clone();
        claims.as_object_mut().expect("object").remove(missing);
        let response = app.get("/apps", &sign(&claims)).await;
        assert_eq!(response.status(), 401, "{mode}: a token without {missing}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "unauthorized");
    }
}

async fn configured_issuer_and_audience_are_required_claims(kind: DbKind) {
    let claims = format!("issuer = {ISSUER:?}\naudience = {AUDIENCE:?}\n");
    let app = spawn_app_with(
        kind,
        &format!("[auth]\nhs256_secret = {SECRET:?}\n{claims}"),
    )
    .await;
    assert_claims_required(&app, hs256, "hs256").await;
    app.stop().await;

    let url = jwks_server().await;
    let app = spawn_app_with(
        kind,
        &format!("[auth]\nmode = \"jwks\"\njwks_url = {url:?}\n{claims}"),
    )
    .await;
    assert_claims_required(&app, rs256, "jwks").await;
    app.stop().await;
}
db_test!(configured_issuer_and_audience_are_required_claims);

async fn paths_are_normalised_before_the_public_allow_list(kind: DbKind) {
    let app = spawn_app_with(kind, "").await;
    for path in [
        "//apps",
        "//message-limit",
        "/./apps",
        "///auth/is-privileged-user",
    ] {
        let response = app.http.get(app.url(path)).send().await.expect("request");
        assert_eq!(response.status(), 401, "{path} needs a token");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "unauthorized", "{path}");
    }
    let health = app
        .http
        .get(app.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200, "public paths stay public");
    app.stop().await;
}
db_test!(paths_are_normalised_before_the_public_allow_list);

async fn a_429_says_when_to_retry(kind: DbKind) {
    let app = spawn_app_with(kind, "[limits]\ndaily_messages = 1\n").await;
    app.state.limiter.reserve("alice").await.expect("reserve");
    let response = app
        .post_message(&app.token("alice"), &json!({"message": "one more"}))
        .await;
    assert_eq!(response.status(), 429);
    let retry_after: i64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    let reset = response.headers()["x-dailylimit-reset"]
        .to_str()
        .expect("ascii")
        .to_string();
    let reset = chrono::DateTime::parse_from_rfc3339(&reset).expect("rfc3339");
    let until_reset = (reset.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!(
        (1..=86_400).contains(&retry_after) && (retry_after - until_reset).abs() <= 2,
        "Retry-After {retry_after} s, reset in {until_reset} s"
    );
    app.stop().await;
}
db_test!(a_429_says_when_to_retry);

const PAGE_DIFF: &str = "diff --git a/index.html b/index.html\nnew file mode 100644\n--- /dev/null\n+++ b/index.html\n@@ -0,0 +1 @@\n+<script>alert(document.cookie)</script>\n";

fn review(diff: &str) -> Value {
    with(
        event("idle", "ReviewResult", Some("done")),
        "unifiedDiff",
        json!(diff),
    )
}

/// A new file `path` with one line, as git prints it.
fn new_file(path: &str) -> String {
    format!("diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n")
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

fn error_event(frames: &[Frame]) -> Value {
    frames
        .iter()
        .find(|f| f.event == "error")
        .map(|f| f.data.clone())
        .unwrap_or_else(|| panic!("an error event in {frames:?}"))
}

async fn downloads_are_inert(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    agent.push(Script::events(&[review(PAGE_DIFF)]));
    let id = app_id(&run(&app, &token, json!({"message": "a page"})).await);
    let links: Value = app
        .get(&format!("/apps/{id}/read-url"), &token)
        .await
        .json()
        .await
        .expect("json");
    let urls = [
        links["files"][0]["url"].as_str().expect("file url"),
        links["readUrl"].as_str().expect("archive url"),
    ];
    for url in urls {
        let response = app.http.get(url).send().await.expect("download");
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(headers["content-security-policy"], "sandbox", "{url}");
        assert!(
            headers["content-disposition"]
                .to_str()
                .expect("ascii")
                .starts_with("attachment"),
            "{url}"
        );
    }
    app.stop().await;
}
db_test!(downloads_are_inert);

async fn diffs_past_the_path_limits_are_refused_with_the_path(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    let long_name = format!("{}.txt", "n".repeat(5000));
    let long_path = vec!["d".repeat(200); 30].join("/") + "/f.txt";
    let deep_path = vec!["d"; 65].join("/") + "/f.txt";
    for (path, reason) in [
        (long_name, "longer than 255 bytes"),
        (long_path, "longer than 4096 bytes"),
        (deep_path, "more than 64 levels"),
    ] {
        agent.push(Script::events(&[review(&new_file(&path))]));
        let frames = run(&app, &token, json!({"message": "make it"})).await;
        let error = error_event(&frames);
        assert_eq!(error["code"], "unsafe_path", "{error}");
        let text = error["error"].as_str().expect("text");
        assert!(text.contains(reason), "{text}");
        assert!(
            text.contains(&path[..50]),
            "the message names the path: {text}"
        );
        assert!(
            text.len() < 600,
            "the path is cut short: {} bytes",
            text.len()
        );
        let id = app_id(&frames);
        let links = app.get(&format!("/apps/{id}/read-url"), &token).await;
        assert_eq!(links.status(), 404, "nothing was stored");
    }
    app.stop().await;
}
db_test!(diffs_past_the_path_limits_are_refused_with_the_path);

async fn dev_login(
    app: &TestApp,
    client: &reqwest::Client,
    header: Option<(&str, &str)>,
    user: &str,
) -> (u16, Value) {
    let mut request = client
        .post(app.url("/auth/dev-login"))
        .json(&json!({"user": user}));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn dev_login_refuses_requests_forwarded_by_a_proxy(kind: DbKind) {
    let app = spawn_app_with(kind, "").await;
    for (name, value) in [
        ("forwarded", "for=203.0.113.9"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
    ] {
        let (status, body) = dev_login(&app, &app.http, Some((name, value)), "carol").await;
        assert_eq!(status, 403, "{name}: {body}");
        assert_eq!(body["code"], "dev_login_forwarded", "{name}");
        assert!(body.get("token").is_none());
    }
    let (status, body) = dev_login(&app, &app.http, None, "carol").await;
    assert_eq!(status, 200, "a direct local request still signs in: {body}");
    app.stop().await;
}
db_test!(dev_login_refuses_requests_forwarded_by_a_proxy);

/// This host's address on its default route, when it has one that is not loopback.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it only picks the source address.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

async fn dev_login_refuses_peers_that_are_not_loopback(kind: DbKind) {
    let Some(local) = non_loopback_address() else {
        eprintln!("no non-loopback address on this host; nothing to connect from");
        return;
    };
    let app = spawn_app_with(kind, "").await;
    // From this host's own non-loopback address to the loopback listener: the peer the
    // gateway sees is not loopback.
    let remote = reqwest::Client::builder()
        .local_address(local)
        .build()
        .expect("client");
    let (status, body) = dev_login(&app, &remote, None, "carol").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "dev_login_not_local");
    let enabled = remote
        .get(app.url("/auth/dev-login"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        enabled.status(),
        403,
        "the page offers no sign-in to it either"
    );
    app.stop().await;
}
db_test!(dev_login_refuses_peers_that_are_not_loopback);

async fn dev_login_never_signs_in_privileged_users(kind: DbKind) {
    let app = spawn_app_with(kind, "[auth]\nprivileged_users = [\"root\"]\n").await;
    let (status, body) = dev_login(&app, &app.http, None, "root").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "dev_login_privileged");
    let (status, body) = dev_login(&app, &app.http, None, "carol").await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token");
    let privileged: Value = app
        .get("/auth/is-privileged-user", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(privileged["isPrivilegedUser"], false);
    app.stop().await;
}
db_test!(dev_login_never_signs_in_privileged_users);

/// `agentgate serve` with `extra` config: its stdout until a second after it listens.
fn serve_output(extra: &str) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agentgate.toml");
    let toml = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = {:?}\n{extra}",
        dir.path().join("data").display().to_string()
    );
    std::fs::write(&config, toml).expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["serve", "--no-worker", "--config"])
        .arg(&config)
        .env("AGENTGATE__LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agentgate");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut listening = false;
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        if !listening && line.starts_with("agentgate listening on") {
            listening = true;
            deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        }
        lines.push(line);
    }
    child.kill().ok();
    child.wait().ok();
    assert!(listening, "agentgate did not start: {lines:?}");
    lines
}

fn jwt_payload(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("claims")
}

#[test]
fn serve_prints_a_short_lived_dev_token_only_with_dev_login_on() {
    let off = serve_output("dev_login = false\n");
    assert!(
        !off.iter().any(|l| l.contains("token") || l.contains("eyJ")),
        "no token without dev sign-in: {off:?}"
    );
    let on = serve_output("");
    let token = on
        .iter()
        .find_map(|l| l.strip_prefix("dev token (user \"dev\"): "))
        .unwrap_or_else(|| panic!("a dev token with dev sign-in on: {on:?}"));
    let claims = jwt_payload(token);
    assert_eq!(claims["sub"], "dev");
    assert!(claims.get("privileged").is_none(), "{claims}");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert!((1..=3600).contains(&lifetime), "lives {lifetime} s");
}

async fn health(app: &TestApp) -> (u16, Value) {
    let response = app
        .http
        .get(app.url("/health"))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// Another connection holds SQLite's write lock: reads work, every write waits out its busy
/// timeout and fails, as on a database that cannot take writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_is_503_database_unavailable_and_fails_health() {
    use sea_orm::sqlx::{self, Connection};
    let app = spawn_app_with(DbKind::Sqlite, "").await;
    let (status, body) = health(&app).await;
    assert_eq!(
        (status, &body["checks"]["database"]),
        (200, &json!("ok")),
        "{body}"
    );

    let path = app.data_dir.path().join("agentgate.db");
    let url = format!("sqlite://{}", path.display());
    let mut blocker = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .expect("take the write lock");

    let admin = app.privileged_token("admin");
    let response = app
        .http
        .put(app.url("/admin/users/alice/limit"))
        .bearer_auth(&admin)
        .json(&json!({"dailyMessageLimit": 5}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "database_unavailable", "{body}");
    assert!(
        !body["message"].as_str().unwrap_or("").contains("locked"),
        "no internals: {body}"
    );
    // The cached healthy answer expires; the next probe's write fails.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"], "error");
    assert_eq!(body["checks"]["storage"], "ok");
    assert_eq!(body["checks"]["agent"], "ok");

    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("release");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, body) = health(&app).await;
    assert_eq!(status, 200, "healthy again once writes work: {body}");
    app.stop().await;
}

async fn health_fails_when_storage_or_the_agent_is_unreachable(kind: DbKind) {
    let app = spawn_app_with(kind, "").await;
    // A file where the objects directory was: nothing can be written below it.
    let objects = app.data_dir.path().join("objects");
    std::fs::remove_dir_all(&objects).ok();
    std::fs::write(&objects, b"not a directory").expect("write");
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["storage"], "error", "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(body["checks"]["agent"], "ok", "{body}");
    app.stop().await;

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let app = spawn_app_with(
        kind,
        &format!("[agent]\nurl = \"http://127.0.0.1:{closed}\"\nsecret = \"s\"\n"),
    )
    .await;
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["agent"], "error", "{body}");
    assert_eq!(body["checks"]["storage"], "ok", "{body}");
    app.stop().await;
}
db_test!(health_fails_when_storage_or_the_agent_is_unreachable);

fn new_files(count: usize) -> String {
    (0..count)
        .map(|i| new_file(&format!("src/f{i:02}.txt")))
        .collect()
}

async fn a_diff_past_the_files_per_app_limit_is_refused_with_too_many_files(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let config = format!("{}[limits]\nmax_files_per_app = 5\n", agent.config(""));
    let app = spawn_app_with(kind, &config).await;
    let token = app.token("alice");
    agent.push(Script::events(&[review(&new_files(6))]));
    let frames = run(&app, &token, json!({"message": "many files"})).await;
    let error = error_event(&frames);
    assert_eq!(error["code"], "too_many_files", "{error}");
    let text = error["error"].as_str().expect("text");
    assert!(
        text.contains("6 files") && text.contains("limit of 5"),
        "{text}"
    );
    let id = app_id(&frames);
    let links = app.get(&format!("/apps/{id}/read-url"), &token).await;
    assert_eq!(links.status(), 404, "nothing was stored");

    agent.push(Script::events(&[review(&new_files(5))]));
    let frames = run(
        &app,
        &token,
        json!({"message": "fewer", "applicationId": id}),
    )
    .await;
    assert!(frames.iter().all(|f| f.event != "error"), "{frames:?}");
    let links = app.get(&format!("/apps/{id}/read-url"), &token).await;
    assert_eq!(links.status(), 200, "five files are within the limit");
    app.stop().await;
}
db_test!(a_diff_past_the_files_per_app_limit_is_refused_with_too_many_files);

async fn read_url_lists_files_a_page_at_a_time(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    agent.push(Script::events(&[review(&new_files(5))]));
    let id = app_id(&run(&app, &token, json!({"message": "five files"})).await);
    let read_url = |query: String| {
        let app = &app;
        let token = &token;
        let id = &id;
        async move {
            let response = app.get(&format!("/apps/{id}/read-url{query}"), token).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };

    let (status, all) = read_url(String::new()).await;
    assert_eq!(status, 200);
    assert_eq!(all["files"].as_array().expect("files").len(), 5);
    assert_eq!(all["nextCursor"], Value::Null, "one page holds them all");

    let mut paths = Vec::new();
    let mut query = "?limit=2".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = read_url(query.clone()).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        assert!(
            page["readUrl"].as_str().is_some(),
            "every page links the archive"
        );
        let files = page["files"].as_array().expect("files");
        assert!(files.len() <= 2);
        paths.extend(
            files
                .iter()
                .map(|f| f["path"].as_str().expect("path").to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..5).map(|i| format!("src/f{i:02}.txt")).collect();
    assert_eq!(paths, expected, "every file once, in order");

    for bad in ["?limit=0", "?limit=1001", "?cursor=%21%21"] {
        let (status, body) = read_url(bad.to_string()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_query", "{bad}");
    }
    app.stop().await;
}
db_test!(read_url_lists_files_a_page_at_a_time);
