//! An app's files as the gateway holds them in memory: path → content and git mode.
use std::collections::BTreeMap;

/// The three kinds of entry git records in a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileMode {
    /// `100644`
    Regular,
    /// `100755`
    Executable,
    /// `120000`; the entry's content is the link target.
    Symlink,
}

impl FileMode {
    /// The mode as git writes it in trees and diff headers.
    pub fn git_octal(&self) -> u32 {
        match self {
            FileMode::Regular => 0o100644,
            FileMode::Executable => 0o100755,
            FileMode::Symlink => 0o120000,
        }
    }

    /// Parses one of the three modes git records for blobs.
    pub fn from_git_octal(mode: u32) -> Option<Self> {
        match mode {
            0o100644 => Some(FileMode::Regular),
            0o100755 => Some(FileMode::Executable),
            0o120000 => Some(FileMode::Symlink),
            _ => None,
        }
    }
}

/// One file of an app: its bytes and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub content: Vec<u8>,
    pub mode: FileMode,
}

/// Files keyed by normalised relative path (`/`-separated, see
/// [`crate::workspace::normalize_path`]).
pub type FileTree = BTreeMap<String, FileEntry>;
