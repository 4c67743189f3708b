//! One agent turn: from the last user message and `agentState` to the list
//! of events to send (without test switches, timing or framing).

use super::generator::render;
use super::intent::{self, Change};
use super::protocol::{AgentMessage, EventSpec, Kind};
use super::request::AgentRequest;
use super::state::{AppState, FEATURE_DARK_MODE, FEATURE_FOOTER, FEATURE_NO_README};
use super::unified_diff::tree_diff;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What the turn decided to do.
enum Outcome {
    /// Ask the user for more detail; `state` is echoed as `agentState`.
    Refine { question: String, state: Value },
    Build {
        state: AppState,
        commit: String,
        planning: String,
    },
}

/// The events of one turn, in order; the last one is idle.
pub fn respond(req: &AgentRequest) -> Vec<EventSpec> {
    let text = req.last_user_text.as_deref().unwrap_or("").trim();
    let prior = req.agent_state.as_ref().and_then(AppState::from_value);
    let outcome = match (prior, &req.agent_state) {
        (Some(prior), Some(raw)) => follow_up(prior, raw, text),
        _ => new_app(text),
    };
    match outcome {
        Outcome::Refine { question, state } => {
            let mut message = AgentMessage::new(Kind::RefinementRequest).with_text(question);
            message.agent_state = Some(state);
            vec![EventSpec::idle(message)]
        }
        Outcome::Build {
            state,
            commit,
            planning,
        } => build_events(req, &state, &commit, &planning),
    }
}

fn new_app(text: &str) -> Outcome {
    if intent::is_vague(text) {
        return Outcome::Refine {
            question:
                "What would you like me to build? Describe the app in a sentence, for example \
                       \"a todo list app\", \"a counter\", \"a notes app\" or \"a pomodoro timer\"."
                    .into(),
            state: json!({"awaiting": "details"}),
        };
    }
    let kind = intent::choose_kind(text);
    let title = intent::title_for(kind, text);
    let prompt = intent::one_line(text, 500);
    let state = AppState {
        app_type: kind.as_str().into(),
        app_name: intent::slug_app_name(&title),
        features: Vec::new(),
        version: 1,
        changelog: vec![format!(
            "v1: Created from the request “{}”",
            intent::one_line(text, 200)
        )],
        prompt,
        title,
    };
    let lower = state.title.to_lowercase();
    let commit = if lower == "app" || lower.ends_with(" app") {
        format!("Add {lower}")
    } else {
        format!("Add {lower} app")
    };
    let planning = format!(
        "🎯 Planning the app: {} ({} template)",
        state.title,
        kind.as_str()
    );
    Outcome::Build {
        state,
        commit,
        planning,
    }
}

fn follow_up(prior: AppState, raw_state: &Value, text: &str) -> Outcome {
    if intent::is_vague_follow_up(text) {
        return Outcome::Refine {
            question: format!(
                "What should I change in {}? I can add a dark mode or a footer, rename the app, \
                 remove the README, or note any other request in the changelog.",
                prior.title
            ),
            // Keep the conversation going: hand the state back unchanged.
            state: raw_state.clone(),
        };
    }
    let mut state = prior;
    let mut done = Vec::new();
    for change in intent::parse_follow_up(text) {
        if let Some(description) = apply(&mut state, change) {
            done.push(description);
        }
    }
    state.version = state.version.saturating_add(1);
    let commit = if done.is_empty() {
        // Nothing recognised (or already so): record the request, so every
        // follow-up still changes the app. The README carries the changelog.
        state.set(FEATURE_NO_README, false);
        let note = format!(
            "v{}: Requested: “{}”",
            state.version,
            intent::one_line(text, 200)
        );
        state.changelog.push(note);
        "Note request in the README changelog".to_string()
    } else {
        let commit = join_descriptions(&done);
        state
            .changelog
            .push(format!("v{}: {commit}", state.version));
        commit
    };
    let planning = format!("🎯 Planning the change: {}", lowercase_first(&commit));
    Outcome::Build {
        state,
        commit,
        planning,
    }
}

