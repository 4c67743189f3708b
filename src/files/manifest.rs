//! A version's manifest: every path with its content hash, size and mode.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::workspace::{FileEntry, FileMode, FileTree};

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

impl Manifest {
    pub fn of(tree: &FileTree) -> Self {
        let files = tree
            .iter()
            .map(|(path, entry)| {
                let manifest_entry = ManifestEntry {
                    sha256: sha256_hex(&entry.content),
                    size: entry.content.len() as u64,
                    mode: entry.mode.git_octal(),
                };
                (path.clone(), manifest_entry)
            })
            .collect();
        Self { files }
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
}
