//! The SSE load client's stream: one POST /message over its own connection (optionally from a
//! chosen 127.0.0.x source address), read to the end, every event's latency recorded.
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use memchr::memmem::Finder;

use crate::mono_ns;

/// Where streams go. `gateway` decides how the end of a stream is recognised (`event: done`
/// there, the idle agent event when talking to the agent protocol directly or through nginx).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    /// The URL's path prefix, without a trailing slash.
    pub prefix: String,
    pub path: String,
    pub token: Option<String>,
    pub gateway: bool,
}

impl Target {
    /// From `http://host:port[/prefix]`; the request goes to `<prefix>/message`.
    pub fn parse(url: &str, token: Option<String>, gateway: bool) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported: {url}"))?;
        let (host, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host)?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
        Ok(Self {
            addr,
            host: host.to_string(),
            prefix: prefix.to_string(),
            path: format!("{prefix}/message"),
            token,
            gateway,
        })
    }

    /// The request body for one stream with these agent settings.
    pub fn body(&self, settings: &serde_json::Value, n: u64) -> Bytes {
        let body = if self.gateway {
            serde_json::json!({"message": format!("bench stream {n}"), "settings": settings})
        } else {
            serde_json::json!({
                "applicationId": format!("bench-{n}"),
                "traceId": format!("bench-{n}"),
                "allMessages": [{"role": "user", "content": format!("bench stream {n}")}],
                "agentState": null,
                "allFiles": null,
                "settings": settings,
            })
        };
        Bytes::from(body.to_string())
    }
}

/// Heartbeat bookkeeping of one held stream (KeepAlive events directly, `: keep-alive` comments
/// from the gateway).
pub struct Heartbeats {
    /// When the response head arrived; the k-th heartbeat is due at t0 + k * interval.
    pub t0_ns: AtomicU64,
    pub count: AtomicU64,
    pub alive: AtomicBool,
}

/// What all held streams share: the interval, and the lateness histogram of the current window.
pub struct HeartbeatShared {
    pub interval_ns: u64,
    pub recording: AtomicBool,
    pub lateness: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Heartbeats {
    pub fn new() -> Self {
        Self {
            t0_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
            alive: AtomicBool::new(false),
        }
    }

    fn beat(&self, shared: &HeartbeatShared, now: u64) {
        let k = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if shared.recording.load(Ordering::Relaxed) {
            let due = self.t0_ns.load(Ordering::Relaxed) + k * shared.interval_ns;
            if let Ok(mut h) = shared.lateness.lock() {
                let _ = h.record(now.saturating_sub(due).max(1));
            }
        }
    }
}

impl Default for Heartbeats {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub ttfe_ns: Option<u64>,
    pub events: u64,
    pub complete: bool,
    pub stalled: bool,
    pub error: Option<String>,
    /// The `id:` of the first and the last event (gateway streams only), and how many ids did
    /// not follow the one before by exactly one.
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    pub id_gaps: u64,
}

pub struct StreamOptions<'a> {
    pub source: Option<IpAddr>,
    pub stall: Duration,
    pub heartbeats: Option<(&'a Heartbeats, &'a HeartbeatShared)>,
}

async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs one stream to its end, recording per-event latency (receive time minus `sentNs`).
pub async fn run_stream(
    target: &Target,
    body: Bytes,
    opts: StreamOptions<'_>,
    latency: &mut hdrhistogram::Histogram<u64>,
) -> Outcome {
    let start = mono_ns();
    let mut outcome = Outcome::default();
    let mut record = |sent: u64, now: u64| {
        let _ = latency.record(now.saturating_sub(sent).max(1));
    };
    let result = async {
        let response = open(target, post(target, body)?, opts.source).await?;
        read(target, response, &opts, start, &mut outcome, &mut record).await
    }
    .await;
    finish(outcome, result, &opts)
}

