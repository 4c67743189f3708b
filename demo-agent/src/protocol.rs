//! Wire types of the upstream agent protocol (SSE event payloads).
//!
//! Field order and casing matter: clients compare against real captures, so
//! every key is always serialized (nulls included) in the upstream order, and
//! `app_name` / `commit_message` stay snake_case while the rest is camelCase.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    StageResult,
    RefinementRequest,
    RuntimeError,
    ReviewResult,
    KeepAlive,
    WipUpdate,
}

/// One human-readable text block; `role` is always "assistant" upstream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextBlock {
    pub role: &'static str,
    pub content: String,
}

impl TextBlock {
    pub fn new(content: impl Into<String>) -> Self {
        Self {
            role: "assistant",
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentMessage {
    pub role: &'static str,
    pub kind: Kind,
    pub messages: Option<Vec<TextBlock>>,
    #[serde(rename = "agentState")]
    pub agent_state: Option<Value>,
    #[serde(rename = "unifiedDiff")]
    pub unified_diff: Option<String>,
    /// Always null upstream at HEAD; kept for shape compatibility.
    #[serde(rename = "completeDiffHash")]
    pub complete_diff_hash: Option<String>,
    /// Always null upstream at HEAD; kept for shape compatibility.
    #[serde(rename = "diffStat")]
    pub diff_stat: Option<Value>,
    pub app_name: Option<String>,
    pub commit_message: Option<String>,
}

impl AgentMessage {
    /// A message of `kind` with every optional field null.
    pub fn new(kind: Kind) -> Self {
        Self {
            role: "assistant",
            kind,
            messages: None,
            agent_state: None,
            unified_diff: None,
            complete_diff_hash: None,
            diff_stat: None,
            app_name: None,
            commit_message: None,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.messages = Some(vec![TextBlock::new(text)]);
        self
    }
}

/// A planned event; the trace id and timestamp are attached when it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub status: Status,
    pub message: AgentMessage,
}

impl EventSpec {
    pub fn running(message: AgentMessage) -> Self {
        Self {
            status: Status::Running,
            message,
        }
    }

    pub fn idle(message: AgentMessage) -> Self {
        Self {
            status: Status::Idle,
            message,
        }
    }

    pub fn keep_alive() -> Self {
        let mut message = AgentMessage::new(Kind::KeepAlive);
        message.messages = Some(Vec::new());
        Self::running(message)
    }
}

#[derive(Serialize)]
struct SseEvent<'a> {
    status: Status,
    #[serde(rename = "traceId")]
    trace_id: &'a str,
    message: &'a AgentMessage,
    timestamp: String,
}

/// Frames one event as `data: <single-line json>\n\n`, stamped now.
pub fn frame_event(spec: &EventSpec, trace_id: &str) -> Result<String, serde_json::Error> {
    let event = SseEvent {
        status: spec.status,
        trace_id,
        message: &spec.message,
        timestamp: python_isoformat_now(),
    };
    // serde_json escapes control characters, so the payload is one line.
    let json = serde_json::to_string(&event)?;
    Ok(format!("data: {json}\n\n"))
}

/// `datetime.utcnow().isoformat()`: naive, microseconds, no fraction when zero.
pub fn python_isoformat_now() -> String {
    python_isoformat(chrono::Utc::now().naive_utc())
}

pub fn python_isoformat(t: chrono::NaiveDateTime) -> String {
    use chrono::Timelike;
    let micros = t.nanosecond() / 1_000 % 1_000_000;
    let base = t.format("%Y-%m-%dT%H:%M:%S");
    if micros == 0 {
        base.to_string()
    } else {
        format!("{base}.{micros:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isoformat_matches_python() {
        let d = chrono::NaiveDate::from_ymd_opt(2026, 11, 21)
            .and_then(|d| d.and_hms_micro_opt(22, 23, 33, 823_579));
        assert_eq!(python_isoformat(d.unwrap()), "2026-11-21T22:23:33.823579");
        let d = chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 7));
        assert_eq!(python_isoformat(d.unwrap()), "2026-01-02T03:04:05.000007");
        let d = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).and_then(|d| d.and_hms_opt(3, 4, 5));
        assert_eq!(python_isoformat(d.unwrap()), "2026-01-02T03:04:05");
    }

    #[test]
    fn keep_alive_matches_capture_shape() {
        let framed = frame_event(&EventSpec::keep_alive(), "t-keepalive").unwrap();
        let expected_prefix = r#"data: {"status":"running","traceId":"t-keepalive","message":{"role":"assistant","kind":"KeepAlive","messages":[],"agentState":null,"unifiedDiff":null,"completeDiffHash":null,"diffStat":null,"app_name":null,"commit_message":null},"timestamp":""#;
        assert!(framed.starts_with(expected_prefix), "{framed}");
        assert!(framed.ends_with("\"}\n\n"));
        assert_eq!(framed.matches('\n').count(), 2);
    }

    #[test]
    fn newlines_in_text_stay_escaped() {
        let spec =
            EventSpec::idle(AgentMessage::new(Kind::RuntimeError).with_text("a\nb\u{2028}🎯"));
        let framed = frame_event(&spec, "t").unwrap();
        assert_eq!(framed.matches('\n').count(), 2);
        assert!(framed.contains("a\\nb\u{2028}🎯"));
    }
}
