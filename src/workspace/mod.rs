//! Applies git-style multi-file unified diffs to an in-memory file tree.
//!
//! The behaviour is `git apply`'s (checked against the real thing by
//! `tests/workspace_oracle.rs`): exact context and no fuzz, hunks may land
//! at an offset from their stated line, renames, copies, mode changes,
//! deletions, `\ No newline at end of file`, CRLF kept byte for byte, and
//! `GIT binary patch` literal and delta hunks verified against the full ids
//! on the `index` line. Text around and between patches is ignored.
//!
//! Deliberate differences (each one refuses or keeps a name where git would
//! guess, so a diff never lands somewhere its author did not mean):
//! - a hunk without context lines (`git diff -U0`) applies only where its
//!   place is unambiguous, i.e. where it must cover the whole file: a new
//!   file, a fully replaced or emptied file, an insertion into an empty
//!   file (`@@ -0,0 +1,N @@`, `@@ -1,N +1,M @@`). Anywhere else it is
//!   refused (`diff_hunk_failed`, "the diff has no context lines"): git
//!   ignores its line numbers and puts it at the end of the file;
//! - header names lose only their side's prefix: `a/` on the old side
//!   (`---`, the first `diff --git` name), `b/` on the new side (`+++`, the
//!   second); `git apply -p1` strips any first component, so for us
//!   `--- src/x` is `src/x` and `+++ a/x` is `a/x`;
//! - a `diff --git` line must read `a/OLD b/NEW`, and its `---`/`+++`
//!   lines must name the same file: a `--no-prefix` diff
//!   (`diff --git a/x a/x` for a folder `a`) is refused with git's own
//!   words for the cases it refuses ("lacks filename information when
//!   removing 1 leading pathname component"), where git would apply it to
//!   `x`;
//! - every path must already be in [`normalize_path`] form and every
//!   symlink must resolve inside the tree (git turns `+++ /etc/x` into
//!   `etc/x` and lets symlinks point anywhere);
//! - a corrupt binary hunk fails the whole set (git drops it and every
//!   patch after it, then reports success);
//! - two patches creating the same path and submodule entries (mode
//!   160000) are errors (git lets the last creation win, and makes an
//!   empty directory for a submodule).
//!
//! Application is all or nothing: [`apply_patch_set`] parses the whole
//! patch set, validates every path, applies everything against a copy and
//! returns either the complete new tree or the first error.
//!
//! What a patch set may produce is bounded ([`ApplyLimits`]): binary hunks
//! inflate ~1000:1 and deltas copy 16 MB per command, so each binary result
//! is capped per file and everything the set makes is capped in total,
//! checked before the memory is allocated.
//!
//! Cost is linear in the size of the diff plus the touched files: hunks are
//! found with a line-hash scan outward from their stated position and
//! spliced in through a gap buffer: a 1,000-file, ~10 MB patch set takes
//! about 40 ms in a release build (`files-bench`, BENCHMARKS.md). Like git,
//! a hunk that matches nowhere costs a scan of the whole file.

mod apply;
mod binary;
mod error;
mod gap;
mod header;
mod image;
mod limits;
mod parse;
mod paths;
mod quote;
mod sha1;
mod tree;

pub use error::PatchError;
pub use limits::ApplyLimits;
pub use paths::normalize_path;
/// Git's blob id (hex SHA-1 of `blob <len>\0<content>`), as in `index` lines.
pub use sha1::blob_id_hex as git_blob_id;

use crate::files::{FileEntry, FileMode, FileTree};

/// What an agent sent in its `unifiedDiff` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    /// Nothing, or only whitespace.
    Empty,
    /// A `#` comment line such as `# Note: ...` or `# ERROR GENERATING DIFF: ...`
    /// that older agents send instead of a diff.
    Marker,
    /// Anything else; hand it to [`apply_patch_set`].
    Patch,
}

/// Tells an empty diff and an old agent's `#` marker apart from a real patch.
pub fn classify_diff(diff: &str) -> DiffKind {
    let trimmed = diff.trim_start();
    if trimmed.is_empty() {
        DiffKind::Empty
    } else if trimmed.starts_with('#') {
        DiffKind::Marker
    } else {
        DiffKind::Patch
    }
}

/// Applies every file patch in `diff` to a copy of `base`.
///
/// Returns the complete new tree, or the first error; `base` is never
/// modified. Input with no patch in it (including an empty string) is an
/// error, as it is for `git apply`: check [`classify_diff`] first. Sizes are
/// bounded by the default [`ApplyLimits`].
pub fn apply_patch_set(base: &FileTree, diff: &[u8]) -> Result<FileTree, PatchError> {
    apply_patch_set_with_limits(base, diff, ApplyLimits::default())
}

/// [`apply_patch_set`], refusing a result of more than `max_files` files: every file is a
/// blob to upload, a tree entry to commit and a link in every read-url answer.
pub fn apply_patch_set_capped(
    base: &FileTree,
    diff: &[u8],
    max_files: usize,
) -> Result<FileTree, PatchError> {
    let tree = apply_patch_set(base, diff)?;
    if tree.len() > max_files {
        return Err(PatchError::TooManyFiles {
            count: tree.len(),
            limit: max_files,
        });
    }
    Ok(tree)
}

