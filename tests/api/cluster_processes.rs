//! The cluster as operators run it: three `agentgate serve` processes on one PostgreSQL
//! database and one S3 server, behind nginx (round robin, `proxy_buffering off`, no sticky
//! sessions). Fifty concurrent runs whose clients reconnect through the balancer every few
//! events; one gateway is SIGKILLed in the middle. Every stream still gets every event exactly
//! once and one `done`; the killed gateway's runs end `interrupted`; the version jobs it left
//! are finished by the others; previews, files and history answer the same everywhere.
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{json, Value};

use crate::fake_agent::{data_line, event, with, FakeAgent, Script, Step};
use crate::helpers::{
    assert_complete_run, drop_database, fresh_database, DbKind, Frame, SseReader,
};
use crate::process::{start_gateway, Gateway};
use crate::s3_server::S3Server;

const RUNS: usize = 50;
const SECRET: &str = "a-secret-the-three-gateways-of-this-test-share";
const LEASE_SECS: u64 = 3;
const PAGE: &str = "<h1>built by the cluster</h1>";
/// A client reconnects after this many events.
const EVENTS_PER_CONNECTION: usize = 3;

fn token(user: &str) -> String {
    let now = chrono::Utc::now().timestamp() as u64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "iat": now, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

/// A run of about two seconds that ends with a page.
fn script() -> Script {
    let mut steps = Vec::new();
    for i in 0..14 {
        let update = event("running", "WipUpdate", Some(&format!("step {i}")));
        steps.push(Step::Send(data_line(&update)));
        steps.push(Step::Pause(Duration::from_millis(150)));
    }
    let diff = format!(
        "diff --git a/index.html b/index.html\nnew file mode 100644\n--- /dev/null\n+++ b/index.html\n@@ -0,0 +1,1 @@\n+{PAGE}\n"
    );
    let review = with(
        event("idle", "ReviewResult", Some("Done!")),
        "unifiedDiff",
        json!(diff),
    );
    steps.push(Step::Send(data_line(&with(
        review,
        "app_name",
        json!("todo"),
    ))));
    Script::steps(steps)
}

/// Gateways that are killed when the test ends, also when it fails.
struct Gateways(Vec<Option<Gateway>>);

impl Drop for Gateways {
    fn drop(&mut self) {
        for gateway in self.0.iter_mut().flatten() {
            gateway.child.kill().ok();
            gateway.child.wait().ok();
        }
    }
}

struct Nginx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstreams: &[String]) -> Nginx {
        let dir = tempfile::tempdir().expect("nginx dir");
        let port = free_port_outside_the_ephemeral_range();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {};\n", u.trim_start_matches("http://")))
            .collect();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 2048; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               upstream gateways {{\n{servers}    keepalive 32;\n  }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
                 proxy_pass http://gateways;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
                 proxy_buffering off;\n      proxy_read_timeout 1h;\n\
                 add_header X-Upstream $upstream_addr always;\n\
                 proxy_next_upstream error timeout;\n    }}\n  }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let child = Command::new(nginx_binary())
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A free port below Linux's ephemeral range (32768–60999), so that nginx never takes a port
/// another test's server gave up for a moment and binds again (`S3Server::resume`).
fn free_port_outside_the_ephemeral_range() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20000..32000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for nginx");
}

fn nginx_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

fn gateway_config(
    dir: &std::path::Path,
    name: &str,
    database_url: &str,
    s3: &S3Server,
    agent: &FakeAgent,
    public_url: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let toml = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = {data:?}\npublic_url = {public_url:?}\n\
         [database]\nurl = {database_url:?}\nmax_connections = 8\n\
         [auth]\nhs256_secret = {SECRET:?}\n\
         [runs]\ninstance_id = {name:?}\nlease_secs = {LEASE_SECS}\nsweep_interval_secs = 1\n\
         [deploy]\npoll_interval_ms = 200\nlease_secs = 5\n\
         [git]\nhost = \"none\"\n{storage}{agent}",
        data = dir.join(name).display().to_string(),
        storage = s3.config(),
        agent = agent.config(""),
    );
    std::fs::write(&path, toml).expect("config");
    path
}

