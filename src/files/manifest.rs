//! A version's manifest: every path with its content hash, size and mode.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::{FileEntry, FileMode, FileTree};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub sha256: String,
    pub size: u64,
    /// Git's octal mode: 100644, 100755 or 120000.
    pub mode: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, ManifestEntry>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ManifestEntry {
    pub fn of(entry: &FileEntry) -> Self {
        ManifestEntry {
            sha256: sha256_hex(&entry.content),
            size: entry.content.len() as u64,
            mode: entry.mode.git_octal(),
        }
    }
}

impl Manifest {
    pub fn of(tree: &FileTree) -> Self {
        let files = tree
            .iter()
            .map(|(path, entry)| (path.clone(), ManifestEntry::of(entry)))
            .collect();
        Self { files }
    }

    /// The manifest of `tree`, a patch result over the files of `self`: the
    /// `changed` paths are hashed from `tree`, every other path keeps its
    /// entry of `self` unread, so a one-file change hashes one file.
    pub fn updated(&self, tree: &FileTree, changed: &BTreeSet<String>) -> Result<Self, String> {
        let files = tree
            .iter()
            .map(|(path, entry)| {
                let kept = || {
                    self.files.get(path).cloned().ok_or_else(|| {
                        format!("{path} is neither changed nor in the previous manifest")
                    })
                };
                let entry = if changed.contains(path) {
                    ManifestEntry::of(entry)
                } else {
                    kept()?
                };
                Ok((path.clone(), entry))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { files })
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|e| e.size).sum()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"files\":{}}".to_string())
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn mode_of(entry: &ManifestEntry) -> FileMode {
        FileMode::from_git_octal(entry.mode).unwrap_or(FileMode::Regular)
    }

    /// Builds the tree from blob contents looked up by hash.
    pub fn tree_with(
        &self,
        mut blob: impl FnMut(&str) -> Option<Vec<u8>>,
    ) -> Result<FileTree, String> {
        let mut tree = FileTree::new();
        for (path, entry) in &self.files {
            let content = blob(&entry.sha256)
                .ok_or_else(|| format!("content of {path} ({}) is missing", entry.sha256))?;
            tree.insert(
                path.clone(),
                FileEntry {
                    content,
                    mode: Self::mode_of(entry),
                },
            );
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips() {
        let mut tree = FileTree::new();
        tree.insert(
            "a.txt".into(),
            FileEntry {
                content: b"hi".to_vec(),
                mode: FileMode::Executable,
            },
        );
        let manifest = Manifest::of(&tree);
        assert_eq!(manifest.files["a.txt"].mode, 0o100755);
        assert_eq!(manifest.files["a.txt"].size, 2);
        let back = Manifest::from_json(&manifest.to_json()).expect("json");
        assert_eq!(back, manifest);
        let rebuilt = back.tree_with(|_| Some(b"hi".to_vec())).expect("tree");
        assert_eq!(rebuilt, tree);
    }

    #[test]
    fn an_updated_manifest_hashes_only_the_changed_paths() {
        let file = |content: &[u8]| FileEntry {
            content: content.to_vec(),
            mode: FileMode::Regular,
        };
        let old = FileTree::from([
            ("same.txt".to_string(), file(b"same")),
            ("edit.txt".to_string(), file(b"old")),
            ("gone.txt".to_string(), file(b"gone")),
        ]);
        let base = Manifest::of(&old);
        // Unchanged files are given without their content: their entries are kept, not hashed.
        let result = FileTree::from([
            ("same.txt".to_string(), file(b"")),
            ("edit.txt".to_string(), file(b"new")),
            ("added.txt".to_string(), file(b"added")),
        ]);
        let changed: BTreeSet<String> = ["edit.txt", "gone.txt", "added.txt"]
            .map(String::from)
            .into();
        let updated = base.updated(&result, &changed).expect("manifest");
        let mut expected = old.clone();
        expected.remove("gone.txt");
        expected.insert("edit.txt".into(), file(b"new"));
        expected.insert("added.txt".into(), file(b"added"));
        assert_eq!(updated, Manifest::of(&expected));
        let unknown = FileTree::from([("stray.txt".to_string(), file(b""))]);
        assert!(base.updated(&unknown, &changed).is_err());
    }
}
