//! POST /message against a scripted agent: the happy path, the protocol quirks real agents
//! produce, and every upstream failure mode.
use std::time::Duration;

use serde_json::{json, Value};

use crate::db_test;
use crate::fake_agent::{data_line, event, keep_alive, with, FakeAgent, Script, Step};
use crate::helpers::{
    accept_events_again, accept_events_and_compare_the_replay, assert_complete_run, execute_all,
    frame_shapes, kinds, refuse_events_containing, refuse_events_where, run_status,
    settled_run_status, spawn_app_with, DbKind, Frame, SseReader, TestApp,
};

async fn setup(kind: DbKind, agent_keys: &str) -> (TestApp, FakeAgent) {
    let agent = FakeAgent::start().await;
    // Deployments have their own tests; here the stream shows only the relay and the version.
    let toml = format!(
        "{}[deploy]\non_new_version = false\n[git]\nhost = \"none\"\n",
        agent.config(agent_keys)
    );
    let app = spawn_app_with(kind, &toml).await;
    (app, agent)
}

async fn run_message(
    app: &TestApp,
    token: &str,
    body: Value,
) -> (reqwest::header::HeaderMap, Vec<Frame>) {
    let response = app.post_message(token, &body).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let headers = response.headers().clone();
    (headers, SseReader::new(response).collect().await)
}

const NEW_FILE_DIFF: &str = "diff --git a/index.html b/index.html\nnew file mode 100644\n--- /dev/null\n+++ b/index.html\n@@ -0,0 +1 @@\n+<h1>Todo</h1>\n";

fn final_review(diff: &str) -> Value {
    let e = with(
        event("idle", "ReviewResult", Some("Done!")),
        "unifiedDiff",
        json!(diff),
    );
    let e = with(e, "agentState", json!({"step": 2}));
    with(e, "app_name", json!("todo-app"))
}

