//! A mock agent server speaking the upstream wire format (`data: {json}\n\n`). Each request gets
//! `events` running WipUpdate events of `pad` bytes of padding, `interval_us` apart (0 = as fast
//! as the connection takes them), after `first_delay_us`, then a final idle ReviewResult without
//! a diff and the end of the body. In heartbeat mode it sends only KeepAlive events every
//! `heartbeat_ms` and holds the stream open until the client leaves. Every event carries
//! `message.seq` and `message.sentNs` (CLOCK_MONOTONIC at the moment it is handed to the
//! connection). Defaults come from the command line; a request's `settings` object overrides
//! them per stream (`events`, `pad`, `intervalUs`, `firstDelayUs`, `heartbeatMs`).
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::mono_ns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockParams {
    pub events: u64,
    pub pad: usize,
    pub interval_us: u64,
    pub first_delay_us: u64,
    /// 0 = normal stream; otherwise KeepAlive-only mode with this period.
    pub heartbeat_ms: u64,
}

impl Default for MockParams {
    fn default() -> Self {
        Self {
            events: 10,
            pad: 256,
            interval_us: 0,
            first_delay_us: 0,
            heartbeat_ms: 0,
        }
    }
}

impl MockParams {
    /// These defaults with the keys a request's `settings` object sets.
    pub fn with_settings(mut self, settings: Option<&Value>) -> Self {
        let Some(s) = settings else { return self };
        let get = |key: &str| s.get(key).and_then(Value::as_u64);
        if let Some(v) = get("events") {
            self.events = v;
        }
        if let Some(v) = get("pad") {
            self.pad = v as usize;
        }
        if let Some(v) = get("intervalUs") {
            self.interval_us = v;
        }
        if let Some(v) = get("firstDelayUs") {
            self.first_delay_us = v;
        }
        if let Some(v) = get("heartbeatMs") {
            self.heartbeat_ms = v;
        }
        self
    }

    /// The `settings` object that selects these parameters.
    pub fn to_settings(&self) -> Value {
        serde_json::json!({
            "events": self.events,
            "pad": self.pad,
            "intervalUs": self.interval_us,
            "firstDelayUs": self.first_delay_us,
            "heartbeatMs": self.heartbeat_ms,
        })
    }
}

const TIMESTAMP: &str = "2026-11-22T00:00:00.000001";
const NULLS: &str = r#""agentState":null,"unifiedDiff":null,"completeDiffHash":null,"diffStat":null,"app_name":null,"commit_message":null"#;

/// Pre-rendered parts of a stream's events; only `seq` and `sentNs` change per event.
struct Templates {
    running: Vec<u8>,
    keep_alive: Vec<u8>,
    last: Vec<u8>,
    tail: Vec<u8>,
}

