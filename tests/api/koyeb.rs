//! Koyeb: the deployer in git mode against the stateful Koyeb fake, then the whole gateway on
//! Koyeb (fake GitHub for the repository, the built-in demo agent): live outcome in the run's
//! stream, the status route, retries, unknown statuses, deadlines, and image mode with a fake
//! build tool and moto as ECR.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentgate::deploy::koyeb::{
    KoyebDeployer, KoyebMode, KoyebSettings, STATE_APP_ID, STATE_DEPLOYMENT_ID, STATE_SERVICE_ID,
};
use agentgate::deploy::provider::{
    DeployError, DeployRequest, Deployer, ProviderState, ProviderStatus, RepositoryInfo,
};
use agentgate::files::{FileEntry, FileMode, FileTree};
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::db_test;
use crate::ecr::Moto;
use crate::fake_github::{FakeGitHub, PERSONAL_TOKEN, USER};
use crate::fake_koyeb::{FakeKoyeb, TOKEN};
use crate::helpers::{assert_complete_run, spawn_app_with, DbKind, Frame, SseReader, TestApp};

const DB_SECRET: &str = "postgres://app:S3cretDbPassw0rd@db.internal/app";

// ---------------------------------------------------------------------------------------------
// Helpers shared with the other deployment tests
// ---------------------------------------------------------------------------------------------

pub fn new_app_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn tree(files: &[(&str, &str, FileMode)]) -> FileTree {
    files
        .iter()
        .map(|(path, content, mode)| {
            (
                path.to_string(),
                FileEntry {
                    content: content.as_bytes().to_vec(),
                    mode: *mode,
                },
            )
        })
        .collect()
}

pub fn request(app_id: &str, version: i32, env: &[(&str, &str)]) -> DeployRequest {
    DeployRequest {
        deployment_id: uuid::Uuid::new_v4().to_string(),
        app_id: app_id.to_string(),
        version,
        files: tree(&[
            ("Dockerfile", "FROM scratch\n", FileMode::Regular),
            ("bin/start.sh", "#!/bin/sh\necho hi\n", FileMode::Executable),
        ]),
        repository: Some(RepositoryInfo {
            url: "https://github.com/acme/shop.git".to_string(),
            branch: "main".to_string(),
            commit_sha: Some(format!("{version:040}")),
        }),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        log: Default::default(),
    }
}

/// Polls until the status is neither Building nor Deploying, collecting every status seen.
pub async fn poll_until_settled(
    deployer: &dyn Deployer,
    request: &DeployRequest,
    state: &ProviderState,
    limit: Duration,
) -> Vec<ProviderStatus> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let status = deployer.poll(request, state).await.expect("poll");
        let settled = !matches!(status, ProviderStatus::Building | ProviderStatus::Deploying);
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if settled || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settings(url: &str) -> KoyebSettings {
    let mut settings = KoyebSettings::new(SecretString::from(TOKEN), KoyebMode::Git);
    settings.api_base = url.to_string();
    settings.retry_base_delay = Duration::from_millis(10);
    settings
}

fn deployer(fake: &FakeKoyeb) -> KoyebDeployer {
    KoyebDeployer::new(settings(&fake.url), None, None).expect("deployer")
}

fn hex12(app_id: &str) -> String {
    app_id.replace('-', "")[..12].to_string()
}