async fn relays_agent_events_and_persists_history(kind: DbKind) {
    let (app, agent) = setup(kind, "").await;
    agent.push(Script::events(&[
        event("running", "WipUpdate", Some("Planning")),
        keep_alive(),
        with(
            event("running", "StageResult", Some("Stage one")),
            "agentState",
            json!({"step": 1}),
        ),
        with(
            event("running", "SomeFutureKind", Some("new")),
            "extraField",
            json!(7),
        ),
        final_review(NEW_FILE_DIFF),
    ]));
    let token = app.token("alice");
    let (headers, frames) = run_message(
        &app,
        &token,
        json!({"message": "build a todo app", "templateId": "template_diff"}),
    )
    .await;
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(headers["x-dailylimit-usage"], "1");
    let run_id = headers["x-run-id"].to_str().expect("run id").to_string();
    assert_complete_run(&frames);
    assert_eq!(
        kinds(&frames),
        vec![
            "WipUpdate",
            "StageResult",
            "SomeFutureKind",
            "ReviewResult",
            "PlatformMessage",
            "done"
        ]
    );
    for frame in &frames {
        assert_eq!(frame.data["runId"], run_id.as_str());
        assert!(frame.data["appId"].is_string());
        assert!(
            frame.data["message"].get("agentState").is_none(),
            "agentState never reaches clients"
        );
        assert!(
            frame.data["message"].get("unifiedDiff").is_none(),
            "raw diffs never reach clients"
        );
    }
    assert_eq!(frames[0].data["techStack"], "template_diff");
    assert_eq!(
        frames[2].data["message"]["extraField"], 7,
        "unknown fields pass through"
    );
    assert_eq!(frames[3].data["message"]["app_name"], "todo-app");
    assert_eq!(run_status(&app, &run_id).await, "succeeded");

    // The agent got the bearer secret, identity encoding and the request shape.
    let request = &agent.requests()[0];
    assert_eq!(request.headers["authorization"], "Bearer agent-secret");
    assert_eq!(request.headers["accept-encoding"], "identity");
    assert_eq!(
        request.body["allMessages"],
        json!([{"role": "user", "content": "build a todo app"}])
    );
    assert_eq!(request.body["templateId"], "template_diff");
    assert!(request.body.get("agentState").is_none());

    // Follow-up: history in order, latest agent state sent back, same app.
    let app_id = frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string();
    agent.push(Script::events(&[event(
        "idle",
        "ReviewResult",
        Some("Added"),
    )]));
    let (_, frames) = run_message(
        &app,
        &token,
        json!({"message": "add a dark mode", "applicationId": app_id}),
    )
    .await;
    assert_complete_run(&frames);
    let request = &agent.requests()[1];
    assert_eq!(request.body["agentState"], json!({"step": 2}));
    let roles: Vec<(&str, &str)> = request.body["allMessages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or(""),
                m["content"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(roles.first(), Some(&("user", "build a todo app")));
    assert_eq!(roles.last(), Some(&("user", "add a dark mode")));
    assert!(roles.contains(&("assistant", "Done!")));

    let history: Value = app
        .get(&format!("/apps/{app_id}/history"), &token)
        .await
        .json()
        .await
        .expect("json");
    let entries: Vec<(String, String)> = history
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap_or("").to_string(),
                m["prompt"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        entries.first().map(|e| e.1.as_str()),
        Some("build a todo app")
    );
    assert_eq!(entries.last().map(|e| e.1.as_str()), Some("Added"));
    assert!(
        !entries.iter().any(|e| e.1 == "Planning"),
        "progress updates are not conversation"
    );
    let listed: Value = app
        .get(&format!("/apps/{app_id}"), &token)
        .await
        .json()
        .await
        .expect("json");
    assert!(listed.get("agentState").is_none());
    app.stop().await;
}
db_test!(relays_agent_events_and_persists_history);

async fn replays_the_captured_fixtures(kind: DbKind) {
    let (app, agent) = setup(kind, "").await;
    let token = app.token("alice");
    let counter = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/agent/template_diff_counter.sse"
    ))
    .expect("fixture");
    // 7-byte chunks split lines, JSON and multi-byte characters at arbitrary points.
    agent.push_raw(Script::raw_chunks(&counter, 7));
    let (headers, frames) =
        run_message(&app, &token, json!({"message": "make a counter app"})).await;
    assert_complete_run(&frames);
    assert_eq!(
        kinds(&frames),
        vec!["StageResult", "ReviewResult", "PlatformMessage", "done"]
    );
    assert_eq!(
        frames[2].data["message"]["metadata"]["notice"],
        "version_created"
    );
    assert_eq!(frames[2].data["message"]["metadata"]["files"], 5);
    assert_eq!(
        frames[0].data["message"]["messages"],
        json!([]),
        "null messages become []"
    );
    let run_id = headers["x-run-id"].to_str().expect("id");
    assert_eq!(run_status(&app, run_id).await, "succeeded");

    let runtime_error = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/agent/runtime_error.sse"
    ))
    .expect("fixture");
    agent.push_raw(Script::raw_chunks(&runtime_error, 64));
    let (headers, frames) = run_message(&app, &token, json!({"message": "make a trpc app"})).await;
    assert_complete_run(&frames);
    assert_eq!(kinds(&frames), vec!["RuntimeError", "done"]);
    assert!(frames[0].data["message"]["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .contains("GEMINI_API_KEY"));
    assert_eq!(
        run_status(&app, headers["x-run-id"].to_str().expect("id")).await,
        "failed"
    );
    app.stop().await;
}
db_test!(replays_the_captured_fixtures);

async fn protocol_quirks_are_tolerated(kind: DbKind) {
    let (app, agent) = setup(kind, "").await;
    let token = app.token("alice");
    // CRLF framing, comments, legacy `content`, a double idle error, then more junk never read.
    let legacy = json!({"status": "running", "traceId": "t", "message": {"role": "assistant", "kind": "StageResult", "content": "[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"legacy text\"}]}]"}});
    let first_error = with(
        event(
            "idle",
            "RuntimeError",
            Some("Error processing request: 'role'"),
        ),
        "unifiedDiff",
        json!(null),
    );
    let second_error = with(
        event("idle", "RuntimeError", Some("second")),
        "unifiedDiff",
        json!(""),
    );
    agent.push(Script::steps(vec![
        Step::Send(": a comment\r\n\r\n".into()),
        Step::Send(format!("data: {legacy}\r\n\r\n")),
        Step::Send(format!("data: {first_error}\n\n")),
        Step::Send(format!("data: {second_error}\n\n")),
    ]));
    let (_, frames) = run_message(&app, &token, json!({"message": "hello agent"})).await;
    assert_complete_run(&frames);
    assert_eq!(
        kinds(&frames),
        vec!["StageResult", "RuntimeError", "done"],
        "the run ends at the first idle event"
    );
    assert_eq!(
        frames[0].data["message"]["messages"][0]["content"],
        "legacy text"
    );

    // RefinementRequest is idle but not final: the run keeps reading until the agent closes.
    agent.push(Script::events(&[with(
        event("idle", "RefinementRequest", Some("What should it do?")),
        "agentState",
        json!({"q": 1}),
    )]));
    let (headers, frames) = run_message(&app, &token, json!({"message": "hi"})).await;
    assert_complete_run(&frames);
    assert_eq!(kinds(&frames), vec!["RefinementRequest", "done"]);
    assert_eq!(
        run_status(&app, headers["x-run-id"].to_str().expect("id")).await,
        "succeeded"
    );
    app.stop().await;
}
db_test!(protocol_quirks_are_tolerated);

/// SSE lets an event's data span several `data:` lines (real agents never split one); the
/// client's frame is still one `data:` line of JSON, live and replayed.
async fn a_multi_line_agent_event_reaches_clients_as_one_line(kind: DbKind) {
    let (app, agent) = setup(kind, "").await;
    let token = app.token("alice");
    agent.push(Script::steps(vec![
        Step::Send(
            "data: {\"status\":\"running\",\"traceId\":\"t\",\"message\":{\"role\":\"assistant\",\n\
             data:\n\
             data: \"kind\":\"WipUpdate\",\"messages\":[{\"role\":\"assistant\",\"content\":\"split\"}]}}\n\n"
                .into(),
        ),
        Step::Send(data_line(&event("idle", "ReviewResult", Some("done")))),
    ]));
    let (headers, frames) = run_message(&app, &token, json!({"message": "hello agent"})).await;
    assert_complete_run(&frames);
    assert_eq!(kinds(&frames), vec!["WipUpdate", "ReviewResult", "done"]);
    assert_eq!(frames[0].data["message"]["messages"][0]["content"], "split");
    let run_id = headers["x-run-id"].to_str().expect("id");
    let replay = app.get(&format!("/runs/{run_id}/events"), &token).await;
    let replay = SseReader::new(replay).collect().await;
    assert_eq!(replay, frames, "the replay is the same");
    app.stop().await;
}
db_test!(a_multi_line_agent_event_reaches_clients_as_one_line);

/// The gateway asks for `identity`, but an agent or a proxy before it may compress anyway:
/// gzip, brotli and deflate are read; another encoding, or a body that is not an event
/// stream, fails the run saying so (not as a stream that ended early).
async fn a_compressed_agent_stream_is_read(kind: DbKind) {
    use std::io::Write;
    let (app, agent) = setup(kind, "").await;
    let token = app.token("alice");
    let stream = format!(
        "{}{}",
        data_line(&event("running", "WipUpdate", Some("working"))),
        data_line(&event("idle", "ReviewResult", Some("done")))
    );
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(stream.as_bytes()).expect("gzip");
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(stream.as_bytes()).expect("deflate");
    for (encoding, body) in [
        ("gzip", gzip.finish().expect("gzip")),
        ("deflate", deflate.finish().expect("deflate")),
    ] {
        agent.push_raw(Script::raw_chunks(&body, 7).header("content-encoding", encoding));
        let (_, frames) = run_message(&app, &token, json!({"message": "hello agent"})).await;
        assert_complete_run(&frames);
        assert_eq!(
            kinds(&frames),
            vec!["WipUpdate", "ReviewResult", "done"],
            "{encoding}"
        );
    }
    let asked = &agent.requests()[0].headers;
    assert_eq!(
        asked["accept-encoding"], "identity",
        "it still asks for none"
    );

    for (script, says) in [
        (
            Script::steps(vec![Step::Send(stream.clone())]).header("content-encoding", "zstd"),
            "encoded with zstd",
        ),
        (
            Script::steps(vec![Step::Send("{\"detail\":\"ok\"}".into())])
                .header("content-type", "application/json"),
            "application/json",
        ),
    ] {
        agent.push(script);
        let (_, frames) = run_message(&app, &token, json!({"message": "hello agent"})).await;
        assert_complete_run(&frames);
        let error = frames.iter().find(|f| f.event == "error").expect("error");
        assert_eq!(error.data["code"], "upstream_invalid_event", "{error:?}");
        let text = error.data["error"].as_str().unwrap_or("");
        assert!(text.contains(says), "{text}");
    }
    app.stop().await;
}
db_test!(a_compressed_agent_stream_is_read);

/// Runs one scripted failure and returns the frames and the run's final status.
async fn failing_run(app: &TestApp, token: &str) -> (Vec<Frame>, String) {
    let response = app
        .post_message(token, &json!({"message": "build something"}))
        .await;
    assert_eq!(response.status(), 200);
    let run_id = response.headers()["x-run-id"]
        .to_str()
        .expect("id")
        .to_string();
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let status = run_status(app, &run_id).await;
    (frames, status)
}

fn error_code(frames: &[Frame]) -> String {
    let error = frames
        .iter()
        .find(|f| f.event == "error")
        .expect("an error event");
    assert_eq!(error.data["status"], "idle");
    assert_eq!(error.data["message"]["kind"], "RuntimeError");
    assert!(error.data["error"].as_str().is_some_and(|e| !e.is_empty()));
    error.data["code"].as_str().expect("code").to_string()
}

async fn upstream_failures_end_with_error_and_done(kind: DbKind) {
    let (app, agent) = setup(kind, "idle_timeout_secs = 1\nturn_deadline_secs = 3\nmax_event_bytes = 4096\nconnect_retries = 0\n").await;
    let token = app.token("alice");

    let long_body = format!("Internal Server Error {}", "x".repeat(10_000));
    agent.push(Script::status(500, &long_body));
    let (frames, status) = failing_run(&app, &token).await;
    assert_eq!(error_code(&frames), "upstream_http_error");
    let text = frames[0].data["error"].as_str().unwrap_or("");
    assert!(
        text.contains("500") && text.contains("Internal Server Error"),
        "{text}"
    );
    assert!(
        text.len() < 1000,
        "only an excerpt of the body: {} bytes",
        text.len()
    );
    assert_eq!(status, "failed");

    agent.push(Script::steps(vec![Step::Send(
        "data: {not json\n\n".into(),
    )]));
    let (frames, _) = failing_run(&app, &token).await;
    assert_eq!(error_code(&frames), "upstream_invalid_event");

    let huge = with(
        event("running", "WipUpdate", Some(&"y".repeat(10_000))),
        "agentState",
        json!(null),
    );
    agent.push(Script::events(&[huge]));
    let (frames, _) = failing_run(&app, &token).await;
    assert_eq!(error_code(&frames), "upstream_event_too_large");

    agent.push(Script::steps(vec![
        Step::Send(data_line(&event("running", "WipUpdate", Some("working")))),
        Step::Pause(Duration::from_secs(5)),
    ]));
    let (frames, status) = failing_run(&app, &token).await;
    assert_eq!(kinds(&frames), vec!["WipUpdate", "error", "done"]);
    assert_eq!(error_code(&frames), "upstream_idle_timeout");
    assert_eq!(status, "failed");

    // An agent that takes the request and never answers it is idle too (not 30 minutes).
    agent.push(
        Script::events(&[event("idle", "ReviewResult", Some("too late"))])
            .headers_after(Duration::from_secs(5)),
    );
    let (frames, _) = failing_run(&app, &token).await;
    assert_eq!(kinds(&frames), vec!["error", "done"]);
    assert_eq!(error_code(&frames), "upstream_idle_timeout");

    // Only KeepAlives, forever: the turn deadline ends it.
    let mut steps = Vec::new();
    for _ in 0..40 {
        steps.push(Step::Send(data_line(&keep_alive())));
        steps.push(Step::Pause(Duration::from_millis(200)));
    }
    agent.push(Script::steps(steps));
    let (frames, _) = failing_run(&app, &token).await;
    assert_eq!(kinds(&frames), vec!["error", "done"]);
    assert_eq!(error_code(&frames), "upstream_deadline_exceeded");

    agent.push(Script::events(&[event(
        "running",
        "WipUpdate",
        Some("then EOF"),
    )]));
    let (frames, _) = failing_run(&app, &token).await;
    assert_eq!(error_code(&frames), "upstream_incomplete_stream");

    agent.push(Script::steps(vec![
        Step::Send(data_line(&event(
            "running",
            "WipUpdate",
            Some("then reset"),
        ))),
        Step::Cut,
    ]));
    let posted = agent.requests().len();
    let (frames, _) = failing_run(&app, &token).await;
    assert_eq!(error_code(&frames), "upstream_connection_reset");
    assert_eq!(
        agent.requests().len(),
        posted + 1,
        "a reset after the response began is never re-POSTed"
    );
    app.stop().await;
}
db_test!(upstream_failures_end_with_error_and_done);

async fn connect_failure_is_retried_then_reported(kind: DbKind) {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let app = spawn_app_with(
        kind,
        &format!("[agent]\nurl = {url:?}\nconnect_retries = 2\n"),
    )
    .await;
    let token = app.token("alice");
    let started = std::time::Instant::now();
    let (frames, status) = failing_run(&app, &token).await;
    assert_eq!(error_code(&frames), "upstream_connect_failed");
    assert_eq!(status, "failed");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "two retries with backoff happened"
    );
    app.stop().await;
}
db_test!(connect_failure_is_retried_then_reported);

