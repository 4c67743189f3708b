//! Tests that start the real `agentgate` binary: start-up output, config errors, a crash
//! (SIGKILL) mid-run followed by a restart, and SIGTERM.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::db_test;
use crate::fake_agent::{data_line, event, FakeAgent, Script, Step};
use crate::helpers::{assert_complete_run, drop_database, fresh_database, DbKind, SseReader};

pub(crate) struct Gateway {
    pub(crate) child: Child,
    pub(crate) address: String,
    pub(crate) token: String,
}

pub(crate) fn start_gateway(config: &std::path::Path) -> Gateway {
    start_gateway_with_env(config, &[])
}

/// [`start_gateway`] with extra environment variables.
pub(crate) fn start_gateway_with_env(config: &std::path::Path, env: &[(&str, &str)]) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["serve", "--config"])
        .arg(config)
        .env("AGENTGATE__LOG__LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn agentgate");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut address = None;
    let mut token = None;
    while address.is_none() || token.is_none() {
        let line = lines
            .next()
            .expect("agentgate exited early")
            .expect("read line");
        if let Some(rest) = line.strip_prefix("agentgate listening on ") {
            address = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("dev token (user \"dev\"): ") {
            token = Some(rest.trim().to_string());
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Gateway {
        child,
        address: address.unwrap_or_default(),
        token: token.unwrap_or_default(),
    }
}

pub(crate) fn write_config(
    dir: &std::path::Path,
    database_url: &str,
    agent: &FakeAgent,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("agentgate.toml");
    let toml = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[database]\nurl = {:?}\n{}\n{}",
        dir.join("data").display().to_string(),
        database_url,
        agent.config(""),
        extra
    );
    std::fs::write(&path, toml).expect("write config");
    path
}

fn slow_script() -> Script {
    let mut steps = Vec::new();
    for i in 0..600 {
        steps.push(Step::Send(data_line(&event(
            "running",
            "WipUpdate",
            Some(&format!("step {i}")),
        ))));
        steps.push(Step::Pause(Duration::from_millis(100)));
    }
    Script::steps(steps)
}

async fn crash_mid_run_is_recovered_on_restart(kind: DbKind) {
    let (database_url, pg) = fresh_database(kind).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FakeAgent::start().await;
    let config = write_config(dir.path(), &database_url, &agent, "");
    let mut gateway = start_gateway(&config);
    agent.push(slow_script());
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/message", gateway.address))
        .bearer_auth(&gateway.token)
        .json(&json!({"message": "build a todo app"}))
        .send()
        .await
        .expect("post");
    let run_id = response.headers()["x-run-id"]
        .to_str()
        .expect("id")
        .to_string();
    let mut reader = SseReader::new(response);
    reader.next().await.expect("first event");
    reader.next().await.expect("second event");
    gateway.child.kill().expect("SIGKILL");
    gateway.child.wait().expect("reap");
    drop(reader);

    let mut restarted = start_gateway(&config);
    let response = http
        .get(format!("{}/runs/{run_id}/events", restarted.address))
        .bearer_auth(&restarted.token)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);
    let error = &frames[frames.len() - 2];
    assert_eq!(error.event, "error");
    assert_eq!(error.data["code"], "run_interrupted");
    restarted.child.kill().ok();
    restarted.child.wait().ok();
    drop_database(pg).await;
}
db_test!(crash_mid_run_is_recovered_on_restart);

#[tokio::test]
async fn sigterm_interrupts_active_runs_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FakeAgent::start().await;
    let config = write_config(dir.path(), "", &agent, "[runs]\nshutdown_grace_secs = 1\n");
    let mut gateway = start_gateway(&config);
    agent.push(slow_script());
    let response = reqwest::Client::new()
        .post(format!("{}/message", gateway.address))
        .bearer_auth(&gateway.token)
        .json(&json!({"message": "build a todo app"}))
        .send()
        .await
        .expect("post");
    let mut reader = SseReader::new(response);
    let mut frames = vec![reader.next().await.expect("first event")];
    let pid = gateway.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    while let Some(frame) = reader.next().await {
        frames.push(frame);
    }
    assert_complete_run(&frames);
    assert_eq!(frames[frames.len() - 2].data["code"], "run_interrupted");
    let exit = tokio::task::spawn_blocking(move || gateway.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "graceful exit: {exit:?}");
}

#[test]
fn config_errors_stop_start_up_with_one_line() {
    for (key, value, expect) in [
        ("AGENTGATE__SERVER__BINDD", "x", "bindd"),
        ("AGENTGATE__AGENT__URL", "not a url", "agent.url"),
        ("AGENTGATE__AUTH__MODE", "jwks", "auth.jwks_url"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_agentgate"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(std::env::temp_dir().join("agentgate-config-test"))
            .env(key, value)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{key} must stop start-up");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expect), "{key}: {stderr}");
    }
}

#[test]
fn token_command_uses_the_same_secret_as_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["token", "--user", "alice", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(output.status.success());
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3);
    let secret = std::fs::read_to_string(dir.path().join("hs256.secret")).expect("secret");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(secret.trim().as_bytes()),
        &validation,
    )
    .expect("valid");
    assert_eq!(data.claims["sub"], "alice");
}

#[test]
fn command_line_flags_win_over_the_environment() {
    let flag_dir = tempfile::tempdir().expect("tempdir");
    let env_dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["token", "--user", "alice", "--data-dir"])
        .arg(flag_dir.path())
        .env("AGENTGATE__SERVER__DATA_DIR", env_dir.path())
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    assert!(flag_dir.path().join("hs256.secret").exists());
    assert!(!env_dir.path().join("hs256.secret").exists());
}

/// `serve --no-worker` hosts only the API: it starts without the deploy provider's or the
/// database provisioner's credentials, which `agentgate worker` still insists on.
#[test]
fn an_api_only_host_needs_no_cloud_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cloud = [
        ("AGENTGATE__DEPLOY__PROVIDER", "koyeb"),
        ("AGENTGATE__DATABASE_PROVISION__KIND", "postgres"),
        ("AGENTGATE__LOG__LEVEL", "warn"),
    ];
    let output = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["worker", "--data-dir"])
        .arg(dir.path())
        .envs(cloud)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("koyeb.token"), "{stderr}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args([
            "serve",
            "--no-worker",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .envs(cloud)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listening = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.starts_with("agentgate listening on "));
        let _ = tx.send(listening);
    });
    let listening = rx.recv_timeout(Duration::from_secs(60)).unwrap_or(false);
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    assert!(
        listening,
        "the API started: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A worker-only process counts deploys and retries, so it serves `/metrics` on
/// `server.metrics_bind` like the API does.
#[tokio::test]
async fn a_worker_process_serves_its_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["worker", "--data-dir"])
        .arg(dir.path())
        .env(
            "AGENTGATE__SERVER__METRICS_BIND",
            format!("127.0.0.1:{port}"),
        )
        .env("AGENTGATE__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut body = None;
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(&url).await {
            body = Some(response.text().await.expect("text"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let body = body.expect("the worker serves /metrics");
    assert!(body.contains("# TYPE"), "{body}");
}
