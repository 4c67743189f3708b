//! A scripted agent server for relay tests: each request pops the next script, which decides the
//! status, the body chunks, pauses, and whether the connection is cut. Requests are recorded.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub enum Step {
    Send(String),
    Pause(Duration),
    /// Abort the body without the terminating chunk.
    Cut,
}

#[derive(Debug, Clone)]
pub struct Script {
    pub status: u16,
    pub steps: Vec<Step>,
    /// How long the agent holds back its response headers.
    pub headers_after: Duration,
    /// Response headers besides (or instead of) the usual `content-type`.
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Script {
    pub fn events(events: &[Value]) -> Self {
        Self::steps(events.iter().map(|e| Step::Send(data_line(e))).collect())
    }

    pub fn steps(steps: Vec<Step>) -> Self {
        Self {
            status: 200,
            steps,
            headers_after: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            ..Self::steps(vec![Step::Send(body.to_string())])
        }
    }

    pub fn headers_after(self, delay: Duration) -> Self {
        Self {
            headers_after: delay,
            ..self
        }
    }

    /// Sent with this response header (`content-type` replaces the usual one; for a
    /// `content-encoding`, the steps carry the encoded bytes).
    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A captured `.sse` file, sent in small chunks that split lines and UTF-8 anywhere.
    pub fn raw_chunks(raw: &[u8], chunk: usize) -> Self {
        Self::steps(raw.chunks(chunk).map(|c| Step::Send(latin1(c))).collect())
    }
}

/// Chunks of a UTF-8 file may split a character, so raw scripts carry one char per byte
/// (Latin-1) and are turned back into the same bytes when sent.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    scripts: Mutex<VecDeque<(Script, bool)>>,
    requests: Mutex<Vec<Recorded>>,
}

#[derive(Clone)]
pub struct FakeAgent {
    pub url: String,
    inner: Arc<Inner>,
}

pub fn data_line(event: &Value) -> String {
    format!("data: {event}\n\n")
}

/// An upstream event with every key present, like a real agent server writes it.
pub fn event(status: &str, kind: &str, text: Option<&str>) -> Value {
    json!({
        "status": status,
        "traceId": "t",
        "message": {
            "role": "assistant",
            "kind": kind,
            "messages": text.map(|t| json!([{"role": "assistant", "content": t}])),
            "agentState": null,
            "unifiedDiff": null,
            "completeDiffHash": null,
            "diffStat": null,
            "app_name": null,
            "commit_message": null,
        },
        "timestamp": "2026-11-21T22:23:33.823579",
    })
}

pub fn with(mut event: Value, key: &str, value: Value) -> Value {
    event["message"][key] = value;
    event
}

pub fn keep_alive() -> Value {
    with(event("running", "KeepAlive", None), "messages", json!([]))
}

impl FakeAgent {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let router = Router::new()
            .route("/message", post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, inner }
    }

    pub fn push(&self, script: Script) {
        self.inner
            .scripts
            .lock()
            .expect("lock")
            .push_back((script, false));
    }

    /// A script whose chunks are raw bytes (see `Script::raw_chunks`).
    pub fn push_raw(&self, script: Script) {
        self.inner
            .scripts
            .lock()
            .expect("lock")
            .push_back((script, true));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().expect("lock").clone()
    }

    /// TOML that points the gateway at this agent.
    pub fn config(&self, extra_agent_keys: &str) -> String {
        format!(
            "[agent]\nurl = {:?}\nsecret = \"agent-secret\"\n{extra_agent_keys}\n",
            self.url
        )
    }
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner
        .requests
        .lock()
        .expect("lock")
        .push(Recorded { headers, body });
    let next = inner.scripts.lock().expect("lock").pop_front();
    let Some((script, raw)) = next else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no script").into_response();
    };
    tokio::time::sleep(script.headers_after).await;
    let status = StatusCode::from_u16(script.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let stream = futures::stream::unfold(script.steps.into_iter(), move |mut steps| async move {
        loop {
            match steps.next()? {
                Step::Send(text) => {
                    let bytes = if raw {
                        text.chars().map(|c| c as u32 as u8).collect::<Vec<u8>>()
                    } else {
                        text.into_bytes()
                    };
                    return Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), steps));
                }
                Step::Pause(d) => tokio::time::sleep(d).await,
                Step::Cut => return Some((Err(std::io::Error::other("cut")), steps)),
            }
        }
    });
    let mut response = Response::builder().status(status);
    if !script
        .headers
        .iter()
        .any(|(name, _)| *name == "content-type")
    {
        response = response.header("content-type", "text/event-stream; charset=utf-8");
    }
    for (name, value) in script.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
