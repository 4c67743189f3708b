//! Renders the app's files from its state (a pure function).
//!
//! Every follow-up regenerates the whole tree and diffs it against the
//! client's files, so output must be byte-stable for equal states.

use super::state::{AppState, FEATURE_DARK_MODE, FEATURE_FOOTER, FEATURE_NO_README};
use super::templates::template;
use std::collections::BTreeMap;

pub const INDEX_HTML: &str = "index.html";
pub const APP_JS: &str = "app.js";
pub const STYLES_CSS: &str = "styles.css";
pub const README_MD: &str = "README.md";
pub const DOCKERFILE: &str = "Dockerfile";

/// path → content of every file the app consists of.
pub fn render(state: &AppState) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert(INDEX_HTML.to_string(), index_html(state));
    files.insert(APP_JS.to_string(), app_js(state));
    files.insert(STYLES_CSS.to_string(), styles_css(state));
    files.insert(DOCKERFILE.to_string(), DOCKERFILE_TEXT.to_string());
    if !state.has(FEATURE_NO_README) {
        files.insert(README_MD.to_string(), readme(state));
    }
    files
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills the placeholders documented in `templates`.
fn fill(text: &str, state: &AppState) -> String {
    text.replace("__TITLE__", &escape_html(&state.title))
        .replace(
            "__PROMPT__",
            &escape_html(&super::intent::one_line(&state.prompt, 300)),
        )
        .replace("__STORE__", &state.app_name)
}

fn index_html(state: &AppState) -> String {
    let t = template(state.kind());
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"UTF-8\">\n  \
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\n  \
         <title>__TITLE__</title>\n  <link rel=\"stylesheet\" href=\"styles.css\">\n</head>\n<body>\n",
    );
    html.push_str(&format!(
        "  <main id=\"app\" class=\"app\" data-app-type=\"{}\">\n",
        state.kind().as_str()
    ));
    html.push_str("    <header class=\"app-header\">\n      <h1>__TITLE__</h1>\n");
    if state.has(FEATURE_DARK_MODE) {
        html.push_str(
            "      <button id=\"theme-toggle\" class=\"theme-toggle\" type=\"button\" aria-pressed=\"false\">🌙 Dark mode</button>\n",
        );
    }
    html.push_str("    </header>\n");
    html.push_str(t.body);
    html.push_str("  </main>\n");
    if state.has(FEATURE_FOOTER) {
        html.push_str(
            "  <footer class=\"app-footer\">\n    <p>__TITLE__ · a static web app · your data stays in this browser</p>\n  </footer>\n",
        );
    }
    html.push_str("  <script src=\"app.js\"></script>\n</body>\n</html>\n");
    fill(&html, state)
}

fn app_js(state: &AppState) -> String {
    let mut js = template(state.kind()).script.to_string();
    if state.has(FEATURE_DARK_MODE) {
        js.push('\n');
        js.push_str(DARK_MODE_JS);
    }
    fill(&js, state)
}

fn styles_css(state: &AppState) -> String {
    let mut css = String::from(BASE_CSS);
    css.push('\n');
    css.push_str(template(state.kind()).style);
    if state.has(FEATURE_DARK_MODE) {
        css.push('\n');
        css.push_str(DARK_MODE_CSS);
    }
    if state.has(FEATURE_FOOTER) {
        css.push('\n');
        css.push_str(FOOTER_CSS);
    }
    css
}

fn readme(state: &AppState) -> String {
    let t = template(state.kind());
    let mut md = format!("# {}\n\n{}\n\n## Features\n\n", state.title, t.summary);
    for f in t.features {
        md.push_str(&format!("- {f}\n"));
    }
    if state.has(FEATURE_DARK_MODE) {
        md.push_str("- Dark mode toggle; the choice is remembered\n");
    }
    if state.has(FEATURE_FOOTER) {
        md.push_str("- Page footer\n");
    }
    md.push_str(&format!(
        "\n## Run it\n\nOpen `index.html` in a browser, or serve the folder:\n\n```sh\npython3 -m http.server 8000\n```\n\n\
         With Docker (nginx):\n\n```sh\ndocker build -t {name} .\ndocker run --rm -p 8080:80 {name}\n```\n\n\
         Then open http://localhost:8080.\n\n## Changelog\n\n",
        name = state.app_name
    ));
    for entry in &state.changelog {
        md.push_str(&format!("- {entry}\n"));
    }
    md
}

const DOCKERFILE_TEXT: &str = "# Serves the static files with nginx.\nFROM nginx:alpine\n\
COPY index.html app.js styles.css /usr/share/nginx/html/\nEXPOSE 80\n";

const BASE_CSS: &str = r#":root {
  --bg: #f6f7fb;
  --surface: #ffffff;
  --text: #1f2937;
  --muted: #6b7280;
  --border: #d9dce3;
  --accent: #4f46e5;
  --accent-text: #ffffff;
  --danger: #dc2626;
  color-scheme: light;
}

* {
  box-sizing: border-box;
}

body {
  margin: 0;
  min-height: 100vh;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  line-height: 1.5;
  background: var(--bg);
  color: var(--text);
}

.app {
  max-width: 42rem;
  margin: 0 auto;
  padding: 2rem 1rem;
}

.app-header {
  display: flex;
  align-items: center;
  justify-content: space-between;
  gap: 1rem;
  margin-bottom: 1.5rem;
}

h1 {
  margin: 0;
  font-size: 2rem;
}