/// Follows a run through the balancer: a new connection every few events, resumed with
/// `Last-Event-ID`, until `done`. Connections that break (a gateway killed) are resumed too.
async fn follow(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    run_id: &str,
    mut frames: Vec<Frame>,
    cut_short: &std::sync::Mutex<Vec<String>>,
) -> Vec<Frame> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while frames.last().is_none_or(|f| f.event != "done") {
        assert!(
            Instant::now() < deadline,
            "run {run_id} never ended: {frames:?}"
        );
        let mut request = http
            .get(format!("{base}/runs/{run_id}/events"))
            .bearer_auth(token);
        if let Some(last) = frames.last() {
            request = request.header("Last-Event-ID", last.id.to_string());
        }
        let response = match request.send().await {
            Ok(r) if r.status() == 200 => r,
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Which gateway serves this stream (nginx says).
        let upstream = response
            .headers()
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        let mut reader = SseReader::new(response);
        for _ in 0..EVENTS_PER_CONNECTION {
            match reader.next().await {
                Some(frame) if frame.event == "done" => {
                    frames.push(frame);
                    break;
                }
                Some(frame) => frames.push(frame),
                // A stream must not end before `done` unless its gateway died.
                None => {
                    cut_short.lock().expect("lock").push(upstream);
                    break;
                }
            }
        }
    }
    frames
}

/// The app's files as one gateway lists them (version, paths, hashes) and as its presigned
/// links download them; links differ per gateway and moment, what they give must not.
async fn files_through(http: &reqwest::Client, origin: &str, app_id: &str, token: &str) -> String {
    let response = http
        .get(format!("{origin}/apps/{app_id}/read-url"))
        .bearer_auth(token)
        .send()
        .await
        .expect("read-url");
    let status = response.status().as_u16();
    if status != 200 {
        return format!("{status}");
    }
    let body: Value = response.json().await.expect("read-url json");
    let mut out = format!("version {}", body["version"]);
    for file in body["files"].as_array().expect("files") {
        let url = file["url"].as_str().expect("url");
        let content = http.get(url).send().await.expect("download");
        assert_eq!(content.status(), 200, "{url}");
        let content = content.text().await.unwrap_or_default();
        out.push_str(&format!(
            "\n{} {} {content:?}",
            file["path"], file["sha256"]
        ));
    }
    out
}

