//! Outbound webhooks over real HTTP: registration and its checks, and deliveries of real runs'
//! events to a local receiver that verifies each signature the way the Standard Webhooks
//! reference libraries do.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::db_test;
use crate::fake_agent::{event, with, FakeAgent, Script};
use crate::helpers::{assert_complete_run, spawn_app_with, DbKind, SseReader, TestApp};

/// A delivery as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    at: Instant,
    body: Value,
    /// Why its signature did not verify; None when it did.
    invalid: Option<String>,
}

/// A local webhook endpoint. It answers 500 to its first `failures` requests, then 204.
#[derive(Clone)]
struct Receiver {
    url: String,
    inner: Arc<ReceiverState>,
}

struct ReceiverState {
    secret: Mutex<String>,
    failures: Mutex<u32>,
    received: Mutex<Vec<Received>>,
}

impl Receiver {
    async fn start(failures: u32) -> Self {
        let inner = Arc::new(ReceiverState {
            secret: Mutex::new(String::new()),
            failures: Mutex::new(failures),
            received: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, inner }
    }

    fn set_secret(&self, secret: &str) {
        *self.inner.secret.lock().expect("lock") = secret.to_string();
    }

    fn received(&self) -> Vec<Received> {
        self.inner.received.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for what was received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..200 {
            let received = self.received();
            if done(&received) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the receiver never got {what}: {:#?}", self.received());
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let secret = state.secret.lock().expect("lock").clone();
    let invalid = verify(&secret, &headers, &body).err();
    let received = Received {
        id: header(&headers, "webhook-id"),
        at: Instant::now(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        invalid,
    };
    state.received.lock().expect("lock").push(received);
    let mut failures = state.failures.lock().expect("lock");
    if *failures > 0 {
        *failures -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Standard Webhooks verification, as its reference libraries do it: the timestamp within five
/// minutes, the HMAC-SHA256 of `{id}.{timestamp}.{body}` under the decoded secret compared in
/// constant time with each `v1,` signature of the header.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    const TOLERANCE_SECS: i64 = 300;
    let id = header(headers, "webhook-id");
    let timestamp: i64 = header(headers, "webhook-timestamp")
        .parse()
        .map_err(|_| "no webhook-timestamp".to_string())?;
    if (chrono::Utc::now().timestamp() - timestamp).abs() > TOLERANCE_SECS {
        return Err(format!("timestamp {timestamp} is out of tolerance"));
    }
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|s| BASE64.decode(s).ok())
        .ok_or_else(|| format!("secret {secret:?} is not whsec_ base64"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let signatures = header(headers, "webhook-signature");
    let verified = signatures.split(' ').any(|signature| {
        let Some(("v1", encoded)) = signature.split_once(',') else {
            return false;
        };
        let Ok(expected) = BASE64.decode(encoded) else {
            return false;
        };
        mac.clone().verify_slice(&expected).is_ok()
    });
    match verified {
        true => Ok(()),
        false => Err(format!("no valid signature in {signatures:?}")),
    }
}

/// The gateway's config for these tests: the fake agent, short retries (so a retried
/// delivery lands within a test) and `webhooks` keys of the test's own.
fn config(agent: &FakeAgent, webhooks: &str) -> String {
    format!(
        "{}[git]\nhost = \"none\"\n[deploy]\npoll_interval_ms = 50\n\
         [webhooks]\nretry_base_ms = 100\nretry_cap_secs = 1\n{webhooks}",
        agent.config("")
    )
}

async fn setup(kind: DbKind, webhooks: &str) -> (TestApp, FakeAgent) {
    let agent = FakeAgent::start().await;
    (spawn_app_with(kind, &config(&agent, webhooks)).await, agent)
}

/// Registers `url` for `user`; the answer's body.
async fn register(app: &TestApp, user: &str, body: Value) -> (u16, Value) {
    let response = app.post_json("/webhooks", &app.token(user), &body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Registers the receiver for alice and gives it the secret.
async fn register_receiver(app: &TestApp, receiver: &Receiver, events: Option<&[&str]>) -> String {
    let mut body = json!({"url": receiver.url});
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let (status, created) = register(app, "alice", body).await;
    assert_eq!(status, 201, "{created}");
    receiver.set_secret(created["secret"].as_str().expect("secret"));
    created["id"].as_str().expect("id").to_string()
}

/// A run of alice's whose agent just answers; returns (app id, run took).
async fn simple_run(app: &TestApp, agent: &FakeAgent) -> (String, Duration) {
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    let started = Instant::now();
    let response = app
        .post_message(&app.token("alice"), &json!({"message": "hello"}))
        .await;
    assert_eq!(response.status(), 200);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let app_id = frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string();
    (app_id, started.elapsed())
}

/// A run whose agent writes a page: a version and a local preview deployment.
async fn building_run(app: &TestApp, agent: &FakeAgent) -> (String, String) {
    let diff = "diff --git a/index.html b/index.html\nnew file mode 100644\n--- /dev/null\n+++ b/index.html\n@@ -0,0 +1 @@\n+<h1>shop</h1>\n";
    let review = with(
        event("idle", "ReviewResult", Some("Done!")),
        "unifiedDiff",
        json!(diff),
    );
    agent.push(Script::events(&[review]));
    let response = app
        .post_message(&app.token("alice"), &json!({"message": "build a shop"}))
        .await;
    assert_eq!(response.status(), 200);
    let run_id = response
        .headers()
        .get("x-run-id")
        .and_then(|v| v.to_str().ok())
        .expect("run id")
        .to_string();
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let app_id = frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string();
    (app_id, run_id)
}

async fn deliveries(app: &TestApp, webhook_id: &str) -> Vec<Value> {
    let response = app
        .get(
            &format!("/webhooks/{webhook_id}/deliveries"),
            &app.token("alice"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body.as_array().expect("array").clone()
}

fn of_type<'a>(received: &'a [Received], kind: &str) -> Vec<&'a Received> {
    received.iter().filter(|r| r.body["type"] == kind).collect()
}

async fn registration_refuses_bad_private_and_foreign_urls(kind: DbKind) {
    let (app, _agent) = setup(kind, "").await;
    for (url, code) in [
        ("not a url", "invalid_webhook_url"),
        ("ftp://example.com/hook", "invalid_webhook_url"),
        ("https://user:pw@example.com/hook", "invalid_webhook_url"),
        ("http://93.184.216.34/hook", "webhook_url_not_https"),
        ("https://10.0.0.5/hook", "webhook_address_refused"),
        ("https://192.168.1.20/hook", "webhook_address_refused"),
        (
            "https://169.254.169.254/latest/meta-data",
            "webhook_address_refused",
        ),
        ("https://[fd00::1]/hook", "webhook_address_refused"),
        ("https://[::ffff:10.0.0.1]/hook", "webhook_address_refused"),
    ] {
        let (status, body) = register(&app, "alice", json!({"url": url})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some(code)),
            "{url}: {body}"
        );
    }
    let (status, body) = register(
        &app,
        "alice",
        json!({"url": "https://93.184.216.34/hook", "events": ["run.exploded"]}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_event_type"))
    );
    // Nothing was registered.
    let listed: Value = app
        .get("/webhooks", &app.token("alice"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([]));
    app.stop().await;
}
db_test!(registration_refuses_bad_private_and_foreign_urls);

async fn production_refuses_http_and_loopback(kind: DbKind) {
    let (app, _agent) = setup(kind, "allow_loopback = false\n").await;
    for (url, code) in [
        ("http://127.0.0.1:9/hook", "webhook_url_not_https"),
        ("http://localhost:9/hook", "webhook_url_not_https"),
        ("https://127.0.0.1/hook", "webhook_address_refused"),
        ("https://[::1]/hook", "webhook_address_refused"),
        // A name is resolved, and every address it resolves to is checked.
        ("https://localhost/hook", "webhook_address_refused"),
    ] {
        let (status, body) = register(&app, "alice", json!({"url": url})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some(code)),
            "{url}: {body}"
        );
    }
    // A public address literal needs no DNS and is accepted.
    let (status, body) =
        register(&app, "alice", json!({"url": "https://93.184.216.34/hook"})).await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
}
db_test!(production_refuses_http_and_loopback);

async fn the_secret_is_shown_once_and_another_users_webhook_is_not_found(kind: DbKind) {
    let (app, _agent) = setup(kind, "").await;
    let (status, created) = register(
        &app,
        "alice",
        json!({"url": "https://93.184.216.34/hook", "events": ["run.finished"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret");
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64");
    assert!((24..=64).contains(&key.len()), "{} bytes", key.len());
    assert_eq!(created["events"], json!(["run.finished"]));
    let id = created["id"].as_str().expect("id");

    let listed: Value = app
        .get("/webhooks", &app.token("alice"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["id"], json!(id));
    assert!(listed[0].get("secret").is_none(), "{listed}");
    assert!(!listed.to_string().contains(secret));
    let theirs: Value = app
        .get("/webhooks", &app.token("bob"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(theirs, json!([]));

    let path = format!("/webhooks/{id}");
    let deliveries_path = format!("{path}/deliveries");
    assert_eq!(
        app.get(&deliveries_path, &app.token("bob")).await.status(),
        404
    );
    let response = app.delete(&path, &app.token("bob")).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "not_found");
    assert_eq!(
        app.get("/webhooks/nope/deliveries", &app.token("alice"))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get(&deliveries_path, &app.token("alice"))
            .await
            .status(),
        200
    );

    assert_eq!(app.delete(&path, &app.token("alice")).await.status(), 204);
    assert_eq!(app.delete(&path, &app.token("alice")).await.status(), 404);
    assert_eq!(
        app.get(&deliveries_path, &app.token("alice"))
            .await
            .status(),
        404
    );
    let response = app
        .http
        .get(app.url("/webhooks"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 401);
    app.stop().await;
}
db_test!(the_secret_is_shown_once_and_another_users_webhook_is_not_found);

async fn a_run_delivers_signed_events_of_every_type(kind: DbKind) {
    let receiver = Receiver::start(0).await;
    let (app, agent) = setup(kind, "").await;
    let webhook = register_receiver(&app, &receiver, None).await;
    let (app_id, run_id) = building_run(&app, &agent).await;

    let received = receiver
        .wait_for("the run's events", |r| {
            !of_type(r, "run.finished").is_empty()
                && !of_type(r, "version.created").is_empty()
                && of_type(r, "deployment.updated")
                    .iter()
                    .any(|d| d.body["data"]["status"] == "healthy")
        })
        .await;
    for r in &received {
        assert_eq!(r.invalid, None, "{:?}", r.body);
        assert!(r.id.starts_with("msg_"), "{}", r.id);
        assert_eq!(r.body["data"]["appId"], json!(app_id));
        let timestamp = r.body["timestamp"].as_str().expect("timestamp");
        chrono::DateTime::parse_from_rfc3339(timestamp).expect("RFC 3339");
    }
    let finished = of_type(&received, "run.finished")[0];
    assert_eq!(finished.body["data"]["runId"], json!(run_id));
    assert_eq!(finished.body["data"]["outcome"], "succeeded");
    let version = of_type(&received, "version.created")[0];
    assert_eq!(version.body["data"]["version"], 1);
    assert_eq!(version.body["data"]["runId"], json!(run_id));
    let statuses: Vec<&str> = of_type(&received, "deployment.updated")
        .iter()
        .filter_map(|d| d.body["data"]["status"].as_str())
        .collect();
    assert!(statuses.contains(&"queued"), "{statuses:?}");
    assert!(statuses.contains(&"healthy"), "{statuses:?}");
    // Each status change once, not once per provider poll.
    let mut unique = statuses.clone();
    unique.dedup();
    assert_eq!(unique, statuses, "{statuses:?}");

    let deleted = app
        .delete(&format!("/apps/{app_id}"), &app.token("alice"))
        .await;
    assert_eq!(deleted.status(), 200);
    let received = receiver
        .wait_for("app.deleted", |r| !of_type(r, "app.deleted").is_empty())
        .await;
    let gone = of_type(&received, "app.deleted")[0];
    assert_eq!(gone.invalid, None);
    assert_eq!(gone.body["data"]["appId"], json!(app_id));

    // Every delivery is recorded as delivered on its first attempt (recorded just after the
    // receiver answered).
    let mut recorded = Vec::new();
    for _ in 0..100 {
        recorded = deliveries(&app, &webhook).await;
        if recorded.iter().all(|d| d["status"] != "pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recorded.len(), received.len(), "{recorded:#?}");
    for delivery in &recorded {
        assert_eq!(delivery["status"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["lastStatus"], 204);
        assert!(received.iter().any(|r| json!(r.id) == delivery["id"]));
    }
    app.stop().await;
}
db_test!(a_run_delivers_signed_events_of_every_type);

async fn a_failing_receiver_gets_the_delivery_again_until_it_accepts(kind: DbKind) {
    let receiver = Receiver::start(2).await;
    let (app, agent) = setup(kind, "").await;
    let webhook = register_receiver(&app, &receiver, Some(&["run.finished"])).await;
    simple_run(&app, &agent).await;

    let received = receiver.wait_for("three attempts", |r| r.len() >= 3).await;
    // The same message each time (its id is the receiver's key for deduplicating), each
    // attempt signed anew, and the retries spaced by the backoff (half the base at least).
    assert!(
        received.iter().all(|r| r.id == received[0].id),
        "{received:#?}"
    );
    assert!(
        received.iter().all(|r| r.invalid.is_none()),
        "{received:#?}"
    );
    assert!(received.iter().all(|r| r.body == received[0].body));
    for pair in received.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(50), "retried after {gap:?}");
    }
    let mut recorded = Vec::new();
    for _ in 0..100 {
        recorded = deliveries(&app, &webhook).await;
        if recorded.first().is_some_and(|d| d["status"] == "delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    let delivery = &recorded[0];
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["lastStatus"], 204);
    assert_eq!(delivery["lastError"], Value::Null);
    assert_eq!(delivery["eventType"], "run.finished");
    assert_eq!(delivery["payload"], received[0].body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3, "delivered twice");
    app.stop().await;
}
db_test!(a_failing_receiver_gets_the_delivery_again_until_it_accepts);

async fn a_dead_receiver_never_delays_or_fails_the_run(kind: DbKind) {
    // It accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().expect("lock").push(socket);
        }
    });
    let (app, agent) = setup(kind, "timeout_secs = 30\n").await;
    let (status, created) = register(&app, "alice", json!({"url": url})).await;
    assert_eq!(status, 201, "{created}");
    let webhook = created["id"].as_str().expect("id").to_string();

    let (_, first) = simple_run(&app, &agent).await;
    let (_, second) = simple_run(&app, &agent).await;
    // The receiver holds each attempt for 30 s; the runs do not wait for any of it.
    assert!(first < Duration::from_secs(10), "the run took {first:?}");
    assert!(second < Duration::from_secs(10), "the run took {second:?}");
    let runs: Value = app
        .get("/apps", &app.token("alice"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(runs["data"].as_array().map(Vec::len), Some(2));
    for _ in 0..100 {
        if !held.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !held.lock().expect("lock").is_empty(),
        "no delivery was attempted"
    );
    let recorded = deliveries(&app, &webhook).await;
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    assert!(
        recorded.iter().all(|d| d["status"] == "pending"),
        "{recorded:#?}"
    );
    app.stop().await;
}
db_test!(a_dead_receiver_never_delays_or_fails_the_run);

async fn operator_endpoints_receive_every_users_events(kind: DbKind) {
    let receiver = Receiver::start(0).await;
    let secret = format!("whsec_{}", BASE64.encode([7u8; 32]));
    receiver.set_secret(&secret);
    let endpoints = format!(
        "endpoints = [{{ url = {:?}, secret = {secret:?} }}]\n",
        receiver.url
    );
    let (app, agent) = setup(kind, &endpoints).await;
    // An operator's endpoint is no user's: nobody lists it.
    let listed: Value = app
        .get("/webhooks", &app.token("alice"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([]));
    simple_run(&app, &agent).await;
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    let response = app
        .post_message(&app.token("bob"), &json!({"message": "hello"}))
        .await;
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let received = receiver
        .wait_for("both users' runs", |r| {
            of_type(r, "run.finished").len() >= 2
        })
        .await;
    assert!(
        received.iter().all(|r| r.invalid.is_none()),
        "{received:#?}"
    );
    app.stop().await;
}
db_test!(operator_endpoints_receive_every_users_events);

async fn an_address_refused_at_delivery_is_never_contacted(kind: DbKind) {
    // Registered while loopback was allowed; the gateway restarts without it (its addresses
    // are checked again at every delivery).
    let receiver = Receiver::start(0).await;
    let (app, agent) = setup(kind, "").await;
    let https = receiver
        .url
        .replace("http://127.0.0.1", "https://localhost");
    let (status, created) = register(
        &app,
        "alice",
        json!({"url": https, "events": ["app.deleted"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let webhook = created["id"].as_str().expect("id").to_string();
    let (app_id, _) = simple_run(&app, &agent).await;
    let app = app
        .restart(&config(&agent, "allow_loopback = false\n"))
        .await;
    assert_eq!(
        app.delete(&format!("/apps/{app_id}"), &app.token("alice"))
            .await
            .status(),
        200
    );
    let mut recorded = Vec::new();
    for _ in 0..100 {
        recorded = deliveries(&app, &webhook).await;
        if recorded
            .first()
            .is_some_and(|d| d["attempts"].as_i64() >= Some(2))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery = recorded.first().expect("a delivery");
    assert_eq!(delivery["status"], "pending", "{delivery}");
    assert!(delivery["attempts"].as_i64() >= Some(2), "{delivery}");
    let error = delivery["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("webhook_address_refused"), "{error}");
    assert_eq!(delivery["lastStatus"], Value::Null);
    assert!(receiver.received().is_empty());
    app.stop().await;
}
db_test!(an_address_refused_at_delivery_is_never_contacted);

async fn a_cancelled_run_is_reported_with_its_outcome(kind: DbKind) {
    let receiver = Receiver::start(0).await;
    let (app, agent) = setup(kind, "").await;
    register_receiver(&app, &receiver, Some(&["run.finished"])).await;
    let token = app.token("alice");
    let (run_id, app_id, reader) = crate::resume::start_slow_run(&app, &agent, &token).await;
    let cancel = app
        .post_json(&format!("/runs/{run_id}/cancel"), &token, &json!({}))
        .await;
    assert!(cancel.status().is_success(), "{}", cancel.status());
    reader.collect().await;
    let received = receiver.wait_for("run.finished", |r| !r.is_empty()).await;
    assert_eq!(received.len(), 1, "{received:#?}");
    let data = &received[0].body["data"];
    assert_eq!(received[0].invalid, None);
    assert_eq!(data["runId"], json!(run_id));
    assert_eq!(data["appId"], json!(app_id));
    assert_eq!(data["outcome"], "cancelled");
    assert_eq!(data["errorCode"], "run_cancelled");
    app.stop().await;
}
db_test!(a_cancelled_run_is_reported_with_its_outcome);
