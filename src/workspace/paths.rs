//! Path safety: every key of a tree is a clean relative path inside the root.

use super::PatchError;

/// Normalises a relative path and rejects anything that could escape the
/// tree or touch git's own metadata.
///
/// `.` components and repeated slashes are collapsed. Rejected: empty
/// paths, absolute paths, `..` components, NUL bytes, backslashes (a
/// separator on Windows), a trailing slash, and any `.git` component
/// (including the spellings Windows treats as `.git`, such as `.GIT.` or
/// `git~1`).
pub fn normalize_path(raw: &str) -> Result<String, PatchError> {
    let reject = |reason: &str| PatchError::UnsafePath {
        path: shown_short(raw),
        reason: reason.to_string(),
    };
    if raw.is_empty() {
        return Err(reject("empty path"));
    }
    if raw.contains('\0') {
        return Err(reject("contains a NUL byte"));
    }
    if raw.contains('\\') {
        return Err(reject("contains a backslash"));
    }
    if raw.starts_with('/') {
        return Err(reject("absolute path"));
    }
    if raw.ends_with('/') {
        return Err(reject("names a directory"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(reject("leaves the app root (`..` component)")),
            _ if is_git_dir_name(part) => return Err(reject("inside a .git directory")),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(reject("empty path"));
    }
    // Beyond these, checkouts and deploy builds fail with "File name too long" for good.
    if parts.iter().any(|part| part.len() > MAX_COMPONENT_BYTES) {
        return Err(reject(&format!(
            "a path component is longer than {MAX_COMPONENT_BYTES} bytes"
        )));
    }
    if parts.len() > MAX_PATH_DEPTH {
        return Err(reject(&format!(
            "more than {MAX_PATH_DEPTH} levels of directories"
        )));
    }
    let path = parts.join("/");
    if path.len() > MAX_PATH_BYTES {
        return Err(reject(&format!("longer than {MAX_PATH_BYTES} bytes")));
    }
    Ok(path)
}

/// The longest file or directory name most filesystems accept (`NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// The longest path Linux accepts (`PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Levels of a path, file name included.
pub const MAX_PATH_DEPTH: usize = 64;
/// How much of a rejected path a message repeats.
const SHOWN_PATH_BYTES: usize = 120;

/// The path for an error message, cut short so a hostile name cannot flood logs or responses.
fn shown_short(raw: &str) -> String {
    if raw.len() <= SHOWN_PATH_BYTES {
        return super::error::shown(raw.as_bytes());
    }
    let mut end = SHOWN_PATH_BYTES;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... ({} bytes)",
        super::error::shown(&raw.as_bytes()[..end]),
        raw.len()
    )
}

/// True for `.git` and the names Windows filesystems resolve to it.
pub(crate) fn is_git_dir_name(component: &str) -> bool {
    let trimmed = component.trim_end_matches([' ', '.']);
    trimmed.eq_ignore_ascii_case(".git") || trimmed.eq_ignore_ascii_case("git~1")
}

/// True for `.gitmodules`, which git refuses to check out as a symlink.
pub(crate) fn is_gitmodules_name(component: &str) -> bool {
    component
        .trim_end_matches([' ', '.'])
        .eq_ignore_ascii_case(".gitmodules")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(raw: &str) -> bool {
        matches!(normalize_path(raw), Err(PatchError::UnsafePath { .. }))
    }

    #[test]
    fn accepts_and_cleans_ordinary_paths() {
        assert_eq!(normalize_path("src/main.rs").unwrap(), "src/main.rs");
        assert_eq!(normalize_path("./src//x/./y.txt").unwrap(), "src/x/y.txt");
        assert_eq!(normalize_path("lib/a/b.txt").unwrap(), "lib/a/b.txt");
        assert_eq!(
            normalize_path("with space/é.txt").unwrap(),
            "with space/é.txt"
        );
        assert_eq!(normalize_path("tab\there").unwrap(), "tab\there");
        assert_eq!(normalize_path(".gitignore").unwrap(), ".gitignore");
        assert_eq!(
            normalize_path("x/.github/ci.yml").unwrap(),
            "x/.github/ci.yml"
        );
        assert_eq!(normalize_path("..foo/bar..").unwrap(), "..foo/bar..");
    }

    #[test]
    fn rejects_traversal_absolute_and_git_metadata() {
        for raw in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "a/../b",
            "..",
            ".git/config",
            ".git",
            "x/.git/hooks/y",
            "X/.GIT/hooks",
            ".git./config",
            "git~1/config",
            "foo\0bar",
            "foo\\bar",
            "..\\..\\x",
            "",
            ".",
            "./",
            "dir/",
        ] {
            assert!(rejected(raw), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn rejects_names_paths_and_depths_past_the_limits() {
        let long_name = "a".repeat(MAX_COMPONENT_BYTES + 1);
        assert!(rejected(&format!("src/{long_name}.txt")));
        assert!(normalize_path(&"a".repeat(MAX_COMPONENT_BYTES)).is_ok());
        let deep = vec!["d"; MAX_PATH_DEPTH + 1].join("/");
        assert!(rejected(&deep));
        assert!(normalize_path(&vec!["d"; MAX_PATH_DEPTH].join("/")).is_ok());
        let long_path = vec!["b".repeat(200); 30].join("/");
        let err = normalize_path(&long_path).unwrap_err().to_string();
        assert!(err.contains("longer than 4096 bytes"), "{err}");
        assert!(err.len() < 400, "the message cuts the path short: {err}");
    }

    #[test]
    fn git_dir_name_variants() {
        assert!(is_git_dir_name(".git"));
        assert!(is_git_dir_name(".Git "));
        assert!(is_git_dir_name("GIT~1."));
        assert!(!is_git_dir_name(".gitignore"));
        assert!(!is_git_dir_name("git"));
        assert!(is_gitmodules_name(".GitModules"));
    }
}
