//! Parsing and validation of `POST /message` bodies.
//!
//! Errors mimic FastAPI/Pydantic 422 bodies (`{"detail":[...]}`) because
//! gateway code is written against the real agent's error shapes.

use serde_json::{json, Map, Value};

/// A validated request, reduced to what the demo agent uses.
#[derive(Debug, Clone, Default)]
pub struct AgentRequest {
    pub trace_id: String,
    /// Text of the last user message, if any.
    pub last_user_text: Option<String>,
    pub agent_state: Option<Value>,
    /// `None` when `allFiles` is missing or null (= empty tree).
    pub all_files: Option<Vec<(String, String)>>,
    pub settings: Option<Value>,
}

/// The 422 body for a request body that is not JSON at all.
pub fn json_invalid_detail() -> Value {
    json!({"detail":[{"type":"json_invalid","loc":["body",0],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting value"}}]})
}

/// Whether a `content-type` value is one FastAPI parses as JSON.
pub fn is_json_content_type(value: &str) -> bool {
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.split_once('/') {
        Some((main, sub)) => main == "application" && (sub == "json" || sub.ends_with("+json")),
        None => false,
    }
}

/// Validates a parsed body; on failure returns the full 422 body.
pub fn validate(body: &Value) -> Result<AgentRequest, Value> {
    let Some(obj) = body.as_object() else {
        return Err(detail(vec![error(
            "model_attributes_type",
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
            body.clone(),
        )]));
    };
    let mut errors = Vec::new();
    let messages = required(obj, body, "allMessages", &mut errors);
    let last_user_text = messages.and_then(|m| check_messages(m, &mut errors));
    let _application_id = required_string(obj, body, "applicationId", &mut errors);
    let trace_id = required_string(obj, body, "traceId", &mut errors);
    optional_string(obj, "templateId", &mut errors);
    let agent_state = optional_object(obj, "agentState", &mut errors);
    let all_files = optional_files(obj, &mut errors);
    let settings = optional_object(obj, "settings", &mut errors);
    if !errors.is_empty() {
        return Err(detail(errors));
    }
    Ok(AgentRequest {
        trace_id: trace_id.unwrap_or_default(),
        last_user_text,
        agent_state,
        all_files,
        settings,
    })
}

fn detail(errors: Vec<Value>) -> Value {
    json!({ "detail": errors })
}

fn error(kind: &str, loc: &[&str], msg: &str, input: Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg, "input": input})
}

fn error_at(kind: &str, loc: Vec<Value>, msg: &str, input: Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg, "input": input})
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    body: &Value,
    key: &str,
    errors: &mut Vec<Value>,
) -> Option<&'a Value> {
    let found = obj.get(key);
    if found.is_none() {
        errors.push(error(
            "missing",
            &["body", key],
            "Field required",
            body.clone(),
        ));
    }
    found
}

fn required_string(
    obj: &Map<String, Value>,
    body: &Value,
    key: &str,
    errors: &mut Vec<Value>,
) -> Option<String> {
    match required(obj, body, key, errors)? {
        Value::String(s) => Some(s.clone()),
        other => {
            errors.push(string_type(&["body", key], other));
            None
        }
    }
}

fn string_type(loc: &[&str], input: &Value) -> Value {
    error(
        "string_type",
        loc,
        "Input should be a valid string",
        input.clone(),
    )
}

fn optional_string(obj: &Map<String, Value>, key: &str, errors: &mut Vec<Value>) {
    match obj.get(key) {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => errors.push(string_type(&["body", key], other)),
    }
}

fn optional_object(obj: &Map<String, Value>, key: &str, errors: &mut Vec<Value>) -> Option<Value> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(other) => {
            errors.push(error(
                "dict_type",
                &["body", key],
                "Input should be a valid dictionary",
                other.clone(),
            ));
            None
        }
    }
}

/// Checks each ConversationMessage; returns the last user message's text.
fn check_messages(messages: &Value, errors: &mut Vec<Value>) -> Option<String> {
    let Value::Array(items) = messages else {
        errors.push(error(
            "list_type",
            &["body", "allMessages"],
            "Input should be a valid list",
            messages.clone(),
        ));
        return None;
    };
    let mut last_user = None;
    for (i, item) in items.iter().enumerate() {
        let loc = |field: &str| vec![json!("body"), json!("allMessages"), json!(i), json!(field)];
        let Some(m) = item.as_object() else {
            errors.push(error_at(
                "model_attributes_type",
                vec![json!("body"), json!("allMessages"), json!(i)],
                "Input should be a valid dictionary or object to extract fields from",
                item.clone(),
            ));
            continue;
        };
        match m.get("role") {
            // `role` defaults to "user" upstream.
            None | Some(Value::Null) => {
                last_user = user_content(m, item, loc("content"), errors).or(last_user)
            }
            Some(Value::String(r)) if r == "user" => {
                last_user = user_content(m, item, loc("content"), errors).or(last_user)
            }
            // Assistant entries must carry `kind` (AgentMessage shape).
            Some(Value::String(r)) if r == "assistant" => match m.get("kind") {
                Some(Value::String(_)) => {}
                None => errors.push(error_at(
                    "missing",
                    loc("kind"),
                    "Field required",
                    item.clone(),
                )),
                Some(other) => errors.push(error_at(
                    "enum",
                    loc("kind"),
                    "Input should be a valid MessageKind",
                    other.clone(),
                )),
            },
            Some(other) => errors.push(error_at(
                "literal_error",
                loc("role"),
                "Input should be 'user'",
                other.clone(),
            )),
        }
    }
    last_user
}

