//! Upstream agent wire types (see AGENT_PROTOCOL.md) and how an agent event becomes the event a
//! client sees: `agentState` and `unifiedDiff` removed, `appId`/`traceId`/`runId`/`techStack` added.
use std::borrow::Cow;

use serde::Serialize;
use serde_json::{json, Value};

use super::json_fields::{self, string_value, Field, FieldKey};
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

/// One parsed upstream event. Only what the gateway acts on is lifted out; every other field
/// passes through as the agent's own bytes (unknown kinds and fields reach clients untouched,
/// and nothing is parsed into a tree only to be serialised again).
#[derive(Debug, Clone)]
pub struct AgentEvent {
    pub idle: bool,
    /// The agent's kinds are not copied: every event has one.
    pub kind: Cow<'static, str>,
    pub agent_state: Option<Value>,
    pub unified_diff: Option<String>,
    pub app_name: Option<String>,
    pub commit_message: Option<String>,
    /// The agent's payload; the fields below point into it.
    data: String,
    /// The `message` fields clients get, in the agent's order.
    message: Vec<Field>,
    /// Top-level fields the gateway does not set itself (e.g. the agent's `timestamp`).
    extra: Vec<Field>,
    /// `messages` rebuilt from an old agent's `content` (see [`normalize_messages`]).
    legacy_messages: Option<Vec<Value>>,
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
    pub fn parse(mut data: String) -> Result<Self, String> {
        let (top, message) = json_fields::read_object(&data, "message").map_err(|e| match e {
            json_fields::Error::NotAnObject => "event is not a JSON object".to_string(),
            e => format!("event is not valid JSON: {e}"),
        })?;
        // The lines of a multi-line `data:` event are joined with LF. JSON that reads has no
        // raw control character inside a string, so each LF is whitespace between tokens; kept
        // in the parts passed through, it would end the client's `data:` line. A space is one
        // byte too, so every field's range still holds.
        if memchr::memchr(b'\n', data.as_bytes()).is_some() {
            data = data.replace('\n', " ");
        }
        let Some(mut message) = message else {
            return Err("event has no message object".into());
        };
        let value = |f: &Field| &data[f.value.clone()];
        let mut extra = top;
        let mut idle = false;
        extra.retain(|field| match field.key(&data) {
            "status" => {
                idle = string_value(value(field)).is_some_and(|s| s.eq_ignore_ascii_case("idle"));
                false
            }
            key => !GATEWAY_FIELDS.contains(&key),
        });
        let mut event = Self {
            idle,
            kind: Cow::Borrowed(""),
            agent_state: None,
            unified_diff: None,
            app_name: None,
            commit_message: None,
            message: Vec::new(),
            extra,
            legacy_messages: None,
            data: String::new(),
        };
        let mut kind = None;
        let mut messages_is_array = false;
        let mut legacy_content = None;
        // The fields clients get stay in place; those the gateway takes out are dropped.
        message.retain(|field| {
            let raw = value(field);
            match field.key(&data) {
                "agentState" => {
                    event.agent_state = (raw != "null")
                        .then(|| serde_json::from_str(raw).ok())
                        .flatten();
                    return false;
                }
                "unifiedDiff" => {
                    event.unified_diff = string_value(raw).map(Cow::into_owned);
                    return false;
                }
                "content" => {
                    legacy_content = Some(field.clone());
                    return false;
                }
                "messages" => messages_is_array = raw.starts_with('['),
                "kind" => kind = string_value(raw),
                "app_name" => event.app_name = non_empty(raw),
                "commit_message" => event.commit_message = non_empty(raw),
                _ => {}
            }
            true
        });
        event.message = message;
        event.kind = match kind {
            None => Cow::Borrowed("Unknown"),
            Some(kind) => match AGENT_KINDS.iter().find(|known| **known == kind) {
                Some(known) => Cow::Borrowed(known),
                None => Cow::Owned(kind.into_owned()),
            },
        };
        if !messages_is_array {
            let content = legacy_content.and_then(|f| string_value(value(&f)).map(Cow::into_owned));
            event.message.retain(|f| f.key(&data) != "messages");
            event.legacy_messages = Some(normalize_messages(content.as_deref()));
        }
        event.data = data;
        Ok(event)
    }

