//! The upstream client: POST `{agent_url}/message` and turn the SSE body into parsed agent events,
//! enforcing the idle timeout and event size limit. Connect failures are retried with backoff,
//! but only before any byte of a response has arrived: a POST is never replayed mid-stream.
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};

use super::protocol::{AgentEvent, AgentRequest};
use super::sse::{SseError, SseParser};

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to the agent server: {0}")]
    Connect(String),
    #[error("the agent server answered HTTP {status}: {excerpt}")]
    HttpStatus { status: u16, excerpt: String },
    #[error("the agent server sent an invalid event: {0}")]
    InvalidEvent(String),
    #[error("the agent server sent an event larger than {max} bytes")]
    EventTooLarge { max: usize },
    #[error("the agent server sent nothing for {0} s")]
    IdleTimeout(u64),
    #[error("the agent turn took longer than {0} s")]
    Deadline(u64),
    #[error("the agent stream ended without a final event")]
    EndedWithoutFinal,
    #[error("the agent connection failed mid-stream: {0}")]
    Reset(String),
}

impl UpstreamError {
    /// Stable code for `error` events and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Connect(_) => "upstream_connect_failed",
            Self::HttpStatus { .. } => "upstream_http_error",
            Self::InvalidEvent(_) => "upstream_invalid_event",
            Self::EventTooLarge { .. } => "upstream_event_too_large",
            Self::IdleTimeout(_) => "upstream_idle_timeout",
            Self::Deadline(_) => "upstream_deadline_exceeded",
            Self::EndedWithoutFinal => "upstream_incomplete_stream",
            Self::Reset(_) => "upstream_connection_reset",
        }
    }
}

#[derive(Clone)]
pub struct AgentClientConfig {
    pub base_url: String,
    pub secret: SecretString,
    pub connect_timeout: Duration,
    pub connect_retries: u32,
    pub idle_timeout: Duration,
    pub max_event_bytes: usize,
}

#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    config: AgentClientConfig,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open upstream stream. Call [`AgentStream::next_event`] until it returns `Ok(None)` (EOF).
pub struct AgentStream {
    body: ByteStream,
    parser: SseParser,
    pending: std::collections::VecDeque<String>,
    idle_timeout: Duration,
    /// Fires `idle_timeout` after the last chunk. A chunk only records its time; the timer is
    /// moved when it fires early, not re-armed per chunk (with the run task's per-event timer
    /// and cancellation future, that was ≈ 1,550 instructions an event).
    idle: Pin<Box<tokio::time::Sleep>>,
    last_chunk: tokio::time::Instant,
    max_event_bytes: usize,
}

const EXCERPT_CHARS: usize = 300;

impl AgentClient {
    pub fn new(config: AgentClientConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self { http, config })
    }

    pub async fn open(&self, request: &AgentRequest) -> Result<AgentStream, UpstreamError> {
        let url = format!("{}/message", self.config.base_url.trim_end_matches('/'));
        let mut attempt = 0u32;
        let response = loop {
            let mut builder = self
                .http
                .post(&url)
                .header(reqwest::header::ACCEPT, "text/event-stream")
                // Compressed agent streams hold back headers until the first event (§8).
                .header(reqwest::header::ACCEPT_ENCODING, "identity")
                .json(request);
            let secret = self.config.secret.expose_secret();
            if !secret.is_empty() {
                builder = builder.bearer_auth(secret);
            }
            // The agent server's spans join the run's trace.
            if let Some(traceparent) = crate::telemetry::context::current_traceparent() {
                builder = builder.header(crate::telemetry::context::TRACEPARENT, traceparent);
            }
            // An agent that accepts the request but never answers is as idle as a silent stream.
            let sent = tokio::time::timeout(self.config.idle_timeout, builder.send()).await;
            let Ok(sent) = sent else {
                return Err(UpstreamError::IdleTimeout(
                    self.config.idle_timeout.as_secs(),
                ));
            };
            // `without_url`: the agent's internal address is not for clients' eyes.
            match sent.map_err(reqwest::Error::without_url) {
                Ok(response) => break response,
                Err(e) if e.is_connect() && attempt < self.config.connect_retries => {
                    attempt += 1;
                    let backoff = Duration::from_millis(200 * 2u64.pow(attempt.min(6)));
                    tracing::warn!(attempt, error = %e, "agent connect failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) if e.is_connect() || e.is_timeout() => {
                    return Err(UpstreamError::Connect(e.to_string()))
                }
                Err(e) => return Err(UpstreamError::Reset(e.to_string())),
            }
        };
        let status = response.status();
        if !status.is_success() {
            let excerpt = read_excerpt(response).await;
            return Err(UpstreamError::HttpStatus {
                status: status.as_u16(),
                excerpt,
            });
        }
        if let Some(unreadable) = not_an_event_stream(response.headers()) {
            return Err(unreadable);
        }
        Ok(AgentStream {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::new(self.config.max_event_bytes),
            pending: Default::default(),
            idle_timeout: self.config.idle_timeout,
            idle: Box::pin(tokio::time::sleep(self.config.idle_timeout)),
            last_chunk: tokio::time::Instant::now(),
            max_event_bytes: self.config.max_event_bytes,
        })
    }
}

