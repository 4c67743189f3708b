//! End-to-end tests: a real server on 127.0.0.1, real HTTP requests.

use super::generator::render;
use super::state::AppState;
use super::test_support::{git_apply, strict_apply};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOP_KEYS: [&str; 4] = ["status", "traceId", "message", "timestamp"];
const MESSAGE_KEYS: [&str; 9] = [
    "role",
    "kind",
    "messages",
    "agentState",
    "unifiedDiff",
    "completeDiffHash",
    "diffStat",
    "app_name",
    "commit_message",
];
const FAST: &str = r#"{"demo":{"eventDelayMs":0}}"#;

struct TestServer {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start(token: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(super::serve(
            listener,
            token.map(String::from),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            base,
            stop: Some(stop),
            handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let done = tokio::time::timeout(Duration::from_secs(5), &mut self.handle).await;
        done.expect("serve did not stop").unwrap().unwrap();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn body(
    text: &str,
    state: Option<&Value>,
    files: Option<&BTreeMap<String, String>>,
    settings: &str,
) -> Value {
    let files: Option<Vec<Value>> = files.map(|f| {
        f.iter()
            .map(|(p, c)| json!({"path": p, "content": c}))
            .collect()
    });
    json!({
        "allMessages": [{"role": "user", "content": "earlier message"}, {"role": "user", "content": text}],
        "applicationId": "app-1",
        "traceId": "trace-1",
        "templateId": "template_diff",
        "agentState": state,
        "allFiles": files,
        "settings": serde_json::from_str::<Value>(settings).unwrap(),
    })
}

async fn post(server: &TestServer, body: &Value) -> reqwest::Response {
    client()
        .post(server.url("/message"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Reads a finite stream fully and checks framing, key order, timestamps.
async fn events_of(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(response.headers().get("cache-control").is_none());
    let text = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .unwrap()
        .unwrap();
    parse_framed(&text)
}

/// Only `data: <one line>\n\n` units; returns the parsed events.
fn parse_framed(text: &str) -> Vec<Value> {
    let mut rest = text;
    let mut events = Vec::new();
    while !rest.is_empty() {
        assert!(
            rest.starts_with("data: "),
            "unexpected line in body: {:?}",
            &rest[..rest.len().min(80)]
        );
        let end = rest
            .find("\n\n")
            .expect("event not terminated by a blank line");
        let line = &rest[6..end];
        assert!(!line.contains('\n') && !line.contains('\r'));
        check_event_shape(line);
        events.push(serde_json::from_str(line).unwrap());
        rest = &rest[end + 2..];
    }
    events
}

fn check_event_shape(line: &str) {
    let top = object_entries(line);
    let keys: Vec<&str> = top.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, TOP_KEYS, "{line}");
    let message_keys: Vec<String> = object_entries(top[2].1)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(message_keys, MESSAGE_KEYS, "{line}");
    let event: Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["traceId"], "trace-1");
    assert_eq!(event["message"]["role"], "assistant");
    assert!(
        event["message"]["completeDiffHash"].is_null() && event["message"]["diffStat"].is_null()
    );
    let ts = event["timestamp"].as_str().unwrap();
    assert!(ts.len() == 26 || ts.len() == 19, "{ts}");
    chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.f").unwrap();
    if event["status"] == "running" {
        assert!(
            event["message"]["agentState"].is_null(),
            "running events carry no state"
        );
    }
}

/// Keys and raw values of a compact JSON object, in document order.
fn object_entries(s: &str) -> Vec<(String, &str)> {
    let b = s.as_bytes();
    assert_eq!(b[0], b'{');
    let mut i = 1;
    let mut out = Vec::new();
    while b[i] != b'}' {
        let key_end = skip_string(b, i);
        let key = s[i + 1..key_end - 1].to_string();
        let value_start = key_end + 1;
        let value_end = skip_value(b, value_start);
        out.push((key, &s[value_start..value_end]));
        i = value_end;
        if b[i] == b',' {
            i += 1;
        }
    }
    out
}

fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while b[i] != b'"' {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

fn skip_value(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0;
            let mut j = i;
            loop {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while !matches!(b[j], b',' | b'}' | b']') {
                j += 1;
            }
            j
        }
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["message"]["kind"].as_str().unwrap())
        .collect()
}

fn texts(event: &Value) -> String {
    event["message"]["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Exactly one idle event, and it is the last one.
fn final_event(events: &[Value]) -> &Value {
    let idle: Vec<usize> = (0..events.len())
        .filter(|&i| events[i]["status"] == "idle")
        .collect();
    assert_eq!(idle, vec![events.len() - 1], "{:?}", kinds(events));
    &events[events.len() - 1]
}

/// Runs one build turn, applies its diff to `files` with git and checks the
/// result is exactly what the generator renders for the returned state.
async fn turn(
    server: &TestServer,
    text: &str,
    state: Option<&Value>,
    files: &BTreeMap<String, String>,
) -> (Value, BTreeMap<String, String>, String) {
    let sent_files = if files.is_empty() { None } else { Some(files) };
    let events = events_of(post(server, &body(text, state, sent_files, FAST)).await).await;
    let last = final_event(&events).clone();
    let ks = kinds(&events);
    assert_eq!(ks[0], "WipUpdate");
    assert!(texts(&events[0]).starts_with("🎯 Planning"));
    assert_eq!(ks[ks.len() - 2], "StageResult");
    assert_eq!(events[ks.len() - 2]["status"], "running");
    assert!(ks[1..ks.len() - 2].iter().all(|k| *k == "WipUpdate"));
    assert_eq!(ks[ks.len() - 1], "ReviewResult");

    let message = &last["message"];
    let new_state = message["agentState"].clone();
    let diff = message["unifiedDiff"].as_str().unwrap().to_string();
    let applied = git_apply(files, &diff);
    assert_eq!(strict_apply(files, &diff), applied);
    assert_eq!(applied, render(&AppState::from_value(&new_state).unwrap()));
    assert!(message["app_name"].is_string() && message["commit_message"].is_string());
    (last, applied, diff)
}

#[tokio::test]
async fn health_not_found_and_method_not_allowed() {
    let server = TestServer::start(Some("tok")).await;
    let r = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "healthy"})
    );
    let r = client().get(server.url("/message")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Method Not Allowed"})
    );
    let r = client().get(server.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn auth_codes_and_order() {
    let server = TestServer::start(Some("tok")).await;
    let good = body("make a counter app", None, None, FAST);
    let send = |auth: Option<&'static str>, payload: String| {
        let mut rb = client()
            .post(server.url("/message"))
            .header("content-type", "application/json")
            .body(payload);
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        rb.send()
    };
    let missing = json!({"detail": "Unauthorized - missing authentication token"});
    let invalid = json!({"detail": "Unauthorized - invalid authentication token"});
    for auth in [None, Some("Basic tok"), Some("bearer tok"), Some("Bearer")] {
        let r = send(auth, good.to_string()).await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.json::<Value>().await.unwrap(), missing);
    }
    let r = send(Some("Bearer wrong"), good.to_string()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap(), invalid);
    // Auth comes before field validation, but after JSON syntax.
    let r = send(None, r#"{"allMessages":[]}"#.into()).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = send(None, "{not json".into()).await.unwrap();
    assert_eq!(r.status(), 422);
    let r = send(Some("Bearer tok"), good.to_string()).await.unwrap();
    let events = events_of(r).await;
    assert_eq!(final_event(&events)["message"]["kind"], "ReviewResult");
    server.shutdown().await;
}

#[tokio::test]
async fn validation_errors_are_fastapi_422() {
    let server = TestServer::start(None).await;
    let c = client();
    let r = c
        .post(server.url("/message"))
        .header("content-type", "application/json")
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"][0]["type"],
        "json_invalid"
    );

    let missing = json!({"allMessages": [], "applicationId": "a"});
    let r = c
        .post(server.url("/message"))
        .json(&missing)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let detail = r.json::<Value>().await.unwrap();
    assert_eq!(detail["detail"][0]["loc"], json!(["body", "traceId"]));
    assert_eq!(detail["detail"][0]["msg"], "Field required");
    assert_eq!(detail["detail"][0]["input"], missing);

    let r = c
        .post(server.url("/message"))
        .header("content-type", "text/plain")
        .body(body("x y", None, None, FAST).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // No content type at all is accepted.
    let r = c
        .post(server.url("/message"))
        .body(body("make a counter app", None, None, FAST).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    server.shutdown().await;
}

#[tokio::test]
async fn build_and_follow_ups_apply_with_git() {
    let server = TestServer::start(None).await;
    let (last, files, diff) = turn(
        &server,
        "Please build a todo list app",
        None,
        &BTreeMap::new(),
    )
    .await;
    let message = &last["message"];
    assert_eq!(message["app_name"], "todo-list-app");
    assert_eq!(message["commit_message"], "Add todo list app");
    assert_eq!(message["agentState"]["app_type"], "todo");
    assert_eq!(message["agentState"]["title"], "Todo List");
    assert_eq!(message["agentState"]["version"], 1);
    assert!(texts(&last).contains("Todo List"));
    assert_eq!(diff.matches("new file mode 100644").count(), 5);
    assert!(
        files["index.html"].contains("<h1>Todo List</h1>")
            && files["index.html"].contains("id=\"app\"")
    );

    let state = message["agentState"].clone();
    let (last, files, diff) = turn(&server, "add a dark mode", Some(&state), &files).await;
    assert_eq!(last["message"]["commit_message"], "Add dark mode");
    assert_eq!(
        last["message"]["agentState"]["features"],
        json!(["dark_mode"])
    );
    assert_eq!(last["message"]["agentState"]["version"], 2);
    assert!(!diff.contains("new file mode") && diff.contains("index "));
    assert!(files["index.html"].contains("theme-toggle"));

    let state = last["message"]["agentState"].clone();
    let (last, files, _) = turn(&server, "rename it to Groceries", Some(&state), &files).await;
    assert_eq!(last["message"]["commit_message"], "Rename app to Groceries");
    assert!(files["index.html"].contains("<h1>Groceries</h1>"));
    assert!(
        files["index.html"].contains("theme-toggle"),
        "features accumulate"
    );

    let state = last["message"]["agentState"].clone();
    let (last, files, diff) = turn(&server, "remove the readme", Some(&state), &files).await;
    assert_eq!(last["message"]["commit_message"], "Remove README");
    assert!(diff.contains("diff --git a/README.md b/README.md\ndeleted file mode 100644\n"));
    assert!(diff.contains("+++ /dev/null"));
    assert!(!files.contains_key("README.md"));

    let state = last["message"]["agentState"].clone();
    let (last, files, _) = turn(&server, "add a footer", Some(&state), &files).await;
    assert!(files["index.html"].contains("<footer"));

    let state = last["message"]["agentState"].clone();
    let (_, files, _) = turn(&server, "make the buttons rounder", Some(&state), &files).await;
    assert!(files["README.md"].contains("Requested: “make the buttons rounder”"));
    server.shutdown().await;
}

#[tokio::test]
async fn foreign_files_are_deleted_and_equal_trees_give_empty_diff() {
    let server = TestServer::start(None).await;
    let mut files = BTreeMap::new();
    files.insert("old/notes.txt".to_string(), "stale\n".to_string());
    let (last, applied, diff) = turn(&server, "make a counter app", None, &files).await;
    assert!(diff.contains("diff --git a/old/notes.txt b/old/notes.txt\ndeleted file mode 100644"));
    assert!(!applied.contains_key("old/notes.txt"));
    assert_eq!(last["message"]["agentState"]["app_type"], "counter");

    let events = events_of(
        post(
            &server,
            &body("make a counter app", None, Some(&applied), FAST),
        )
        .await,
    )
    .await;
    assert_eq!(final_event(&events)["message"]["unifiedDiff"], "");
    server.shutdown().await;
}

#[tokio::test]
async fn every_template_renders() {
    let server = TestServer::start(None).await;
    for (prompt, kind) in [
        ("make a simple counter", "counter"),
        ("a notes app for my ideas", "notes"),
        ("pomodoro timer with breaks", "timer"),
        ("landing page for my bakery", "generic"),
    ] {
        let (last, files, _) = turn(&server, prompt, None, &BTreeMap::new()).await;
        assert_eq!(last["message"]["agentState"]["app_type"], kind, "{prompt}");
        assert_eq!(files.len(), 5);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn vague_prompt_asks_for_details() {
    let server = TestServer::start(None).await;
    for prompt in ["hi", "help", "build me an app"] {
        let events = events_of(post(&server, &body(prompt, None, None, FAST)).await).await;
        assert_eq!(events.len(), 1, "{prompt}");
        let m = &events[0]["message"];
        assert_eq!(events[0]["status"], "idle");
        assert_eq!(m["kind"], "RefinementRequest");
        assert_eq!(m["agentState"], json!({"awaiting": "details"}));
        assert!(m["unifiedDiff"].is_null());
        assert!(texts(&events[0]).ends_with('?') || texts(&events[0]).contains('?'));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alives_tick_until_idle_and_delay_paces_events() {
    let server = TestServer::start(None).await;
    let settings = r#"{"demo":{"eventDelayMs":60,"keepAliveMs":25}}"#;
    let started = Instant::now();
    let events =
        events_of(post(&server, &body("make a counter app", None, None, settings)).await).await;
    let elapsed = started.elapsed();
    let ks = kinds(&events);
    let real = ks.iter().filter(|k| **k != "KeepAlive").count();
    assert!(
        elapsed >= Duration::from_millis(60 * (real as u64 - 1)),
        "{elapsed:?}"
    );
    assert!(
        ks.iter().filter(|k| **k == "KeepAlive").count() >= 3,
        "{ks:?}"
    );
    assert_eq!(
        *ks.last().unwrap(),
        "ReviewResult",
        "no KeepAlive after idle"
    );
    let ka = events
        .iter()
        .find(|e| e["message"]["kind"] == "KeepAlive")
        .unwrap();
    assert_eq!(ka["status"], "running");
    assert_eq!(ka["message"]["messages"], json!([]));
    for key in ["agentState", "unifiedDiff", "app_name", "commit_message"] {
        assert!(ka["message"][key].is_null());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn no_final_event_closes_without_idle() {
    let server = TestServer::start(None).await;
    let settings = r#"{"demo":{"eventDelayMs":0,"noFinalEvent":true}}"#;
    let events =
        events_of(post(&server, &body("make a counter app", None, None, settings)).await).await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["status"] == "running"));
    server.shutdown().await;
}

#[tokio::test]
async fn hang_sends_only_keep_alives_and_shutdown_still_completes() {
    let server = TestServer::start(None).await;
    let settings = r#"{"demo":{"hang":true,"keepAliveMs":20}}"#;
    let mut r = post(&server, &body("make a counter app", None, None, settings)).await;
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    while text.matches("\n\n").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let cut = text.rfind("\n\n").unwrap() + 2;
    let events = parse_framed(&text[..cut]);
    assert!(events.len() >= 3 && kinds(&events).iter().all(|k| *k == "KeepAlive"));
    // A hanging stream must not block a graceful shutdown.
    server.shutdown().await;
    let rest = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .unwrap();
    assert!(rest.is_ok());
}

#[tokio::test]
async fn invalid_json_switch() {
    let server = TestServer::start(None).await;
    let r = post(
        &server,
        &body(
            "make a counter app",
            None,
            None,
            r#"{"demo":{"invalidJson":true}}"#,
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "data: {not json\n\n");
    server.shutdown().await;
}

#[tokio::test]
async fn huge_event_switch() {
    let server = TestServer::start(None).await;
    let settings = r#"{"demo":{"eventDelayMs":0,"hugeEventBytes":3000000}}"#;
    let events =
        events_of(post(&server, &body("make a counter app", None, None, settings)).await).await;
    assert_eq!(events[0]["message"]["kind"], "WipUpdate");
    assert_eq!(texts(&events[0]).len(), 3_000_000);
    assert_eq!(final_event(&events)["message"]["kind"], "ReviewResult");
    server.shutdown().await;
}

#[tokio::test]
async fn http_status_switch() {
    let server = TestServer::start(None).await;
    let r = post(
        &server,
        &body(
            "make a counter app",
            None,
            None,
            r#"{"demo":{"httpStatus":500}}"#,
        ),
    )
    .await;
    assert_eq!(r.status(), 500);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap(), "Internal Server Error");
    server.shutdown().await;
}

#[tokio::test]
async fn runtime_error_switches() {
    let server = TestServer::start(None).await;
    let events = events_of(
        post(
            &server,
            &body(
                "make a counter app",
                None,
                None,
                r#"{"demo":{"runtimeError":true}}"#,
            ),
        )
        .await,
    )
    .await;
    assert_eq!(kinds(&events), vec!["RuntimeError"]);
    assert_eq!(events[0]["status"], "idle");
    assert!(events[0]["message"]["unifiedDiff"].is_null());
    assert!(texts(&events[0]).starts_with("Error processing request: "));

    let settings = r#"{"demo":{"doubleIdle":true,"eventDelayMs":0}}"#;
    let events =
        events_of(post(&server, &body("make a counter app", None, None, settings)).await).await;
    assert_eq!(kinds(&events), vec!["RuntimeError", "RuntimeError"]);
    assert!(events.iter().all(|e| e["status"] == "idle"));
    assert!(events[0]["message"]["unifiedDiff"].is_null());
    assert_eq!(events[1]["message"]["unifiedDiff"], "");
    server.shutdown().await;
}

#[tokio::test]
async fn drop_after_events_breaks_the_body() {
    let server = TestServer::start(None).await;
    let settings = r#"{"demo":{"eventDelayMs":0,"dropAfterEvents":2}}"#;
    let mut r = post(&server, &body("make a counter app", None, None, settings)).await;
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
        {
            Ok(Some(chunk)) => text.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    assert!(
        outcome.is_err(),
        "body must end with an error, not a clean EOF"
    );
    assert_eq!(parse_framed(&text).len(), 2);

    // On the wire: chunked events, then the connection closes without `0\r\n\r\n`.
    let raw = raw_exchange(&server, &body("make a counter app", None, None, settings)).await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(raw
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked"));
    assert!(!raw.ends_with("0\r\n\r\n"), "{raw}");

    let settings = r#"{"demo":{"dropAfterEvents":0}}"#;
    let raw = raw_exchange(&server, &body("make a counter app", None, None, settings)).await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n") && !raw.contains("data: "));
    server.shutdown().await;
}

/// Sends one request over a raw socket and reads until the server closes.
async fn raw_exchange(server: &TestServer, body: &Value) -> String {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let payload = body.to_string();
    let request = format!(
        "POST /message HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn nests_under_a_prefix() {
    let app = axum::Router::new().nest("/demo-agent", super::router(Some("tok".into())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move { axum::serve(listener, app).await });
    let r = client()
        .get(format!("{base}/demo-agent/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "healthy"})
    );
    let r = client()
        .post(format!("{base}/demo-agent/message"))
        .bearer_auth("tok")
        .json(&body("make a counter app", None, None, FAST))
        .send()
        .await
        .unwrap();
    let events = events_of(r).await;
    assert_eq!(final_event(&events)["message"]["kind"], "ReviewResult");
    handle.abort();
}
