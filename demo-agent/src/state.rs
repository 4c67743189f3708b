//! The demo agent's `agentState`: everything needed to regenerate the app.
//!
//! Upstream keeps no server-side session; all continuity travels in this
//! object, so the generated files are a pure function of it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    Todo,
    Counter,
    Notes,
    Timer,
    Generic,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Todo => "todo",
            AppKind::Counter => "counter",
            AppKind::Notes => "notes",
            AppKind::Timer => "timer",
            AppKind::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AppKind::Todo,
            AppKind::Counter,
            AppKind::Notes,
            AppKind::Timer,
            AppKind::Generic,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Optional features, in the canonical order they are listed in state.
pub const FEATURE_DARK_MODE: &str = "dark_mode";
pub const FEATURE_FOOTER: &str = "footer";
pub const FEATURE_NO_README: &str = "no_readme";
const FEATURE_ORDER: [&str; 3] = [FEATURE_DARK_MODE, FEATURE_FOOTER, FEATURE_NO_README];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    pub app_type: String,
    pub title: String,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default = "first_version")]
    pub version: u32,
    #[serde(default)]
    pub app_name: String,
    /// The prompt the app was created from (the generic page quotes it).
    #[serde(default)]
    pub prompt: String,
    /// One line per turn, rendered into the README's changelog.
    #[serde(default)]
    pub changelog: Vec<String>,
}

fn first_version() -> u32 {
    1
}

impl AppState {
    /// Reads an incoming `agentState`; `None` when it is not ours (e.g. an
    /// `{"awaiting":"details"}` state or another agent's state).
    pub fn from_value(value: &Value) -> Option<Self> {
        let mut state: AppState = serde_json::from_value(value.clone()).ok()?;
        AppKind::parse(&state.app_type)?;
        if state.title.trim().is_empty() {
            return None;
        }
        if state.app_name.is_empty() {
            state.app_name = super::intent::slug_app_name(&state.title);
        }
        state.normalize_features();
        Some(state)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn kind(&self) -> AppKind {
        AppKind::parse(&self.app_type).unwrap_or(AppKind::Generic)
    }

    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    pub fn set(&mut self, feature: &str, on: bool) {
        self.features.retain(|f| f != feature);
        if on {
            self.features.push(feature.to_string());
        }
        self.normalize_features();
    }

    /// Known features in canonical order, unknown ones kept after them.
    fn normalize_features(&mut self) {
        let rank = |f: &String| {
            FEATURE_ORDER
                .iter()
                .position(|k| k == f)
                .unwrap_or(FEATURE_ORDER.len())
        };
        self.features.sort_by_key(rank);
        self.features.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_rejects_foreign_states() {
        let v = json!({"app_type":"todo","title":"Todo List","features":["footer","dark_mode"],"version":2});
        let s = AppState::from_value(&v).unwrap();
        assert_eq!(s.features, vec!["dark_mode", "footer"]);
        assert_eq!(s.app_name, "todo-list-app");
        assert_eq!(AppState::from_value(&s.to_value()), Some(s));
        assert!(AppState::from_value(&json!({"awaiting":"details"})).is_none());
        assert!(AppState::from_value(&json!({"app_type":"rocket","title":"x"})).is_none());
        assert!(AppState::from_value(&json!({"fsm_state":null,"fsm_messages":[]})).is_none());
    }
}
