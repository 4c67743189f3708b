//! Whole-tree invariants checked on every patch result: no path is both a
//! file and a directory, and no symlink resolves outside the tree or into
//! `.git`.

use super::error::shown;
use super::paths::{is_git_dir_name, is_gitmodules_name};
use super::{FileMode, FileTree, PatchError};

/// Linux gives up on path resolution after 40 symlinks (ELOOP); so do we.
const MAX_SYMLINK_HOPS: usize = 40;

pub(crate) fn validate(tree: &FileTree) -> Result<(), PatchError> {
    for (path, entry) in tree {
        let dir = format!("{path}/");
        if let Some((inner, _)) = tree.range(dir.clone()..).next() {
            if inner.starts_with(&dir) {
                return Err(PatchError::PathConflict {
                    path: shown(path.as_bytes()),
                    reason: format!(
                        "is a file but {} needs it to be a directory",
                        shown(inner.as_bytes())
                    ),
                });
            }
        }
        if entry.mode == FileMode::Symlink {
            check_symlink(tree, path, &entry.content)?;
        }
    }
    Ok(())
}

/// Resolves `target` from the link's directory, following symlinks in the
/// tree, and fails if resolution ever climbs above the root or enters `.git`.
fn check_symlink(tree: &FileTree, link: &str, target: &[u8]) -> Result<(), PatchError> {
    let reject = |reason: &str| PatchError::UnsafeSymlink {
        path: shown(link.as_bytes()),
        target: shown(target),
        reason: reason.to_string(),
    };
    let file_name = link.rsplit('/').next().unwrap_or(link);
    if is_gitmodules_name(file_name) {
        return Err(reject(".gitmodules may not be a symlink"));
    }
    let target = std::str::from_utf8(target).map_err(|_| reject("not valid UTF-8"))?;
    if target.is_empty() {
        return Err(reject("empty target"));
    }
    if target.contains(['\0', '\\']) {
        return Err(reject("contains a NUL byte or backslash"));
    }
    if target.starts_with('/') {
        return Err(reject("absolute target"));
    }
    let mut dir: Vec<&str> = link.split('/').collect();
    dir.pop();
    // Components still to walk, last one first.
    let mut pending: Vec<&str> = target.split('/').rev().collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part {
            "" | "." => {}
            ".." => {
                if dir.pop().is_none() {
                    return Err(reject("leaves the app root"));
                }
            }
            name if is_git_dir_name(name) => return Err(reject("points into .git")),
            name => {
                dir.push(name);
                let here = dir.join("/");
                if let Some(entry) = tree.get(&here).filter(|e| e.mode == FileMode::Symlink) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        // A loop: resolution fails with ELOOP before going anywhere.
                        return Ok(());
                    }
                    let inner = std::str::from_utf8(&entry.content)
                        .map_err(|_| reject("goes through a symlink with a non-UTF-8 target"))?;
                    if inner.starts_with('/') {
                        return Err(reject("goes through a symlink with an absolute target"));
                    }
                    dir.pop();
                    pending.extend(inner.split('/').rev());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::FileEntry;

    fn tree(entries: &[(&str, &str, FileMode)]) -> FileTree {
        entries
            .iter()
            .map(|(p, c, m)| {
                (
                    p.to_string(),
                    FileEntry {
                        content: c.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    const F: FileMode = FileMode::Regular;
    const L: FileMode = FileMode::Symlink;

    #[test]
    fn file_and_directory_conflict() {
        assert!(validate(&tree(&[("a", "", F), ("a.txt", "", F), ("b/a", "", F)])).is_ok());
        let err = validate(&tree(&[("a", "", F), ("a!", "", F), ("a/b", "", F)])).unwrap_err();
        assert_eq!(err.code(), "path_conflict");
    }

    #[test]
    fn symlinks_inside_the_root_are_fine() {
        let t = tree(&[
            ("README.md", "x", F),
            ("docs/readme", "../README.md", L),
            ("docs/self", ".", L),
            ("deep/a/b/up", "../../..", L),
            ("dangling", "missing/file", L),
        ]);
        assert!(validate(&t).is_ok());
    }

    #[test]
    fn escaping_symlinks_are_rejected() {
        for (link, target) in [
            ("x", "../../etc"),
            ("a/x", "../../etc/passwd"),
            ("x", "/etc/passwd"),
            ("x", ""),
            ("x", ".git/config"),
            ("x", "sub/../.git"),
            (".gitmodules", "x"),
        ] {
            let t = tree(&[(link, target, L)]);
            let err = validate(&t).unwrap_err();
            assert_eq!(err.code(), "unsafe_path", "{link} -> {target}");
        }
    }

    #[test]
    fn escapes_through_other_symlinks_are_rejected() {
        // deep/a/b/up resolves to the root, so up/.. is above it.
        let t = tree(&[("deep/a/b/up", "../../..", L), ("x", "deep/a/b/up/..", L)]);
        assert_eq!(validate(&t).unwrap_err().code(), "unsafe_path");
        // A cycle cannot be followed anywhere, so it is harmless.
        let t = tree(&[("p", "q", L), ("q", "p", L), ("self", "self", L)]);
        assert!(validate(&t).is_ok());
    }
}
