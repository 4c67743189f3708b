//! Reading what the user asked for, with plain keyword rules.
//!
//! Deterministic on purpose: the same prompt always yields the same app,
//! which keeps gateway tests reproducible.

use super::state::AppKind;

/// Words that carry no request content.
const STOPWORDS: &str =
    "a an the and or but so to of for in on at by with from into about as is are be was it \
     its this that these those me my mine we us our you your they them their please pls plz \
     can could would will should shall may might must want wanna need like just some any do \
     does did have has had get got let lets hi hello hey hiya yo help thanks thank thx ok \
     okay yes no yeah sure what how why who where when which there here now also very really \
     something anything stuff thing things good morning evening afternoon test testing hmm \
     lol";

/// Words that are meaningful but say nothing about *which* app.
const GENERIC: &str =
    "add make build create generate write code develop app apps application website site page \
     web webpage simple small new basic quick little project demo nice cool landing tool \
     program single static";

/// Whether `word` is one of the space-separated words of `list`.
fn in_list(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// Lowercase alphanumeric tokens of two or more characters.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect()
}

fn meaningful(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| !in_list(STOPWORDS, w))
        .collect()
}

/// Too little to build from: fewer than two meaningful words, or only
/// generic ones ("build me an app").
pub fn is_vague(text: &str) -> bool {
    let m = meaningful(text);
    m.len() < 2 || m.iter().all(|w| in_list(GENERIC, w))
}

/// Picks a template from keywords; the first matching rule wins.
pub fn choose_kind(text: &str) -> AppKind {
    let w = words(text);
    let has = |list: &str| w.iter().any(|x| in_list(list, x));
    let joined = format!(" {} ", w.join(" "));
    if has("pomodoro timer timers stopwatch countdown") {
        AppKind::Timer
    } else if has("todo todos task tasks checklist chores") || joined.contains(" to do ") {
        AppKind::Todo
    } else if has("note notes notepad journal memo memos diary") {
        AppKind::Notes
    } else if has("counter counters tally clicker count counting") {
        AppKind::Counter
    } else {
        AppKind::Generic
    }
}

/// The title for a new app: an explicit "called X" wins, else a default.
pub fn title_for(kind: AppKind, text: &str) -> String {
    if let Some(t) = explicit_title(text) {
        return t;
    }
    match kind {
        AppKind::Todo => "Todo List".into(),
        AppKind::Counter => "Counter".into(),
        AppKind::Notes => "Notes".into(),
        AppKind::Timer if text.to_lowercase().contains("pomodoro") => "Pomodoro Timer".into(),
        AppKind::Timer => "Focus Timer".into(),
        AppKind::Generic => generic_title(text),
    }
}

/// Up to four subject words of the prompt, title-cased.
fn generic_title(text: &str) -> String {
    let subject: Vec<String> = meaningful(text)
        .into_iter()
        .filter(|w| !in_list(GENERIC, w))
        .take(4)
        .map(|w| capitalize(&w))
        .collect();
    if subject.is_empty() {
        "My Page".into()
    } else {
        subject.join(" ")
    }
}