// ---------------------------------------------------------------------------------------------
// The deployer against the fake
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn git_mode_creates_app_and_service_and_reaches_healthy() {
    let fake = FakeKoyeb::start().await;
    let koyeb = deployer(&fake);
    assert_eq!(koyeb.provider(), "koyeb");
    assert!(
        koyeb.needs_repository(),
        "git mode builds from the repository"
    );
    let app_id = new_app_id();
    let req = request(&app_id, 1, &[("APP_DATABASE_URL", DB_SECRET)]);
    let mut state = ProviderState::new();

    koyeb.start(&req, &mut state).await.expect("start");

    // Once the service exists, its app's domain is read: the URL the app gets at once.
    let koyeb_app = state[STATE_APP_ID].as_str().expect("app id").to_string();
    assert_eq!(
        fake.calls(),
        vec![
            "GET /v1/apps".to_string(),
            "POST /v1/apps".to_string(),
            "GET /v1/services".to_string(),
            "POST /v1/services".to_string(),
            format!("GET /v1/apps/{koyeb_app}")
        ]
    );
    let agents: BTreeSet<String> = fake.requests().into_iter().map(|r| r.user_agent).collect();
    assert_eq!(
        agents,
        BTreeSet::from([agentgate::USER_AGENT.to_string()]),
        "agentgate names itself"
    );
    let name = format!("ag-{}", hex12(&app_id));
    assert_eq!(
        state[agentgate::deploy::runner::STATE_URL],
        format!("https://{name}-fake.koyeb.app").as_str()
    );
    assert_eq!(fake.app_names(), vec![name.clone()]);
    assert_eq!(fake.service_names(), vec![name.clone()]);
    for key in [STATE_APP_ID, STATE_SERVICE_ID, STATE_DEPLOYMENT_ID] {
        assert!(state.get(key).and_then(|v| v.as_str()).is_some(), "{key}");
    }

    // The definition follows Koyeb's shape and carries the env.
    let definition = &fake.definitions()[0];
    assert_eq!(definition["type"], "WEB");
    assert_eq!(definition["name"], name.as_str());
    assert_eq!(definition["git"]["repository"], "github.com/acme/shop");
    assert_eq!(definition["git"]["branch"], "main");
    assert_eq!(definition["git"]["sha"], format!("{:040}", 1));
    assert_eq!(definition["ports"][0]["port"], 8000);
    assert_eq!(definition["routes"][0]["path"], "/");
    // The app has a Dockerfile: Koyeb is told to build it, and checks the port it serves.
    assert_eq!(definition["git"]["docker"]["dockerfile"], "Dockerfile");
    assert!(definition["git"].get("build_command").is_none());
    assert_eq!(definition["health_checks"][0]["tcp"]["port"], 8000);
    let env = &fake.env_seen()[0];
    assert_eq!(
        env.get("APP_DATABASE_URL").map(String::as_str),
        Some(DB_SECRET)
    );
    assert_eq!(env.get("PORT").map(String::as_str), Some("8000"));

    let seen = poll_until_settled(&koyeb, &req, &state, Duration::from_secs(10)).await;
    let url = format!("https://{name}-fake.koyeb.app");
    assert_eq!(seen.last(), Some(&ProviderStatus::Healthy { url }));
    assert!(seen.contains(&ProviderStatus::Building), "{seen:?}");
    assert!(seen.contains(&ProviderStatus::Deploying), "{seen:?}");

    // Secrets reached Koyeb but were never echoed back, and are not in our state.
    for recorded in fake.requests() {
        assert!(
            !recorded.response.contains("S3cretDbPassw0rd"),
            "{}",
            recorded.path
        );
    }
    assert!(!format!("{state:?}").contains("S3cretDbPassw0rd"));
    assert!(!format!("{koyeb_settings:?}", koyeb_settings = settings(&fake.url)).contains(TOKEN));

    // Starting the same deployment again is a no-op.
    let before = fake.requests().len();
    koyeb.start(&req, &mut state).await.expect("start again");
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test]
async fn second_version_reuses_app_and_service() {
    let fake = FakeKoyeb::start().await;
    let koyeb = deployer(&fake);
    let app_id = new_app_id();
    let first = request(&app_id, 1, &[]);
    let mut first_state = ProviderState::new();
    koyeb
        .start(&first, &mut first_state)
        .await
        .expect("start v1");
    poll_until_settled(&koyeb, &first, &first_state, Duration::from_secs(10)).await;

    let second = request(&app_id, 2, &[]);
    let mut second_state = ProviderState::new();
    let calls_before = fake.calls().len();
    koyeb
        .start(&second, &mut second_state)
        .await
        .expect("start v2");

    let calls = fake.calls()[calls_before..].to_vec();
    let service_id = first_state[STATE_SERVICE_ID].as_str().expect("service id");
    assert_eq!(
        calls,
        // The app is found by name: no creation that would depend on a duplicate's wording.
        vec![
            "GET /v1/apps".to_string(),
            "GET /v1/services".to_string(),
            format!("PATCH /v1/services/{service_id}"),
            format!(
                "GET /v1/apps/{}",
                first_state[STATE_APP_ID].as_str().expect("app id")
            ),
        ]
    );
    assert_eq!(fake.app_names().len(), 1);
    assert_eq!(fake.service_names().len(), 1);
    assert_eq!(fake.deployment_count(), 2);
    assert_eq!(second_state[STATE_APP_ID], first_state[STATE_APP_ID]);
    assert_eq!(
        second_state[STATE_SERVICE_ID],
        first_state[STATE_SERVICE_ID]
    );
    assert_ne!(
        second_state[STATE_DEPLOYMENT_ID],
        first_state[STATE_DEPLOYMENT_ID]
    );
    assert_eq!(fake.definitions()[1]["git"]["sha"], format!("{:040}", 2));
    let seen = poll_until_settled(&koyeb, &second, &second_state, Duration::from_secs(10)).await;
    assert!(
        matches!(seen.last(), Some(ProviderStatus::Healthy { .. })),
        "{seen:?}"
    );
}

/// Every documented status, as the fake reports it, through `poll`.
#[tokio::test]
async fn every_koyeb_status_is_mapped() {
    let fake = FakeKoyeb::start_with_step(Duration::from_millis(1)).await;
    let koyeb = deployer(&fake);
    let app_id = new_app_id();
    let url = format!("https://ag-{}-fake.koyeb.app", hex12(&app_id));
    let live = ProviderStatus::Healthy { url };
    let failed = |status: &str| ProviderStatus::Failed {
        reason: format!("Koyeb deployment ended with status {status}"),
    };
    let table = vec![
        ("PENDING", ProviderStatus::Building),
        ("PROVISIONING", ProviderStatus::Building),
        ("SCHEDULED", ProviderStatus::Deploying),
        ("ALLOCATING", ProviderStatus::Deploying),
        ("STARTING", ProviderStatus::Deploying),
        ("DEGRADED", ProviderStatus::Deploying),
        ("HEALTHY", live.clone()),
        ("SLEEPING", live),
        ("UNHEALTHY", failed("UNHEALTHY")),
        ("ERRORING", failed("ERRORING")),
        ("ERROR", failed("ERROR")),
        ("CANCELING", failed("CANCELING")),
        ("CANCELED", failed("CANCELED")),
        ("STOPPING", failed("STOPPING")),
        ("STOPPED", failed("STOPPED")),
        ("STASHED", failed("STASHED")),
        ("WIBBLE", ProviderStatus::Unknown("WIBBLE".to_string())),
    ];
    for (status, expected) in table {
        fake.script_next_deployment(vec![status]);
        let req = request(&app_id, 1, &[]);
        let mut state = ProviderState::new();
        koyeb.start(&req, &mut state).await.expect("start");
        let got = koyeb.poll(&req, &state).await.expect("poll");
        assert_eq!(got, expected, "{status}");
    }
}