async fn request_checks_happen_before_the_stream(kind: DbKind) {
    let (app, _agent) = setup(kind, "").await;
    let token = app.token("alice");
    let cases = [
        (json!({"message": ""}), 400, "empty_message"),
        (json!({"message": "   "}), 400, "empty_message"),
        (
            json!({"message": "x".repeat(70_000)}),
            400,
            "message_too_large",
        ),
        (json!({"nope": 1}), 400, "invalid_body"),
        (
            json!({"message": "hi", "applicationId": "not-a-uuid"}),
            400,
            "invalid_id",
        ),
        (
            json!({"message": "hi", "applicationId": uuid::Uuid::new_v4().to_string()}),
            404,
            "not_found",
        ),
    ];
    for (body, status, code) in cases {
        let response = app.post_message(&token, &body).await;
        assert_eq!(response.status(), status, "{body}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("application/json"));
        assert_eq!(response.json::<Value>().await.expect("json")["code"], code);
    }
    let response = app
        .http
        .post(app.url("/message"))
        .bearer_auth(&token)
        .body("not json")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 400);

    // A foreign app is a 404 and costs nothing.
    let bobs = agentgate::apps::create(&app.state.db, "bob", "bob's", None)
        .await
        .expect("create");
    let response = app
        .post_message(&token, &json!({"message": "hi", "applicationId": bobs.id}))
        .await;
    assert_eq!(response.status(), 404);
    let usage: Value = app
        .get("/message-limit", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        usage["currentUsage"], 0,
        "rejected requests do not use the daily limit"
    );
    app.stop().await;
}
db_test!(request_checks_happen_before_the_stream);