/// Both streams of one run in cross mode (see [`run_cross`]).
#[derive(Default)]
pub struct Cross {
    pub post: Outcome,
    pub follow: Outcome,
    /// (`sentNs`, receive time) of every event of each stream.
    pub post_samples: Vec<(u64, u64)>,
    pub follow_samples: Vec<(u64, u64)>,
    /// When the follow stream's response head arrived (0 if it never did).
    pub follow_head_ns: u64,
}

/// Cross mode: one POST on `target`, and as soon as its head names the run (`x-run-id`), `GET
/// /runs/{id}/events` on `follow` with the same token; both read to the end.
pub async fn run_cross(
    target: &Target,
    follow: &Target,
    body: Bytes,
    opts: StreamOptions<'_>,
) -> Cross {
    let start = mono_ns();
    let mut cross = Cross::default();
    let opened = async { open(target, post(target, body)?, opts.source).await }.await;
    let response = match opened {
        Ok(response) => response,
        Err(e) => {
            cross.post = finish(Outcome::default(), Err(e), &opts);
            cross.follow = finish(Outcome::default(), Err("no run to follow".into()), &opts);
            return cross;
        }
    };
    let run_id = response
        .headers()
        .get("x-run-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (post_samples, follow_samples) = (&mut cross.post_samples, &mut cross.follow_samples);
    let mut post_outcome = Outcome::default();
    let mut follow_outcome = Outcome::default();
    let follow_head = &mut cross.follow_head_ns;
    let mut on_post = |sent, now| post_samples.push((sent, now));
    let (post_result, follow_result) = tokio::join!(
        read(
            target,
            response,
            &opts,
            start,
            &mut post_outcome,
            &mut on_post,
        ),
        async {
            let follow_start = mono_ns();
            let response = open(follow, subscription(follow, &run_id)?, opts.source).await?;
            *follow_head = mono_ns();
            read(
                follow,
                response,
                &opts,
                follow_start,
                &mut follow_outcome,
                &mut |sent, now| follow_samples.push((sent, now)),
            )
            .await
        }
    );
    cross.post = finish(post_outcome, post_result, &opts);
    cross.follow = finish(follow_outcome, follow_result, &opts);
    cross
}

/// An opened stream: its response head arrived with a 2xx.
pub type Opened = hyper::Response<hyper::body::Incoming>;

/// Tail mode: `POST /message` on the gateway until its head arrives; the run's id (`x-run-id`)
/// and the open stream, to be read with [`read_stream`] for as long as the run should stay live.
pub async fn start_run(
    target: &Target,
    body: Bytes,
    source: Option<IpAddr>,
) -> Result<(String, Opened), String> {
    let response = open(target, post(target, body)?, source).await?;
    let run_id = response
        .headers()
        .get("x-run-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty())
        .ok_or("the response carries no x-run-id")?
        .to_string();
    Ok((run_id, response))
}

/// Reads an opened stream (e.g. from [`start_run`]) to its end.
pub async fn read_stream(target: &Target, response: Opened, opts: StreamOptions<'_>) -> Outcome {
    let start = mono_ns();
    let mut outcome = Outcome::default();
    let result = read(target, response, &opts, start, &mut outcome, &mut |_, _| {}).await;
    finish(outcome, result, &opts)
}

/// A subscriber to an existing run: `GET /runs/{id}/events` with the target's token, read to
/// its end.
pub async fn run_subscriber(target: &Target, run_id: &str, opts: StreamOptions<'_>) -> Outcome {
    let start = mono_ns();
    let mut outcome = Outcome::default();
    let result = async {
        let response = open(target, subscription(target, run_id)?, opts.source).await?;
        read(target, response, &opts, start, &mut outcome, &mut |_, _| {}).await
    }
    .await;
    finish(outcome, result, &opts)
}

fn subscription(target: &Target, run_id: &str) -> Result<Request<Full<Bytes>>, String> {
    let path = format!("{}/runs/{run_id}/events", target.prefix);
    request(Request::get(path), target, Bytes::new())
}

fn finish(mut outcome: Outcome, result: Result<(), String>, opts: &StreamOptions<'_>) -> Outcome {
    if let Err(e) = result {
        outcome.error = Some(e);
    }
    if let Some((hb, _)) = opts.heartbeats {
        hb.alive.store(false, Ordering::Relaxed);
    }
    if outcome.error.is_none() && !outcome.complete && !outcome.stalled {
        outcome.error = Some("stream ended before its final event".into());
    }
    outcome
}

fn post(target: &Target, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
    let builder =
        Request::post(target.path.as_str()).header(hyper::header::CONTENT_TYPE, "application/json");
    request(builder, target, body)
}

/// `builder` with the host, `Accept: text/event-stream` and the target's token.
fn request(
    builder: hyper::http::request::Builder,
    target: &Target,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = builder
        .header(hyper::header::HOST, target.host.as_str())
        .header(hyper::header::ACCEPT, "text/event-stream");
    if let Some(token) = &target.token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))
}

