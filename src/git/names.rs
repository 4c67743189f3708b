//! Repository names that every host accepts (GitHub's rules are the strictest).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::GitError;

/// GitHub's limit on repository name length.
pub const MAX_REPO_NAME: usize = 100;
const SUFFIX_HEX: usize = 4;

/// Turns an app name into a repository name: only `[A-Za-z0-9._-]` (anything else becomes
/// `-`), runs of `-` collapsed, no leading `.` or `-`, no trailing `-`, no `.git` ending, at most
/// 100 characters. When nothing usable is left, `fallback` (sanitised the same way) is used.
pub fn sanitize_repo_name(app_name: Option<&str>, fallback: &str) -> String {
    let cleaned = clean(app_name.unwrap_or(""));
    if !cleaned.is_empty() {
        return cleaned;
    }
    let fallback = clean(fallback);
    if fallback.is_empty() {
        "app".to_string()
    } else {
        fallback
    }
}

/// A name to try after `name` was taken: `name-xxxx` with a short pseudo-random hex suffix, so
/// apps sharing a name don't all walk the same sequence. Attempt 0 is `name` itself.
pub fn with_suffix(name: &str, attempt: u32) -> String {
    if attempt == 0 {
        return name.to_string();
    }
    let suffix = short_suffix(name, attempt);
    let base = clean(name);
    let base = trim_end(&base[..base.len().min(MAX_REPO_NAME - SUFFIX_HEX - 1)]);
    if base.is_empty() {
        format!("app-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// Checks an owner or repository name received from a caller before it goes into a path (a
/// directory on disk, a GitHub API route): GitHub's character set for repository names, and
/// never `.`-prefixed, so `..`, hidden directories and extra route segments are impossible.
pub(crate) fn check_component(what: &str, value: &str) -> Result<(), GitError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_REPO_NAME
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(GitError::Invalid(format!("invalid {what} {value:?}")))
    }
}

fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_REPO_NAME));
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    // Only ASCII is left, so byte slicing below is safe.
    let name = out.trim_start_matches(['.', '-']);
    let mut name = &name[..name.len().min(MAX_REPO_NAME)];
    loop {
        let before = name.len();
        name = trim_end(name);
        // GitHub drops a ".git" ending, and a bare-repo directory name would be ambiguous.
        if name.len() >= 4 && name[name.len() - 4..].eq_ignore_ascii_case(".git") {
            name = &name[..name.len() - 4];
        }
        if name.len() == before {
            return name.to_string();
        }
    }
}

fn trim_end(name: &str) -> &str {
    name.trim_end_matches('-')
}

fn short_suffix(name: &str, attempt: u32) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(attempt.to_le_bytes());
    hasher.update(nanos.to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(SUFFIX_HEX);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> String {
        sanitize_repo_name(Some(name), "app-1234")
    }

    #[test]
    fn sanitises_like_github() {
        assert_eq!(s("Todo App"), "Todo-App");
        assert_eq!(s("  my  shiny   app!!  "), "my-shiny-app");
        assert_eq!(s("café ☕ bar"), "caf-bar");
        assert_eq!(s("a--b__c..d"), "a-b__c..d");
        assert_eq!(s(".hidden"), "hidden");
        assert_eq!(s("-.-x"), "x");
        assert_eq!(s("repo.git"), "repo");
        assert_eq!(s("repo.GIT.git"), "repo");
        assert_eq!(s("x/y\\z"), "x-y-z");
        assert_eq!(s(".git"), "git");
    }

    #[test]
    fn falls_back_when_nothing_is_left() {
        for bad in ["", "   ", ".", "..", "...", "---", "☕☕", ".-."] {
            assert_eq!(s(bad), "app-1234", "{bad:?}");
        }
        assert_eq!(sanitize_repo_name(None, "app-9f"), "app-9f");
        assert_eq!(sanitize_repo_name(None, "!!"), "app");
    }

    #[test]
    fn limits_length() {
        let long = "a".repeat(150);
        assert_eq!(s(&long).len(), MAX_REPO_NAME);
        let dashed = format!("{}-{}", "b".repeat(99), "c".repeat(10));
        assert_eq!(s(&dashed), "b".repeat(99));
    }

    #[test]
    fn components_cannot_leave_their_place_in_a_path() {
        for good in ["octo-org", "my_repo.v2", "A1"] {
            assert!(check_component("owner", good).is_ok(), "{good:?}");
        }
        let long = "x".repeat(MAX_REPO_NAME + 1);
        for bad in [
            "", ".", "..", ".hidden", "a/b", "../x", "a b", "a?b", "a%2Fb", &long,
        ] {
            assert_eq!(
                check_component("owner", bad).map_err(|e| e.code()),
                Err("invalid"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn suffixes_stay_valid_and_differ() {
        assert_eq!(with_suffix("todo", 0), "todo");
        let a = with_suffix("todo-app", 1);
        let b = with_suffix("todo-app", 2);
        assert_ne!(a, b);
        for name in [a, b] {
            assert!(name.starts_with("todo-app-"), "{name}");
            assert_eq!(name.len(), "todo-app-".len() + SUFFIX_HEX);
            assert_eq!(sanitize_repo_name(Some(&name), "x"), name);
        }
        let long = with_suffix(&"z".repeat(MAX_REPO_NAME), 3);
        assert_eq!(long.len(), MAX_REPO_NAME);
        assert_eq!(sanitize_repo_name(Some(&long), "x"), long);
    }
}