/// Applies one change; `None` when it is already in effect.
fn apply(state: &mut AppState, change: Change) -> Option<String> {
    match change {
        Change::Rename(title) if title != state.title => {
            let description = format!("Rename app to {title}");
            state.title = title;
            Some(description)
        }
        Change::DarkMode(on) if state.has(FEATURE_DARK_MODE) != on => {
            state.set(FEATURE_DARK_MODE, on);
            Some(
                if on {
                    "Add dark mode"
                } else {
                    "Remove dark mode"
                }
                .into(),
            )
        }
        Change::Footer(on) if state.has(FEATURE_FOOTER) != on => {
            state.set(FEATURE_FOOTER, on);
            Some(if on { "Add footer" } else { "Remove footer" }.into())
        }
        Change::Readme(on) if state.has(FEATURE_NO_README) == on => {
            state.set(FEATURE_NO_README, !on);
            Some(
                if on {
                    "Restore README"
                } else {
                    "Remove README"
                }
                .into(),
            )
        }
        _ => None,
    }
}

fn join_descriptions(parts: &[String]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            out.push_str(part);
        } else {
            out.push_str(", ");
            out.push_str(&lowercase_first(part));
        }
    }
    out
}

/// Lowercases the first letter unless the word is an acronym ("README").
fn lowercase_first(text: &str) -> String {
    let first_word = text.split(' ').next().unwrap_or("");
    if first_word
        .chars()
        .filter(|c| c.is_alphabetic())
        .all(char::is_uppercase)
    {
        return text.to_string();
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The received workspace; missing/null `allFiles` is the empty tree.
fn client_tree(req: &AgentRequest) -> BTreeMap<String, String> {
    req.all_files.iter().flatten().cloned().collect()
}

fn build_events(
    req: &AgentRequest,
    state: &AppState,
    commit: &str,
    planning: &str,
) -> Vec<EventSpec> {
    let old = client_tree(req);
    let new = render(state);
    let diff = tree_diff(&old, &new);

    let mut events = vec![EventSpec::running(
        AgentMessage::new(Kind::WipUpdate).with_text(planning),
    )];
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort_by_key(|p| (build_order(p), p.as_str()));
    paths.dedup();
    let (mut added, mut modified, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    for path in paths {
        let step = match (old.get(path), new.get(path)) {
            (None, Some(_)) => {
                added.push(path.as_str());
                format!("🧱 Generating {path}")
            }
            (Some(a), Some(b)) if a != b => {
                modified.push(path.as_str());
                format!("🛠️ Updating {path}")
            }
            (Some(_), None) => {
                deleted.push(path.as_str());
                format!("🗑️ Removing {path}")
            }
            _ => continue,
        };
        events.push(EventSpec::running(
            AgentMessage::new(Kind::WipUpdate).with_text(step),
        ));
    }

    let changed = added.len() + modified.len() + deleted.len();
    let stage_text = if changed == 0 {
        "✅ The files are already up to date".to_string()
    } else {
        format!(
            "✅ Files ready: {changed} changed ({} added, {} modified, {} deleted)",
            added.len(),
            modified.len(),
            deleted.len()
        )
    };
    let mut stage = AgentMessage::new(Kind::StageResult).with_text(stage_text);
    stage.app_name = Some(state.app_name.clone());
    events.push(EventSpec::running(stage));

    let mut review = AgentMessage::new(Kind::ReviewResult)
        .with_text(summary(state, commit, &added, &modified, &deleted));
    review.agent_state = Some(state.to_value());
    review.unified_diff = Some(diff);
    review.app_name = Some(state.app_name.clone());
    review.commit_message = Some(commit.to_string());
    events.push(EventSpec::idle(review));
    events
}

/// Progress is reported page first, then code, style and docs.
fn build_order(path: &str) -> usize {
    use super::generator::{APP_JS, DOCKERFILE, INDEX_HTML, README_MD, STYLES_CSS};
    [INDEX_HTML, APP_JS, STYLES_CSS, README_MD, DOCKERFILE]
        .iter()
        .position(|p| *p == path)
        .unwrap_or(usize::MAX)
}

fn summary(
    state: &AppState,
    commit: &str,
    added: &[&str],
    modified: &[&str],
    deleted: &[&str],
) -> String {
    let mut text = format!("{commit} — {} (version {}).", state.title, state.version);
    for (label, list) in [
        ("Added", added),
        ("Updated", modified),
        ("Removed", deleted),
    ] {
        if !list.is_empty() {
            text.push_str(&format!("\n{label}: {}", list.join(", ")));
        }
    }
    if added.is_empty() && modified.is_empty() && deleted.is_empty() {
        text.push_str("\nNo file changes were needed.");
    }
    text.push_str(
        "\nOpen index.html in a browser, or build the Dockerfile to serve it with nginx.",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        text: &str,
        state: Option<Value>,
        files: Option<&BTreeMap<String, String>>,
    ) -> AgentRequest {
        AgentRequest {
            trace_id: "t".into(),
            last_user_text: Some(text.into()),
            agent_state: state,
            all_files: files.map(|f| f.iter().map(|(p, c)| (p.clone(), c.clone())).collect()),
            settings: None,
        }
    }

    fn last(events: &[EventSpec]) -> &AgentMessage {
        &events[events.len() - 1].message
    }

    #[test]
    fn new_app_then_follow_ups() {
        let events = respond(&request("Build a todo list app", None, None));
        let steps: Vec<String> = events
            .iter()
            .filter_map(|e| e.message.messages.as_ref())
            .map(|m| m[0].content.clone())
            .collect();
        assert_eq!(steps[1], "🧱 Generating index.html");
        assert_eq!(steps[5], "🧱 Generating Dockerfile");
        let review = last(&events);
        assert_eq!(review.kind, Kind::ReviewResult);
        assert_eq!(review.commit_message.as_deref(), Some("Add todo list app"));
        assert_eq!(review.app_name.as_deref(), Some("todo-list-app"));
        let state = review.agent_state.clone().unwrap();
        assert_eq!(state["app_type"], "todo");
        assert_eq!(state["version"], 1);
        let files = render(&AppState::from_value(&state).unwrap());

        let events = respond(&request("add a dark mode", Some(state), Some(&files)));
        let review = last(&events);
        assert_eq!(review.commit_message.as_deref(), Some("Add dark mode"));
        let state = review.agent_state.clone().unwrap();
        assert_eq!(state["features"], json!(["dark_mode"]));
        assert_eq!(state["version"], 2);
        let diff = review.unified_diff.clone().unwrap();
        assert!(diff.contains("+++ b/styles.css") && diff.contains("+++ b/app.js"));
        assert!(!diff.contains("new file mode"));

        let events = respond(&request(
            "remove the readme and add a footer",
            Some(state),
            None,
        ));
        let review = last(&events);
        assert_eq!(
            review.commit_message.as_deref(),
            Some("Remove README, add footer")
        );
    }

    #[test]
    fn fallback_records_the_request() {
        let events = respond(&request("make a counter app", None, None));
        let state = last(&events).agent_state.clone().unwrap();
        let events = respond(&request("make the buttons bigger", Some(state), None));
        let state = AppState::from_value(last(&events).agent_state.as_ref().unwrap()).unwrap();
        assert!(render(&state)["README.md"].contains("v2: Requested: “make the buttons bigger”"));
    }

    #[test]
    fn vague_prompts_ask_back() {
        let events = respond(&request("hi", None, None));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message.kind, Kind::RefinementRequest);
        assert_eq!(
            events[0].message.agent_state,
            Some(json!({"awaiting": "details"}))
        );
        assert_eq!(events[0].message.unified_diff, None);
        let state = json!({"app_type":"notes","title":"Notes","version":3});
        let events = respond(&request("thanks", Some(state.clone()), None));
        assert_eq!(events[0].message.agent_state, Some(state));
    }

    #[test]
    fn unchanged_workspace_gives_empty_diff() {
        let events = respond(&request("make a counter app", None, None));
        let state = AppState::from_value(last(&events).agent_state.as_ref().unwrap()).unwrap();
        let files = render(&state);
        let events = respond(&request("make a counter app", None, Some(&files)));
        assert_eq!(last(&events).unified_diff.as_deref(), Some(""));
    }
}