async fn daily_limit_is_enforced_on_message(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(
        kind,
        &format!("{}[limits]\ndaily_messages = 1\n", agent.config("")),
    )
    .await;
    let token = app.token("alice");
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    let (_, frames) = run_message(&app, &token, json!({"message": "build a todo app"})).await;
    assert_complete_run(&frames);
    let response = app.post_message(&token, &json!({"message": "again"})).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["x-dailylimit-remaining"], "0");
    assert_eq!(response.headers()["x-dailylimit-limit"], "1");
    assert_eq!(
        response.json::<Value>().await.expect("json")["code"],
        "daily_message_limit_reached"
    );
    app.stop().await;
}
db_test!(daily_limit_is_enforced_on_message);

/// The database refuses the run's `done` for a while: the stream still ends at once, and the
/// run's end is recorded once the database is back, so the app is not left blocked.
async fn the_end_of_a_run_is_retried_until_the_database_takes_it(kind: DbKind) {
    let (app, agent) = setup(kind, "").await;
    let token = app.token("alice");
    refuse_events_where(&app, "NEW.event = 'done'").await;
    agent.push(Script::events(&[event(
        "idle",
        "ReviewResult",
        Some("Done!"),
    )]));
    let (frames, status) = failing_run(&app, &token).await;
    assert_eq!(kinds(&frames), vec!["ReviewResult", "done"]);
    assert_eq!(status, "running", "not recorded yet");
    tokio::time::sleep(Duration::from_secs(1)).await;
    accept_events_again(&app).await;
    let run_id = frames[0].data["runId"]
        .as_str()
        .expect("run id")
        .to_string();
    assert_eq!(settled_run_status(&app, &run_id).await, "succeeded");
    app.stop().await;
}
db_test!(the_end_of_a_run_is_retried_until_the_database_takes_it);