#[tokio::test]
async fn failure_reason_comes_from_deployment_messages() {
    let fake = FakeKoyeb::start_with_step(Duration::from_millis(5)).await;
    let koyeb = deployer(&fake);
    fake.script_next_deployment_with_messages(
        vec!["PENDING", "PROVISIONING", "ERROR"],
        vec![
            "Build failed: npm ERR! missing script: start",
            &format!("env was {DB_SECRET}"),
        ],
    );
    let req = request(&new_app_id(), 1, &[("APP_DATABASE_URL", DB_SECRET)]);
    let mut state = ProviderState::new();
    koyeb.start(&req, &mut state).await.expect("start");
    let seen = poll_until_settled(&koyeb, &req, &state, Duration::from_secs(10)).await;
    match seen.last() {
        Some(ProviderStatus::Failed { reason }) => {
            assert!(reason.contains("missing script: start"), "{reason}");
            assert!(reason.contains("[redacted]"), "{reason}");
            assert!(!reason.contains("S3cretDbPassw0rd"), "{reason}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_status_is_reported_raw() {
    let fake = FakeKoyeb::start_with_step(Duration::from_millis(5)).await;
    let koyeb = deployer(&fake);
    fake.unknown_status_next("WIBBLE");
    let req = request(&new_app_id(), 1, &[]);
    let mut state = ProviderState::new();
    koyeb.start(&req, &mut state).await.expect("start");
    let seen = poll_until_settled(&koyeb, &req, &state, Duration::from_secs(10)).await;
    assert_eq!(seen.last(), Some(&ProviderStatus::Unknown("WIBBLE".into())));
}

#[tokio::test]
async fn a_hanging_deployment_keeps_deploying() {
    let fake = FakeKoyeb::start_with_step(Duration::from_millis(5)).await;
    let koyeb = deployer(&fake);
    fake.hang_next();
    let req = request(&new_app_id(), 1, &[]);
    let mut state = ProviderState::new();
    koyeb.start(&req, &mut state).await.expect("start");
    let seen = poll_until_settled(&koyeb, &req, &state, Duration::from_millis(400)).await;
    assert_eq!(seen.last(), Some(&ProviderStatus::Deploying), "{seen:?}");
}

#[tokio::test]
async fn server_errors_are_transient_then_succeed() {
    let fake = FakeKoyeb::start().await;
    let koyeb = deployer(&fake); // 3 tries per call
    fake.fail_next(4, 500);
    let req = request(&new_app_id(), 1, &[]);
    let mut state = ProviderState::new();

    match koyeb.start(&req, &mut state).await {
        Err(DeployError::Transient(message)) => assert!(message.contains("500"), "{message}"),
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 3);
    assert!(fake.app_names().is_empty());

    // The runner tries again: one more 500 is absorbed by the client's own retry.
    koyeb.start(&req, &mut state).await.expect("second start");
    let seen = poll_until_settled(&koyeb, &req, &state, Duration::from_secs(10)).await;
    assert!(
        matches!(seen.last(), Some(ProviderStatus::Healthy { .. })),
        "{seen:?}"
    );
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let fake = FakeKoyeb::start().await;
    let koyeb = deployer(&fake);
    fake.fail_next(1, 429);
    let req = request(&new_app_id(), 1, &[]);
    let mut state = ProviderState::new();
    let started = Instant::now();
    koyeb.start(&req, &mut state).await.expect("start");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 honoured"
    );
    assert_eq!(fake.requests()[0].status, 429);
}

#[tokio::test]
async fn validation_errors_are_permanent_and_not_retried() {
    let fake = FakeKoyeb::start().await;
    let koyeb = deployer(&fake);
    fake.fail_next(1, 400);
    let req = request(&new_app_id(), 1, &[]);
    let mut state = ProviderState::new();
    assert!(matches!(
        koyeb.start(&req, &mut state).await,
        Err(DeployError::Permanent(_))
    ));
    assert_eq!(fake.requests().len(), 1);

    // A definition Koyeb rejects (empty region) is permanent, with Koyeb's field error.
    let mut bad = settings(&fake.url);
    bad.region = String::new();
    let rejected = KoyebDeployer::new(bad, None, None).expect("deployer");
    let before = fake.requests().len();
    match rejected
        .start(&request(&new_app_id(), 1, &[]), &mut ProviderState::new())
        .await
    {
        Err(DeployError::Permanent(message)) => {
            assert!(
                message.contains("400") && message.contains("regions"),
                "{message}"
            )
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    let calls = fake.calls()[before..].to_vec();
    assert_eq!(
        calls,
        vec![
            "GET /v1/apps",
            "POST /v1/apps",
            "GET /v1/services",
            "POST /v1/services"
        ]
    );

    let mut state = ProviderState::new();
    let mut no_repo = request(&new_app_id(), 1, &[]);
    no_repo.repository = None;
    let before = fake.requests().len();
    match koyeb.start(&no_repo, &mut state).await {
        Err(DeployError::Permanent(message)) => {
            assert!(message.contains("repository"), "{message}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), before, "rejected before any call");
    let bad_env = request(&new_app_id(), 1, &[("NOT-VALID", "x")]);
    assert!(matches!(
        koyeb.start(&bad_env, &mut ProviderState::new()).await,
        Err(DeployError::Permanent(_))
    ));
}

#[tokio::test]
async fn a_rejected_token_is_permanent_and_never_echoed() {
    let fake = FakeKoyeb::start().await;
    let mut wrong = settings(&fake.url);
    wrong.token = SecretString::from("wrong-token-value-123");
    let koyeb = KoyebDeployer::new(wrong, None, None).expect("deployer");
    let req = request(&new_app_id(), 1, &[]);
    match koyeb.start(&req, &mut ProviderState::new()).await {
        Err(DeployError::Permanent(message)) => {
            assert!(message.contains("401"), "{message}");
            assert!(!message.contains("wrong-token-value-123"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn destroy_removes_service_and_app() {
    let fake = FakeKoyeb::start().await;
    let koyeb = deployer(&fake);
    let app_id = new_app_id();
    let req = request(&app_id, 1, &[]);
    koyeb
        .start(&req, &mut ProviderState::new())
        .await
        .expect("start");
    // Another app must survive.
    let other = new_app_id();
    koyeb
        .start(&request(&other, 1, &[]), &mut ProviderState::new())
        .await
        .expect("start other");

    koyeb.destroy(&app_id).await.expect("destroy");
    assert_eq!(fake.app_names(), vec![format!("ag-{}", hex12(&other))]);
    assert_eq!(fake.service_names(), vec![format!("ag-{}", hex12(&other))]);
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("DELETE /v1/services/")),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("DELETE /v1/apps/")),
        "{calls:?}"
    );

    // Nothing left: still fine.
    koyeb.destroy(&app_id).await.expect("destroy again");
    assert!(matches!(
        koyeb.destroy("not-a-uuid").await,
        Err(DeployError::Permanent(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// The gateway on Koyeb
// ---------------------------------------------------------------------------------------------

pub const BUILD: &str = "build a todo list app";

/// Gateway config: Koyeb (git mode) at the fake, GitHub at its fake, fast polling. `deploy`
/// adds `[deploy]` keys; `extra` adds whole sections.
pub fn koyeb_git_config(
    koyeb: &FakeKoyeb,
    github: &FakeGitHub,
    deploy: &str,
    extra: &str,
) -> String {
    format!(
        "[deploy]\nprovider = \"koyeb\"\npoll_interval_ms = 50\nstream_wait_secs = 60\n{deploy}\n\
         [koyeb]\napi_base = {:?}\ntoken = {TOKEN:?}\nmode = \"git\"\nretry_base_delay_ms = 20\n\
         [git]\nhost = \"github\"\napi_base = {:?}\nowner = {USER:?}\ntoken = {PERSONAL_TOKEN:?}\nmax_retries = 1\n\
         {extra}\n",
        koyeb.url, github.url
    )
}

/// Sends a message to the (fast) demo agent and reads the whole run.
pub async fn run(app: &TestApp, token: &str, message: &str, app_id: Option<&str>) -> Vec<Frame> {
    let mut body = json!({"message": message, "settings": {"demo": {"eventDelayMs": 0}}});
    if let Some(id) = app_id {
        body["applicationId"] = json!(id);
    }
    let response = app.post_message(token, &body).await;
    assert_eq!(response.status(), 200, "{message}");
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    frames
}

pub fn app_id_of(frames: &[Frame]) -> String {
    frames[0].data["appId"]
        .as_str()
        .expect("app id")
        .to_string()
}

/// `metadata.type` of every PlatformMessage, in stream order.
pub fn metadata_types(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| {
            crate::helpers::notice_kind(&f.data)
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// The metadata of the (last) PlatformMessage of this type.
pub fn notice(frames: &[Frame], kind: &str) -> Value {
    frames
        .iter()
        .rev()
        .map(|f| &f.data["message"]["metadata"])
        .find(|m| crate::helpers::notice_kind_of(m) == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} in {:?}", metadata_types(frames)))
}

/// The deployment notices of a run: in progress first, then exactly one outcome.
fn assert_deploy_notices(frames: &[Frame], outcome: &str) {
    let types: Vec<String> = metadata_types(frames)
        .into_iter()
        .filter(|t| t.starts_with("deployment_"))
        .collect();
    assert_eq!(types, vec!["deployment_in_progress", outcome], "{types:?}");
}

pub async fn status_of(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.get(&format!("/deployment-status/{id}"), token).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

pub async fn app_view(app: &TestApp, token: &str, app_id: &str) -> Value {
    let response = app.get(&format!("/apps/{app_id}"), token).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// The app's finer `deploymentStatus` settles on `want` (the worker records it right after the
/// run's stream got the outcome).
pub async fn wait_for_app_status(app: &TestApp, token: &str, app_id: &str, want: &str) -> Value {
    let mut view = Value::Null;
    for _ in 0..100 {
        view = app_view(app, token, app_id).await;
        if view["deploymentStatus"] == want {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("app {app_id} never reached deploymentStatus {want}: {view}");
}

/// The Koyeb ids in the fake's answers to the first app and service creation.
fn created_ids(koyeb: &FakeKoyeb) -> (String, String) {
    let requests = koyeb.requests();
    let answer = |call: &str| -> Value {
        let recorded = requests
            .iter()
            .find(|r| format!("{} {}", r.method, r.path) == call && r.status == 200)
            .unwrap_or_else(|| panic!("no successful {call}"));
        serde_json::from_str(&recorded.response).expect("json answer")
    };
    let app = answer("POST /v1/apps")["app"]["id"]
        .as_str()
        .expect("app id")
        .to_string();
    let deployment = answer("POST /v1/services")["service"]["latest_deployment_id"]
        .as_str()
        .expect("deployment id")
        .to_string();
    (app, deployment)
}

async fn koyeb_run_deploys_and_reports_healthy(kind: DbKind) {
    let koyeb = FakeKoyeb::start().await;
    let github = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &koyeb_git_config(&koyeb, &github, "", "")).await;
    let token = app.token("alice");

    let frames = run(&app, &token, BUILD, None).await;
    let app_id = app_id_of(&frames);
    assert_deploy_notices(&frames, "deployment_complete");
    let url = format!("https://ag-{}-fake.koyeb.app", hex12(&app_id));
    let complete = notice(&frames, "deployment_complete");
    assert_eq!(complete["deploymentUrl"], url.as_str(), "{complete}");

    // App, service and its domain (the app's URL from then on), then deployment polls until
    // healthy, then the app for its domain.
    let (koyeb_app, deployment) = created_ids(&koyeb);
    let calls = koyeb.calls();
    assert_eq!(
        calls[..5],
        [
            "GET /v1/apps".to_string(),
            "POST /v1/apps".to_string(),
            "GET /v1/services".to_string(),
            "POST /v1/services".to_string(),
            format!("GET /v1/apps/{koyeb_app}")
        ],
        "{calls:#?}"
    );
    let polls = &calls[5..calls.len() - 1];
    assert!(polls.len() >= 2, "{calls:#?}");
    assert!(
        polls
            .iter()
            .all(|c| *c == format!("GET /v1/deployments/{deployment}")),
        "{calls:#?}"
    );
    assert_eq!(calls.last(), Some(&format!("GET /v1/apps/{koyeb_app}")));

    // Koyeb builds the version's commit from the app's repository.
    let view = wait_for_app_status(&app, &token, &app_id, "healthy").await;
    assert_eq!(view["appUrl"], url.as_str());
    let repo = view["appName"]
        .as_str()
        .expect("repository name")
        .to_string();
    let definition = &koyeb.definitions()[0];
    assert_eq!(definition["name"], format!("ag-{}", hex12(&app_id)));
    let repository = definition["git"]["repository"]
        .as_str()
        .expect("repository");
    assert!(
        repository.ends_with(&format!("/{USER}/{repo}")),
        "{repository}"
    );
    assert_eq!(definition["git"]["branch"], "main");
    let head = github.head(USER, &repo, "main").expect("pushed");
    assert_eq!(definition["git"]["sha"], head.as_str());
    let env = &koyeb.env_seen()[0];
    assert_eq!(
        env.keys().collect::<Vec<_>>(),
        vec!["PORT"],
        "no database configured"
    );

    let status = status_of(&app, &token, &app_id).await;
    assert_eq!(status["type"], "HEALTHY", "{status}");
    assert_eq!(status["status"], "healthy");
    assert_eq!(status["isDeployed"], true);
    assert_eq!(status["url"], url.as_str());
    assert_eq!(status["error"], Value::Null);
    assert_eq!(github.homepage(USER, &repo).as_deref(), Some(url.as_str()));

    // The next version updates the same service, at the new commit.
    let frames = run(&app, &token, "rename it to Groceries", Some(&app_id)).await;
    assert_deploy_notices(&frames, "deployment_complete");
    assert_eq!(
        notice(&frames, "deployment_complete")["deploymentUrl"],
        url.as_str()
    );
    assert!(koyeb
        .calls()
        .iter()
        .any(|c| c.starts_with("PATCH /v1/services/")));
    assert_eq!(koyeb.app_names().len(), 1);
    assert_eq!(koyeb.service_names().len(), 1);
    let head = github.head(USER, &repo, "main").expect("pushed");
    assert_eq!(koyeb.definitions()[1]["git"]["sha"], head.as_str());
    assert_eq!(status_of(&app, &token, &app_id).await["version"], 2);
    app.stop().await;
}
db_test!(koyeb_run_deploys_and_reports_healthy);

async fn koyeb_failure_reason_reaches_the_stream(kind: DbKind) {
    let koyeb = FakeKoyeb::start().await;
    let github = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &koyeb_git_config(&koyeb, &github, "", "")).await;
    let token = app.token("alice");
    koyeb.script_next_deployment_with_messages(
        vec!["PENDING", "ERROR"],
        vec![
            "Build failed: npm ERR! missing script: start",
            "Exit code 1",
        ],
    );

    let frames = run(&app, &token, BUILD, None).await;
    let app_id = app_id_of(&frames);
    assert_deploy_notices(&frames, "deployment_failed");
    let reason = notice(&frames, "deployment_failed")["reason"]
        .as_str()
        .expect("reason")
        .to_string();
    assert_eq!(
        reason,
        "Koyeb deployment ERROR: Build failed: npm ERR! missing script: start; Exit code 1"
    );

    let status = status_of(&app, &token, &app_id).await;
    assert_eq!(status["type"], "ERROR", "{status}");
    assert_eq!(status["status"], "failed");
    assert_eq!(status["isDeployed"], false);
    assert_eq!(status["error"], reason.as_str());
    let view = wait_for_app_status(&app, &token, &app_id, "failed").await;
    assert_eq!(view["appUrl"], Value::Null);
    app.stop().await;
}
db_test!(koyeb_failure_reason_reaches_the_stream);

async fn koyeb_server_errors_are_retried(kind: DbKind) {
    let koyeb = FakeKoyeb::start().await;
    let github = FakeGitHub::start().await;
    let app = spawn_app_with(kind, &koyeb_git_config(&koyeb, &github, "", "")).await;
    let token = app.token("alice");
    // Three tries per call: the first start gives up, the job runner's retry gets through.
    koyeb.fail_next(4, 500);

    let frames = run(&app, &token, BUILD, None).await;
    let app_id = app_id_of(&frames);
    assert_deploy_notices(&frames, "deployment_complete");
    let requests = koyeb.requests();
    let first: Vec<(String, u16)> = requests[..6]
        .iter()
        .map(|r| (format!("{} {}", r.method, r.path), r.status))
        .collect();
    let find = "GET /v1/apps".to_string();
    assert_eq!(
        first,
        vec![
            (find.clone(), 500),
            (find.clone(), 500),
            (find.clone(), 500),
            (find.clone(), 500),
            (find, 200),
            ("POST /v1/apps".to_string(), 200),
        ]
    );
    assert_eq!(koyeb.app_names().len(), 1);
    let status = status_of(&app, &token, &app_id).await;
    assert_eq!(status["type"], "HEALTHY", "{status}");
    assert_eq!(
        status["error"],
        Value::Null,
        "a retried error is not the outcome"
    );
    app.stop().await;
}
db_test!(koyeb_server_errors_are_retried);

async fn koyeb_unknown_status_fails_after_the_wait(kind: DbKind) {
    let koyeb = FakeKoyeb::start().await;
    let github = FakeGitHub::start().await;
    let config = koyeb_git_config(&koyeb, &github, "unknown_status_wait_secs = 1", "");
    let app = spawn_app_with(kind, &config).await;
    let token = app.token("alice");
    koyeb.unknown_status_next("WIBBLE");

    let started = Instant::now();
    let frames = run(&app, &token, BUILD, None).await;
    let app_id = app_id_of(&frames);
    assert_deploy_notices(&frames, "deployment_failed");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let reason = notice(&frames, "deployment_failed")["reason"].clone();
    assert_eq!(
        reason,
        "the provider kept reporting an unknown status \"WIBBLE\""
    );
    let status = status_of(&app, &token, &app_id).await;
    assert_eq!(status["type"], "ERROR", "{status}");
    assert_eq!(status["error"], reason);
    wait_for_app_status(&app, &token, &app_id, "failed").await;
    app.stop().await;
}
db_test!(koyeb_unknown_status_fails_after_the_wait);

async fn koyeb_hanging_deployment_fails_at_its_deadline(kind: DbKind) {
    let koyeb = FakeKoyeb::start().await;
    let github = FakeGitHub::start().await;
    let config = koyeb_git_config(
        &koyeb,
        &github,
        "building_deadline_secs = 1\ndeploying_deadline_secs = 1",
        "",
    );
    let app = spawn_app_with(kind, &config).await;
    let token = app.token("alice");
    koyeb.hang_next();

    let frames = run(&app, &token, BUILD, None).await;
    let app_id = app_id_of(&frames);
    assert_deploy_notices(&frames, "deployment_failed");
    let reason = notice(&frames, "deployment_failed")["reason"]
        .as_str()
        .expect("reason")
        .to_string();
    assert_eq!(reason, "timed out: still deploying at its deadline");
    let status = status_of(&app, &token, &app_id).await;
    assert_eq!(status["type"], "ERROR", "{status}");
    // The app's own status is not left at "queued" either.
    wait_for_app_status(&app, &token, &app_id, "failed").await;

    // Nobody streams a manual deploy: its timeout lands in the app's history.
    koyeb.hang_next();
    let response = app
        .post_json(&format!("/apps/{app_id}/deploy"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["deploymentId"]
        .as_str()
        .expect("id")
        .to_string();
    let mut found = Value::Null;
    for _ in 0..150 {
        let history: Value = app
            .get(&format!("/apps/{app_id}/history"), &token)
            .await
            .json()
            .await
            .expect("json");
        if let Some(entry) = history
            .as_array()
            .expect("array")
            .iter()
            .find(|m| m["metadata"]["deploymentId"] == id.as_str())
        {
            found = entry.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        crate::helpers::notice_kind_of(&found["metadata"]),
        "deployment_failed",
        "{found}"
    );
    assert!(
        found["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("timed out")),
        "{found}"
    );
    assert_eq!(status_of(&app, &token, &id).await["type"], "ERROR");
    app.stop().await;
}
db_test!(koyeb_hanging_deployment_fails_at_its_deadline);

async fn koyeb_git_mode_waits_for_the_version_to_be_pushed(kind: DbKind) {
    let koyeb = FakeKoyeb::start().await;
    let github = FakeGitHub::start().await;
    let config = koyeb_git_config(&koyeb, &github, "", "").replace(
        "max_retries = 1\n",
        "max_retries = 1\nretry_interval_secs = 1\n",
    );
    let app = spawn_app_with(kind, &config).await;
    let token = app.token("alice");
    // GitHub is down while the run pushes; the git retry loop pushes a second later.
    github.fail_next(4, 502);

    let frames = run(&app, &token, BUILD, None).await;
    let app_id = app_id_of(&frames);
    let types = metadata_types(&frames);
    assert!(types.contains(&"commit_pending".to_string()), "{types:?}");
    assert_deploy_notices(&frames, "deployment_complete");
    let view = app_view(&app, &token, &app_id).await;
    let repo = view["appName"].as_str().expect("repository").to_string();
    let head = github
        .head(USER, &repo, "main")
        .expect("pushed by the retry");
    let definitions = koyeb.definitions();
    assert_eq!(definitions.len(), 1);
    assert_eq!(
        definitions[0]["git"]["sha"],
        head.as_str(),
        "Koyeb builds the version's own commit"
    );
    app.stop().await;
}
db_test!(koyeb_git_mode_waits_for_the_version_to_be_pushed);

// ---------------------------------------------------------------------------------------------
// Image mode: fake build tool, moto as ECR
// ---------------------------------------------------------------------------------------------

/// A build tool that records its args, cwd, registry user and the files it was given (with
/// their SHA-256); it fails the build while `fail_flag` exists.
struct FakeBuilder {
    _dir: tempfile::TempDir,
    script: PathBuf,
    record: PathBuf,
    fail_flag: PathBuf,
    /// Holds a number of seconds the build step sleeps.
    slow_flag: PathBuf,
    work: PathBuf,
}

impl FakeBuilder {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = dir.path().join("record.txt");
        let fail_flag = dir.path().join("fail");
        let slow_flag = dir.path().join("slow");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        let script = dir.path().join("fake-docker");
        let body = format!(
            r#"#!/bin/sh
rec='{record}'
{{
  echo "args:$*"
  echo "cwd:$(pwd)"
  echo "user:${{REGISTRY_USERNAME:-none}}"
  find . -type f | sort | while read -r f; do
    echo "file:${{f#./}}:$(sha256sum < "$f" | cut -d' ' -f1)"
  done
}} >> "$rec"
if [ "$1" = build ] && [ -e '{slow}' ]; then
  sleep "$(cat '{slow}')"
fi
if [ "$1" = build ] && [ -e '{fail}' ]; then
  echo "step 4/7: RUN npm ci"
  echo "FINAL ERROR: npm ci failed (token $REGISTRY_PASSWORD)" >&2
  exit 3
fi
exit 0
"#,
            record = record.display(),
            fail = fail_flag.display(),
            slow = slow_flag.display()
        );
        std::fs::write(&script, body).expect("script");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        Self {
            _dir: dir,
            script,
            record,
            fail_flag,
            slow_flag,
            work,
        }
    }

    /// Recorded lines, and forgets them.
    fn take(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        let _ = std::fs::remove_file(&self.record);
        text.lines().map(str::to_string).collect()
    }

    fn work_is_empty(&self) -> bool {
        std::fs::read_dir(&self.work).is_ok_and(|mut entries| entries.next().is_none())
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn koyeb_image_mode_builds_pushes_and_deploys(kind: DbKind) {
    let Some(moto) = Moto::start() else { return };
    let koyeb = FakeKoyeb::start().await;
    let builder = FakeBuilder::new();
    let config = format!(
        "[deploy]\nprovider = \"koyeb\"\npoll_interval_ms = 50\nstream_wait_secs = 60\n\
         queued_deadline_secs = 1\n\
         [koyeb]\napi_base = {:?}\ntoken = {TOKEN:?}\nmode = \"image\"\nretry_base_delay_ms = 20\n\
         builder_program = {:?}\nbuilder_work_dir = {:?}\nbuilder_timeout_secs = 60\n\
         [ecr]\nendpoint = {:?}\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\n\
         secret_access_key = \"testing-secret\"\nrepository_prefix = \"agentgate\"\n",
        koyeb.url,
        builder.script.display().to_string(),
        builder.work.display().to_string(),
        moto.url,
    );
    let app = spawn_app_with(kind, &config).await;
    let token = app.token("alice");

    let frames = run(&app, &token, BUILD, None).await;
    let app_id = app_id_of(&frames);
    assert_deploy_notices(&frames, "deployment_complete");
    assert_eq!(
        notice(&frames, "deployment_complete")["deploymentUrl"],
        format!("https://ag-{}-fake.koyeb.app", hex12(&app_id))
    );

    // build then push, in a private temp dir holding exactly the version's files.
    let lines = builder.take();
    let args: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("args:"))
        .collect();
    let cwd = lines
        .iter()
        .find_map(|l| l.strip_prefix("cwd:"))
        .expect("cwd recorded")
        .to_string();
    let image = &koyeb.definitions()[0]["docker"]["image"];
    let image = image.as_str().expect("image").to_string();
    let hex = app_id.replace('-', "");
    assert!(
        image.ends_with(&format!(".amazonaws.com/agentgate/{hex}:v1")),
        "{image}"
    );
    assert_eq!(
        args,
        vec![format!("build -t {image} {cwd}"), format!("push {image}")]
    );
    assert!(
        Path::new(&cwd).starts_with(&builder.work),
        "{cwd} is under the configured work dir"
    );
    assert!(
        lines.iter().filter(|l| *l == "user:AWS").count() == 2,
        "{lines:#?}"
    );
    let version = app
        .state
        .files
        .latest(&app_id)
        .await
        .expect("query")
        .expect("version");
    let files = app.state.files.load_tree(&version).await.expect("files");
    let expected: BTreeSet<String> = files
        .iter()
        .map(|(path, entry)| format!("file:{path}:{}", sha256_hex(&entry.content)))
        .collect();
    let seen: Vec<&String> = lines.iter().filter(|l| l.starts_with("file:")).collect();
    assert_eq!(seen.len(), 2 * expected.len(), "both steps saw the files");
    assert_eq!(seen.into_iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(!Path::new(&cwd).exists(), "the build dir is removed");
    assert!(builder.work_is_empty(), "nothing left in the work dir");

    // Koyeb pulls with the registry secret; the password is never echoed back.
    let definition = &koyeb.definitions()[0];
    assert_eq!(
        definition["docker"]["image_registry_secret"],
        "agentgate-registry"
    );
    assert!(definition.get("git").is_none());
    let secret = koyeb
        .secret_payload("agentgate-registry")
        .expect("registry secret");
    assert_eq!(secret["type"], "REGISTRY");
    assert_eq!(secret["private_registry"]["username"], "AWS");
    let password = secret["private_registry"]["password"]
        .as_str()
        .expect("password")
        .to_string();
    assert!(!password.is_empty());
    for recorded in koyeb.requests() {
        assert!(!recorded.response.contains(&password), "{}", recorded.path);
    }
    let status = status_of(&app, &token, &app_id).await;
    assert_eq!(status["type"], "HEALTHY", "{status}");
    assert!(!status.to_string().contains(&password));

    // A failing build fails the deployment with the build log's tail, password redacted, and
    // still leaves nothing behind.
    std::fs::write(&builder.fail_flag, "").expect("fail flag");
    let frames = run(&app, &token, "rename it to Groceries", Some(&app_id)).await;
    assert_deploy_notices(&frames, "deployment_failed");
    let reason = notice(&frames, "deployment_failed")["reason"]
        .as_str()
        .expect("reason")
        .to_string();
    assert!(reason.contains("build step 1 exited"), "{reason}");
    assert!(reason.contains("FINAL ERROR: npm ci failed"), "{reason}");
    assert!(reason.contains("[redacted]"), "{reason}");
    assert!(!reason.contains(&password), "{reason}");
    let lines = builder.take();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("args:")).count(),
        1,
        "no push after a failed build: {lines:#?}"
    );
    let cwd = lines
        .iter()
        .find_map(|l| l.strip_prefix("cwd:"))
        .expect("cwd");
    assert!(!Path::new(cwd).exists());
    assert!(builder.work_is_empty());
    assert_eq!(
        koyeb.definitions().len(),
        1,
        "Koyeb was not asked to deploy"
    );
    let status = status_of(&app, &token, &app_id).await;
    assert_eq!(status["type"], "ERROR", "{status}");
    assert_eq!(status["version"], 2);

    // A build slower than the queued deadline (1 s here) shows as building and is not
    // failed as overdue, even while someone keeps reading its status.
    std::fs::remove_file(&builder.fail_flag).expect("fail flag");
    std::fs::write(&builder.slow_flag, "3").expect("slow flag");
    let watch = async {
        let mut seen = Vec::new();
        for _ in 0..16 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let status = status_of(&app, &token, &app_id).await;
            if status["version"] == 3 {
                seen.push(status["status"].as_str().unwrap_or_default().to_string());
            }
        }
        seen
    };
    let (frames, seen) = tokio::join!(run(&app, &token, "add a dark mode", Some(&app_id)), watch);
    assert_deploy_notices(&frames, "deployment_complete");
    assert!(seen.iter().any(|s| s == "building"), "{seen:?}");
    let status = status_of(&app, &token, &app_id).await;
    assert_eq!(status["type"], "HEALTHY", "{status}");
    assert_eq!(status["version"], 3);
    app.stop().await;
}
db_test!(koyeb_image_mode_builds_pushes_and_deploys);

/// The demo agent's apps (and many agents') serve on the port their Dockerfile exposes: the
/// service's port, route, health check and `PORT` follow it; an app without a Dockerfile is
/// built with buildpacks on the configured port.
#[tokio::test]
async fn the_service_listens_where_the_app_does() {
    let fake = FakeKoyeb::start().await;
    let koyeb = deployer(&fake);
    let mut req = request(&new_app_id(), 1, &[]);
    req.files = tree(&[(
        "Dockerfile",
        "FROM nginx:alpine\nCOPY . /usr/share/nginx/html\nEXPOSE 80\n",
        FileMode::Regular,
    )]);
    koyeb
        .start(&req, &mut ProviderState::new())
        .await
        .expect("start");
    let definition = &fake.definitions()[0];
    assert_eq!(definition["ports"][0]["port"], 80);
    assert_eq!(definition["routes"][0]["port"], 80);
    assert_eq!(definition["health_checks"][0]["tcp"]["port"], 80);
    assert_eq!(
        fake.env_seen()[0].get("PORT").map(String::as_str),
        Some("80")
    );

    let mut req = request(&new_app_id(), 1, &[]);
    req.files = tree(&[("package.json", "{}", FileMode::Regular)]);
    koyeb
        .start(&req, &mut ProviderState::new())
        .await
        .expect("start");
    let definition = &fake.definitions()[1];
    assert_eq!(definition["ports"][0]["port"], 8000);
    assert!(definition["git"]["buildpack"].is_object(), "{definition}");
    assert!(definition["git"].get("docker").is_none());
}

/// The fake is as strict as Koyeb about health checks: one probing a port the app does not
/// listen on never passes, so the deployment fails instead of going live.
#[tokio::test]
async fn a_health_check_on_the_wrong_port_fails_the_deployment() {
    let fake = FakeKoyeb::start().await;
    let koyeb = deployer(&fake);
    let mut req = request(&new_app_id(), 1, &[("PORT", "3000")]);
    req.files = tree(&[("Dockerfile", "FROM node\nEXPOSE 80\n", FileMode::Regular)]);
    let mut state = ProviderState::new();
    koyeb.start(&req, &mut state).await.expect("start");
    let seen = poll_until_settled(&koyeb, &req, &state, Duration::from_secs(10)).await;
    assert!(
        matches!(seen.last(), Some(ProviderStatus::Failed { .. })),
        "{seen:?}"
    );
}