    pub fn is_keep_alive(&self) -> bool {
        self.kind == KIND_KEEP_ALIVE
    }

    /// The human-readable text of the event, joined.
    pub fn text(&self) -> String {
        let parsed;
        let items = match &self.legacy_messages {
            Some(items) => items,
            None => {
                let raw = self.message_field("messages").unwrap_or("[]");
                parsed = serde_json::from_str::<Vec<Value>>(raw).unwrap_or_default();
                &parsed
            }
        };
        items
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A field of `message` as the agent sent it (raw JSON).
    fn message_field(&self, key: &str) -> Option<&str> {
        (self.message.iter())
            .find(|f| f.key(&self.data) == key)
            .map(|f| &self.data[f.value.clone()])
    }
}

/// A non-empty string field (`app_name`, `commit_message`).
fn non_empty(raw: &str) -> Option<String> {
    string_value(raw)
        .filter(|s| !s.is_empty())
        .map(Cow::into_owned)
}

/// Old agents (before mid-2025) sent `content` (a JSON-encoded list of LLM messages) instead of
/// `messages`; clients only understand `messages`, so convert.
fn normalize_messages(legacy_content: Option<&str>) -> Vec<Value> {
    match legacy_content {
        Some(s) if !s.is_empty() => legacy_content_to_messages(s),
        _ => Vec::new(),
    }
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

/// Identifies the run an event belongs to; added to every client payload.
#[derive(Debug, Clone, Serialize)]
pub struct EventContext {
    pub app_id: String,
    pub trace_id: String,
    pub run_id: String,
    pub tech_stack: Option<String>,
}

/// The gateway's fields of a run's client payloads, JSON-encoded once per run: every event of
/// the run repeats them, and encoding the ids anew for each one cost more than copying the
/// agent's payload.
#[derive(Debug, Clone)]
pub struct ClientEnvelope {
    /// `{"appId":…,"message":{`
    open: String,
    /// `},"runId":…,"status":`
    run: String,
    /// `,"techStack":…,"traceId":…`
    rest: String,
}

impl ClientEnvelope {
    pub fn new(ctx: &EventContext) -> Self {
        let json = |text: &str| serde_json::to_string(text).unwrap_or_default();
        let tech_stack = ctx
            .tech_stack
            .as_deref()
            .map_or_else(|| "null".into(), json);
        Self {
            open: format!("{{\"appId\":{},\"message\":{{", json(&ctx.app_id)),
            run: format!("}},\"runId\":{},\"status\":", json(&ctx.run_id)),
            rest: format!(
                ",\"techStack\":{tech_stack},\"traceId\":{}",
                json(&ctx.trace_id)
            ),
        }
    }
}

/// The client payload of a relayed agent event, as JSON text: the gateway's fields around the
/// agent's own bytes (its `message` fields and extra top-level fields are copied, not
/// re-serialised).
pub fn client_message(envelope: &ClientEnvelope, event: &AgentEvent) -> String {
    let passed: usize = (event.message.iter().chain(&event.extra))
        .map(|f| f.key(&event.data).len() + f.value.len() + 4)
        .sum();
    let fixed = envelope.open.len() + envelope.run.len() + envelope.rest.len() + 16;
    let mut out = String::with_capacity(passed + fixed);
    out.push_str(&envelope.open);
    let mut first = true;
    push_fields(&mut out, &mut first, &event.message, &event.data);
    if let Some(items) = &event.legacy_messages {
        out.push_str(if first {
            "\"messages\":"
        } else {
            ",\"messages\":"
        });
        // Serialising `Value`s cannot fail.
        out.push_str(&serde_json::to_string(items).unwrap_or_default());
    }
    out.push_str(&envelope.run);
    out.push_str(match event.idle {
        true => "\"idle\"",
        false => "\"running\"",
    });
    out.push_str(&envelope.rest);
    let mut first = false;
    push_fields(&mut out, &mut first, &event.extra, &event.data);
    out.push('}');
    out
}

/// Appends `fields`, copying each run of them that stands in the agent's text one after
/// another, as written, in one piece: what separates them there is a comma and whitespace,
/// which is valid JSON as it is.
fn push_fields(out: &mut String, first: &mut bool, fields: &[Field], data: &str) {
    let bytes = data.as_bytes();
    let mut i = 0;
    while i < fields.len() {
        let Some(start) = in_place(&fields[i], bytes) else {
            push_field(out, first, &fields[i], data);
            i += 1;
            continue;
        };
        let mut end = fields[i].value.end;
        i += 1;
        while let Some(next) = fields.get(i).and_then(|f| in_place(f, bytes)) {
            if !bytes
                .get(end..next)
                .is_some_and(|gap| separated_by(gap, b','))
            {
                break;
            }
            end = fields[i].value.end;
            i += 1;
        }
        if !std::mem::take(first) {
            out.push(',');
        }
        out.push_str(&data[start..end]);
    }
}

/// Where a field's text starts (its key's opening quote), when the field stands as the agent
/// wrote it: an unescaped key, a colon, its value. A repeated key's field does not: its value
/// is a later one's.
fn in_place(field: &Field, bytes: &[u8]) -> Option<usize> {
    let FieldKey::Span(key) = &field.key else {
        return None;
    };
    let between = bytes.get(key.end + 1..field.value.start)?;
    separated_by(between, b':').then(|| key.start - 1)
}

/// Whether `gap` is exactly one `separator` amid JSON whitespace.
fn separated_by(gap: &[u8], separator: u8) -> bool {
    let mut seen = false;
    for &byte in gap {
        match byte {
            b' ' | b'\n' | b'\r' | b'\t' => {}
            byte if byte == separator && !seen => seen = true,
            _ => return false,
        }
    }
    seen
}

fn push_field(out: &mut String, first: &mut bool, key: &Field, data: &str) {
    if !std::mem::take(first) {
        out.push(',');
    }
    match &key.key {
        // As the agent wrote it: a key read in place has no escapes.
        FieldKey::Span(range) => {
            out.push('"');
            out.push_str(&data[range.clone()]);
            out.push('"');
        }
        FieldKey::Unescaped(key) => {
            out.push_str(&serde_json::to_string(&**key).unwrap_or_default())
        }
    }
    out.push(':');
    out.push_str(&data[key.value.clone()]);
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

    fn ctx() -> EventContext {
        EventContext {
            app_id: "a".into(),
            trace_id: "app-a.req-r".into(),
            run_id: "r".into(),
            tech_stack: None,
        }
    }

    fn parse(data: &str) -> AgentEvent {
        AgentEvent::parse(data.to_string()).expect("parse")
    }

    /// The client payload, parsed.
    fn client_json(e: &AgentEvent) -> Value {
        serde_json::from_str(&client_message(&ClientEnvelope::new(&ctx()), e))
            .expect("client payload is JSON")
    }

    #[test]
    fn strips_state_and_diff_and_keeps_unknown_fields() {
        let e = parse(
            r#"{"status":"idle","traceId":"t","message":{"role":"assistant","kind":"ReviewResult","messages":[{"role":"assistant","content":"hi"}],"agentState":{"a":1},"unifiedDiff":"diff","app_name":"x","commit_message":"c","extra":5}}"#,
        );
        assert!(e.idle);
        assert_eq!(e.agent_state, Some(json!({"a": 1})));
        assert_eq!(e.unified_diff.as_deref(), Some("diff"));
        assert_eq!(e.app_name.as_deref(), Some("x"));
        assert_eq!(e.commit_message.as_deref(), Some("c"));
        let client = client_json(&e);
        let message = client["message"].as_object().expect("message");
        assert!(!message.contains_key("agentState"));
        assert!(!message.contains_key("unifiedDiff"));
        assert_eq!(message.get("extra"), Some(&json!(5)));
        assert_eq!(message.get("app_name"), Some(&json!("x")));
        assert_eq!(client["status"], "idle");
        assert_eq!(e.text(), "hi");
    }

    #[test]
    fn the_client_payload_is_the_agents_bytes_with_the_gateways_fields() {
        let e = parse(
            r#"{"status":"running","message":{"kind":"WipUpdate","messages":[{"role":"assistant","content":"a \"quoted\" \u00e9 line\n"}],"z":[1, 2.50, {"k":null}]},"timestamp":"t"}"#,
        );
        assert_eq!(
            client_message(&ClientEnvelope::new(&ctx()), &e),
            r#"{"appId":"a","message":{"kind":"WipUpdate","messages":[{"role":"assistant","content":"a \"quoted\" \u00e9 line\n"}],"z":[1, 2.50, {"k":null}]},"runId":"r","status":"running","techStack":null,"traceId":"app-a.req-r","timestamp":"t"}"#
        );
        assert_eq!(e.text(), "a \"quoted\" é line\n");
    }

    #[test]
    fn the_lines_of_a_multi_line_event_reach_the_client_on_one() {
        // What the SSE parser makes of `data: {...,` / `data:` / `data: "kind":...}`.
        let e = parse(
            "{\"status\":\"running\",\"message\":{\"role\":\"assistant\",\n\n\"kind\":\"WipUpdate\",\"messages\":[{\"role\":\"assistant\",\"content\":\"a\\nb\"}]},\n\"timestamp\":\"t\"}",
        );
        let client = client_message(&ClientEnvelope::new(&ctx()), &e);
        assert!(!client.contains('\n'), "{client}");
        let client: Value = serde_json::from_str(&client).expect("json");
        assert_eq!(client["message"]["kind"], "WipUpdate");
        assert_eq!(client["timestamp"], "t");
        assert_eq!(e.text(), "a\nb", "an escaped newline in a string stays");
        // A raw line break inside a string is still not JSON.
        assert!(AgentEvent::parse("{\"message\":{\"kind\":\"a\nb\"}}".into()).is_err());
    }

    #[test]
    fn the_envelope_encodes_the_runs_fields_once_as_json() {
        let ctx = EventContext {
            app_id: "a\"1".into(),
            trace_id: "t\\2".into(),
            run_id: "r".into(),
            tech_stack: Some("node \u{e9}".into()),
        };
        let envelope = ClientEnvelope::new(&ctx);
        let e = parse(r#"{"status":"idle","message":{"messages":[]},"x":1}"#);
        assert_eq!(
            client_message(&envelope, &e),
            "{\"appId\":\"a\\\"1\",\"message\":{\"messages\":[]},\"runId\":\"r\",\"status\":\"idle\",\
             \"techStack\":\"node \u{e9}\",\"traceId\":\"t\\\\2\",\"x\":1}"
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let e = parse(
            r#"{"status":"idle","status":"running","message":{"kind":"A","kind":"WipUpdate","x":1,"x":2,"messages":[]}}"#,
        );
        assert!(!e.idle);
        assert_eq!(e.kind, "WipUpdate");
        let client = client_json(&e);
        assert_eq!(client["message"]["x"], 2);
        let many: String = (0..100).map(|i| format!(r#""k{}":{i},"#, i % 40)).collect();
        let e = parse(&format!(r#"{{"message":{{{many}"messages":[]}}}}"#));
        let client = client_json(&e);
        let message = client["message"].as_object().expect("message");
        assert_eq!(message.len(), 41);
        assert_eq!(message["k0"], 80);
    }

    #[test]
    fn escaped_keys_and_gateway_fields() {
        let e = parse(r#"{"app\u0049d":"forged","message":{"k\"ey":1,"messages":[]}}"#);
        let client = client_json(&e);
        assert_eq!(client["appId"], "a");
        assert_eq!(client["message"]["k\"ey"], 1);
        assert_eq!(e.kind, "Unknown");
    }

    #[test]
    fn unknown_top_level_fields_pass_through_to_clients() {
        let e = parse(
            r#"{"status":"running","traceId":"agent's","runId":"forged","timestamp":"2026-11-21T22:23:33.823579","message":{"kind":"StageResult","messages":[]}}"#,
        );
        let client = client_json(&e);
        assert_eq!(client["timestamp"], "2026-11-21T22:23:33.823579");
        assert_eq!(client["traceId"], "app-a.req-r");
        assert_eq!(client["runId"], "r");
    }

    #[test]
    fn null_messages_with_legacy_content() {
        let e = parse(
            r#"{"status":"running","message":{"kind":"StageResult","messages":null,"content":"[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"old\"}]}]"}}"#,
        );
        assert_eq!(e.text(), "old");
        let client = client_json(&e);
        assert_eq!(
            client["message"]["messages"],
            json!([{"role": "assistant", "content": "old"}])
        );
        assert!(client["message"].get("content").is_none());
        let e = parse(r#"{"status":"running","message":{"kind":"StageResult","messages":null}}"#);
        assert_eq!(client_json(&e)["message"]["messages"], json!([]));
        let e = parse(r#"{"message":{"kind":"StageResult","messages":[],"content":"x"}}"#);
        assert!(client_json(&e)["message"].get("content").is_none());
    }

    #[test]
    fn null_and_empty_diffs() {
        let e = parse(r#"{"status":"idle","message":{"kind":"RuntimeError","unifiedDiff":""}}"#);
        assert_eq!(e.unified_diff.as_deref(), Some(""));
        let e = parse(r#"{"status":"idle","message":{"kind":"RuntimeError","unifiedDiff":null}}"#);
        assert_eq!(e.unified_diff, None);
        let e = parse(r#"{"message":{"kind":"X","agentState":null,"unifiedDiff":"a\nb"}}"#);
        assert_eq!(e.agent_state, None);
        assert_eq!(e.unified_diff.as_deref(), Some("a\nb"));
    }

    /// The client payload's fields copied in runs must be the agent's fields, whatever sits
    /// between them: dropped fields, repeated keys, escaped keys, whitespace.
    #[test]
    fn fields_copied_in_runs_are_the_agents_fields() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let pieces = [
            r#""role":"assistant""#,
            r#""kind":"WipUpdate""#,
            r#""messages":[{"role":"assistant","content":"a,b:c"}]"#,
            r#""agentState":{"x":[1,2]}"#,
            r#""unifiedDiff":"--- a\n+++ b""#,
            r#""x":1"#,
            r#""x" : [2, {"y":3}]"#,
            r#""k\"ey":"v""#,
            r#""z":null"#,
            r#""status":"idle""#,
            r#""appId":"forged""#,
        ];
        let mut rng = StdRng::seed_from_u64(7);
        let space = |rng: &mut StdRng| [" ", "", "\n ", "\t"][rng.gen_range(0..4)];
        for _ in 0..2_000 {
            let object = |rng: &mut StdRng| {
                let n = rng.gen_range(0..8);
                let fields: Vec<String> = (0..n)
                    .map(|_| format!("{}{}", space(rng), pieces[rng.gen_range(0..pieces.len())]))
                    .collect();
                format!("{{{}{}}}", fields.join(","), space(rng))
            };
            let message = object(&mut rng);
            let top = object(&mut rng);
            let data = format!(r#"{{"message":{message},{}"#, &top[1..]).replace(",}", "}");
            let Ok(event) = AgentEvent::parse(data.clone()) else {
                continue;
            };
            let client = client_json(&event);
            let mut expected: serde_json::Map<String, Value> =
                serde_json::from_str(&message).expect("message");
            for dropped in ["agentState", "unifiedDiff", "content"] {
                expected.remove(dropped);
            }
            // No `messages` list: the gateway adds an empty one (see `normalize_messages`).
            expected.entry("messages").or_insert(json!([]));
            assert_eq!(client["message"], Value::Object(expected), "{data}");
            let mut expected: serde_json::Map<String, Value> =
                serde_json::from_str(&top).expect("top");
            for (key, value) in client.as_object().expect("object") {
                if !GATEWAY_FIELDS.contains(&key.as_str()) {
                    assert_eq!(
                        expected.remove(key).as_ref(),
                        Some(value),
                        "{key} in {data}"
                    );
                }
            }
            expected.retain(|key, _| !GATEWAY_FIELDS.contains(&key.as_str()));
            assert!(expected.is_empty(), "{expected:?} missing from {data}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let error = |data: &str| AgentEvent::parse(data.to_string()).expect_err(data);
        assert!(error("{not json").starts_with("event is not valid JSON"));
        assert_eq!(error("[1,2]"), "event is not a JSON object");
        assert_eq!(error(r#"{"status":"idle"}"#), "event has no message object");
        assert_eq!(error(r#"{"message":[1]}"#), "event has no message object");
        assert!(error(r#"{"message":{"a":1}} trailing"#).starts_with("event is not valid JSON"));
        assert!(error(r#"{"message":{"a":tru}}"#).starts_with("event is not valid JSON"));
    }
}
