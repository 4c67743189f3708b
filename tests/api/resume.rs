//! Durable runs: disconnect and resume, several subscribers, idempotent retries, one active run
//! per app, cancel, slow subscribers, and shutdown interrupting runs.
use std::time::Duration;

use serde_json::{json, Value};

use crate::db_test;
use crate::fake_agent::{data_line, event, FakeAgent, Script, Step};
use crate::helpers::{
    assert_complete_run, assert_error_code, current_usage, frame_shapes, kinds, relog, run_status,
    settled_run_status, spawn_app_with, DbKind, Frame, SharedState, SseReader, TestApp,
};

pub(crate) fn paced_script(n: usize, pause_ms: u64) -> Script {
    let mut steps = Vec::new();
    for i in 0..n {
        steps.push(Step::Send(data_line(&event(
            "running",
            "WipUpdate",
            Some(&format!("step {i}")),
        ))));
        steps.push(Step::Pause(Duration::from_millis(pause_ms)));
    }
    steps.push(Step::Send(data_line(&event(
        "idle",
        "ReviewResult",
        Some("finished"),
    ))));
    Script::steps(steps)
}

/// Starts a run of 100 slow steps on a new app and reads its first frame.
pub(crate) async fn start_slow_run(
    app: &TestApp,
    agent: &FakeAgent,
    token: &str,
) -> (String, String, SseReader) {
    agent.push(paced_script(100, 100));
    let response = app
        .post_message(token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    let app_id = response.headers()["x-app-id"]
        .to_str()
        .expect("app id")
        .to_string();
    let mut reader = SseReader::new(response);
    reader.next().await.expect("first frame");
    (run_id, app_id, reader)
}

/// The stream ends with `error` (run_cancelled) then `done`, and the run is stored as cancelled.
pub(crate) async fn assert_run_cancelled(app: &TestApp, run_id: &str, reader: SseReader) {
    let frames = reader.collect().await;
    let tail = kinds(&frames);
    assert_eq!(
        &tail[tail.len() - 2..],
        &["error".to_string(), "done".to_string()],
        "the stream ends instead of running on"
    );
    let error = frames.iter().find(|f| f.event == "error").expect("error");
    assert_eq!(error.data["code"], "run_cancelled");
    assert_eq!(run_status(app, run_id).await, "cancelled");
}

pub(crate) async fn events(
    app: &TestApp,
    token: &str,
    run_id: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .get(app.url(&format!("/runs/{run_id}/events")))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    request.send().await.expect("events")
}

pub(crate) fn run_id_of(response: &reqwest::Response) -> String {
    response.headers()["x-run-id"]
        .to_str()
        .expect("run id")
        .to_string()
}

async fn disconnect_does_not_cancel_and_resume_is_exact(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    agent.push(paced_script(10, 100));
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    let mut reader = SseReader::new(response);
    let mut seen: Vec<Frame> = Vec::new();
    for _ in 0..3 {
        seen.push(reader.next().await.expect("frame"));
    }
    drop(reader); // the browser goes away mid-run

    let response = events(&app, &token, &run_id, Some("3")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let rest = SseReader::new(response).collect().await;
    seen.extend(rest);
    assert_complete_run(&seen);
    assert_eq!(
        seen.len(),
        12,
        "10 updates, the review, done: {:?}",
        kinds(&seen)
    );
    assert_eq!(
        run_status(&app, &run_id).await,
        "succeeded",
        "the run finished without a client"
    );

    // A full replay after the fact equals what the two connections saw together.
    let replay = SseReader::new(events(&app, &token, &run_id, None).await)
        .collect()
        .await;
    assert_eq!(
        replay
            .iter()
            .map(|f| (f.id, f.data.clone()))
            .collect::<Vec<_>>(),
        seen.iter()
            .map(|f| (f.id, f.data.clone()))
            .collect::<Vec<_>>()
    );
    let tail = SseReader::new(
        app.get(&format!("/runs/{run_id}/events?lastEventId=10"), &token)
            .await,
    )
    .collect()
    .await;
    assert_eq!(tail.iter().map(|f| f.id).collect::<Vec<_>>(), vec![11, 12]);

    let bad = events(&app, &token, &run_id, Some("abc")).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.expect("json")["code"],
        "invalid_last_event_id"
    );
    // Bytes that are not text are refused too, not taken for "from the start".
    let not_text = app
        .http
        .get(app.url(&format!("/runs/{run_id}/events")))
        .bearer_auth(&token)
        .header(
            "Last-Event-ID",
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").expect("header"),
        )
        .send()
        .await
        .expect("events");
    assert_error_code(not_text, 400, "invalid_last_event_id").await;
    assert_eq!(
        events(&app, &app.token("bob"), &run_id, None)
            .await
            .status(),
        404,
        "foreign run"
    );
    assert_eq!(events(&app, &token, "nope", None).await.status(), 400);
    app.stop().await;
}
db_test!(disconnect_does_not_cancel_and_resume_is_exact);

/// What a browser's native EventSource does: no headers but `Last-Event-ID`, the token in the
/// query, and a reconnect after the stream ends, which must get 204 to stop it.
async fn a_native_event_source_can_follow_and_stops_after_done(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    agent.push(paced_script(3, 50));
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    let all = SseReader::new(response).collect().await;
    assert_complete_run(&all);
    let last = all.last().expect("done").id;

    let url = |query: &str| app.url(&format!("/runs/{run_id}/events?{query}"));
    let response = app
        .http
        .get(url(&format!("access_token={token}")))
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    assert_eq!(SseReader::new(response).collect().await, all);

    let reconnect = app
        .http
        .get(url(&format!("access_token={token}")))
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .expect("events");
    assert_eq!(reconnect.status(), 204, "nothing follows done");
    let earlier = events(&app, &token, &run_id, Some(&(last - 1).to_string())).await;
    assert_eq!(earlier.status(), 200);
    assert_eq!(SseReader::new(earlier).collect().await.len(), 1);

    for (query, why) in [
        ("access_token=garbage".to_string(), "a bad token"),
        (
            format!("access_token={}", app.token("bob")),
            "another user's token",
        ),
    ] {
        let status = app
            .http
            .get(url(&query))
            .send()
            .await
            .expect("events")
            .status();
        assert_eq!(
            status.as_u16(),
            if why == "a bad token" { 401 } else { 404 },
            "{why}"
        );
    }
    let elsewhere = app
        .http
        .get(app.url(&format!("/apps?access_token={token}")))
        .send()
        .await
        .expect("apps");
    assert_eq!(
        elsewhere.status(),
        401,
        "only the events route takes a query token"
    );
    app.stop().await;
}
db_test!(a_native_event_source_can_follow_and_stops_after_done);

async fn two_subscribers_see_the_same_run(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    agent.push(paced_script(8, 50));
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    let second = events(&app, &token, &run_id, None).await;
    let (a, b) = tokio::join!(
        SseReader::new(response).collect(),
        SseReader::new(second).collect()
    );
    assert_complete_run(&a);
    assert_complete_run(&b);
    assert_eq!(
        a.iter().map(|f| f.data.clone()).collect::<Vec<_>>(),
        b.iter().map(|f| f.data.clone()).collect::<Vec<_>>()
    );
    app.stop().await;
}
db_test!(two_subscribers_see_the_same_run);

async fn slow_subscriber_catches_up_from_the_log(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(
        kind,
        &format!("{}[runs]\nlive_buffer = 16\n", agent.config("")),
    )
    .await;
    let token = app.token("alice");
    let big = "z".repeat(4000);
    let mut events_ = Vec::new();
    for _ in 0..300 {
        events_.push(event("running", "WipUpdate", Some(&big)));
    }
    events_.push(event("idle", "ReviewResult", Some("done")));
    agent.push(Script::events(&events_));
    let response = app
        .post_message(&token, &json!({"message": "build a big app"}))
        .await;
    let run_id = run_id_of(&response);
    let mut reader = SseReader::new(response);
    let first = reader.next().await.expect("first");
    // Fall far behind the 16-event buffer while the agent streams 1.2 MB.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut frames = vec![first];
    frames.extend(reader.collect().await);
    assert_complete_run(&frames);
    assert_eq!(frames.len(), 302);
    assert_eq!(run_status(&app, &run_id).await, "succeeded");
    app.stop().await;
}
db_test!(slow_subscriber_catches_up_from_the_log);

async fn idempotent_retry_attaches_to_the_same_run(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    agent.push(paced_script(3, 50));
    let post = || {
        app.http
            .post(app.url("/message"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "key-123")
            .json(&json!({"message": "build a todo app"}))
            .send()
    };
    let first = post().await.expect("post");
    let run_id = run_id_of(&first);
    let second = post().await.expect("post");
    assert_eq!(second.status(), 200);
    assert_eq!(
        run_id_of(&second),
        run_id,
        "the retry attaches to the same run"
    );
    let (a, b) = tokio::join!(
        SseReader::new(first).collect(),
        SseReader::new(second).collect()
    );
    assert_complete_run(&a);
    assert_complete_run(&b);
    let third = post().await.expect("post");
    assert_eq!(run_id_of(&third), run_id, "after the run ended too");
    assert_complete_run(&SseReader::new(third).collect().await);
    assert_eq!(agent.requests().len(), 1, "the agent was called once");
    let usage: Value = app
        .get("/message-limit", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        usage["currentUsage"], 1,
        "retries do not use the daily limit"
    );
    // The same key from another user is a different run.
    agent.push(paced_script(0, 0));
    let other = app
        .http
        .post(app.url("/message"))
        .bearer_auth(app.token("bob"))
        .header("Idempotency-Key", "key-123")
        .json(&json!({"message": "x y"}))
        .send()
        .await
        .expect("post");
    assert_ne!(run_id_of(&other), run_id);
    SseReader::new(other).collect().await;
    app.stop().await;
}
db_test!(idempotent_retry_attaches_to_the_same_run);

/// A client on event-source-plus (`retryStrategy: "on-error"`, as app.build's web client
/// uses it) sends its `POST /message` again when the stream breaks: the same body, no key, the
/// last id it saw (app.build's web client drops the id: the follow-up case below).
async fn a_client_that_posts_its_message_again_resumes_the_run_it_started(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    let body = json!({"message": "build a todo app", "applicationId": null});
    let retry = |last_event_id: Option<&str>, body: &Value| {
        let mut request = app.http.post(app.url("/message")).bearer_auth(&token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        request.json(body).send()
    };
    agent.push(paced_script(10, 100));
    let response = retry(None, &body).await.expect("post");
    let run_id = run_id_of(&response);
    let mut reader = SseReader::new(response);
    let mut seen: Vec<Frame> = Vec::new();
    for _ in 0..3 {
        seen.push(reader.next().await.expect("frame"));
    }
    drop(reader); // the connection breaks

    let again = retry(Some("3"), &body).await.expect("post");
    assert_eq!(again.status(), 200);
    assert_eq!(run_id_of(&again), run_id, "the same run, not a new app");
    let rest = SseReader::new(again).collect().await;
    assert_eq!(
        rest.first().map(|f| f.id),
        Some(4),
        "it resumes after the id"
    );
    seen.extend(rest);
    assert_complete_run(&seen);
    assert_eq!(seen.len(), 12, "{:?}", kinds(&seen));

    // After the end: what follows the id, and an empty stream when nothing does.
    let tail = SseReader::new(retry(Some("10"), &body).await.expect("post"))
        .collect()
        .await;
    assert_eq!(tail.iter().map(|f| f.id).collect::<Vec<_>>(), vec![11, 12]);
    let nothing = retry(Some("12"), &body).await.expect("post");
    assert_eq!(nothing.status(), 200);
    assert_eq!(run_id_of(&nothing), run_id);
    assert!(SseReader::new(nothing).collect().await.is_empty());
    let bad = retry(Some("-1"), &body).await.expect("post");
    assert_error_code(bad, 400, "invalid_last_event_id").await;
    assert_eq!(agent.requests().len(), 1, "the agent was called once");

    // Long after its run ended (or with id 0, which no stream sends), the same message is a new
    // run.
    set_finished_at(
        &app,
        &run_id,
        chrono::Utc::now() - chrono::Duration::minutes(11),
    )
    .await;
    for id in ["12", "0"] {
        agent.push(paced_script(0, 0));
        let later = retry(Some(id), &body).await.expect("post");
        assert_ne!(run_id_of(&later), run_id, "Last-Event-ID {id}");
        assert_complete_run(&SseReader::new(later).collect().await);
    }

    // A follow-up whose stream breaks before any id: the same body attaches from the start,
    // another message is still refused while the run is active.
    let app_id = seen[0].data["appId"].as_str().expect("app id").to_string();
    let follow_up = json!({"message": "add a due date", "applicationId": app_id});
    agent.push(paced_script(10, 100));
    let first = retry(None, &follow_up).await.expect("post");
    let follow_up_run = run_id_of(&first);
    drop(first);
    let attached = retry(None, &follow_up).await.expect("post");
    assert_eq!(attached.status(), 200);
    assert_eq!(run_id_of(&attached), follow_up_run);
    let other = retry(
        None,
        &json!({"message": "no, a calendar", "applicationId": app_id}),
    )
    .await
    .expect("post");
    assert_error_code(other, 409, "run_active").await;
    let frames = SseReader::new(attached).collect().await;
    assert_eq!(frames.first().map(|f| f.id), Some(1));
    assert_complete_run(&frames);

    // Nobody else's run: bob's identical request is his own.
    agent.push(paced_script(0, 0));
    let bobs = app
        .http
        .post(app.url("/message"))
        .bearer_auth(app.token("bob"))
        .header("Last-Event-ID", "3")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(bobs.status(), 200);
    assert_ne!(run_id_of(&bobs), run_id);
    assert_complete_run(&SseReader::new(bobs).collect().await);
    assert_eq!(
        current_usage(&app, &token).await,
        4,
        "reconnects use no messages"
    );
    app.stop().await;
}

async fn set_finished_at(app: &TestApp, run_id: &str, at: chrono::DateTime<chrono::Utc>) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    entity::runs::Entity::update_many()
        .col_expr(entity::runs::Column::FinishedAt, Expr::value(at))
        .filter(entity::runs::Column::Id.eq(run_id))
        .exec(&app.state.db)
        .await
        .expect("update");
}
db_test!(a_client_that_posts_its_message_again_resumes_the_run_it_started);

async fn one_active_run_per_app_and_cancel(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    let (run_id, app_id, reader) = start_slow_run(&app, &agent, &token).await;

    let conflict = app
        .post_message(&token, &json!({"message": "more", "applicationId": app_id}))
        .await;
    assert_eq!(conflict.status(), 409);
    let body: Value = conflict.json().await.expect("json");
    assert_eq!(body["code"], "run_active");
    assert_eq!(body["runId"], run_id.as_str());
    let usage: Value = app
        .get("/message-limit", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        usage["currentUsage"], 1,
        "a 409 does not use the daily limit"
    );

    let cancel = |token: String| {
        app.http
            .post(app.url(&format!("/runs/{run_id}/cancel")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        cancel(app.token("bob")).await.expect("cancel").status(),
        404,
        "only the owner cancels"
    );
    let response = cancel(token.clone()).await.expect("cancel");
    assert_eq!(response.status(), 202);
    assert_run_cancelled(&app, &run_id, reader).await;
    let again = cancel(token.clone()).await.expect("cancel");
    assert_eq!(again.status(), 409);
    assert_eq!(
        again.json::<Value>().await.expect("json")["code"],
        "run_not_active"
    );

    // The app is free again.
    agent.push(paced_script(0, 0));
    let next = app
        .post_message(&token, &json!({"message": "more", "applicationId": app_id}))
        .await;
    assert_eq!(next.status(), 200);
    assert_complete_run(&SseReader::new(next).collect().await);
    app.stop().await;
}
db_test!(one_active_run_per_app_and_cancel);

async fn deleting_an_app_cancels_its_active_run(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    let (run_id, app_id, reader) = start_slow_run(&app, &agent, &token).await;

    let deleted = app.delete(&format!("/apps/{app_id}"), &token).await;
    assert_eq!(deleted.status(), 200);
    assert_run_cancelled(&app, &run_id, reader).await;
    app.stop().await;
}
db_test!(deleting_an_app_cancels_its_active_run);

async fn concurrent_posts_for_one_app_start_one_run(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    let existing = agentgate::apps::create(&app.state.db, "alice", "mine", None)
        .await
        .expect("create");
    for _ in 0..5 {
        // Long enough that the winner is still running when every loser arrives, even on a busy machine.
        agent.push(paced_script(40, 100));
    }
    // Different messages: the same one again would attach to the run it started.
    let bodies: Vec<Value> = (0..5)
        .map(|i| json!({"message": format!("go go {i}"), "applicationId": existing.id}))
        .collect();
    let posts = bodies.iter().map(|body| app.post_message(&token, body));
    let responses = futures::future::join_all(posts).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        4,
        "{statuses:?}"
    );
    for response in responses.into_iter().filter(|r| r.status() == 200) {
        assert_complete_run(&SseReader::new(response).collect().await);
    }
    app.stop().await;
}
db_test!(concurrent_posts_for_one_app_start_one_run);

async fn shutdown_interrupts_runs_after_the_grace_period(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(
        kind,
        &format!("{}[runs]\nshutdown_grace_secs = 1\n", agent.config("")),
    )
    .await;
    let token = app.token("alice");
    agent.push(paced_script(1000, 100));
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    let mut reader = SseReader::new(response);
    reader.next().await.expect("first frame");
    let restarted = app.restart(&agent.config("")).await;
    let mut frames = Vec::new();
    while let Some(frame) = reader.next().await {
        frames.push(frame);
    }
    let tail = kinds(&frames);
    assert_eq!(
        &tail[tail.len() - 2..],
        &["error".to_string(), "done".to_string()],
        "{tail:?}"
    );
    assert_eq!(run_status(&restarted, &run_id).await, "interrupted");
    let replay = SseReader::new(events(&restarted, &token, &run_id, None).await)
        .collect()
        .await;
    assert_complete_run(&replay);
    assert_eq!(
        replay.iter().rev().nth(1).map(|f| f.data["code"].clone()),
        Some(json!("run_interrupted"))
    );
    restarted.stop().await;
}
db_test!(shutdown_interrupts_runs_after_the_grace_period);

/// Two gateways share a PostgreSQL database. One starting up, and its sweeps, leave the other's
/// live run alone; a run whose gateway died (its lease ran out) is interrupted by a sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sharing_a_database_interrupt_only_orphaned_runs() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let agent = FakeAgent::start().await;
    let shared = SharedState::start().await;
    let fast_sweeps = format!(
        "{}[runs]\nlease_secs = 2\nsweep_interval_secs = 1\n{}",
        agent.config(""),
        shared.toml
    );
    let first = spawn_app_with(DbKind::Postgres, &fast_sweeps).await;
    let token = first.token("alice");
    agent.push(paced_script(30, 100));
    let response = first
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    let app_id = response.headers()["x-app-id"]
        .to_str()
        .expect("app id")
        .to_string();
    let reader = SseReader::new(response);
    let second = first.spawn_peer(&fast_sweeps).await;
    // Three seconds of the second gateway's sweeps while the first one's run goes on.
    let frames = reader.collect().await;
    assert_complete_run(&frames);
    assert_eq!(run_status(&first, &run_id).await, "succeeded");

    // A run whose gateway is gone: active, another runner, lease long expired.
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let now = chrono::Utc::now();
    let orphan = uuid::Uuid::new_v4().to_string();
    entity::runs::ActiveModel {
        id: Set(orphan.clone()),
        app_id: Set(app_id.clone()),
        owner_id: Set("alice".into()),
        trace_id: Set("t".into()),
        idempotency_key: Set(None),
        status: Set(entity::runs::RunStatus::Running),
        error: Set(None),
        last_seq: Set(0),
        created_at: Set(now),
        started_at: Set(Some(now)),
        finished_at: Set(None),
        runner_id: Set(Some("a-gateway-that-died".into())),
        lease_expires_at: Set(Some(now - chrono::Duration::seconds(60))),
        cancel_requested_at: Set(None),
        request_digest: Set(None),
        error_code: Set(None),
    }
    .insert(&second.state.db)
    .await
    .expect("insert");
    // It died while two writer batches overlapped: event 4 committed, event 3 never did.
    for seq in [1, 2, 4] {
        entity::run_events::ActiveModel {
            run_id: Set(orphan.clone()),
            seq: Set(seq),
            event: Set("message".into()),
            data: Set(json!({"message": {"kind": "WipUpdate", "n": seq}}).to_string()),
            sizes: Set(None),
            created_at: Set(now),
        }
        .insert(&second.state.db)
        .await
        .expect("insert event");
    }
    assert_eq!(settled_run_status(&second, &orphan).await, "interrupted");
    let replay = SseReader::new(events(&second, &second.token("alice"), &orphan, None).await)
        .collect()
        .await;
    // Event 4 followed a gap, so nobody saw it: the log goes on from the gap.
    assert_eq!(
        kinds(&replay),
        vec!["WipUpdate", "WipUpdate", "error", "done"]
    );
    let ids: Vec<i64> = replay.iter().map(|f| f.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    // The interruption is in the app's history, so a reload shows why the run ended.
    let history: serde_json::Value = second
        .get(&format!("/apps/{app_id}/history"), &second.token("alice"))
        .await
        .json()
        .await
        .expect("history");
    let interrupted = history
        .as_array()
        .expect("rows")
        .iter()
        .filter(|row| row["metadata"]["code"] == "run_interrupted")
        .count();
    assert_eq!(interrupted, 1, "{history}");

    // A cancel that reaches the other gateway stops the run at its runner's next sweep.
    let (run_id, _, reader) = start_slow_run(&first, &agent, &token).await;
    let cancel = second
        .http
        .post(second.url(&format!("/runs/{run_id}/cancel")))
        .bearer_auth(second.token("alice"))
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancel.status(), 202);
    assert_run_cancelled(&first, &run_id, reader).await;
    second.stop().await;
    first.stop().await;
}

/// A gateway whose run was taken from it (its lease lapsed and the run was reassigned) stops
/// the run instead of working on beside whoever holds it; its end is recorded once, by the
/// sweep that finds the run orphaned.
async fn a_gateway_that_lost_its_run_stops_it(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(
        kind,
        &format!(
            "{}[runs]\nlease_secs = 2\nsweep_interval_secs = 1\n",
            agent.config("")
        ),
    )
    .await;
    let token = app.token("alice");
    let (run_id, _, reader) = start_slow_run(&app, &agent, &token).await;
    use sea_orm::ConnectionTrait;
    app.state
        .db
        .execute_unprepared(&format!(
            "UPDATE runs SET runner_id = 'another-gateway' WHERE id = '{run_id}'"
        ))
        .await
        .expect("reassign");
    let frames = reader.collect().await;
    let tail = kinds(&frames);
    assert_eq!(&tail[tail.len() - 2..], &["error", "done"], "{tail:?}");
    assert_eq!(settled_run_status(&app, &run_id).await, "interrupted");
    let replay = SseReader::new(events(&app, &token, &run_id, None).await)
        .collect()
        .await;
    assert_complete_run(&replay);
    assert_eq!(
        replay.iter().filter(|f| f.event == "done").count(),
        1,
        "one done in the log"
    );
    app.stop().await;
}
db_test!(a_gateway_that_lost_its_run_stops_it);

/// A log whose rows hold several events each, as the writer stores a run's events of one
/// batch, reads back as the very events that went live: from the start, and resumed from
/// inside a row, at a row's edges, and across reads of many rows and pages.
async fn resume_from_inside_a_row_of_several_events(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    let mut script: Vec<Value> = (0..600)
        .map(|i| event("running", "WipUpdate", Some(&format!("step {i} ✓"))))
        .collect();
    script.push(event("idle", "ReviewResult", Some("finished")));
    agent.push(Script::events(&script));
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    let live = SseReader::new(response).collect().await;
    assert_complete_run(&live);
    let last = live.last().expect("frames").id;

    let rows = relog(&app, &run_id, 7, |_, payload| payload.to_string()).await;
    assert!(rows < 100 && rows > 64, "{rows} rows for {last} events");
    for after in [
        0,
        1,
        6,
        7,
        8,
        13,
        14,
        450,
        499,
        500,
        501,
        last - 2,
        last - 1,
    ] {
        let id = after.to_string();
        let replay = SseReader::new(events(&app, &token, &run_id, Some(&id)).await)
            .collect()
            .await;
        let expected: Vec<Frame> = live.iter().filter(|f| f.id > after).cloned().collect();
        assert_eq!(
            frame_shapes(&replay),
            frame_shapes(&expected),
            "after {after}"
        );
    }
    let replay = SseReader::new(events(&app, &token, &run_id, None).await)
        .collect()
        .await;
    assert_eq!(frame_shapes(&replay), frame_shapes(&live));
    app.stop().await;
}
db_test!(resume_from_inside_a_row_of_several_events);

/// Every row of the log carries the time it was logged, as the database reads it back (on
/// PostgreSQL the rows arrive in `COPY`'s binary form, which counts from 2000-01-01).
async fn logged_rows_carry_the_time_they_were_logged(kind: DbKind) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let agent = FakeAgent::start().await;
    let app = spawn_app_with(kind, &agent.config("")).await;
    let token = app.token("alice");
    let mut script: Vec<Value> = (0..20)
        .map(|i| event("running", "WipUpdate", Some(&format!("step {i}"))))
        .collect();
    script.push(event("idle", "ReviewResult", Some("finished")));
    agent.push(Script::events(&script));
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    assert_complete_run(&SseReader::new(response).collect().await);
    let after = chrono::Utc::now() + chrono::Duration::milliseconds(1);
    let rows = entity::run_events::Entity::find()
        .filter(entity::run_events::Column::RunId.eq(run_id.as_str()))
        .all(&app.state.db)
        .await
        .expect("read the log");
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(
            (before..=after).contains(&row.created_at),
            "seq {} logged at {}, not between {before} and {after}",
            row.seq,
            row.created_at
        );
    }
    app.stop().await;
}
db_test!(logged_rows_carry_the_time_they_were_logged);
