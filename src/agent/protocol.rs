//! Upstream agent wire types (see AGENT_PROTOCOL.md) and how an agent event becomes the event a
//! client sees: `agentState` and `unifiedDiff` removed, `appId`/`traceId`/`runId`/`techStack` added.
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::notices::ShapedNotice;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRequest {
    pub application_id: String,
    pub trace_id: String,
    pub all_messages: Vec<ConversationMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_state: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_files: Option<Vec<AgentFile>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationMessage {
    pub role: String,
    pub content: String,
    /// Required by agents on assistant messages; absent on user messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentFile {
    pub path: String,
    pub content: String,
}

pub const KIND_KEEP_ALIVE: &str = "KeepAlive";
pub const KIND_REFINEMENT_REQUEST: &str = "RefinementRequest";
pub const KIND_RUNTIME_ERROR: &str = "RuntimeError";
pub const KIND_WIP_UPDATE: &str = "WipUpdate";
pub const KIND_PLATFORM_MESSAGE: &str = "PlatformMessage";

/// The message kinds agent servers know (their request validation rejects any other).
const AGENT_KINDS: [&str; 6] = [
    "StageResult",
    "RefinementRequest",
    "RuntimeError",
    "ReviewResult",
    "KeepAlive",
    "WipUpdate",
];

pub fn is_agent_kind(kind: &str) -> bool {
    AGENT_KINDS.contains(&kind)
}

/// One parsed upstream event. Only what the gateway acts on is lifted out; the rest of
/// `message` passes through untouched, so unknown kinds and fields reach clients.
#[derive(Debug, Clone)]
pub struct AgentEvent {
    pub idle: bool,
    pub kind: String,
    pub message: Map<String, Value>,
    pub agent_state: Option<Value>,
    pub unified_diff: Option<String>,
    pub app_name: Option<String>,
    pub commit_message: Option<String>,
    /// Top-level fields the gateway does not set itself (e.g. the agent's `timestamp`), passed
    /// through to clients.
    pub extra: Map<String, Value>,
}

/// Top-level fields of a client event that the gateway sets; an agent's own are dropped.
const GATEWAY_FIELDS: [&str; 7] = [
    "appId",
    "message",
    "metadata",
    "runId",
    "status",
    "techStack",
    "traceId",
];

impl AgentEvent {
    /// Parses one `data:` payload. Anything but a JSON object with an object `message` is an error.
    pub fn parse(data: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(data).map_err(|e| format!("event is not valid JSON: {e}"))?;
        let Value::Object(mut event) = value else {
            return Err("event is not a JSON object".into());
        };
        let status = event
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("running");
        let idle = status.eq_ignore_ascii_case("idle");
        let mut message = match event.remove("message") {
            Some(Value::Object(m)) => m,
            _ => return Err("event has no message object".into()),
        };
        let kind = message
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_string();
        let agent_state = message.remove("agentState").filter(|v| !v.is_null());
        let unified_diff = match message.remove("unifiedDiff") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        normalize_messages(&mut message);
        let text_field = |m: &Map<String, Value>, key: &str| {
            m.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        event.retain(|key, _| !GATEWAY_FIELDS.contains(&key.as_str()));
        Ok(Self {
            idle,
            extra: event,
            app_name: text_field(&message, "app_name"),
            commit_message: text_field(&message, "commit_message"),
            kind,
            message,
            agent_state,
            unified_diff,
        })
    }

    pub fn is_keep_alive(&self) -> bool {
        self.kind == KIND_KEEP_ALIVE
    }

    /// The human-readable text of the event, joined.
    pub fn text(&self) -> String {
        message_text(&self.message)
    }
}

/// Old agents (before mid-2025) sent `content` (a JSON-encoded list of LLM messages) instead of
/// `messages`; clients only understand `messages`, so convert.
fn normalize_messages(message: &mut Map<String, Value>) {
    let has_messages = matches!(message.get("messages"), Some(Value::Array(_)));
    if has_messages {
        message.remove("content");
        return;
    }
    let legacy = message.remove("content");
    let messages = match legacy {
        Some(Value::String(s)) if !s.is_empty() => legacy_content_to_messages(&s),
        _ => Vec::new(),
    };
    message.insert("messages".into(), Value::Array(messages));
}

fn legacy_content_to_messages(content: &str) -> Vec<Value> {
    let text_of = |v: &Value| -> Option<String> {
        match v.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            // LLM content blocks: [{"type":"text","text":"..."}]
            Some(Value::Array(blocks)) => Some(
                blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => None,
        }
    };
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Array(items)) => items
            .iter()
            .filter_map(text_of)
            .filter(|t| !t.is_empty())
            .map(|t| json!({"role": "assistant", "content": t}))
            .collect(),
        _ => vec![json!({"role": "assistant", "content": content})],
    }
}