impl Templates {
    fn new(trace_id: &str, pad: usize) -> Self {
        let trace = Value::String(trace_id.to_string()).to_string();
        let padding = "x".repeat(pad);
        let head = |status: &str, kind: &str, messages: &str| {
            format!(
                r#"data: {{"status":"{status}","traceId":{trace},"message":{{"role":"assistant","kind":"{kind}","messages":{messages},{NULLS},"seq":"#
            )
            .into_bytes()
        };
        Self {
            running: head(
                "running",
                "WipUpdate",
                &format!(r#"[{{"role":"assistant","content":"{padding}"}}]"#),
            ),
            keep_alive: head("running", "KeepAlive", "[]"),
            last: head(
                "idle",
                "ReviewResult",
                r#"[{"role":"assistant","content":"Changes generated"}]"#,
            ),
            tail: format!(r#"}},"timestamp":"{TIMESTAMP}"}}"#).into_bytes(),
        }
    }

    fn render(&self, head: &[u8], seq: u64) -> Bytes {
        let mut out = Vec::with_capacity(head.len() + self.tail.len() + 48);
        out.extend_from_slice(head);
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(b",\"sentNs\":");
        out.extend_from_slice(mono_ns().to_string().as_bytes());
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

enum Next {
    Running,
    Last,
    KeepAlive,
    End,
}

struct StreamState {
    params: MockParams,
    templates: Templates,
    start: Instant,
    seq: u64,
}

impl StreamState {
    fn next_kind(&self) -> Next {
        if self.params.heartbeat_ms > 0 {
            Next::KeepAlive
        } else if self.seq < self.params.events {
            Next::Running
        } else if self.seq == self.params.events {
            Next::Last
        } else {
            Next::End
        }
    }

    /// When the event with index `seq` (0-based) is due.
    fn due(&self) -> Instant {
        let p = &self.params;
        if p.heartbeat_ms > 0 {
            return self.start + Duration::from_millis(p.heartbeat_ms * (self.seq + 1));
        }
        self.start
            + Duration::from_micros(p.first_delay_us)
            + Duration::from_micros(p.interval_us.saturating_mul(self.seq))
    }
}

/// The SSE body of one stream.
fn event_stream(
    params: MockParams,
    trace_id: &str,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    let state = StreamState {
        params,
        templates: Templates::new(trace_id, params.pad),
        start: Instant::now(),
        seq: 0,
    };
    futures::stream::unfold(state, |mut st| async move {
        let kind = st.next_kind();
        if matches!(kind, Next::End) {
            return None;
        }
        let due = st.due();
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let head = match kind {
            Next::Running => &st.templates.running,
            Next::Last => &st.templates.last,
            _ => &st.templates.keep_alive,
        };
        let bytes = st.templates.render(head, st.seq);
        st.seq += 1;
        Some((Ok(Frame::data(bytes)), st))
    })
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(
    req: Request<Incoming>,
    defaults: MockParams,
) -> Result<Response<Body>, Infallible> {
    if req.method() != hyper::Method::POST || req.uri().path().trim_end_matches('/') != "/message" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    }
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "unreadable body")),
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let params = defaults.with_settings(request.get("settings"));
    let trace_id = request
        .get("traceId")
        .and_then(Value::as_str)
        .unwrap_or("bench");
    let stream = StreamBody::new(event_stream(params, trace_id));
    let mut response = Response::new(BodyExt::boxed(stream));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    Ok(response)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response
}

/// A listener with a deep accept backlog, for ramps of thousands of connections.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(65_535)
}

/// Serves until the task is dropped. Accept failures (out of file descriptors) are logged and
/// retried after a pause instead of ending the server.
pub async fn serve(listener: TcpListener, defaults: MockParams) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("mock-upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, defaults));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Just the events of one stream, without a server: for tests.
pub async fn render_all(params: MockParams, trace_id: &str) -> Vec<Bytes> {
    event_stream(params, trace_id)
        .filter_map(|f| async move { f.ok().and_then(|f| f.into_data().ok()) })
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_follow_the_wire_format() {
        let params = MockParams {
            events: 3,
            pad: 16,
            ..MockParams::default()
        };
        let events = render_all(params, "t").await;
        assert_eq!(events.len(), 4);
        for (i, e) in events.iter().enumerate() {
            let text = std::str::from_utf8(e).unwrap();
            assert!(text.starts_with("data: ") && text.ends_with("\n\n"));
            let v: Value = serde_json::from_str(&text[6..text.len() - 2]).unwrap();
            assert_eq!(v["message"]["seq"], i as u64);
            assert!(v["message"]["sentNs"].as_u64().unwrap() > 0);
            assert!(v["message"]["unifiedDiff"].is_null());
        }
        let last: Value = serde_json::from_slice(&events[3][6..events[3].len() - 2]).unwrap();
        assert_eq!(last["status"], "idle");
        assert_eq!(last["message"]["kind"], "ReviewResult");
    }

    #[test]
    fn settings_override_defaults() {
        let p =
            MockParams::default().with_settings(Some(&serde_json::json!({"events": 7, "pad": 1})));
        assert_eq!((p.events, p.pad), (7, 1));
        assert_eq!(
            MockParams::default().with_settings(Some(&p.to_settings())),
            p
        );
    }
}