async fn an_event_the_log_cannot_store_fails_the_run(kind: DbKind) {
    let (app, agent) = setup(kind, "").await;
    let token = app.token("alice");
    refuse_events_containing(&app, "step 1").await;
    let mut events: Vec<Value> = (0..5)
        .map(|i| event("running", "WipUpdate", Some(&format!("step {i}"))))
        .collect();
    events.push(event("idle", "ReviewResult", Some("Done!")));
    agent.push(Script::events(&events));
    let (frames, status) = failing_run(&app, &token).await;
    assert_eq!(status, "failed");
    assert_eq!(error_code(&frames), "internal_error");
    let seqs: Vec<i64> = frames.iter().map(|f| f.id).collect();
    assert_eq!(
        kinds(&frames),
        vec!["WipUpdate", "error", "done"],
        "nothing after the event that was not stored: {seqs:?}"
    );
    assert_eq!(
        frames[0].data["message"]["messages"][0]["content"],
        "step 0"
    );
    // The log holds exactly what was streamed: no event after the one that failed stayed in
    // it, even one a writer batch committed beside the failing one.
    let run_id = frames[0].data["runId"].as_str().expect("run id");
    let replay = SseReader::new(crate::resume::events(&app, &token, run_id, None).await)
        .collect()
        .await;
    assert_eq!(frame_shapes(&replay), frame_shapes(&frames));

    // Nothing is left active: the app takes its next message.
    let app_id = frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string();
    agent.push(Script::events(&[event("idle", "ReviewResult", Some("ok"))]));
    let (_, frames) = run_message(
        &app,
        &token,
        json!({"message": "again", "applicationId": app_id}),
    )
    .await;
    assert_eq!(kinds(&frames), vec!["ReviewResult", "done"]);
    app.stop().await;
}
db_test!(an_event_the_log_cannot_store_fails_the_run);