pub fn message_text(message: &Map<String, Value>) -> String {
    match message.get("messages") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Identifies the run an event belongs to; added to every client payload.
#[derive(Debug, Clone, Serialize)]
pub struct EventContext {
    pub app_id: String,
    pub trace_id: String,
    pub run_id: String,
    pub tech_stack: Option<String>,
}

/// The client payload of a relayed agent event, serialised straight from the parsed event
/// (no copy of the message). Fields in the order `json!` would give them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientMessage<'a> {
    app_id: &'a str,
    message: &'a Map<String, Value>,
    run_id: &'a str,
    status: &'static str,
    tech_stack: Option<&'a str>,
    trace_id: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// The client payload of a relayed agent event, as JSON text.
pub fn client_message(ctx: &EventContext, event: &AgentEvent) -> String {
    let payload = ClientMessage {
        app_id: &ctx.app_id,
        message: &event.message,
        run_id: &ctx.run_id,
        status: if event.idle { "idle" } else { "running" },
        tech_stack: ctx.tech_stack.as_deref(),
        trace_id: &ctx.trace_id,
        extra: &event.extra,
    };
    // Serialising strings and maps of `Value`s cannot fail.
    serde_json::to_string(&payload).unwrap_or_default()
}

/// A gateway notice (see [`crate::notices`]) as an event: `status: "idle"`, because app.build
/// clients decide "still streaming" from the last event's status.
pub fn platform_message(ctx: &EventContext, notice: &ShapedNotice) -> Value {
    let mut payload = json!({
        "appId": ctx.app_id,
        "traceId": ctx.trace_id,
        "runId": ctx.run_id,
        "status": "idle",
        "techStack": ctx.tech_stack,
        "message": {
            "role": "assistant",
            "kind": notice.kind,
            "messages": [{"role": "assistant", "content": notice.text}],
            "metadata": notice.message_metadata,
        },
    });
    if let (Some(metadata), Value::Object(map)) = (&notice.metadata, &mut payload) {
        map.insert("metadata".into(), metadata.clone());
    }
    payload
}

/// The `error` event payload, in the shape app.build clients expect.
pub fn error_payload(ctx: &EventContext, code: &str, text: &str) -> Value {
    json!({
        "error": text,
        "code": code,
        "appId": ctx.app_id,
        "traceId": ctx.trace_id,
        "runId": ctx.run_id,
        "status": "idle",
        "message": {
            "role": "assistant",
            "kind": KIND_RUNTIME_ERROR,
            "messages": [{"role": "assistant", "content": text}],
        },
    })
}

pub fn done_payload(ctx: &EventContext) -> Value {
    json!({"done": true, "appId": ctx.app_id, "traceId": ctx.trace_id, "runId": ctx.run_id})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_state_and_diff_and_keeps_unknown_fields() {
        let e = AgentEvent::parse(
            r#"{"status":"idle","traceId":"t","message":{"role":"assistant","kind":"ReviewResult","messages":[{"role":"assistant","content":"hi"}],"agentState":{"a":1},"unifiedDiff":"diff","app_name":"x","commit_message":"c","extra":5}}"#,
        )
        .expect("parse");
        assert!(e.idle);
        assert_eq!(e.agent_state, Some(json!({"a": 1})));
        assert_eq!(e.unified_diff.as_deref(), Some("diff"));
        assert!(!e.message.contains_key("agentState"));
        assert!(!e.message.contains_key("unifiedDiff"));
        assert_eq!(e.message.get("extra"), Some(&json!(5)));
        assert!(e.extra.is_empty());
        assert_eq!(e.text(), "hi");
    }

    #[test]
    fn unknown_top_level_fields_pass_through_to_clients() {
        let e = AgentEvent::parse(
            r#"{"status":"running","traceId":"agent's","runId":"forged","timestamp":"2026-11-21T22:23:33.823579","message":{"kind":"StageResult","messages":[]}}"#,
        )
        .expect("parse");
        let ctx = EventContext {
            app_id: "a".into(),
            trace_id: "app-a.req-r".into(),
            run_id: "r".into(),
            tech_stack: None,
        };
        let client: Value = serde_json::from_str(&client_message(&ctx, &e)).expect("json");
        assert_eq!(client["timestamp"], "2026-11-21T22:23:33.823579");
        assert_eq!(client["traceId"], "app-a.req-r");
        assert_eq!(client["runId"], "r");
    }

    #[test]
    fn null_messages_with_legacy_content() {
        let e = AgentEvent::parse(
            r#"{"status":"running","message":{"kind":"StageResult","messages":null,"content":"[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"old\"}]}]"}}"#,
        )
        .expect("parse");
        assert_eq!(e.text(), "old");
        let e = AgentEvent::parse(
            r#"{"status":"running","message":{"kind":"StageResult","messages":null}}"#,
        )
        .expect("parse");
        assert_eq!(e.message.get("messages"), Some(&json!([])));
    }

    #[test]
    fn null_and_empty_diffs() {
        let e = AgentEvent::parse(
            r#"{"status":"idle","message":{"kind":"RuntimeError","unifiedDiff":""}}"#,
        )
        .expect("parse");
        assert_eq!(e.unified_diff.as_deref(), Some(""));
        let e = AgentEvent::parse(
            r#"{"status":"idle","message":{"kind":"RuntimeError","unifiedDiff":null}}"#,
        )
        .expect("parse");
        assert_eq!(e.unified_diff, None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(AgentEvent::parse("{not json").is_err());
        assert!(AgentEvent::parse("[1,2]").is_err());
        assert!(AgentEvent::parse(r#"{"status":"idle"}"#).is_err());
    }
}
