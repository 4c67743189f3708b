//! The SSE response body: planned events, delays, KeepAlives, test switches.
//!
//! A spawned task writes frames into a channel that backs the body, so a
//! client disconnect (body dropped) ends the task, like upstream's
//! disconnect listener cancelling the agent run.

use super::protocol::{frame_event, AgentMessage, EventSpec, Kind, Status};
use super::switches::{Switches, CLOSE_DELAY};
use axum::body::Body;
use bytes::Bytes;
use std::io;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

/// Time for already-taken events to reach the socket before a forced drop.
const DROP_FLUSH_GRACE: Duration = Duration::from_millis(20);

/// One body frame: a normal event, or raw bytes (to send broken JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Event(EventSpec),
    Raw(String),
}

/// What to send: `frames` in order, then either close or (when `hang`)
/// KeepAlives until the client goes away.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub frames: Vec<Frame>,
    pub hang: bool,
}

/// Applies the stream-shaping switches to the agent's events.
pub fn script(events: Vec<EventSpec>, sw: &Switches) -> Script {
    if sw.hang {
        return Script {
            frames: Vec::new(),
            hang: true,
        };
    }
    if sw.invalid_json {
        return Script {
            frames: vec![Frame::Raw("data: {not json\n\n".into())],
            hang: false,
        };
    }
    let mut events = if sw.double_idle {
        // Upstream: the agent reports, then the task-group handler again
        // (with `unifiedDiff: ""`).
        let mut second = runtime_error("Error processing request: simulated task-group failure");
        second.unified_diff = Some(String::new());
        vec![
            EventSpec::idle(runtime_error(
                "Error processing request: simulated agent failure",
            )),
            EventSpec::idle(second),
        ]
    } else if sw.runtime_error {
        vec![EventSpec::idle(runtime_error(
            "Error processing request: simulated agent failure",
        ))]
    } else {
        events
    };
    if let Some(n) = sw.huge_event_bytes {
        let huge = AgentMessage::new(Kind::WipUpdate).with_text("x".repeat(n));
        events.insert(0, EventSpec::running(huge));
    }
    if sw.no_final_event {
        events.retain(|e| e.status == Status::Running);
    }
    Script {
        frames: events.into_iter().map(Frame::Event).collect(),
        hang: false,
    }
}

fn runtime_error(text: &str) -> AgentMessage {
    AgentMessage::new(Kind::RuntimeError).with_text(text)
}

/// Resolves when the server shuts down; never for routers without one.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(pub Option<watch::Receiver<bool>>);

