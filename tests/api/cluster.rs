//! Several gateways on one PostgreSQL database, in one process: a stream follows a run that
//! another gateway runs until `done`, also across a dropped signal connection; a cancel or an
//! app's deletion through another gateway stops the run at once (not at the next sweep); and a
//! gateway whose configuration keeps state on its own disk refuses to join.
//! (`tests/api/cluster_processes.rs` runs three real processes behind nginx.)
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::fake_agent::FakeAgent;
use crate::helpers::{
    assert_complete_run, kinds, run_status, spawn_app_with, DbKind, SharedState, SseReader, TestApp,
};
use crate::resume::{assert_run_cancelled, events, paced_script, run_id_of, start_slow_run};

/// Two gateways with shared state, the sweeps slowed down so that only signals can explain a
/// prompt reaction.
async fn two_gateways(agent: &FakeAgent) -> Option<(SharedState, TestApp, TestApp)> {
    crate::helpers::postgres_url()?;
    let shared = SharedState::start().await;
    let config = format!(
        "{}{}[runs]\nsweep_interval_secs = 60\nlease_secs = 120\n",
        agent.config(""),
        shared.toml
    );
    let first = spawn_app_with(DbKind::Postgres, &config).await;
    let second = first.spawn_peer(&config).await;
    Some((shared, first, second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_through_another_gateway_follows_the_run_to_done() {
    let agent = FakeAgent::start().await;
    let Some((_shared, first, second)) = two_gateways(&agent).await else {
        return;
    };
    let token = first.token("alice");
    agent.push(paced_script(30, 100));
    let response = first
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    let mut on_first = SseReader::new(response);
    for _ in 0..3 {
        on_first.next().await.expect("an event");
    }
    drop(on_first);
    // From the start and from the fourth event, both through the gateway that does not run it.
    let from_start = SseReader::new(events(&second, &token, &run_id, None).await);
    let resumed = SseReader::new(events(&second, &token, &run_id, Some("3")).await);
    let (from_start, resumed) = tokio::join!(from_start.collect(), resumed.collect());
    let finished = Instant::now();

    let replay = SseReader::new(events(&first, &token, &run_id, None).await)
        .collect()
        .await;
    assert_complete_run(&replay);
    assert_eq!(from_start, replay, "every event once, in order, done last");
    assert_eq!(resumed, replay[3..].to_vec());
    assert_eq!(run_status(&second, &run_id).await, "succeeded");
    // The run's end reached the other gateway by its signal, not by the slow re-check.
    let ended = ended_at(&first, &run_id).await;
    let lag = finished.duration_since(ended);
    assert!(lag < Duration::from_secs(3), "done came {lag:?} late");
    second.stop().await;
    first.stop().await;
}

/// When the run's `finished_at` was, as an `Instant` of this process.
async fn ended_at(app: &TestApp, run_id: &str) -> Instant {
    use sea_orm::EntityTrait;
    let run = entity::runs::Entity::find_by_id(run_id.to_string())
        .one(&app.state.db)
        .await
        .expect("run")
        .expect("exists");
    let ago = chrono::Utc::now() - run.finished_at.expect("finished").to_utc();
    Instant::now() - ago.to_std().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_signal_connection_loses_no_event() {
    let agent = FakeAgent::start().await;
    let Some((_shared, first, second)) = two_gateways(&agent).await else {
        return;
    };
    let token = first.token("alice");
    agent.push(paced_script(40, 100));
    let response = first
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    let run_id = run_id_of(&response);
    drop(response);
    let mut on_second = SseReader::new(events(&second, &token, &run_id, None).await);
    let mut frames = vec![on_second.next().await.expect("an event")];
    // Every listening connection of both gateways is cut in the middle of the run.
    let cut = first
        .state
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE '%LISTEN%' \
             AND pid <> pg_backend_pid()",
        ))
        .await
        .expect("terminate listeners");
    assert!(!cut.is_empty(), "the gateways listen");
    frames.extend(on_second.collect().await);
    let replay = SseReader::new(events(&first, &token, &run_id, None).await)
        .collect()
        .await;
    assert_complete_run(&replay);
    assert_eq!(frames, replay);
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_another_gateway_stops_the_run_at_once() {
    let agent = FakeAgent::start().await;
    let Some((_shared, first, second)) = two_gateways(&agent).await else {
        return;
    };
    let token = first.token("alice");
    let (run_id, _, reader) = start_slow_run(&first, &agent, &token).await;
    let cancel = second
        .http
        .post(second.url(&format!("/runs/{run_id}/cancel")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancel.status(), 202);
    // The next sweep is a minute away.
    tokio::time::timeout(
        Duration::from_secs(5),
        assert_run_cancelled(&first, &run_id, reader),
    )
    .await
    .expect("the runner stopped within seconds");
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_app_through_another_gateway_stops_its_run_at_once() {
    let agent = FakeAgent::start().await;
    let Some((_shared, first, second)) = two_gateways(&agent).await else {
        return;
    };
    let token = first.token("alice");
    let (run_id, app_id, reader) = start_slow_run(&first, &agent, &token).await;
    let deleted = second.delete(&format!("/apps/{app_id}"), &token).await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let frames = tokio::time::timeout(Duration::from_secs(5), reader.collect())
        .await
        .expect("the runner stopped within seconds");
    let tail = kinds(&frames);
    assert_eq!(&tail[tail.len() - 2..], &["error", "done"], "{tail:?}");
    assert_eq!(run_status(&first, &run_id).await, "cancelled");
    second.stop().await;
    first.stop().await;
}

/// A lone gateway's log writer announces nothing (its relay costs what it did before); a
/// second gateway's arrival turns announcements on in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_announced_only_while_another_gateway_is_live() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let agent = FakeAgent::start().await;
    let shared = SharedState::start().await;
    let config = format!("{}{}", agent.config(""), shared.toml);
    let first = spawn_app_with(DbKind::Postgres, &config).await;
    assert!(!first.state.runs.peers().present(), "alone");
    let second = first.spawn_peer(&config).await;
    assert!(
        second.state.runs.peers().present(),
        "found the first at start"
    );
    let heard = async {
        while !first.state.runs.peers().present() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), heard)
        .await
        .expect("the first heard the second join");
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_keeping_state_on_its_disk_cannot_join() {
    let agent = FakeAgent::start().await;
    let Some((shared, first, second)) = two_gateways(&agent).await else {
        return;
    };
    second.stop().await;

    // The embedded defaults: local storage, a generated secret, local git.
    let refusal = first.peer_refusal(&agent.config("")).await;
    assert!(refusal.contains("keeps state on its own disk"), "{refusal}");
    for setting in ["storage.kind", "auth.hs256_secret", "git.host"] {
        assert!(refusal.contains(setting), "{refusal}");
    }
    assert!(!refusal.contains('\n'), "one line: {refusal}");

    let other_secret = shared.toml.replace(
        "a-secret-every-gateway-of-this-test-shares",
        "another-secret-of-thirty-two-characters",
    );
    let refusal = first.peer_refusal(&other_secret).await;
    assert!(refusal.contains("other secrets"), "{refusal}");

    // A shared git directory is fine when it says so.
    let git = tempfile::tempdir().expect("git dir");
    let shared_git = shared.toml.replace(
        "[git]\nhost = \"none\"\n",
        &format!(
            "[git]\nhost = \"local\"\nlocal_dir = {:?}\nlocal_shared = true\n",
            git.path().display().to_string()
        ),
    );
    let third = first.spawn_peer(&shared_git).await;
    third.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cannot_join_one_that_keeps_state_on_its_disk() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let shared = SharedState::start().await;
    let alone = spawn_app_with(DbKind::Postgres, "").await;
    let refusal = alone.peer_refusal(&shared.toml).await;
    assert!(
        refusal.contains("keeps state on its own disk") && refusal.contains("storage.kind"),
        "{refusal}"
    );
    alone.stop().await;
}