button,
input,
textarea {
  font: inherit;
  color: inherit;
}

input,
textarea {
  padding: 0.55rem 0.75rem;
  background: var(--surface);
  border: 1px solid var(--border);
  border-radius: 0.5rem;
}

button {
  padding: 0.55rem 1rem;
  background: var(--surface);
  border: 1px solid var(--border);
  border-radius: 0.5rem;
  cursor: pointer;
}

button[type="submit"],
.controls button:not(.secondary) {
  background: var(--accent);
  border-color: var(--accent);
  color: var(--accent-text);
}

button.link {
  padding: 0;
  border: 0;
  background: none;
  color: var(--accent);
}

.row {
  display: flex;
  gap: 0.5rem;
}

.row input {
  flex: 1;
}

.list {
  list-style: none;
  padding: 0;
  margin: 0 0 1rem;
}

.item {
  display: flex;
  align-items: center;
  gap: 0.5rem;
  padding: 0.6rem 0.75rem;
  margin-bottom: 0.5rem;
  background: var(--surface);
  border: 1px solid var(--border);
  border-radius: 0.5rem;
}

.item span {
  flex: 1;
  overflow-wrap: anywhere;
}

.delete {
  padding: 0.2rem 0.5rem;
  border: 0;
  background: none;
  color: var(--danger);
}

.muted {
  color: var(--muted);
}
"#;

const DARK_MODE_CSS: &str = r#"/* Dark mode: the toggle sets data-theme="dark" on <html>. */
:root[data-theme="dark"] {
  --bg: #0f172a;
  --surface: #1e293b;
  --text: #e2e8f0;
  --muted: #94a3b8;
  --border: #334155;
  --accent: #818cf8;
  --accent-text: #0f172a;
  --danger: #f87171;
  color-scheme: dark;
}

.theme-toggle {
  white-space: nowrap;
}
"#;

const DARK_MODE_JS: &str = r#"// Dark mode: remembers the choice, defaults to the system preference.
(() => {
  'use strict';
  const KEY = '__STORE__:theme';
  const toggle = document.getElementById('theme-toggle');
  const root = document.documentElement;

  function saved() {
    try {
      return localStorage.getItem(KEY);
    } catch (e) {
      return null;
    }
  }

  function apply(theme) {
    root.dataset.theme = theme;
    toggle.textContent = theme === 'dark' ? '☀️ Light mode' : '🌙 Dark mode';
    toggle.setAttribute('aria-pressed', String(theme === 'dark'));
  }

  const prefersDark = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches;
  apply(saved() || (prefersDark ? 'dark' : 'light'));

  toggle.addEventListener('click', () => {
    const next = root.dataset.theme === 'dark' ? 'light' : 'dark';
    apply(next);
    try {
      localStorage.setItem(KEY, next);
    } catch (e) {
      // Storage may be unavailable; the theme lasts for this visit.
    }
  });
})();
"#;

const FOOTER_CSS: &str = r#"/* Footer */
.app-footer {
  max-width: 42rem;
  margin: 0 auto;
  padding: 1rem;
  border-top: 1px solid var(--border);
  color: var(--muted);
  font-size: 0.9rem;
  text-align: center;
}
"#;

#[cfg(test)]
mod tests {
    use super::super::state::AppKind;
    use super::*;

    fn state(kind: AppKind, title: &str) -> AppState {
        AppState {
            app_type: kind.as_str().into(),
            title: title.into(),
            features: vec![],
            version: 1,
            app_name: super::super::intent::slug_app_name(title),
            prompt: format!("make a {} app", kind.as_str()),
            changelog: vec!["v1: created".into()],
        }
    }

    #[test]
    fn every_kind_renders_the_five_files_without_placeholders() {
        for kind in [
            AppKind::Todo,
            AppKind::Counter,
            AppKind::Notes,
            AppKind::Timer,
            AppKind::Generic,
        ] {
            let files = render(&state(kind, "T <&> \"x\""));
            let names: Vec<&str> = files.keys().map(String::as_str).collect();
            assert_eq!(
                names,
                vec![
                    "Dockerfile",
                    "README.md",
                    "app.js",
                    "index.html",
                    "styles.css"
                ]
            );
            for (path, content) in &files {
                assert!(!content.contains("__"), "{path} has a placeholder");
                assert!(content.ends_with('\n'), "{path}");
                assert!(
                    !content.lines().any(|l| l.ends_with(' ')),
                    "{path} has trailing spaces"
                );
            }
            let html = &files["index.html"];
            assert!(html.contains("id=\"app\""));
            assert!(
                html.contains("<h1>T &lt;&amp;&gt; &quot;x&quot;</h1>"),
                "{html}"
            );
        }
    }

    #[test]
    fn features_change_the_output() {
        let mut s = state(AppKind::Todo, "Todo List");
        let plain = render(&s);
        s.set(FEATURE_DARK_MODE, true);
        s.set(FEATURE_FOOTER, true);
        s.set(FEATURE_NO_README, true);
        let rich = render(&s);
        assert!(!rich.contains_key("README.md"));
        assert!(rich["index.html"].contains("id=\"theme-toggle\""));
        assert!(rich["index.html"].contains("<footer"));
        assert!(rich["styles.css"].contains("[data-theme=\"dark\"]"));
        assert!(rich["app.js"].contains("todo-list-app:theme"));
        assert_eq!(plain["Dockerfile"], rich["Dockerfile"]);
        assert_eq!(render(&s), rich, "rendering is deterministic");
    }
}
