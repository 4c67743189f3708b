//! What the gateway tells a user it did (repository created, commit, deployment, version saved),
//! shaped the way app.build clients read it.
//!
//! Those clients are strict in ways that are easy to break:
//! - the terminal client appends a URL to the text of every `PlatformMessage` that has a
//!   top-level `metadata`: `commitUrl` for `commit_created`, `githubUrl` for `repo_created`,
//!   `deploymentUrl` for the two deployment types, and the word `undefined` for anything else;
//! - the web client drops an event whose `message.metadata.type` is outside app.build's
//!   `PlatformMessageType`.
//!
//! So a notice of an app.build type goes out as app.build sends it, but only when it carries its
//! URL; a failed deployment is a `RuntimeError` (as app.build sends it); everything else is the
//! gateway's own notice, with no top-level `metadata` and its kind under `message.metadata.notice`.
use serde_json::{Map, Value};

use crate::agent::protocol::{KIND_PLATFORM_MESSAGE, KIND_RUNTIME_ERROR};

/// app.build's `PlatformMessageType`s the gateway sends, each with the field a client appends.
const APP_BUILD_TYPES: [(&str, &str); 4] = [
    ("repo_created", "githubUrl"),
    ("commit_created", "commitUrl"),
    ("deployment_in_progress", "deploymentUrl"),
    ("deployment_complete", "deploymentUrl"),
];

/// The `deploymentType`s app.build's clients accept.
const APP_BUILD_PROVIDERS: [&str; 2] = ["koyeb", "databricks"];

pub const DEPLOYMENT_FAILED: &str = "deployment_failed";

/// A notice as a client sees it, in the stream and in the history alike.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapedNotice {
    /// `PlatformMessage`, or `RuntimeError` for a failure.
    pub kind: &'static str,
    pub text: String,
    /// Top-level `metadata` of the event (app.build types only).
    pub metadata: Option<Value>,
    /// `message.metadata` of the event, and the history row's metadata.
    pub message_metadata: Value,
    /// A failure the run must report as its outcome: (code, reason).
    pub failure: Option<(String, String)>,
}

/// Shapes a notice whose `metadata.type` says what happened (the gateway's internal form).
pub fn shape(text: &str, metadata: &Value) -> ShapedNotice {
    let mut fields = metadata.as_object().cloned().unwrap_or_default();
    let kind = fields
        .remove("type")
        .and_then(|t| t.as_str().map(str::to_string))
        .unwrap_or_else(|| "notice".to_string());
    if kind == DEPLOYMENT_FAILED {
        let reason = fields
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("the deployment failed")
            .to_string();
        return ShapedNotice {
            kind: KIND_RUNTIME_ERROR,
            text: text.to_string(),
            metadata: None,
            message_metadata: gateway_metadata(&kind, fields),
            failure: Some((DEPLOYMENT_FAILED.to_string(), reason)),
        };
    }
    let url_field = APP_BUILD_TYPES
        .iter()
        .find(|(t, _)| *t == kind)
        .map(|(_, field)| *field);
    let has_url = url_field.is_some_and(|field| {
        fields
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|url| !url.is_empty())
    });
    if !has_url {
        return ShapedNotice {
            kind: KIND_PLATFORM_MESSAGE,
            text: text.to_string(),
            metadata: None,
            message_metadata: gateway_metadata(&kind, fields),
            failure: None,
        };
    }
    if kind.starts_with("deployment_") {
        let status = match kind.as_str() {
            "deployment_complete" => "deployed",
            _ => "deploying",
        };
        // `deploymentType` comes from the deployment itself (a guess here could send a client
        // polling the wrong provider).
        fields
            .entry("deployStatus")
            .or_insert_with(|| Value::from(status));
    }
    let mut metadata = Map::new();
    metadata.insert("type".into(), Value::from(kind));
    metadata.extend(fields);
    let message_metadata = Value::Object(metadata.clone());
    // app.build's web client rejects the whole event when the top-level `deploymentType` is
    // not one of its providers; a local preview's stays in `message.metadata` (and the
    // history), which that client does not check.
    if metadata
        .get("deploymentType")
        .is_some_and(|provider| !APP_BUILD_PROVIDERS.iter().any(|p| provider == p))
    {
        metadata.remove("deploymentType");
    }
    ShapedNotice {
        kind: KIND_PLATFORM_MESSAGE,
        text: text.to_string(),
        metadata: Some(Value::Object(metadata)),
        message_metadata,
        failure: None,
    }
}

/// A gateway error the user saw (an `error` event), as it is kept in the history.
pub fn error_metadata(code: &str) -> Value {
    serde_json::json!({"notice": "error", "code": code})
}

/// The gateway's own notice: its kind under `notice`, never under `type`.
fn gateway_metadata(kind: &str, mut fields: Map<String, Value>) -> Value {
    fields.insert("notice".into(), Value::from(kind));
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_build_types_keep_their_url_and_type() {
        let shaped = shape(
            "committed",
            &json!({"type": "commit_created", "commitUrl": "http://x/c/1"}),
        );
        assert_eq!(shaped.kind, KIND_PLATFORM_MESSAGE);
        let metadata = shaped.metadata.expect("top-level metadata");
        assert_eq!(metadata["type"], "commit_created");
        assert_eq!(metadata["commitUrl"], "http://x/c/1");
    }

    #[test]
    fn deployments_say_their_status_and_keep_their_type() {
        let shaped = shape(
            "live",
            &json!({"type": "deployment_complete", "deploymentUrl": "http://x/", "deploymentType": "koyeb"}),
        );
        let metadata = shaped.metadata.expect("top-level metadata");
        assert_eq!(metadata["deployStatus"], "deployed");
        assert_eq!(metadata["deploymentType"], "koyeb");
    }

    #[test]
    fn a_provider_app_build_does_not_know_stays_out_of_the_top_level_metadata() {
        let shaped = shape(
            "live",
            &json!({"type": "deployment_complete", "deploymentUrl": "http://x/", "deploymentType": "local"}),
        );
        let metadata = shaped.metadata.expect("top-level metadata");
        assert!(metadata.get("deploymentType").is_none(), "{metadata}");
        assert_eq!(metadata["deploymentUrl"], "http://x/");
        assert_eq!(shaped.message_metadata["deploymentType"], "local");
    }

    #[test]
    fn an_app_build_type_without_its_url_is_a_gateway_notice() {
        let shaped = shape(
            "deploying",
            &json!({"type": "deployment_in_progress", "deploymentId": "d"}),
        );
        assert_eq!(shaped.metadata, None);
        assert_eq!(shaped.message_metadata["notice"], "deployment_in_progress");
        assert!(shaped.message_metadata.get("type").is_none());
    }

    #[test]
    fn gateway_notices_have_no_type_anywhere() {
        let shaped = shape("saved", &json!({"type": "version_created", "version": 2}));
        assert_eq!(shaped.metadata, None);
        assert_eq!(
            shaped.message_metadata,
            json!({"notice": "version_created", "version": 2})
        );
    }

    #[test]
    fn a_failed_deployment_is_a_runtime_error() {
        let shaped = shape(
            "failed",
            &json!({"type": "deployment_failed", "reason": "no index.html"}),
        );
        assert_eq!(shaped.kind, KIND_RUNTIME_ERROR);
        assert_eq!(shaped.metadata, None);
        assert_eq!(
            shaped.failure,
            Some(("deployment_failed".into(), "no index.html".into()))
        );
    }
}
