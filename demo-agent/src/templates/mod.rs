//! Per-app-type building blocks; the shared page shell lives in `generator`.
//!
//! Placeholders filled by the generator: `__TITLE__` (HTML-escaped title),
//! `__PROMPT__` (HTML-escaped original prompt) and `__STORE__` (a
//! localStorage key prefix derived from the app name).

mod counter;
mod generic;
mod notes;
mod timer;
mod todo;

use super::state::AppKind;

pub struct Template {
    /// Markup inside `<main id="app">`, after the header.
    pub body: &'static str,
    pub script: &'static str,
    pub style: &'static str,
    /// One sentence for the README.
    pub summary: &'static str,
    pub features: &'static [&'static str],
}

pub fn template(kind: AppKind) -> &'static Template {
    match kind {
        AppKind::Todo => &todo::TEMPLATE,
        AppKind::Counter => &counter::TEMPLATE,
        AppKind::Notes => &notes::TEMPLATE,
        AppKind::Timer => &timer::TEMPLATE,
        AppKind::Generic => &generic::TEMPLATE,
    }
}