fn capitalize(w: &str) -> String {
    let mut chars = w.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `"Todo List"` → `"todo-list-app"` (repository-style name).
pub fn slug_app_name(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let mut slug = slug.trim_matches('-').to_string();
    slug.truncate(40);
    let slug = slug.trim_matches('-');
    match slug {
        "" => "demo-app".into(),
        s if s == "app" || s.ends_with("-app") => s.into(),
        s => format!("{s}-app"),
    }
}

/// Collapses whitespace and caps the length (on a char boundary).
pub fn one_line(text: &str, max_chars: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= max_chars {
        return joined;
    }
    let mut cut: String = joined.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

const QUOTES: &[(char, char)] = &[
    ('"', '"'),
    ('\'', '\''),
    ('“', '”'),
    ('‘', '’'),
    ('`', '`'),
    ('«', '»'),
];

/// Verbs that start a new request after a title ("... to Foo and add X").
const CLAUSE_VERBS: &str =
    "add remove delete make include drop enable disable use change put also then turn show \
     hide";

/// A title that ends where the text after a trigger ends, or at a closing
/// quote, a sentence end or an "and <verb>" clause.
fn title_after(rest: &str) -> Option<(String, usize)> {
    let rest_trim = rest.trim_start();
    let lead = rest.len() - rest_trim.len();
    let mut chars = rest_trim.chars();
    if let Some(open) = chars.next() {
        if let Some((_, close)) = QUOTES.iter().find(|(o, _)| *o == open) {
            let inner = &rest_trim[open.len_utf8()..];
            let end = inner.find(*close).unwrap_or(inner.len());
            let consumed = lead + open.len_utf8() + (end + close.len_utf8()).min(inner.len());
            return clean_title(&inner[..end]).map(|t| (t, consumed));
        }
    }
    let lower = rest_trim.to_ascii_lowercase();
    let mut end = rest_trim.len();
    for stop in [". ", "; ", "! ", "? ", "\n"] {
        if let Some(p) = lower.find(stop) {
            end = end.min(p);
        }
    }
    for verb in CLAUSE_VERBS.split_whitespace() {
        for joiner in [" and ", ", ", ", and ", " then "] {
            if let Some(p) = lower.find(&format!("{joiner}{verb} ")) {
                end = end.min(p);
            }
        }
    }
    clean_title(&rest_trim[..end]).map(|t| (t, lead + end))
}

/// Trims quotes/punctuation, collapses whitespace, caps at 60 characters.
pub fn clean_title(raw: &str) -> Option<String> {
    let quote_chars: Vec<char> = QUOTES.iter().flat_map(|(o, c)| [*o, *c]).collect();
    let t = raw
        .trim()
        .trim_end_matches(['.', '!', '?', ',', ';', ':'])
        .trim_matches(|c: char| quote_chars.contains(&c) || c.is_whitespace());
    let t = one_line(t, 60);
    t.chars().any(char::is_alphanumeric).then_some(t)
}

/// "… called X" / "named X" / "titled X" in a new prompt.
fn explicit_title(text: &str) -> Option<String> {
    find_title(text, "called |named |titled |call it |name it |title it ").map(|(t, _)| t)
}

/// Finds the earliest trigger (longest on ties) and the title after it;
/// returns the title and the byte range it spans from the trigger on.
fn find_title(text: &str, triggers: &str) -> Option<(String, std::ops::Range<usize>)> {
    // ASCII lowercasing keeps byte offsets aligned with `text`.
    let lower = text.to_ascii_lowercase();
    let (start, trigger) = triggers
        .split('|')
        .filter_map(|t| find_word(&lower, t).map(|p| (p, t)))
        .min_by_key(|(p, t)| (*p, usize::MAX - t.len()))?;
    let after = start + trigger.len();
    let (title, consumed) = title_after(&text[after..])?;
    Some((title, start..after + consumed))
}

/// Position of `needle` starting at a word boundary.
fn find_word(hay: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = hay[from..].find(needle) {
        let at = from + p;
        let boundary = hay[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        if boundary {
            return Some(at);
        }
        from = at + needle.len().max(1);
    }
    None
}

/// One requested modification of an existing app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Rename(String),
    DarkMode(bool),
    Footer(bool),
    Readme(bool),
}

/// Phrases that introduce a new title, separated by `|`.
const RENAME_TRIGGERS: &str =
    "rename it to |rename the app to |rename the page to |rename the title to |\
     rename this to |rename to |rename it |rename the app |rename |retitle it to |\
     retitle to |retitle it |change the title to |change title to |change the name to |\
     change name to |set the title to |set title to |update the title to |title to |\
     title it |call it |name it |call the app |name the app ";

const NEGATIVE: &str = "remove delete drop disable without hide rid off no lose";
const POSITIVE: &str =
    "add include enable put give show restore create make want need on bring back use support";

/// The modifications requested by a follow-up message, in order.
pub fn parse_follow_up(text: &str) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut rest = text.to_string();
    if let Some((title, span)) = find_title(text, RENAME_TRIGGERS) {
        changes.push(Change::Rename(title));
        rest.replace_range(span, " , ");
    }
    let lower = rest.to_lowercase();
    let mut positive = true;
    for clause in lower
        .split([',', ';', '.', '!', '?', '\n'])
        .flat_map(|c| c.split(" and "))
    {
        let w = words(clause);
        let has = |list: &str| w.iter().any(|x| in_list(list, x));
        // A clause without a verb ("… and the readme") keeps the last polarity.
        if has(NEGATIVE) {
            positive = false;
        } else if has(POSITIVE) {
            positive = true;
        }
        if has("dark darkmode night") {
            changes.push(Change::DarkMode(positive));
        }
        if has("footer footers") {
            changes.push(Change::Footer(positive));
        }
        if has("readme") || clause.contains("read me") {
            changes.push(Change::Readme(positive));
        }
    }
    changes
}

/// A follow-up that names no change and has no content of its own.
pub fn is_vague_follow_up(text: &str) -> bool {
    parse_follow_up(text).is_empty() && is_vague(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vague_prompts() {
        for p in [
            "hi",
            "hello",
            "help",
            "Hello there!",
            "",
            "   ",
            "build me an app",
            "make a website",
            "todo",
            "?",
        ] {
            assert!(is_vague(p), "{p:?}");
        }
        for p in [
            "make a todo app",
            "make a counter",
            "build a recipe collection page",
            "pomodoro timer please",
        ] {
            assert!(!is_vague(p), "{p:?}");
        }
    }

    #[test]
    fn kinds_from_keywords() {
        assert_eq!(choose_kind("Build a todo list app"), AppKind::Todo);
        assert_eq!(choose_kind("a to-do thing for chores"), AppKind::Todo);
        assert_eq!(choose_kind("make a counter app"), AppKind::Counter);
        assert_eq!(choose_kind("a place to keep my notes"), AppKind::Notes);
        assert_eq!(choose_kind("pomodoro timer with breaks"), AppKind::Timer);
        assert_eq!(choose_kind("countdown for my tasks"), AppKind::Timer);
        assert_eq!(choose_kind("landing page for my bakery"), AppKind::Generic);
    }

    #[test]
    fn titles() {
        assert_eq!(title_for(AppKind::Todo, "make a todo app"), "Todo List");
        assert_eq!(
            title_for(AppKind::Todo, "make a todo app called Groceries"),
            "Groceries"
        );
        assert_eq!(
            title_for(AppKind::Notes, "notes app named \"My Ideas\" with search"),
            "My Ideas"
        );
        assert_eq!(
            title_for(AppKind::Generic, "Build a landing page for my bakery"),
            "Bakery"
        );
        assert_eq!(
            title_for(AppKind::Generic, "recipe collection website"),
            "Recipe Collection"
        );
        assert_eq!(slug_app_name("Todo List"), "todo-list-app");
        assert_eq!(slug_app_name("Crème brûlée!"), "cr-me-br-l-e-app");
        assert_eq!(slug_app_name("🎉"), "demo-app");
        assert_eq!(slug_app_name("My App"), "my-app");
    }

    #[test]
    fn follow_up_changes() {
        assert_eq!(
            parse_follow_up("add a dark mode"),
            vec![Change::DarkMode(true)]
        );
        assert_eq!(
            parse_follow_up("Please use a dark theme"),
            vec![Change::DarkMode(true)]
        );
        assert_eq!(parse_follow_up("add a footer"), vec![Change::Footer(true)]);
        assert_eq!(
            parse_follow_up("remove the readme"),
            vec![Change::Readme(false)]
        );
        assert_eq!(
            parse_follow_up("Delete the README."),
            vec![Change::Readme(false)]
        );
        assert_eq!(
            parse_follow_up("remove the footer and the readme"),
            vec![Change::Footer(false), Change::Readme(false)]
        );
        assert_eq!(
            parse_follow_up("rename it to Shopping List"),
            vec![Change::Rename("Shopping List".into())]
        );
        assert_eq!(
            parse_follow_up("change the title to 'Groceries'"),
            vec![Change::Rename("Groceries".into())]
        );
        assert_eq!(
            parse_follow_up("call it Salt and Pepper"),
            vec![Change::Rename("Salt and Pepper".into())]
        );
        assert_eq!(
            parse_follow_up("rename it to Chores and add dark mode"),
            vec![Change::Rename("Chores".into()), Change::DarkMode(true)]
        );
        assert_eq!(parse_follow_up("make the buttons bigger"), vec![]);
        assert!(!is_vague_follow_up("make the buttons bigger"));
        assert!(is_vague_follow_up("thanks!"));
    }
}