/// A full disk at the end of a run: neither the error event nor the app's history takes a
/// row. The stream still says why the run failed (`error`, then `done`, at once), and once
/// the disk has room the log holds what was streamed and the run its final status.
async fn a_full_disk_at_the_end_still_streams_the_error(kind: DbKind) {
    let (app, agent) = setup(kind, "connect_retries = 0\n").await;
    let token = app.token("alice");
    let marker = "marker-full-disk";
    refuse_events_containing(&app, marker).await;
    let refuse_history = match app.state.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse_message() RETURNS trigger AS $$ BEGIN \
                 IF NEW.content LIKE '%{marker}%' THEN \
                 RAISE EXCEPTION 'no space left on device'; END IF; RETURN NEW; END $$ \
                 LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER refuse_message BEFORE INSERT ON app_messages \
             FOR EACH ROW EXECUTE FUNCTION refuse_message()"
                .to_string(),
        ],
        _ => vec![format!(
            "CREATE TRIGGER refuse_message BEFORE INSERT ON app_messages \
             WHEN NEW.content LIKE '%{marker}%' \
             BEGIN SELECT RAISE(ABORT, 'no space left on device'); END"
        )],
    };
    execute_all(&app, refuse_history).await;
    agent.push(Script::status(
        500,
        &format!("Internal Server Error {marker}"),
    ));

    let (frames, status) = failing_run(&app, &token).await;
    assert_eq!(kinds(&frames), vec!["error", "done"]);
    assert_eq!(error_code(&frames), "upstream_http_error");
    assert!(frames[0].data["error"]
        .as_str()
        .is_some_and(|e| e.contains(marker)));
    assert_eq!(
        status, "running",
        "its end is not recorded while the disk is full"
    );

    accept_events_and_compare_the_replay(&app, &token, &frames, "failed").await;
    app.stop().await;
}
db_test!(a_full_disk_at_the_end_still_streams_the_error);

async fn large_events_in_a_burst_arrive_whole_and_in_order(kind: DbKind) {
    let (app, agent) = setup(kind, "").await;
    let token = app.token("alice");
    // 12 × 600 KB: more than one log batch may hold, so the writer splits the burst.
    let mut events: Vec<Value> = (0..12)
        .map(|i| {
            event(
                "running",
                "WipUpdate",
                Some(&format!("{i}:{}", "x".repeat(600_000))),
            )
        })
        .collect();
    events.push(event("idle", "ReviewResult", Some("Done!")));
    agent.push(Script::events(&events));
    let (_, frames) = run_message(&app, &token, json!({"message": "big"})).await;
    assert_complete_run(&frames);
    let texts: Vec<String> = frames
        .iter()
        .filter(|f| f.data["message"]["kind"] == "WipUpdate")
        .map(|f| {
            let text = f.data["message"]["messages"][0]["content"]
                .as_str()
                .expect("text");
            assert_eq!(text.len(), 600_000 + text.find(':').expect("index") + 1);
            text.split(':').next().expect("index").to_string()
        })
        .collect();
    let expected: Vec<String> = (0..12).map(|i| i.to_string()).collect();
    assert_eq!(texts, expected);
    app.stop().await;
}
db_test!(large_events_in_a_burst_arrive_whole_and_in_order);