/// Why a successful answer cannot be read as SSE, if it cannot: read anyway, it would end as
/// "no final event", which says nothing of the cause. reqwest decodes gzip, brotli and
/// deflate itself and then drops the `content-encoding`, so any encoding left is one it does
/// not know. A missing `content-type` is let through (nothing is lost by trying).
fn not_an_event_stream(headers: &reqwest::header::HeaderMap) -> Option<UpstreamError> {
    use reqwest::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
    let text = |value: &HeaderValue| {
        String::from_utf8_lossy(value.as_bytes())
            .trim()
            .to_ascii_lowercase()
    };
    if let Some(encoding) = headers.get(CONTENT_ENCODING).map(text) {
        if encoding != "identity" {
            return Some(UpstreamError::InvalidEvent(format!(
                "the stream is encoded with {encoding}, which the gateway cannot decode \
                 (it asks for identity)"
            )));
        }
    }
    match headers.get(CONTENT_TYPE).map(text) {
        Some(kind) if !kind.starts_with("text/event-stream") => Some(UpstreamError::InvalidEvent(
            format!("the answer is {kind}, not an event stream"),
        )),
        _ => None,
    }
}

/// The first few hundred characters of an error body; never the whole body.
async fn read_excerpt(response: reqwest::Response) -> String {
    let mut body = response.bytes_stream();
    let mut collected = Vec::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(2), body.next()).await
    {
        collected.extend_from_slice(&chunk);
        if collected.len() >= EXCERPT_CHARS * 4 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&collected);
    let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().count() > EXCERPT_CHARS {
        excerpt.push('…');
    }
    excerpt.trim().to_string()
}

impl AgentStream {
    /// The next upstream event, `Ok(None)` at a clean EOF.
    pub async fn next_event(&mut self) -> Result<Option<AgentEvent>, UpstreamError> {
        loop {
            if let Some(data) = self.pending.pop_front() {
                return AgentEvent::parse(data)
                    .map(Some)
                    .map_err(UpstreamError::InvalidEvent);
            }
            let next = tokio::select! {
                biased;
                next = self.body.next() => next,
                () = self.idle.as_mut() => {
                    let due = self.last_chunk + self.idle_timeout;
                    if tokio::time::Instant::now() < due {
                        self.idle.as_mut().reset(due);
                        continue;
                    }
                    return Err(UpstreamError::IdleTimeout(self.idle_timeout.as_secs()));
                }
            };
            let chunk = match next {
                None => return Ok(None),
                Some(Err(e)) => return Err(UpstreamError::Reset(e.without_url().to_string())),
                Some(Ok(chunk)) => chunk,
            };
            self.last_chunk = tokio::time::Instant::now();
            let events = self.parser.push(&chunk).map_err(|e| match e {
                SseError::TooLarge { .. } => UpstreamError::EventTooLarge {
                    max: self.max_event_bytes,
                },
                SseError::InvalidUtf8 => UpstreamError::InvalidEvent(e.to_string()),
            })?;
            self.pending.extend(events.into_iter().map(|e| e.data));
        }
    }
}