/// Sends `request` over a new connection; the response once its head arrived with a 2xx.
async fn open(
    target: &Target,
    request: Request<Full<Bytes>>,
    source: Option<IpAddr>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let tcp = connect(target.addr, source)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    Ok(response)
}

/// Reads a stream to its final event; `on_event(sentNs, now)` for every timed event.
async fn read(
    target: &Target,
    response: hyper::Response<hyper::body::Incoming>,
    opts: &StreamOptions<'_>,
    start: u64,
    outcome: &mut Outcome,
    on_event: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(), String> {
    if let Some((hb, _)) = opts.heartbeats {
        hb.t0_ns.store(mono_ns(), Ordering::Relaxed);
        hb.alive.store(true, Ordering::Relaxed);
    }
    let mut body = response.into_body();
    let mut scan = SseScan::default();
    loop {
        let frame = match tokio::time::timeout(opts.stall, body.frame()).await {
            Err(_) => {
                outcome.stalled = true;
                return Ok(());
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(format!("body: {e}")),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = mono_ns();
        let mut done = false;
        scan.push(&data, |block| match classify(block, target.gateway) {
            Block::Heartbeat => {
                if let Some((hb, shared)) = opts.heartbeats {
                    hb.beat(shared, now);
                }
            }
            Block::Event { sent_ns, id, last } => {
                outcome.events += 1;
                if outcome.ttfe_ns.is_none() {
                    outcome.ttfe_ns = Some(now.saturating_sub(start));
                }
                if let Some(id) = id {
                    match outcome.last_id {
                        None => outcome.first_id = Some(id),
                        Some(prev) if id != prev + 1 => outcome.id_gaps += 1,
                        Some(_) => {}
                    }
                    outcome.last_id = Some(id);
                }
                if let Some(sent) = sent_ns {
                    on_event(sent, now);
                }
                if last {
                    outcome.complete = true;
                    done = true;
                }
            }
            Block::Error => {
                if outcome.error.is_none() {
                    outcome.error = Some(format!(
                        "error event: {}",
                        String::from_utf8_lossy(&block[..block.len().min(300)])
                    ));
                }
            }
            Block::Done => {
                outcome.complete = true;
                done = true;
            }
            Block::Other => {}
        });
        if done {
            return Ok(());
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Block {
    Heartbeat,
    Event {
        sent_ns: Option<u64>,
        id: Option<u64>,
        last: bool,
    },
    Error,
    Done,
    Other,
}

/// The searchers the scan and the classification use, built once: `memmem::find` builds one
/// for every call, and five calls per event were a quarter of the client's instructions.
struct Needles {
    blank_line: Finder<'static>,
    data: Finder<'static>,
    keep_alive: Finder<'static>,
    sent_ns: Finder<'static>,
    id: Finder<'static>,
}

static NEEDLES: LazyLock<Needles> = LazyLock::new(|| Needles {
    blank_line: Finder::new(b"\n\n"),
    data: Finder::new(b"data: "),
    keep_alive: Finder::new(b"\"kind\":\"KeepAlive\""),
    sent_ns: Finder::new(b"\"sentNs\":"),
    id: Finder::new(b"id: "),
});

/// What one SSE block (without its blank line) is.
pub fn classify(block: &[u8], gateway: bool) -> Block {
    if block.first() == Some(&b':') {
        return Block::Heartbeat;
    }
    if block.starts_with(b"event: done") {
        return Block::Done;
    }
    if block.starts_with(b"event: error") {
        return Block::Error;
    }
    let needles = &*NEEDLES;
    let Some(data_at) = needles.data.find(block) else {
        return Block::Other;
    };
    let (head, data) = block.split_at(data_at);
    if needles.keep_alive.find(data).is_some() {
        return Block::Heartbeat;
    }
    let sent_ns = number_after(data, &needles.sent_ns);
    let id = number_after(head, &needles.id);
    let last = !gateway && data.starts_with(b"data: {\"status\":\"idle\"");
    Block::Event { sent_ns, id, last }
}

/// The decimal number right after the first `key` in `bytes`.
fn number_after(bytes: &[u8], key: &Finder<'_>) -> Option<u64> {
    let i = key.find(bytes)?;
    let digits = &bytes[i + key.needle().len()..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Splits a byte stream into SSE blocks at blank lines.
#[derive(Default)]
pub struct SseScan {
    buf: Vec<u8>,
    scanned: usize,
}

impl SseScan {
    pub fn push(&mut self, chunk: &[u8], mut on_block: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(chunk);
        let mut begin = 0;
        let mut from = self.scanned.saturating_sub(1).max(begin);
        while let Some(i) = NEEDLES.blank_line.find(&self.buf[from..]) {
            let end = from + i;
            on_block(&self.buf[begin..end]);
            begin = end + 2;
            from = begin;
        }
        self.buf.drain(..begin);
        self.scanned = self.buf.len();
    }
}

/// Source addresses 127.0.0.1 .. 127.0.0.n, to spread many connections over more port ranges.
pub fn sources(n: u8) -> Vec<IpAddr> {
    (1..=n.max(1))
        .map(|i| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, i)))
        .collect()
}

/// A shared heartbeat record for hold mode.
pub fn heartbeat_shared(interval: Duration) -> anyhow::Result<Arc<HeartbeatShared>> {
    Ok(Arc::new(HeartbeatShared {
        interval_ns: interval.as_nanos() as u64,
        recording: AtomicBool::new(false),
        lateness: Mutex::new(crate::histogram()?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_splits_blocks_across_chunks() {
        let mut scan = SseScan::default();
        let mut blocks = Vec::new();
        for chunk in [
            &b"data: a\n"[..],
            b"\ndata: b\n\n: ka",
            b"\n\nevent: done\nid: 3\ndata: {}\n\n",
        ] {
            scan.push(chunk, |b| {
                blocks.push(String::from_utf8_lossy(b).to_string())
            });
        }
        assert_eq!(
            blocks,
            ["data: a", "data: b", ": ka", "event: done\nid: 3\ndata: {}"]
        );
    }

    #[test]
    fn classifies_events() {
        assert_eq!(classify(b": keep-alive", true), Block::Heartbeat);
        assert_eq!(classify(b"event: done\nid: 9\ndata: {}", true), Block::Done);
        assert_eq!(
            classify(
                b"data: {\"status\":\"idle\",\"message\":{\"sentNs\":42}}",
                false
            ),
            Block::Event {
                sent_ns: Some(42),
                id: None,
                last: true
            }
        );
        assert_eq!(
            classify(
                b"event: message\nid: 1\ndata: {\"status\":\"idle\",\"message\":{\"sentNs\":7}}",
                true
            ),
            Block::Event {
                sent_ns: Some(7),
                id: Some(1),
                last: false
            }
        );
        assert_eq!(
            classify(
                b"data: {\"message\":{\"kind\":\"KeepAlive\",\"sentNs\":1}}",
                false
            ),
            Block::Heartbeat
        );
    }
}