impl Shutdown {
    async fn wait(&mut self) {
        match &mut self.0 {
            // A dropped sender also means the server is gone.
            Some(rx) => {
                let _ = rx.wait_for(|down| *down).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Starts the producer task and returns the streaming body.
pub fn sse_body(trace_id: String, script: Script, sw: Switches, shutdown: Shutdown) -> Body {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(produce(
        Sink::new(tx, trace_id, sw.drop_after_events),
        script,
        sw,
        shutdown,
    ));
    Body::from_stream(ReceiverStream::new(rx))
}

/// The sending half, counting events for `dropAfterEvents`.
struct Sink {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    trace_id: String,
    sent: u64,
    drop_after: Option<u64>,
}

impl Sink {
    fn new(
        tx: mpsc::Sender<Result<Bytes, io::Error>>,
        trace_id: String,
        drop_after: Option<u64>,
    ) -> Self {
        Self {
            tx,
            trace_id,
            sent: 0,
            drop_after,
        }
    }

    /// Sends one frame; `false` when the stream must stop (client gone,
    /// or the drop switch fired).
    async fn send(&mut self, frame: &Frame) -> bool {
        let text = match frame {
            Frame::Raw(raw) => raw.clone(),
            Frame::Event(spec) => match frame_event(spec, &self.trace_id) {
                Ok(text) => text,
                Err(err) => {
                    tracing::error!(%err, "demo agent: event serialization failed");
                    return false;
                }
            },
        };
        if self.tx.send(Ok(Bytes::from(text))).await.is_err() {
            return false;
        }
        self.sent += 1;
        !self.drop_if_due().await
    }

    /// An error item makes the server abort the connection without the
    /// terminating chunk, like an upstream crash mid-stream.
    async fn drop_if_due(&mut self) -> bool {
        if self.drop_after != Some(self.sent) {
            return false;
        }
        // Let the server write out what it already took from the channel;
        // an error polled together with data would discard that data too.
        while self.tx.capacity() < self.tx.max_capacity() && !self.tx.is_closed() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(DROP_FLUSH_GRACE).await;
        let _ = self
            .tx
            .send(Err(io::Error::other(
                "stream dropped by the dropAfterEvents switch",
            )))
            .await;
        true
    }
}

async fn produce(mut sink: Sink, script: Script, sw: Switches, mut shutdown: Shutdown) {
    if sink.drop_if_due().await {
        return;
    }
    // KeepAlives tick from stream start; real events do not reset them.
    let mut keep_alive = interval_at(Instant::now() + sw.keep_alive, sw.keep_alive);
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut idle_seen = false;
    let mut pacer = Pacer {
        sink: &mut sink,
        keep_alive: &mut keep_alive,
        shutdown: &mut shutdown,
    };
    for (i, frame) in script.frames.iter().enumerate() {
        if i > 0 && !pacer.wait(Some(sw.event_delay), idle_seen).await {
            return;
        }
        if !pacer.sink.send(frame).await {
            return;
        }
        idle_seen |= matches!(frame, Frame::Event(e) if e.status == Status::Idle);
    }
    let tail = if script.hang { None } else { Some(CLOSE_DELAY) };
    pacer.wait(tail, idle_seen).await;
}

struct Pacer<'a> {
    sink: &'a mut Sink,
    keep_alive: &'a mut tokio::time::Interval,
    shutdown: &'a mut Shutdown,
}

impl Pacer<'_> {
    /// Waits `duration` (forever if `None`), sending KeepAlives until an
    /// idle event went out; `false` when the stream must end now.
    async fn wait(&mut self, duration: Option<Duration>, idle_seen: bool) -> bool {
        let sleep = tokio::time::sleep(duration.unwrap_or(Duration::ZERO));
        tokio::pin!(sleep);
        let keep_alive = Frame::Event(EventSpec::keep_alive());
        loop {
            tokio::select! {
                _ = &mut sleep, if duration.is_some() => return true,
                _ = self.keep_alive.tick(), if !idle_seen => {
                    if !self.sink.send(&keep_alive).await {
                        return false;
                    }
                }
                _ = self.sink.tx.closed() => return false,
                _ = self.shutdown.wait() => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events() -> Vec<EventSpec> {
        vec![
            EventSpec::running(AgentMessage::new(Kind::WipUpdate).with_text("a")),
            EventSpec::idle(AgentMessage::new(Kind::ReviewResult)),
        ]
    }

    fn sw(demo: serde_json::Value) -> Switches {
        Switches::from_settings(Some(&json!({ "demo": demo })))
    }

    #[test]
    fn shaping_switches() {
        assert_eq!(script(events(), &Switches::default()).frames.len(), 2);
        assert!(script(events(), &sw(json!({"hang": true}))).hang);
        let s = script(events(), &sw(json!({"noFinalEvent": true})));
        assert_eq!(s.frames.len(), 1);
        let s = script(events(), &sw(json!({"hugeEventBytes": 10})));
        assert_eq!(s.frames.len(), 3);
        let s = script(events(), &sw(json!({"doubleIdle": true})));
        assert_eq!(s.frames.len(), 2);
        assert!(s.frames.iter().all(|f| matches!(f, Frame::Event(e) if e.status == Status::Idle && e.message.kind == Kind::RuntimeError)));
        let s = script(events(), &sw(json!({"invalidJson": true})));
        assert_eq!(s.frames, vec![Frame::Raw("data: {not json\n\n".into())]);
    }
}