fn user_content(
    m: &Map<String, Value>,
    item: &Value,
    loc: Vec<Value>,
    errors: &mut Vec<Value>,
) -> Option<String> {
    match m.get("content") {
        Some(Value::String(s)) => Some(s.clone()),
        None => {
            errors.push(error_at("missing", loc, "Field required", item.clone()));
            None
        }
        Some(other) => {
            errors.push(error_at(
                "string_type",
                loc,
                "Input should be a valid string",
                other.clone(),
            ));
            None
        }
    }
}

fn optional_files(
    obj: &Map<String, Value>,
    errors: &mut Vec<Value>,
) -> Option<Vec<(String, String)>> {
    let items = match obj.get("allFiles") {
        None | Some(Value::Null) => return None,
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.push(error(
                "list_type",
                &["body", "allFiles"],
                "Input should be a valid list",
                other.clone(),
            ));
            return None;
        }
    };
    let mut files = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = file_field(item, i, "path", errors);
        let content = file_field(item, i, "content", errors);
        if let (Some(path), Some(content)) = (path, content) {
            files.push((path, content));
        }
    }
    Some(files)
}

fn file_field(item: &Value, i: usize, field: &str, errors: &mut Vec<Value>) -> Option<String> {
    let loc = vec![json!("body"), json!("allFiles"), json!(i), json!(field)];
    match item.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        None => {
            errors.push(error_at("missing", loc, "Field required", item.clone()));
            None
        }
        Some(other) => {
            errors.push(error_at(
                "string_type",
                loc,
                "Input should be a valid string",
                other.clone(),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_request_is_accepted() {
        let body = json!({"allMessages":[{"role":"user","content":"make a counter app"}],"applicationId":"x","traceId":"t1"});
        let req = validate(&body).unwrap();
        assert_eq!(req.trace_id, "t1");
        assert_eq!(req.last_user_text.as_deref(), Some("make a counter app"));
        assert!(req.all_files.is_none() && req.agent_state.is_none());
    }

    #[test]
    fn last_user_message_wins_and_role_defaults_to_user() {
        let body = json!({"allMessages":[
            {"role":"user","content":"first"},
            {"role":"assistant","kind":"ReviewResult"},
            {"content":"second"}
        ],"applicationId":"x","traceId":"t"});
        assert_eq!(
            validate(&body).unwrap().last_user_text.as_deref(),
            Some("second")
        );
    }

    #[test]
    fn missing_fields_are_listed_fastapi_style() {
        let body = json!({"allMessages":[],"applicationId":"x"});
        let err = validate(&body).unwrap_err();
        assert_eq!(err["detail"][0]["type"], "missing");
        assert_eq!(err["detail"][0]["loc"], json!(["body", "traceId"]));
        assert_eq!(err["detail"][0]["msg"], "Field required");
        assert_eq!(err["detail"][0]["input"], body);
    }

    #[test]
    fn strict_types_and_roles() {
        let bad = [
            json!({"allMessages":[],"applicationId":1,"traceId":"t"}),
            json!({"allMessages":[{"role":"system","content":"x"}],"applicationId":"a","traceId":"t"}),
            json!({"allMessages":[{"role":"assistant","content":"x"}],"applicationId":"a","traceId":"t"}),
            json!({"allMessages":[{"role":"user","content":5}],"applicationId":"a","traceId":"t"}),
            json!({"allMessages":[],"applicationId":"a","traceId":"t","allFiles":[{"path":"a"}]}),
            json!({"allMessages":[],"applicationId":"a","traceId":"t","agentState":[1]}),
            json!({"all_messages":[],"applicationId":"a","traceId":"t"}),
            json!([1, 2]),
        ];
        for body in bad {
            assert!(validate(&body).is_err(), "{body}");
        }
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/vnd.api+json"));
        assert!(!is_json_content_type("text/plain"));
    }
}
