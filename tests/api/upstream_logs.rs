//! An operator must see why runs fail in the logs, not only in metrics: the real binary, an
//! agent that refuses the gateway's secret, and the WARN line it logs.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake_agent::{FakeAgent, Script};
use crate::helpers::SseReader;

#[tokio::test]
async fn upstream_failures_are_logged_with_the_run_and_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FakeAgent::start().await;
    let config = dir.path().join("agentgate.toml");
    let toml = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[log]\nformat = \"json\"\nlevel = \"info\"\n{}\n[deploy]\non_new_version = false\n[git]\nhost = \"none\"\n",
        dir.path().join("data").display().to_string(),
        agent.config(""),
    );
    std::fs::write(&config, toml).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentgate");
    let (lines_tx, lines) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let next_line = |deadline: Instant| -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        lines.recv_timeout(left).expect("a log line in time")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = loop {
        let line = next_line(deadline);
        if let Some(rest) = line.strip_prefix("agentgate listening on ") {
            break rest.trim().to_string();
        }
    };
    let token = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["token", "--user", "alice", "--config"])
        .arg(&config)
        .output()
        .expect("token");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();

    // The agent refuses the secret, as a misconfigured deployment would.
    agent.push(Script::status(401, "{\"detail\":\"Invalid token\"}"));
    let response = reqwest::Client::new()
        .post(format!("{address}/message"))
        .bearer_auth(&token)
        .json(&json!({"message": "build a todo app"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let run_id = crate::resume::run_id_of(&response);
    SseReader::new(response).collect().await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let warning = loop {
        let line = next_line(deadline);
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["level"] == "WARN" && line.contains(&run_id) {
            break entry;
        }
    };
    let text = warning.to_string();
    assert!(text.contains("upstream_http_error"), "{text}");
    assert!(text.contains("401"), "{text}");
    // The agent's secret never reaches the logs.
    assert!(!text.contains("agent-secret"), "{text}");
    child.kill().ok();
    child.wait().ok();
}
