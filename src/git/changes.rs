//! Rules shared by every host: what a commit request may contain, and when two sets of changed
//! paths collide (the test that decides between rebasing and reporting a conflict).

use std::collections::{BTreeMap, BTreeSet};

use super::{CommitRequest, GitError};

/// Rejects requests git or GitHub would refuse or misread, before anything is written.
pub(crate) fn validate(req: &CommitRequest) -> Result<(), GitError> {
    validate_branch(&req.branch)?;
    if req.message.trim().is_empty() {
        return Err(GitError::Invalid("the commit message is empty".into()));
    }
    for (what, value) in [("name", &req.author_name), ("email", &req.author_email)] {
        // git signatures are `Name <email>`: these characters would corrupt the header.
        if value.trim().is_empty() || value.contains(['<', '>', '\n', '\0']) {
            return Err(GitError::Invalid(format!(
                "the author {what} is empty or contains <, > or a line break"
            )));
        }
    }
    for path in req.changes.keys() {
        validate_path(path)?;
    }
    let written: BTreeSet<String> = req
        .changes
        .iter()
        .filter(|(_, entry)| entry.is_some())
        .map(|(path, _)| path.clone())
        .collect();
    for path in &written {
        if has_descendant(&written, path) {
            return Err(GitError::Invalid(format!(
                "{path:?} is written as a file and as a directory"
            )));
        }
    }
    Ok(())
}

/// Git's ref rules, and only characters that need no escaping in GitHub API URLs.
pub(crate) fn validate_branch(branch: &str) -> Result<(), GitError> {
    let plain = branch
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if branch.is_empty()
        || !plain
        || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
    {
        return Err(GitError::Invalid(format!("invalid branch name {branch:?}")));
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), GitError> {
    let bad = |why: &str| Err(GitError::Invalid(format!("path {path:?} {why}")));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.contains('\0') {
        return bad("contains a NUL byte");
    }
    for part in path.split('/') {
        match part {
            "" => return bad("has an empty component or a leading/trailing slash"),
            "." | ".." => return bad("has a . or .. component"),
            _ if part.eq_ignore_ascii_case(".git") => return bad("enters .git"),
            _ => {}
        }
    }
    Ok(())
}

/// True when some path in `ours` equals a path in `theirs`, or one is inside the other
/// (a file replaced by a directory or the other way round).
pub(crate) fn overlaps<'a>(
    ours: impl IntoIterator<Item = &'a String>,
    theirs: &BTreeSet<String>,
) -> bool {
    ours.into_iter().any(|path| {
        theirs.contains(path)
            || has_descendant(theirs, path)
            || ancestors(path).any(|dir| theirs.contains(dir))
    })
}

/// Paths whose entry differs between two flat listings (path → mode and object id).
pub(crate) fn changed_paths<V: PartialEq>(
    before: &BTreeMap<String, V>,
    after: &BTreeMap<String, V>,
) -> BTreeSet<String> {
    let mut changed: BTreeSet<String> = before
        .iter()
        .filter(|(path, v)| after.get(*path) != Some(v))
        .map(|(path, _)| path.clone())
        .collect();
    changed.extend(
        after
            .keys()
            .filter(|path| !before.contains_key(*path))
            .cloned(),
    );
    changed
}

fn has_descendant(set: &BTreeSet<String>, path: &str) -> bool {
    let dir = format!("{path}/");
    set.range(dir.clone()..)
        .next()
        .is_some_and(|p| p.starts_with(&dir))
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{FileEntry, FileMode};

    fn set(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    fn request(paths: &[(&str, bool)]) -> CommitRequest {
        CommitRequest {
            branch: "main".into(),
            message: "m".into(),
            author_name: "A".into(),
            author_email: "a@example.com".into(),
            parent: None,
            changes: paths
                .iter()
                .map(|(p, write)| {
                    let entry = write.then(|| FileEntry {
                        content: b"x".to_vec(),
                        mode: FileMode::Regular,
                    });
                    (p.to_string(), entry)
                })
                .collect(),
        }
    }

    #[test]
    fn overlap_means_same_path_or_nesting() {
        let theirs = set(&["src/main.rs", "docs"]);
        assert!(overlaps(&set(&["src/main.rs"]), &theirs));
        assert!(overlaps(&set(&["docs/intro.md"]), &theirs));
        assert!(overlaps(&set(&["src"]), &theirs));
        assert!(!overlaps(&set(&["src/lib.rs", "doc", "docs.md"]), &theirs));
        assert!(!overlaps(&set(&[]), &theirs));
    }

    #[test]
    fn changed_paths_covers_added_removed_and_modified() {
        let a: BTreeMap<String, u8> = [("x".into(), 1), ("y".into(), 2), ("z".into(), 3)].into();
        let b: BTreeMap<String, u8> = [("x".into(), 1), ("y".into(), 9), ("w".into(), 4)].into();
        assert_eq!(changed_paths(&a, &b), set(&["w", "y", "z"]));
    }

    #[test]
    fn validation_rejects_bad_paths_and_signatures() {
        assert!(validate(&request(&[("a/b.txt", true), ("c", false)])).is_ok());
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/../b",
            ".git/config",
            "x/.GIT/y",
        ] {
            let err = validate(&request(&[(bad, true)])).unwrap_err();
            assert_eq!(err.code(), "invalid", "{bad:?}");
        }
        let err = validate(&request(&[("a", true), ("a/b", true)])).unwrap_err();
        assert_eq!(err.code(), "invalid");
        // Deleting a file while writing a directory of the same name is a replacement.
        assert!(validate(&request(&[("a", false), ("a/b", true)])).is_ok());

        let mut req = request(&[("a", true)]);
        req.author_email = "evil>\nx".into();
        assert_eq!(validate(&req).unwrap_err().code(), "invalid");
        let mut req = request(&[("a", true)]);
        req.branch = "bad..name".into();
        assert_eq!(validate(&req).unwrap_err().code(), "invalid");
    }
}
