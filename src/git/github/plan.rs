//! Works out, before any write, which tree entries a commit needs and which blobs GitHub does
//! not have yet: content is hashed locally the way git does, so files that did not change (or
//! whose content already exists in the parent tree) are never uploaded again.

use std::collections::{BTreeMap, BTreeSet};

use git2::{ObjectType, Oid};
use serde::Serialize;

use crate::files::{FileEntry, FileMode};
use crate::git::GitError;

/// A recursive tree listing: path → (mode, object sha), blobs and submodule links only.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub files: BTreeMap<String, (String, String)>,
    /// GitHub cut the listing short (very large trees); it cannot be trusted to be complete.
    pub truncated: bool,
}

/// One item of `POST /git/trees`; `sha: None` is sent as `null`, which deletes the path.
/// (octocrab's typed entry omits a missing sha instead, so it cannot express a deletion.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct TreeItem {
    pub path: String,
    pub mode: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sha: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Upload<'a> {
    pub sha: String,
    pub content: &'a [u8],
}

#[derive(Debug, Default)]
pub(super) struct Plan<'a> {
    pub items: Vec<TreeItem>,
    pub uploads: Vec<Upload<'a>>,
}

pub(super) fn plan<'a>(
    changes: &'a BTreeMap<String, Option<FileEntry>>,
    parent: &Listing,
) -> Result<Plan<'a>, GitError> {
    let mut known: BTreeSet<String> = parent.files.values().map(|(_, sha)| sha.clone()).collect();
    let mut planned = Plan::default();
    for (path, change) in changes {
        match change {
            Some(entry) => {
                let sha = blob_sha(&entry.content)?;
                let mode = mode_str(entry.mode);
                if parent.files.get(path) == Some(&(mode.to_string(), sha.clone())) {
                    continue;
                }
                if known.insert(sha.clone()) {
                    planned.uploads.push(Upload {
                        sha: sha.clone(),
                        content: &entry.content,
                    });
                }
                planned.items.push(TreeItem {
                    path: path.clone(),
                    mode: mode.to_string(),
                    kind: "blob",
                    sha: Some(sha),
                });
            }
            None => {
                let mode = match parent.files.get(path) {
                    Some((mode, _)) => mode.clone(),
                    // Deleting what is not there is a no-op, unless the listing is incomplete.
                    None if parent.truncated => mode_str(FileMode::Regular).to_string(),
                    None => continue,
                };
                let kind = if mode == "160000" { "commit" } else { "blob" };
                planned.items.push(TreeItem {
                    path: path.clone(),
                    mode,
                    kind,
                    sha: None,
                });
            }
        }
    }
    Ok(planned)
}

/// The id git gives a blob: sha1 of `blob <len>\0<content>`.
pub(super) fn blob_sha(content: &[u8]) -> Result<String, GitError> {
    Oid::hash_object(ObjectType::Blob, content)
        .map(|id| id.to_string())
        .map_err(|e| GitError::Unavailable(format!("cannot hash content: {}", e.message())))
}

pub(super) fn mode_str(mode: FileMode) -> &'static str {
    match mode {
        FileMode::Regular => "100644",
        FileMode::Executable => "100755",
        FileMode::Symlink => "120000",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(content: &str, mode: FileMode) -> Option<FileEntry> {
        Some(FileEntry {
            content: content.as_bytes().to_vec(),
            mode,
        })
    }

    fn parent() -> Listing {
        let mut files = BTreeMap::new();
        for (path, content, mode) in [
            ("a.txt", "a", "100644"),
            ("dir/b.sh", "b", "100755"),
            ("link", "a.txt", "120000"),
        ] {
            let sha = blob_sha(content.as_bytes()).unwrap();
            files.insert(path.to_string(), (mode.to_string(), sha));
        }
        Listing {
            files,
            truncated: false,
        }
    }

    #[test]
    fn blob_ids_are_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_sha(b"hello\n").unwrap(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn only_new_content_is_uploaded() {
        let changes: BTreeMap<String, Option<FileEntry>> = [
            ("a.txt".to_string(), entry("a", FileMode::Regular)),
            ("dir/b.sh".to_string(), entry("b", FileMode::Regular)),
            ("copy.txt".to_string(), entry("a", FileMode::Regular)),
            ("new1".to_string(), entry("fresh", FileMode::Regular)),
            ("new2".to_string(), entry("fresh", FileMode::Executable)),
            ("link".to_string(), None),
            ("missing".to_string(), None),
        ]
        .into();
        let planned = plan(&changes, &parent()).unwrap();
        let paths: Vec<&str> = planned.items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, vec!["copy.txt", "dir/b.sh", "link", "new1", "new2"]);
        assert_eq!(planned.uploads.len(), 1);
        assert_eq!(planned.uploads[0].content, b"fresh");
        let link = &planned.items[2];
        assert_eq!((link.mode.as_str(), link.sha.as_deref()), ("120000", None));
        let json = serde_json::to_value(link).unwrap();
        assert_eq!(
            json["sha"],
            serde_json::Value::Null,
            "deletions send sha: null"
        );
        assert_eq!(json["type"], "blob");
    }

    #[test]
    fn truncated_listings_keep_deletions() {
        let mut listing = parent();
        listing.truncated = true;
        let changes: BTreeMap<String, Option<FileEntry>> =
            [("maybe/there".to_string(), None)].into();
        assert_eq!(plan(&changes, &listing).unwrap().items.len(), 1);
    }
}
