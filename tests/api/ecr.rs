//! EcrRegistry against a moto server, and Koyeb image mode end to end at the deployer level
//! (fake Koyeb, moto as ECR, fake build tool), including the registry secret's refresh when
//! the ECR token expires. moto runs as `moto_server` from PATH (install with
//! `pip install 'moto[server]'`); without it these tests are skipped, unless CI=true.
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgate::deploy::builder::{ImageBuilder, ImageBuilderSettings};
use agentgate::deploy::ecr::{EcrRegistry, EcrSettings};
use agentgate::deploy::koyeb::{
    KoyebDeployer, KoyebMode, KoyebSettings, RegistrySecretRefresh, STATE_IMAGE,
};
use agentgate::deploy::provider::{DeployError, Deployer, ProviderState, ProviderStatus};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::fake_koyeb::{FakeKoyeb, TOKEN};
use crate::koyeb::{new_app_id, poll_until_settled, request};

/// False (and a note) when a service is missing locally; a failure under CI=true.
pub fn available(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required when CI=true");
    }
    eprintln!("skipping: {what} is not available");
    false
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// A moto server on a free port, killed when dropped.
pub struct Moto {
    pub url: String,
    child: Child,
    _recording: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Option<Self> {
        if !available(
            "moto_server (pip install 'moto[server]')",
            on_path("moto_server"),
        ) {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // The request recording (used to count calls) goes to a private file.
        let recording = tempfile::tempdir().expect("recording dir");
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env(
                "MOTO_RECORDER_FILEPATH",
                recording.path().join("moto_recording"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _recording: recording,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// How many recorded requests carried this `X-Amz-Target` operation.
    pub async fn count_operation(&self, operation: &str) -> usize {
        let text = reqwest::get(format!("{}/moto-api/recorder/download-recording", self.url))
            .await
            .expect("download recording")
            .text()
            .await
            .expect("recording text");
        text.lines().filter(|l| l.contains(operation)).count()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GET_TOKEN: &str = "GetAuthorizationToken";

fn registry(moto: &Moto) -> EcrRegistry {
    EcrRegistry::new(EcrSettings {
        region: "us-east-1".into(),
        endpoint: moto.url.clone(),
        access_key_id: "testing".into(),
        secret_access_key: SecretString::from("testing-secret"),
        repository_prefix: "agentgate".into(),
    })
}

/// A build tool that appends its arguments (and the registry user) to `dir/record.txt`.
fn recording_builder(dir: &Path) -> ImageBuilder {
    let script = dir.join("fake-docker");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$* user=$REGISTRY_USERNAME\" >> '{}'\n",
            dir.join("record.txt").display()
        ),
    )
    .expect("script");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    ImageBuilder::new(ImageBuilderSettings {
        program: script.display().to_string(),
        work_root: Some(dir.to_path_buf()),
        ..ImageBuilderSettings::default()
    })
}

#[tokio::test]
async fn repositories_and_authorization() {
    let Some(moto) = Moto::start() else { return };
    let ecr = registry(&moto);
    let app_id = new_app_id();
    let hex = app_id.replace('-', "");

    let first = ecr.ensure_repository(&app_id).await.expect("create");
    let second = ecr
        .ensure_repository(&app_id)
        .await
        .expect("already exists");
    assert_eq!(first, second);
    assert!(first.ends_with(&format!("/agentgate/{hex}")), "{first}");
    assert!(matches!(
        ecr.ensure_repository("../etc").await,
        Err(DeployError::Permanent(_))
    ));

    let auth = ecr.authorization().await.expect("token");
    assert_eq!(auth.username, "AWS");
    assert!(!auth.password.expose_secret().is_empty());
    assert!(
        auth.endpoint.ends_with(".dkr.ecr.us-east-1.amazonaws.com"),
        "{}",
        auth.endpoint
    );
    assert!(!auth.endpoint.starts_with("https://"));
    assert!(!format!("{auth:?}").contains(auth.password.expose_secret()));
    let again = ecr.authorization().await.expect("cached token");
    assert_eq!(
        again.password.expose_secret(),
        auth.password.expose_secret()
    );
    assert_eq!(
        moto.count_operation(GET_TOKEN).await,
        1,
        "second call served from cache"
    );
    // A fresh registry (no cache) asks again.
    registry(&moto).authorization().await.expect("token");
    assert_eq!(moto.count_operation(GET_TOKEN).await, 2);

    ecr.delete_repository(&app_id).await.expect("delete");
    ecr.delete_repository(&app_id)
        .await
        .expect("deleting a missing repository is fine");
    let recreated = ecr.ensure_repository(&app_id).await.expect("recreate");
    assert_eq!(recreated, first);
    ecr.delete_repository(&app_id).await.expect("delete");
}

#[tokio::test]
async fn unreachable_registry_is_transient() {
    let ecr = EcrRegistry::new(EcrSettings {
        region: "us-east-1".into(),
        endpoint: "http://127.0.0.1:9".into(),
        access_key_id: "testing".into(),
        secret_access_key: SecretString::from("testing-secret"),
        repository_prefix: String::new(),
    });
    match ecr.ensure_repository(&new_app_id()).await {
        Err(DeployError::Transient(message)) => assert!(!message.contains("testing-secret")),
        other => panic!("expected transient, got {other:?}"),
    }
}

#[tokio::test]
async fn koyeb_image_mode_builds_pushes_and_deploys() {
    let Some(moto) = Moto::start() else { return };
    let fake = FakeKoyeb::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("record.txt");
    let builder = recording_builder(dir.path());
    let ecr = Arc::new(registry(&moto));
    let mut settings = KoyebSettings::new(SecretString::from(TOKEN), KoyebMode::Image);
    settings.api_base = fake.url.clone();
    assert!(
        KoyebDeployer::new(settings.clone(), None, Some(ecr.clone())).is_err(),
        "image mode needs a builder"
    );
    let koyeb =
        KoyebDeployer::new(settings, Some(Arc::new(builder)), Some(ecr.clone())).expect("deployer");

    let app_id = new_app_id();
    let first = request(
        &app_id,
        1,
        &[("APP_DATABASE_URL", "postgres://x:PwPwPw@h/db")],
    );
    let mut state = ProviderState::new();
    koyeb.start(&first, &mut state).await.expect("start");

    let repository = ecr.ensure_repository(&app_id).await.expect("repository");
    let image = format!("{repository}:v1");
    assert_eq!(state[STATE_IMAGE], image.as_str());
    let lines = std::fs::read_to_string(&record).expect("record");
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("build -t {image} ")),
        "{lines:?}"
    );
    assert_eq!(lines[1], format!("push {image} user=AWS"));

    let definition = &fake.definitions()[0];
    assert_eq!(definition["docker"]["image"], image.as_str());
    assert_eq!(
        definition["docker"]["image_registry_secret"],
        "agentgate-registry"
    );
    assert!(definition.get("git").is_none());
    let secret = fake
        .secret_payload("agentgate-registry")
        .expect("registry secret");
    let auth = ecr.authorization().await.expect("auth");
    assert_eq!(secret["type"], "REGISTRY");
    assert_eq!(secret["private_registry"]["username"], "AWS");
    assert_eq!(
        secret["private_registry"]["password"],
        auth.password.expose_secret()
    );
    assert_eq!(secret["private_registry"]["url"], auth.endpoint.as_str());
    for recorded in fake.requests() {
        assert!(!recorded.response.contains(auth.password.expose_secret()));
    }
    let seen = poll_until_settled(&koyeb, &first, &state, Duration::from_secs(10)).await;
    assert!(
        matches!(seen.last(), Some(ProviderStatus::Healthy { .. })),
        "{seen:?}"
    );

    // A retried start does not rebuild; a new version reuses the secret (same token).
    koyeb.start(&first, &mut state).await.expect("retry");
    let second = request(&app_id, 2, &[]);
    koyeb
        .start(&second, &mut ProviderState::new())
        .await
        .expect("v2");
    let secret_writes = fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("POST /v1/secrets") || c.starts_with("PATCH /v1/secrets"))
        .count();
    assert_eq!(secret_writes, 1);
    assert_eq!(
        std::fs::read_to_string(&record)
            .expect("record")
            .lines()
            .count(),
        4
    );
    assert_eq!(
        fake.definitions()[1]["docker"]["image"],
        format!("{repository}:v2")
    );

    koyeb.destroy(&app_id).await.expect("destroy");
    assert!(fake.app_names().is_empty());
    assert!(ecr.delete_repository(&app_id).await.is_ok());
}

/// How old a token may get in the expiry tests. moto's tokens never change and "expired" in
/// 2015 (so they are cached for a minute); a maximum age makes them expire on cue instead.
const TOKEN_AGE: Duration = Duration::from_secs(2);

fn image_settings(fake: &FakeKoyeb) -> KoyebSettings {
    let mut settings = KoyebSettings::new(SecretString::from(TOKEN), KoyebMode::Image);
    settings.api_base = fake.url.clone();
    settings
}

#[tokio::test]
async fn an_expiring_ecr_token_is_renewed_into_the_koyeb_secret() {
    let Some(moto) = Moto::start() else { return };
    let fake = FakeKoyeb::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ecr = Arc::new(registry(&moto).with_max_token_age(TOKEN_AGE));
    let builder = Arc::new(recording_builder(dir.path()));
    let koyeb = KoyebDeployer::new(image_settings(&fake), Some(builder), Some(ecr.clone()))
        .expect("deployer");

    // Nothing deployed yet: a refresh creates no secret.
    assert_eq!(
        koyeb.refresh_registry_secret().await.expect("refresh"),
        RegistrySecretRefresh::Missing
    );
    assert!(fake.secret_names().is_empty());
    assert!(fake.secret_requests("POST").is_empty());
    assert!(fake.secret_requests("PATCH").is_empty());

    let app_id = new_app_id();
    koyeb
        .start(&request(&app_id, 1, &[]), &mut ProviderState::new())
        .await
        .expect("start");
    assert_eq!(
        fake.secret_requests("POST").len(),
        1,
        "the deployment creates it"
    );
    let tokens = moto.count_operation(GET_TOKEN).await;

    // The token Koyeb holds is now considered expired: the refresh renews it and PATCHes.
    tokio::time::sleep(TOKEN_AGE + Duration::from_millis(200)).await;
    assert_eq!(
        koyeb.refresh_registry_secret().await.expect("refresh"),
        RegistrySecretRefresh::Updated
    );
    assert_eq!(
        moto.count_operation(GET_TOKEN).await,
        tokens + 1,
        "a new token was requested"
    );
    let patches = fake.secret_requests("PATCH");
    assert_eq!(patches.len(), 1, "{:?}", fake.calls());
    let renewed = ecr.authorization().await.expect("renewed token");
    let sent = &patches[0].body;
    assert_eq!(sent["type"], "REGISTRY");
    assert_eq!(sent["name"], "agentgate-registry");
    assert_eq!(sent["private_registry"]["username"], "AWS");
    assert_eq!(
        sent["private_registry"]["password"],
        renewed.password.expose_secret()
    );
    assert_eq!(sent["private_registry"]["url"], renewed.endpoint.as_str());
    assert!(!patches[0]
        .response
        .contains(renewed.password.expose_secret()));
    assert_eq!(fake.secret_requests("POST").len(), 1, "never re-created");
    assert_eq!(fake.secret_names(), vec!["agentgate-registry".to_string()]);

    // Koyeb now holds the current token: nothing more to do until it expires.
    assert_eq!(
        koyeb.refresh_registry_secret().await.expect("refresh"),
        RegistrySecretRefresh::Current
    );
    assert_eq!(moto.count_operation(GET_TOKEN).await, tokens + 1);
    assert_eq!(fake.secret_requests("PATCH").len(), 1);

    koyeb.destroy(&app_id).await.expect("destroy");
}

#[tokio::test]
async fn the_refresh_loop_rewrites_the_secret_retries_failures_and_stops() {
    let Some(moto) = Moto::start() else { return };
    let fake = FakeKoyeb::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ecr = Arc::new(registry(&moto).with_max_token_age(Duration::from_secs(1)));
    let builder = Arc::new(recording_builder(dir.path()));
    let mut settings = image_settings(&fake);
    settings.max_attempts = 1;
    settings.registry_refresh_retry = Duration::from_millis(100);
    let koyeb = Arc::new(KoyebDeployer::new(settings, Some(builder), Some(ecr)).expect("deployer"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(koyeb.clone().keep_registry_secret_fresh(stop.clone()));

    // Before any image deployment the loop looks (at once, then as tokens expire) but
    // creates nothing.
    let lookups = || fake.secret_requests("GET").len();
    wait_until("two lookups of the secret", || lookups() >= 2).await;
    assert!(fake.secret_names().is_empty());
    assert!(fake.secret_requests("POST").is_empty());
    assert!(fake.secret_requests("PATCH").is_empty());

    let app_id = new_app_id();
    koyeb
        .start(&request(&app_id, 1, &[]), &mut ProviderState::new())
        .await
        .expect("start");
    assert_eq!(fake.secret_requests("POST").len(), 1);

    // Koyeb fails the next two calls: the loop logs, retries, and still gets the renewed token
    // through once the deployment's token has expired.
    fake.fail_next(2, 503);
    wait_until("the secret to be PATCHed", || {
        !fake.secret_requests("PATCH").is_empty()
    })
    .await;
    let failed: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(failed, vec!["GET /v1/secrets"; 2]);
    assert_eq!(fake.secret_requests("POST").len(), 1, "never re-created");
    assert!(moto.count_operation(GET_TOKEN).await >= 3);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the loop stops when told")
        .expect("the loop did not panic");
    koyeb.destroy(&app_id).await.expect("destroy");
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
