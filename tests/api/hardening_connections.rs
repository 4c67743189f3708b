//! Slow, silent and idle clients are closed within their deadlines, the connection cap holds
//! new clients back instead of failing, and none of it touches a long SSE stream. These talk raw
//! TCP: a well-behaved HTTP client cannot send a request slowly.
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::db_test;
use crate::fake_agent::{event, FakeAgent, Script, Step};
use crate::helpers::{assert_complete_run, spawn_app_with, DbKind, SseReader, TestApp};

const SHORT_DEADLINES: &str =
    "[server]\nheader_read_timeout_secs = 2\nbody_read_timeout_secs = 2\nkeep_alive_idle_secs = 1\n";

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("connect")
}

/// One response as received: status, head (lower-cased), body.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one `Content-Length` response, or None if the connection closes (or `limit` passes)
/// first.
async fn read_response(stream: &mut TcpStream, limit: Duration) -> Option<RawResponse> {
    let mut buffer = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
            let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")?;
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("content-length"))
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let status = head[9..12].parse().expect("status");
                let body = buffer[end + 4..end + 4 + length].to_vec();
                return Some(RawResponse { status, head, body });
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}

/// How long until the server closes the connection (EOF or reset); None if it is still open
/// after `limit`. Whatever arrives meanwhile is discarded.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let wait = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .ok()
        .map(|()| start.elapsed())
}

/// Sends `lines` one at a time, `every` apart, until the server closes the connection; returns
/// how long that took from the first line (None if still open after `limit`).
async fn dribble_until_closed(
    stream: &mut TcpStream,
    lines: impl Iterator<Item = String>,
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let write = async {
        for line in lines {
            if writer.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
        std::future::pending::<()>().await
    };
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let closed = async {
        tokio::select! {
            _ = write => {}
            _ = read => {}
        }
    };
    tokio::time::timeout(limit, closed)
        .await
        .ok()
        .map(|()| start.elapsed())
}

fn health_request() -> &'static [u8] {
    b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"
}