/// On PostgreSQL the log writer commits two batches at once. When the later one commits first,
/// nobody sees its events before the earlier batch's: the live stream, a subscriber that reads
/// the log during the gap, and the replay all go 1, 2, 3, ... without a skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_commits_release_each_runs_events_in_order() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let (app, agent) = setup(DbKind::Postgres, "").await;
    let token = app.token("alice");
    execute_all(
        &app,
        vec![
            "CREATE FUNCTION slow_event() RETURNS trigger AS $$ BEGIN \
             IF NEW.data LIKE '%slow step%' THEN PERFORM pg_sleep(0.6); END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql"
                .to_string(),
            "CREATE TRIGGER slow_event BEFORE INSERT ON run_events \
             FOR EACH ROW EXECUTE FUNCTION slow_event()"
                .to_string(),
        ],
    )
    .await;
    let mut events = vec![event("running", "WipUpdate", Some("slow step 0"))];
    events.extend((1..6).map(|i| event("running", "WipUpdate", Some(&format!("step {i}")))));
    events.push(event("idle", "ReviewResult", Some("Done!")));
    agent.push(Script::events(&events));
    let response = app
        .post_message(&token, &json!({"message": "build something"}))
        .await;
    let run_id = crate::resume::run_id_of(&response);
    let live = tokio::spawn(SseReader::new(response).collect());

    // While the first batch sleeps in its trigger, the next one commits beside it.
    let logged_past_the_gap = async {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        loop {
            let seqs: Vec<i64> = entity::run_events::Entity::find()
                .filter(entity::run_events::Column::RunId.eq(run_id.as_str()))
                .all(&app.state.db)
                .await
                .expect("read the log")
                .into_iter()
                .map(|e| e.seq)
                .collect();
            if seqs.contains(&2) && !seqs.contains(&1) {
                return;
            }
            assert!(!seqs.contains(&1), "the batches did not overlap: {seqs:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), logged_past_the_gap)
        .await
        .expect("a later batch committed while the first was still committing");
    let follower = SseReader::new(crate::resume::events(&app, &token, &run_id, None).await)
        .collect()
        .await;
    let live = live.await.expect("live stream");
    assert_complete_run(&live);
    let ids: Vec<i64> = live.iter().map(|f| f.id).collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>());
    assert_eq!(
        live[0].data["message"]["messages"][0]["content"],
        "slow step 0"
    );
    assert_eq!(frame_shapes(&follower), frame_shapes(&live));
    let replay = SseReader::new(crate::resume::events(&app, &token, &run_id, None).await)
        .collect()
        .await;
    assert_eq!(frame_shapes(&replay), frame_shapes(&live));
    assert_eq!(run_status(&app, &run_id).await, "succeeded");
    app.stop().await;
}

/// PostgreSQL: the writer keeps its connections between batches (checking one out and back
/// in would ping the server twice a batch); when they are cut in the middle of a run, the next
/// batch fails, is retried on a fresh connection, and the run goes on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_reconnects_when_its_connections_are_cut() {
    use sea_orm::ConnectionTrait;
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let (app, agent) = setup(DbKind::Postgres, "").await;
    let token = app.token("alice");
    let step = |i: usize| {
        Step::Send(data_line(&event(
            "running",
            "WipUpdate",
            Some(&format!("step {i}")),
        )))
    };
    let mut steps: Vec<Step> = (0..3).map(step).collect();
    steps.push(Step::Pause(Duration::from_millis(800)));
    steps.extend((3..6).map(step));
    steps.push(Step::Send(data_line(&event(
        "idle",
        "ReviewResult",
        Some("Done!"),
    ))));
    agent.push(Script::steps(steps));
    let response = app
        .post_message(&token, &json!({"message": "build something"}))
        .await;
    let run_id = crate::resume::run_id_of(&response);
    let mut live = SseReader::new(response);
    let mut frames = Vec::new();
    while frames.len() < 3 {
        frames.push(live.next().await.expect("an event before the pause"));
    }
    let cut = app
        .state
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = '{}'",
                agentgate::db::LOG_WRITER_APPLICATION
            ),
        ))
        .await
        .expect("terminate the writer's connections");
    assert!(!cut.is_empty(), "the writer holds a connection");
    frames.extend(live.collect().await);
    assert_complete_run(&frames);
    let ids: Vec<i64> = frames.iter().map(|f| f.id).collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>());
    let replay = SseReader::new(crate::resume::events(&app, &token, &run_id, None).await)
        .collect()
        .await;
    assert_eq!(frame_shapes(&replay), frame_shapes(&frames));
    assert_eq!(settled_run_status(&app, &run_id).await, "succeeded");
    app.stop().await;
}