async fn query(db: &sea_orm::DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_behind_nginx_survive_one_being_killed() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let (database_url, pg) = fresh_database(DbKind::Postgres).await;
    let s3 = S3Server::start().await;
    let agent = FakeAgent::start().await;
    for _ in 0..RUNS {
        agent.push(script());
    }
    let dir = tempfile::tempdir().expect("dir");
    // The balancer's address is the public URL; it is known once the gateways are.
    let names = ["gw-0", "gw-1", "gw-2"];
    let mut gateways = Gateways(Vec::new());
    for name in names {
        let config = gateway_config(dir.path(), name, &database_url, &s3, &agent, "");
        gateways.0.push(Some(start_gateway(&config)));
    }
    let addresses: Vec<String> = gateways
        .0
        .iter()
        .map(|g| g.as_ref().map(|g| g.address.clone()).unwrap_or_default())
        .collect();
    let nginx = Nginx::start(&addresses);
    let http = reqwest::Client::new();
    let base = nginx.url.clone();

    // Fifty users start a run each through the balancer and follow it.
    let received = Arc::new(AtomicUsize::new(0));
    let cut_short = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for i in 0..RUNS {
        let (http, base, received) = (http.clone(), base.clone(), received.clone());
        let cut_short = cut_short.clone();
        clients.push(tokio::spawn(async move {
            let user = format!("user-{i}");
            let token = token(&user);
            let response = http
                .post(format!("{base}/message"))
                .bearer_auth(&token)
                .json(&json!({"message": "build a todo app"}))
                .send()
                .await
                .expect("post");
            assert_eq!(response.status(), 200);
            let run_id = response.headers()["x-run-id"]
                .to_str()
                .expect("id")
                .to_string();
            let mut first = SseReader::new(response);
            let mut frames = Vec::new();
            for _ in 0..EVENTS_PER_CONNECTION {
                frames.extend(first.next().await);
            }
            drop(first);
            received.fetch_add(1, Ordering::Relaxed);
            let frames = follow(&http, &base, &token, &run_id, frames, &cut_short).await;
            (user, token, run_id, frames)
        }));
    }
    // Every run has started and streamed a little: kill the second gateway.
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < RUNS {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "runs did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut killed = gateways.0[1].take().expect("gw-1");
    killed.child.kill().expect("SIGKILL");
    killed.child.wait().expect("reap");
    let killed_at = chrono::Utc::now();

    let mut results = Vec::new();
    for client in clients {
        results.push(client.await.expect("client"));
    }

    // Only streams the killed gateway served ended before `done`.
    let cut_short = cut_short.lock().expect("lock").clone();
    let killed_upstream = killed.address.trim_start_matches("http://").to_string();
    let stray: Vec<_> = (cut_short.iter())
        .filter(|upstream| **upstream != killed_upstream)
        .collect();
    assert!(
        stray.is_empty(),
        "streams served by a live gateway ended before done: {stray:?} (killed: {killed_upstream})"
    );
    eprintln!("streams cut by the kill: {}", cut_short.len());

    let db = Database::connect(&database_url).await.expect("connect");
    let rows = query(&db, "SELECT id, runner_id, status, finished_at FROM runs").await;
    assert_eq!(rows.len(), RUNS);
    let mut on_killed = 0;
    let mut slowest_interruption = Duration::ZERO;
    for row in &rows {
        let run: String = row.try_get("", "id").expect("id");
        let runner: Option<String> = row.try_get("", "runner_id").expect("runner");
        let status: String = row.try_get("", "status").expect("status");
        if runner.as_deref() == Some("gw-1") {
            on_killed += 1;
            assert_eq!(status, "interrupted", "run {run} of the killed gateway");
            let finished: chrono::DateTime<chrono::Utc> =
                row.try_get("", "finished_at").expect("finished");
            let after = (finished - killed_at).to_std().unwrap_or_default();
            slowest_interruption = slowest_interruption.max(after);
            // One lease after the last renewal, at the next sweep of a surviving gateway.
            assert!(
                after <= Duration::from_secs(LEASE_SECS + 4),
                "run {run} was interrupted {after:?} after the kill"
            );
        } else {
            assert_eq!(status, "succeeded", "run {run}");
        }
    }
    assert!(on_killed > 0, "round robin gave the killed gateway runs");
    eprintln!("runs of the killed gateway: {on_killed}, the last interrupted {slowest_interruption:?} after the kill (lease {LEASE_SECS} s)");

    // Every stream: every event exactly once, in order, one `done` last; the same as the log.
    for (_, token, run_id, frames) in &results {
        assert_complete_run(frames);
        let replay = follow(&http, &base, token, run_id, Vec::new(), &Default::default()).await;
        assert_eq!(
            frames, &replay,
            "run {run_id}: the live stream equals the replay"
        );
        let runner = rows
            .iter()
            .find(|r| r.try_get::<String>("", "id").ok().as_deref() == Some(run_id.as_str()))
            .and_then(|r| r.try_get::<Option<String>>("", "runner_id").ok().flatten());
        if runner.as_deref() == Some("gw-1") {
            let error = &frames[frames.len() - 2];
            assert_eq!(error.event, "error");
            assert_eq!(error.data["code"], "run_interrupted");
        }
    }

    // The version jobs all finish, those the killed gateway left behind by the others.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = query(
            &db,
            "SELECT count(*) AS n FROM jobs WHERE status IN ('queued', 'running')",
        )
        .await;
        let n: i64 = open[0].try_get("", "n").expect("n");
        if n == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} jobs never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = query(
        &db,
        "SELECT kind, last_error FROM jobs WHERE status <> 'done'",
    )
    .await;
    assert!(
        failed.is_empty(),
        "jobs that did not succeed: {}",
        failed.len()
    );

    // Previews, files and history answer the same through every surviving gateway and the
    // balancer.
    let survivors: Vec<String> = (gateways.0.iter().flatten())
        .map(|g| g.address.clone())
        .collect();
    let mut previews_checked = 0;
    for (user, token, run_id, frames) in &results {
        let app_id = frames[0].data["appId"].as_str().expect("app id");
        let mut answers: Vec<(u16, String, String, String)> = Vec::new();
        for origin in survivors.iter().chain([&base]) {
            let preview = http
                .get(format!("{origin}/preview/{app_id}/"))
                .send()
                .await
                .expect("preview");
            let preview = (
                preview.status().as_u16(),
                preview.text().await.unwrap_or_default(),
            );
            let history: Value = http
                .get(format!("{origin}/apps/{app_id}/history"))
                .bearer_auth(token)
                .send()
                .await
                .expect("history")
                .json()
                .await
                .expect("history json");
            let files = files_through(&http, origin, app_id, token).await;
            answers.push((preview.0, preview.1, history.to_string(), files));
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{user} {run_id}: {answers:?}"
        );
        if answers[0].0 == 200 {
            assert_eq!(answers[0].1.trim(), PAGE);
            assert!(answers[0].3.contains(PAGE), "{}", answers[0].3);
            previews_checked += 1;
        }
    }
    assert!(
        previews_checked >= RUNS - on_killed,
        "{previews_checked} previews served"
    );

    drop(nginx);
    drop(gateways);
    db.close().await.ok();
    drop_database(pg).await;
}