fn slow_message_head(token: &str, length: usize) -> String {
    format!(
        "POST /message HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn assert_within(what: &str, took: Option<Duration>, min: f64, max: f64) {
    let took = took.unwrap_or_else(|| panic!("{what}: still open after {max} s"));
    let secs = took.as_secs_f64();
    assert!(
        (min..=max).contains(&secs),
        "{what}: closed after {secs:.2} s, expected {min}..{max} s"
    );
}

/// The database plays no part in how connections are served, so this runs on SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_idle_connections_are_closed_within_their_deadlines_while_health_stays_fast(
) {
    // Headers within 2 s, bodies within 2 s, 1 s of keep-alive idleness.
    let app = spawn_app_with(DbKind::Sqlite, SHORT_DEADLINES).await;
    let token = app.token("alice");
    let before_header = metric(&app, "agentgate_connection_timeouts_total{kind=\"header\"}").await;
    let before_idle = metric(&app, "agentgate_connection_timeouts_total{kind=\"idle\"}").await;
    let before_body = metric(&app, "agentgate_connection_timeouts_total{kind=\"body\"}").await;
    let limit = Duration::from_secs(8);

    let mut clients = Vec::new();
    for i in 0..200 {
        let mut stream = connect(&app).await;
        let token = token.clone();
        clients.push(tokio::spawn(async move {
            match i % 4 {
                // Sends nothing at all.
                0 => assert_within("silent", closed_within(&mut stream, limit).await, 1.7, 4.5),
                // Headers dribbled one line every 700 ms, never finished.
                1 => {
                    let lines = std::iter::once("GET /health HTTP/1.1\r\n".to_string())
                        .chain((0..).map(|n| format!("X-Slow-{n}: 1\r\n")));
                    let took =
                        dribble_until_closed(&mut stream, lines, Duration::from_millis(700), limit)
                            .await;
                    assert_within("dribbled headers", took, 1.7, 4.5);
                }
                // One request, then idle on a keep-alive connection.
                2 => {
                    stream.write_all(health_request()).await.expect("write");
                    let response = read_response(&mut stream, limit).await.expect("response");
                    assert_eq!(response.status, 200);
                    assert_within("idle", closed_within(&mut stream, limit).await, 0.7, 3.5);
                }
                // POST /message declaring 100,000 bytes, sending one every 500 ms.
                _ => {
                    stream
                        .write_all(slow_message_head(&token, 100_000).as_bytes())
                        .await
                        .expect("write");
                    let start = Instant::now();
                    let (mut reader, mut writer) = stream.split();
                    let trickle = async {
                        loop {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            if writer.write_all(b" ").await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                    };
                    let mut raw = Vec::new();
                    let answered = async {
                        let _ = reader.read_to_end(&mut raw).await;
                    };
                    tokio::select! {
                        _ = trickle => {}
                        _ = tokio::time::timeout(limit, answered) => {}
                    }
                    let took = start.elapsed().as_secs_f64();
                    let text = String::from_utf8_lossy(&raw);
                    assert!(
                        text.starts_with("HTTP/1.1 408"),
                        "slow body after {took:.2} s: {text:?}"
                    );
                    assert!(text.contains("\"request_timeout\""), "{text}");
                    assert!(
                        (1.7..=4.5).contains(&took),
                        "slow body closed after {took:.2} s"
                    );
                }
            }
        }));
    }

    // A normal client meanwhile: every answer fast.
    let mut latencies = Vec::new();
    while clients.iter().any(|c| !c.is_finished()) {
        let start = Instant::now();
        let response = app
            .http
            .get(app.url("/health"))
            .send()
            .await
            .expect("health");
        assert_eq!(response.status(), 200);
        latencies.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for client in clients {
        client.await.expect("client");
    }
    latencies.sort();
    let max = latencies.last().copied().unwrap_or_default();
    assert!(latencies.len() >= 10, "{} health checks", latencies.len());
    assert!(
        max < Duration::from_secs(2),
        "/health took up to {max:?} while slow clients were open"
    );
    let after_header = metric(&app, "agentgate_connection_timeouts_total{kind=\"header\"}").await;
    let after_idle = metric(&app, "agentgate_connection_timeouts_total{kind=\"idle\"}").await;
    let after_body = metric(&app, "agentgate_connection_timeouts_total{kind=\"body\"}").await;
    assert!(after_header - before_header >= 100.0, "header timeouts");
    assert!(after_idle - before_idle >= 50.0, "idle timeouts");
    assert!(after_body - before_body >= 50.0, "body timeouts");
    app.stop().await;
}

async fn a_message_body_that_trickles_past_its_deadline_is_answered_408_and_a_prompt_one_is_served(
    kind: DbKind,
) {
    let agent = FakeAgent::start().await;
    let toml = format!(
        "{}[deploy]\non_new_version = false\n[git]\nhost = \"none\"\n[server]\nbody_read_timeout_secs = 1\n",
        agent.config("")
    );
    let app = spawn_app_with(kind, &toml).await;
    let token = app.token("alice");

    let body = json!({"message": "build a todo app"}).to_string();
    let mut stream = connect(&app).await;
    stream
        .write_all(slow_message_head(&token, body.len()).as_bytes())
        .await
        .expect("head");
    let start = Instant::now();
    // Half the body at once, then nothing: the deadline covers the whole body.
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .expect("part of the body");
    let response = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer");
    let took = start.elapsed().as_secs_f64();
    assert_eq!(response.status, 408, "{response:?}");
    assert!((0.8..=3.0).contains(&took), "answered after {took:.2} s");
    assert!(response.head.contains("connection: close"), "{response:?}");
    assert!(response.head.contains("x-request-id:"), "{response:?}");
    let error: Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(error["code"], "request_timeout");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(
        closed_within(&mut stream, Duration::from_secs(2))
            .await
            .is_some(),
        "the connection closes after a 408"
    );

    // The same deadline lets a body sent at once through.
    agent.push(Script::events(&[event(
        "idle",
        "ReviewResult",
        Some("Done!"),
    )]));
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    assert_eq!(response.status(), 200);
    assert_complete_run(&SseReader::new(response).collect().await);
    app.stop().await;
}
db_test!(a_message_body_that_trickles_past_its_deadline_is_answered_408_and_a_prompt_one_is_served);

/// The database plays no part in how connections are served, so this runs on SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_may_idle_longer_than_the_header_deadline() {
    let app = spawn_app_with(
        DbKind::Sqlite,
        "[server]\nheader_read_timeout_secs = 1\nkeep_alive_idle_secs = 4\n",
    )
    .await;
    let mut stream = connect(&app).await;
    for _ in 0..2 {
        stream.write_all(health_request()).await.expect("write");
        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .expect("served");
        assert_eq!(response.status, 200);
        // Idle for twice the header deadline: the next request is still welcome.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_within(
        "idle past keep_alive_idle_secs",
        closed_within(&mut stream, Duration::from_secs(6)).await,
        1.0,
        3.5,
    );
    app.stop().await;
}

/// The database plays no part in how connections are served, so this runs on SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_client_waits_until_another_leaves_and_serving_goes_on() {
    let app = spawn_app_with(
        DbKind::Sqlite,
        "[server]\nmax_connections = 3\nkeep_alive_idle_secs = 60\n",
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(&app).await;
        stream.write_all(health_request()).await.expect("write");
        let response = read_response(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(response.expect("served").status, 200);
        held.push(stream);
    }

    // The fourth connects (the kernel's backlog takes it) but is not served at the cap.
    let mut fourth = connect(&app).await;
    fourth.write_all(health_request()).await.expect("write");
    assert!(
        read_response(&mut fourth, Duration::from_millis(1500))
            .await
            .is_none(),
        "a fourth connection was served with max_connections = 3"
    );

    // One leaves: the fourth is served.
    drop(held.pop());
    let start = Instant::now();
    let response = read_response(&mut fourth, Duration::from_secs(5)).await;
    assert_eq!(response.expect("served once a slot frees").status, 200);
    assert!(start.elapsed() < Duration::from_secs(3));

    // The cap cost nothing lasting: with the slots free again, everything is served.
    drop(held);
    drop(fourth);
    let mut served = 0;
    for _ in 0..50 {
        let response = app.http.get(app.url("/health")).send().await;
        if response.is_ok_and(|r| r.status() == 200) {
            served += 1;
            if served == 3 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, 3, "serving resumed after the cap");
    assert!(metric(&app, "agentgate_connection_limit_hits_total").await >= 1.0);
    assert!(
        metric(&app, "agentgate_open_connections").await >= 1.0,
        "the gauge counts this scrape's own connection"
    );
    app.stop().await;
}

async fn an_sse_stream_that_outlasts_every_connection_deadline_is_not_cut(kind: DbKind) {
    let agent = FakeAgent::start().await;
    // Gaps of 2.5 s between events, longer than each deadline; keep-alive comments every second.
    let toml = format!(
        "{}[deploy]\non_new_version = false\n[git]\nhost = \"none\"\n[runs]\nkeep_alive_secs = 1\n{}",
        agent.config(""),
        "[server]\nheader_read_timeout_secs = 1\nbody_read_timeout_secs = 1\nkeep_alive_idle_secs = 1\n",
    );
    let app = spawn_app_with(kind, &toml).await;
    agent.push(Script::steps(vec![
        Step::Send(crate::fake_agent::data_line(&event(
            "running",
            "WipUpdate",
            Some("one"),
        ))),
        Step::Pause(Duration::from_millis(2500)),
        Step::Send(crate::fake_agent::data_line(&event(
            "running",
            "StageResult",
            Some("two"),
        ))),
        Step::Pause(Duration::from_millis(2500)),
        Step::Send(crate::fake_agent::data_line(&event(
            "idle",
            "ReviewResult",
            Some("Done!"),
        ))),
    ]));
    let token = app.token("alice");
    let start = Instant::now();
    let response = app
        .post_message(&token, &json!({"message": "build a todo app"}))
        .await;
    assert_eq!(response.status(), 200);
    let run_id = response.headers()["x-run-id"]
        .to_str()
        .expect("run id")
        .to_string();
    // A second client follows the same run live.
    let follower = app.get(&format!("/runs/{run_id}/events"), &token).await;
    assert_eq!(follower.status(), 200);
    let (own, followed) = tokio::join!(
        SseReader::new(response).collect(),
        SseReader::new(follower).collect()
    );
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "the stream lasted"
    );
    assert_complete_run(&own);
    assert_complete_run(&followed);
    app.stop().await;
}
db_test!(an_sse_stream_that_outlasts_every_connection_deadline_is_not_cut);

/// A client that stops reading a response (here a stream of large events) is closed once no
/// byte could be written for `write_stall_timeout_secs`, freeing its place under the cap; the
/// run itself goes on and is complete in its log.
async fn a_client_that_stops_reading_is_closed_and_the_run_goes_on(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let toml = format!(
        "{}[deploy]\non_new_version = false\n[git]\nhost = \"none\"\n[server]\nwrite_stall_timeout_secs = 1\n",
        agent.config(""),
    );
    let app = spawn_app_with(kind, &toml).await;
    let padding = "x".repeat(16 * 1024);
    let mut steps: Vec<Step> = (0..640)
        .map(|i| {
            Step::Send(crate::fake_agent::data_line(&event(
                "running",
                "WipUpdate",
                Some(&format!("{i} {padding}")),
            )))
        })
        .collect();
    steps.push(Step::Send(crate::fake_agent::data_line(&event(
        "idle",
        "ReviewResult",
        Some("Done!"),
    ))));
    agent.push(Script::steps(steps));

    // A small receive window, so the server's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let address = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let mut stream = socket.connect(address).await.expect("connect");
    let body = json!({"message": "build a todo app"}).to_string();
    let head = format!(
        "POST /message HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        app.token("alice"),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut first = [0u8; 1024];
    let n = stream.read(&mut first).await.expect("read");
    let head = String::from_utf8_lossy(&first[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let run_id = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("x-run-id:")
                .map(|v| v.trim().to_string())
        })
        .expect("run id");

    // Stop reading for longer than the stall deadline: the server gives up on the connection.
    // (Had it not, reading now would resume the stream up to `done`, then idle on.)
    tokio::time::sleep(Duration::from_secs(4)).await;
    // What the client had not read ends early: no `done` reaches it.
    let mut rest = Vec::new();
    let drained =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(drained.is_ok(), "the connection stayed open");
    assert!(!String::from_utf8_lossy(&rest).contains("event: done"));
    // The run went on without its client and is complete in its log.
    assert_ne!(
        crate::helpers::settled_run_status(&app, &run_id).await,
        "running"
    );
    let replay = app
        .get(&format!("/runs/{run_id}/events"), &app.token("alice"))
        .await;
    assert_complete_run(&SseReader::new(replay).collect().await);
    app.stop().await;
}
db_test!(a_client_that_stops_reading_is_closed_and_the_run_goes_on);