/// The default of [`apply_patch_set_capped`]'s `max_files`.
pub const DEFAULT_MAX_FILES: usize = 10_000;

/// [`apply_patch_set`] with other size limits.
pub fn apply_patch_set_with_limits(
    base: &FileTree,
    diff: &[u8],
    limits: ApplyLimits,
) -> Result<FileTree, PatchError> {
    PatchSet::parse_with_limits(diff, limits)?.apply(base)
}

/// A parsed patch set: it names the files it touches before it is applied,
/// so a caller holding a large tree can load only those (see
/// [`PatchSet::touched_paths`]).
pub struct PatchSet<'a> {
    diff: &'a [u8],
    patches: Vec<parse::FilePatch>,
    budget: limits::Budget,
}

impl<'a> PatchSet<'a> {
    /// Parses `diff` under the default [`ApplyLimits`].
    pub fn parse(diff: &'a [u8]) -> Result<Self, PatchError> {
        Self::parse_with_limits(diff, ApplyLimits::default())
    }

    pub fn parse_with_limits(diff: &'a [u8], limits: ApplyLimits) -> Result<Self, PatchError> {
        let mut budget = limits::Budget::new(limits);
        let patches = parse::parse_patch_set(diff, &mut budget)?;
        Ok(PatchSet {
            diff,
            patches,
            budget,
        })
    }

    /// Every path whose content the patch set reads or writes: old and new
    /// names of every patch. Applying it reads no other file's content; it
    /// does read every path and mode (to find conflicts) and every symlink
    /// target (to keep links inside the tree). So the other regular files of
    /// `base` may be given with any content: they come out of
    /// [`PatchSet::apply`] exactly as they went in.
    pub fn touched_paths(&self) -> std::collections::BTreeSet<String> {
        self.patches
            .iter()
            .flat_map(|p| [&p.old_name, &p.new_name])
            .flatten()
            .filter_map(|name| String::from_utf8(name.clone()).ok())
            .collect()
    }

    /// Applies every patch to a copy of `base` (see [`apply_patch_set`]).
    pub fn apply(mut self, base: &FileTree) -> Result<FileTree, PatchError> {
        apply::apply_patches(base, self.diff, self.patches, &mut self.budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_recognises_empty_marker_and_patch() {
        assert_eq!(classify_diff(""), DiffKind::Empty);
        assert_eq!(classify_diff(" \n\t\n"), DiffKind::Empty);
        assert_eq!(classify_diff("# Note: nothing changed"), DiffKind::Marker);
        assert_eq!(
            classify_diff("\n# ERROR GENERATING DIFF: boom"),
            DiffKind::Marker
        );
        assert_eq!(classify_diff("diff --git a/x b/x\n"), DiffKind::Patch);
    }

    #[test]
    fn capped_apply_refuses_a_result_over_the_file_limit() {
        let diff: String = (0..3)
            .map(|i| format!("diff --git a/f{i} b/f{i}\nnew file mode 100644\n--- /dev/null\n+++ b/f{i}\n@@ -0,0 +1 @@\n+x\n"))
            .collect();
        let base = FileTree::new();
        assert_eq!(
            apply_patch_set_capped(&base, diff.as_bytes(), 3)
                .unwrap()
                .len(),
            3
        );
        let err = apply_patch_set_capped(&base, diff.as_bytes(), 2).unwrap_err();
        assert_eq!(err.code(), "too_many_files");
        assert_eq!(err, PatchError::TooManyFiles { count: 3, limit: 2 });
    }

    #[test]
    fn a_patch_set_names_the_files_it_touches_and_leaves_the_others_as_given() {
        let diff = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n\
diff --git a/old b/new\nsimilarity index 100%\nrename from old\nrename to new\n\
diff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-g\n";
        let set = PatchSet::parse(diff).unwrap();
        let touched: Vec<String> = set.touched_paths().into_iter().collect();
        assert_eq!(touched, ["gone", "new", "old", "x"]);
        let file = |content: &[u8]| FileEntry {
            content: content.to_vec(),
            mode: FileMode::Regular,
        };
        let base = FileTree::from([
            ("x".to_string(), file(b"a\n")),
            ("old".to_string(), file(b"o\n")),
            ("gone".to_string(), file(b"g\n")),
            ("untouched".to_string(), file(b"")),
        ]);
        let result = set.apply(&base).unwrap();
        assert_eq!(result["x"].content, b"b\n");
        assert_eq!(result["new"].content, b"o\n");
        assert_eq!(result["untouched"].content, b"");
        assert_eq!(result.len(), 3);
    }

    #[test]
    fn file_mode_round_trips() {
        for mode in [FileMode::Regular, FileMode::Executable, FileMode::Symlink] {
            assert_eq!(FileMode::from_git_octal(mode.git_octal()), Some(mode));
        }
        assert_eq!(FileMode::from_git_octal(0o160000), None);
        assert_eq!(FileMode::from_git_octal(0o644), None);
    }
}
