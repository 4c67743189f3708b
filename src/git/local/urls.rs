//! The URLs clients see for local repositories: the gateway serves each one read-only over git's
//! smart HTTP protocol (`http::git_http`), shaped like GitHub's, so no path of this machine ever
//! reaches a client.
//!
//! - repository: `{public_url}/git/{owner}/{name}.git` (`git clone` it with any user name and
//!   the owner's bearer token as the password)
//! - commit: `{public_url}/git/{owner}/{name}.git/commit/{sha}` (shows the commit, see
//!   [`super::commit_view`])
//!
//! Owner and name are checked repository name components (ASCII letters, digits, `.`, `_`, `-`),
//! so they need no escaping.

#[derive(Debug, Clone)]
pub struct RepoUrls {
    base: String,
}

impl RepoUrls {
    pub fn new(public_url: &str) -> Self {
        Self {
            base: public_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn repository(&self, owner: &str, name: &str) -> String {
        format!("{}/git/{owner}/{name}.git", self.base)
    }

    pub fn commit(&self, owner: &str, name: &str, sha: &str) -> String {
        format!("{}/commit/{sha}", self.repository(owner, name))
    }
}

/// Rewrites the server paths an earlier version of the local host stored (`/data/git/o/n.git`
/// and `file:///data/git/o/n.git#sha`) into the URLs above. None when `text` holds none.
pub fn rewrite_paths(text: &str, root: &str, urls: &RepoUrls) -> Option<String> {
    let root = root.trim_end_matches('/');
    if root.is_empty() || !text.contains(root) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(root) {
        let (before, after) = rest.split_at(at);
        let file_url = before.ends_with("file://");
        let before = before.strip_suffix("file://").unwrap_or(before);
        out.push_str(before);
        let after = &after[root.len()..];
        match parse_repo_path(after) {
            Some((owner, name, sha, used)) => {
                match (file_url, sha) {
                    (true, Some(sha)) => out.push_str(&urls.commit(owner, name, sha)),
                    _ => out.push_str(&urls.repository(owner, name)),
                }
                rest = &after[used..];
            }
            None => {
                // Not a repository path: keep it as it was.
                if file_url {
                    out.push_str("file://");
                }
                out.push_str(root);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out != text).then_some(out)
}

/// `/{owner}/{name}.git` optionally followed by `#{sha}`: (owner, name, sha, bytes used).
fn parse_repo_path(text: &str) -> Option<(&str, &str, Option<&str>, usize)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let rest = text.strip_prefix('/')?;
    let owner_len = rest.find(|c| !is_name(c)).unwrap_or(rest.len());
    let owner = &rest[..owner_len];
    let rest = rest[owner_len..].strip_prefix('/')?;
    let name_len = rest.find(|c| !is_name(c)).unwrap_or(rest.len());
    let name = rest[..name_len].strip_suffix(".git")?;
    if owner.is_empty() || name.is_empty() {
        return None;
    }
    let mut used = 1 + owner_len + 1 + name_len;
    let after = &rest[name_len..];
    let sha = after.strip_prefix('#').and_then(|s| {
        let len = s.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(s.len());
        (len >= 7).then(|| &s[..len])
    });
    if let Some(sha) = sha {
        used += 1 + sha.len();
    }
    Some((owner, name, sha, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shaped_like_githubs() {
        let urls = RepoUrls::new("http://127.0.0.1:4444/");
        assert_eq!(
            urls.repository("local", "todo-app"),
            "http://127.0.0.1:4444/git/local/todo-app.git"
        );
        assert_eq!(
            urls.commit("local", "todo-app", "abc1234"),
            "http://127.0.0.1:4444/git/local/todo-app.git/commit/abc1234"
        );
    }

    #[test]
    fn stored_paths_become_urls() {
        let urls = RepoUrls::new("https://gw.example");
        let root = "/srv/data/git";
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            rewrite_paths("/srv/data/git/local/todo.git", root, &urls).as_deref(),
            Some("https://gw.example/git/local/todo.git")
        );
        let json = format!(
            r#"{{"commitUrl":"file:///srv/data/git/local/todo.git#{sha}","githubUrl":"/srv/data/git/local/todo.git"}}"#
        );
        assert_eq!(
            rewrite_paths(&json, root, &urls).as_deref(),
            Some(
                format!(
                    r#"{{"commitUrl":"https://gw.example/git/local/todo.git/commit/{sha}","githubUrl":"https://gw.example/git/local/todo.git"}}"#
                )
                .as_str()
            )
        );
        assert_eq!(rewrite_paths("nothing here", root, &urls), None);
        // The root followed by something else is left alone.
        assert_eq!(rewrite_paths("/srv/data/git-old/x", root, &urls), None);
    }
}
