//! The one error type of the workspace module.

/// Why a patch set was rejected. `Display` names the file, the 1-based hunk
/// and the reason where they apply; [`PatchError::code`] is a stable
/// machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("no patch found in the diff")]
    NoPatches,
    #[error("diff line {line}: {reason}")]
    Parse { line: usize, reason: String },
    #[error("{path}: hunk {hunk} ({header}) does not apply: {reason}")]
    HunkFailed {
        path: String,
        hunk: usize,
        header: String,
        reason: String,
    },
    #[error("unsafe path {path}: {reason}")]
    UnsafePath { path: String, reason: String },
    #[error("{path}: unsafe symlink target {target}: {reason}")]
    UnsafeSymlink {
        path: String,
        target: String,
        reason: String,
    },
    #[error("{path}: file not found")]
    FileNotFound { path: String },
    #[error("{path}: already exists")]
    FileExists { path: String },
    #[error("{path}: binary patch: {reason}")]
    Binary { path: String, reason: String },
    #[error("{path}: {reason}")]
    Mode { path: String, reason: String },
    #[error("{path}: {reason}")]
    PathConflict { path: String, reason: String },
    #[error("{path}: deleted file does not match the patch (content would remain)")]
    DeleteMismatch { path: String },
    /// Over a size limit of [`ApplyLimits`](super::ApplyLimits).
    #[error("{path}: {reason}")]
    TooLarge { path: String, reason: String },
    /// The result would hold more files than an app may have.
    #[error("the diff would leave the app with {count} files, over the limit of {limit}")]
    TooManyFiles { count: usize, limit: usize },
}

impl PatchError {
    /// A stable snake_case code for API responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PatchError::NoPatches => "diff_empty",
            PatchError::Parse { .. } => "diff_parse_error",
            PatchError::HunkFailed { .. } => "diff_hunk_failed",
            PatchError::UnsafePath { .. } | PatchError::UnsafeSymlink { .. } => "unsafe_path",
            PatchError::FileNotFound { .. } => "file_not_found",
            PatchError::FileExists { .. } => "file_exists",
            PatchError::Binary { .. } => "binary_patch_error",
            PatchError::Mode { .. } => "file_mode_error",
            PatchError::PathConflict { .. } => "path_conflict",
            PatchError::DeleteMismatch { .. } => "delete_mismatch",
            PatchError::TooLarge { .. } => "diff_too_large",
            PatchError::TooManyFiles { .. } => "too_many_files",
        }
    }

    pub(crate) fn parse(line: usize, reason: impl Into<String>) -> Self {
        PatchError::Parse {
            line,
            reason: reason.into(),
        }
    }
}

/// Renders a path for a message: as is when printable, otherwise quoted with
/// escapes so a hostile name cannot forge log lines.
pub(crate) fn shown(path: &[u8]) -> String {
    match std::str::from_utf8(path) {
        Ok(s) if !s.chars().any(|c| c.is_control() || c == '"') => s.to_string(),
        _ => format!("{:?}", String::from_utf8_lossy(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_hunk_and_reason() {
        let err = PatchError::HunkFailed {
            path: "frontend/app.js".into(),
            hunk: 2,
            header: "@@ -10,4 +10,5 @@".into(),
            reason: "context mismatch at line 12".into(),
        };
        assert_eq!(
            err.to_string(),
            "frontend/app.js: hunk 2 (@@ -10,4 +10,5 @@) does not apply: context mismatch at line 12"
        );
        assert_eq!(err.code(), "diff_hunk_failed");
    }

    #[test]
    fn shown_quotes_control_characters() {
        assert_eq!(shown(b"a/b.txt"), "a/b.txt");
        assert_eq!(shown(b"a\nb"), "\"a\\nb\"");
    }
}