/// PostgreSQL: a burst of a run's events is logged in rows of several events that each fit a
/// page, so none goes to TOAST (whose 2 KB chunks cost a tuple and an index entry each); the
/// replay is the live stream. The burst: the log table is locked while the agent streams, so
/// the events queue, and one batch gets enough of them to go by `COPY` (small batches are one
/// `INSERT`), whose rows carry the time they were logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_logged_in_rows_that_fit_a_page() {
    use sea_orm::{ConnectionTrait, FromQueryResult, Statement, TransactionTrait};
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let (app, agent) = setup(DbKind::Postgres, "").await;
    let token = app.token("alice");
    let text = "x".repeat(1_500);
    // While the table is locked the writer's two stores wait with a batch each, one more batch
    // waits for a store, and the rest queue: 200 events leave at least ≈ 98 for one of the
    // last two batches however they split, enough for `COPY` (64).
    let mut events: Vec<Value> = (0..200)
        .map(|i| event("running", "WipUpdate", Some(&format!("{i} {text}"))))
        .collect();
    events.push(event("idle", "ReviewResult", Some("Done!")));
    agent.push(Script::events(&events));

    // Each statement that writes the log notes how it began: `current_query()` in a trigger is
    // the whole statement, a `COPY` or the one `INSERT`.
    execute_all(
        &app,
        vec![
            "CREATE TABLE log_statements (at timestamptz, head text, events int8)".to_string(),
            "CREATE FUNCTION note_log_statement() RETURNS trigger AS $$ BEGIN \
             INSERT INTO log_statements SELECT clock_timestamp(), left(current_query(), 4), \
             sum(coalesce(array_length(string_to_array(sizes, ','), 1), 1)) FROM logged; \
             RETURN NULL; END $$ LANGUAGE plpgsql"
                .to_string(),
            "CREATE TRIGGER note_log_statement AFTER INSERT ON run_events \
             REFERENCING NEW TABLE AS logged \
             FOR EACH STATEMENT EXECUTE FUNCTION note_log_statement()"
                .to_string(),
        ],
    )
    .await;
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    let lock = app.state.db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE run_events IN SHARE ROW EXCLUSIVE MODE")
        .await
        .expect("lock the log");
    let response = app
        .post_message(&token, &json!({"message": "build something"}))
        .await;
    let run_id = crate::resume::run_id_of(&response);
    let live = tokio::spawn(SseReader::new(response).collect());
    tokio::time::sleep(Duration::from_secs(2)).await;
    lock.commit().await.expect("unlock");
    let live = live.await.expect("live stream");
    assert_complete_run(&live);
    let after = chrono::Utc::now() + chrono::Duration::milliseconds(1);
    let statements: Vec<(String, i64)> = app
        .state
        .db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT head, events FROM log_statements ORDER BY at",
        ))
        .await
        .expect("the log's statements")
        .iter()
        .map(|r| {
            (
                r.try_get("", "head").expect("head"),
                r.try_get("", "events").expect("events"),
            )
        })
        .collect();
    assert!(
        statements.iter().any(|(head, _)| head == "COPY"),
        "the burst did not go by COPY: {statements:?}"
    );

    #[derive(FromQueryResult)]
    struct Row {
        events: i64,
        bytes: i64,
        created_at: chrono::DateTime<chrono::Utc>,
    }
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT coalesce(array_length(string_to_array(sizes, ','), 1), 1)::int8 AS events, \
         (octet_length(data) + coalesce(octet_length(sizes), 0))::int8 AS bytes, created_at \
         FROM run_events WHERE run_id = $1",
        [run_id.clone().into()],
    ))
    .all(&app.state.db)
    .await
    .expect("read the rows");
    let several = rows.iter().filter(|r| r.events > 1).count();
    assert!(several >= 5, "{several} rows of several events");
    assert!(rows.iter().all(|r| r.bytes <= 7_900), "a row past a page");
    assert!(
        rows.iter()
            .all(|r| (before..=after).contains(&r.created_at)),
        "a row not stamped with the time it was logged"
    );
    let toasted = app
        .state
        .db
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_relation_size(reltoastrelid)::int8 AS bytes FROM pg_class \
             WHERE relname = 'run_events'",
        ))
        .await
        .expect("query")
        .expect("a row")
        .try_get::<i64>("", "bytes")
        .expect("bytes");
    assert_eq!(toasted, 0, "rows went to TOAST");

    let replay = SseReader::new(crate::resume::events(&app, &token, &run_id, None).await)
        .collect()
        .await;
    assert_eq!(frame_shapes(&replay), frame_shapes(&live));
    app.stop().await;
}
