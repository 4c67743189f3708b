//! What changed between two versions: counts from their manifests alone (no content read), and
//! git-style unified diffs that `git apply` (and [`crate::workspace::apply_patch_set`]) accept.
//!
//! The text follows `git diff` byte for byte where it matters to a patch tool: `a/`/`b/`
//! prefixes, git's C-style quoting of unusual paths, `new file mode` / `deleted file mode` /
//! `old mode` + `new mode`, `index` lines with abbreviated blob ids, 3 lines of context and
//! `\ No newline at end of file`. A change of kind (a file becoming a symlink) is a deletion
//! and an addition, as in git. Binary files (a NUL byte in the first 8000, git's test) are
//! named, not dumped. Lines end at `\n` only, so a lone `\r` stays inside its line, as for git.
//!
//! A diff is bounded ([`DiffLimits`]): files are rendered in path order until the output or
//! the content read would pass its limit; the rest are named after a `# diff truncated` line,
//! which patch tools skip as text between patches.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use similar::{capture_diff_slices_deadline, group_diff_ops, Algorithm, DiffOp};
use utoipa::ToSchema;

use super::manifest::{Manifest, ManifestEntry};
use crate::files::FileMode;

/// Lines of context around each change, as `git diff`'s default.
pub const CONTEXT_LINES: usize = 3;
/// Git's binary test looks for a NUL byte in this many leading bytes.
const BINARY_PROBE: usize = 8000;
/// How many omitted paths the truncation note names.
const OMITTED_NAMED: usize = 20;

/// Files added, modified (content or mode) and deleted between two manifests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChangeCounts {
    pub added: u32,
    pub modified: u32,
    pub deleted: u32,
}

/// One path that differs between two manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathChange<'a> {
    pub path: &'a str,
    pub old: Option<&'a ManifestEntry>,
    pub new: Option<&'a ManifestEntry>,
}

/// Every path whose content or mode differs, in path order.
pub fn changed_paths<'a>(from: &'a Manifest, to: &'a Manifest) -> Vec<PathChange<'a>> {
    let paths: BTreeSet<&String> = from.files.keys().chain(to.files.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let old = from.files.get(path);
            let new = to.files.get(path);
            let same = matches!((old, new), (Some(o), Some(n)) if o.sha256 == n.sha256 && o.mode == n.mode);
            (!same).then_some(PathChange {
                path: path.as_str(),
                old,
                new,
            })
        })
        .collect()
}

impl ChangeCounts {
    pub fn between(from: &Manifest, to: &Manifest) -> Self {
        let mut counts = Self::default();
        for change in changed_paths(from, to) {
            match (change.old, change.new) {
                (None, _) => counts.added += 1,
                (_, None) => counts.deleted += 1,
                _ => counts.modified += 1,
            }
        }
        counts
    }
}

/// How big a diff may get.
#[derive(Debug, Clone, Copy)]
pub struct DiffLimits {
    /// The most bytes of diff text.
    pub max_output_bytes: usize,
    /// The most file content (old plus new) read to make it.
    pub max_input_bytes: u64,
    /// Past this, line matching gives up on finding the smallest diff (the diff stays correct).
    pub time_budget: Duration,
}

impl Default for DiffLimits {
    fn default() -> Self {
        Self {
            max_output_bytes: 4 * 1024 * 1024,
            max_input_bytes: 16 * 1024 * 1024,
            time_budget: Duration::from_secs(2),
        }
    }
}

/// A change with its contents, ready to render.
pub struct LoadedChange {
    pub path: String,
    pub old: Option<(ManifestEntry, Vec<u8>)>,
    pub new: Option<(ManifestEntry, Vec<u8>)>,
}

/// The changes to show, in path order, and the paths left out to stay within the limits.
pub struct DiffPlan<'a> {
    pub shown: Vec<PathChange<'a>>,
    pub omitted: Vec<&'a str>,
}

/// Takes changes in path order while their contents fit in `max_input_bytes` (sizes come
/// from the manifests, so nothing is read to decide).
pub fn plan<'a>(changes: Vec<PathChange<'a>>, limits: &DiffLimits) -> DiffPlan<'a> {
    let mut budget = limits.max_input_bytes;
    let mut shown = Vec::new();
    let mut iter = changes.into_iter();
    for change in iter.by_ref() {
        let size = change.old.map_or(0, |e| e.size) + change.new.map_or(0, |e| e.size);
        if size > budget {
            let mut omitted = vec![change.path];
            omitted.extend(iter.map(|c| c.path));
            return DiffPlan { shown, omitted };
        }
        budget -= size;
        shown.push(change);
    }
    DiffPlan {
        shown,
        omitted: Vec::new(),
    }
}

/// A rendered diff.
pub struct RenderedDiff {
    pub text: Vec<u8>,
    /// Changed files in the diff, and changed files left out.
    pub files: usize,
    pub omitted: usize,
}

/// Renders `changes` (in path order), then a truncation note naming `omitted` and whatever
/// did not fit in `max_output_bytes`. CPU-bound: call it off the async workers.
pub fn render(changes: &[LoadedChange], omitted: &[&str], limits: &DiffLimits) -> RenderedDiff {
    let deadline = Instant::now() + limits.time_budget;
    let mut text = Vec::new();
    let mut left_out: Vec<&str> = Vec::new();
    for change in changes {
        if !left_out.is_empty() {
            left_out.push(&change.path);
            continue;
        }
        let patch = file_patch(change, deadline);
        if text.len() + patch.len() > limits.max_output_bytes {
            left_out.push(&change.path);
            continue;
        }
        text.extend_from_slice(&patch);
    }
    let files = changes.len() - left_out.len();
    left_out.extend_from_slice(omitted);
    if !left_out.is_empty() {
        text.extend_from_slice(truncation_note(&left_out, limits).as_bytes());
    }
    RenderedDiff {
        text,
        files,
        omitted: left_out.len(),
    }
}

fn truncation_note(left_out: &[&str], limits: &DiffLimits) -> String {
    let mut note = format!(
        "# diff truncated: {} more changed file{} not shown (a diff is limited to {} bytes, made from at most {} bytes of files)\n",
        left_out.len(),
        if left_out.len() == 1 { "" } else { "s" },
        limits.max_output_bytes,
        limits.max_input_bytes,
    );
    for path in left_out.iter().take(OMITTED_NAMED) {
        note.push_str(&format!("# not shown: {}\n", quote_path("", path)));
    }
    if left_out.len() > OMITTED_NAMED {
        note.push_str(&format!("# and {} more\n", left_out.len() - OMITTED_NAMED));
    }
    note
}

/// One file's patch, as `git diff` writes it.
fn file_patch(change: &LoadedChange, deadline: Instant) -> Vec<u8> {
    match (&change.old, &change.new) {
        (Some(old), Some(new)) if kind(&old.0) != kind(&new.0) => {
            // Git shows a change of kind as a deletion and an addition.
            let mut out = one_side_patch(&change.path, Some(old), None, deadline);
            out.extend(one_side_patch(&change.path, None, Some(new), deadline));
            out
        }
        (old, new) => one_side_patch(&change.path, old.as_ref(), new.as_ref(), deadline),
    }
}

/// Symlinks and files are different kinds; regular and executable files the same kind.
fn kind(entry: &ManifestEntry) -> bool {
    Manifest::mode_of(entry) == FileMode::Symlink
}

fn one_side_patch(
    path: &str,
    old: Option<&(ManifestEntry, Vec<u8>)>,
    new: Option<&(ManifestEntry, Vec<u8>)>,
    deadline: Instant,
) -> Vec<u8> {
    let a = quote_path("a/", path);
    let b = quote_path("b/", path);
    let mut out = format!("diff --git {a} {b}\n").into_bytes();
    let empty: Vec<u8> = Vec::new();
    let old_content = old.map_or(&empty, |(_, c)| c);
    let new_content = new.map_or(&empty, |(_, c)| c);
    let id = |side: Option<&(ManifestEntry, Vec<u8>)>| {
        side.map_or("0000000".to_string(), |(_, c)| {
            crate::workspace::git_blob_id(c)[..7].to_string()
        })
    };
    let content_changed = match (old, new) {
        (Some(o), Some(n)) => o.0.sha256 != n.0.sha256,
        _ => true,
    };
    let mut mode_suffix = String::new();
    match (old, new) {
        (None, Some((n, _))) => out.extend(format!("new file mode {:o}\n", n.mode).bytes()),
        (Some((o, _)), None) => out.extend(format!("deleted file mode {:o}\n", o.mode).bytes()),
        (Some((o, _)), Some((n, _))) if o.mode != n.mode => {
            out.extend(format!("old mode {:o}\nnew mode {:o}\n", o.mode, n.mode).bytes())
        }
        (Some((o, _)), Some(_)) => mode_suffix = format!(" {:o}", o.mode),
        (None, None) => return Vec::new(),
    }
    if !content_changed {
        return out;
    }
    out.extend(format!("index {}..{}{mode_suffix}\n", id(old), id(new)).bytes());
    if old_content.is_empty() && new_content.is_empty() {
        // An empty file added or deleted: git writes no `---`/`+++` lines.
        return out;
    }
    let from = if old.is_some() { a } else { "/dev/null".into() };
    let to = if new.is_some() { b } else { "/dev/null".into() };
    if is_binary(old_content) || is_binary(new_content) {
        out.extend(format!("Binary files {from} and {to} differ\n").bytes());
        return out;
    }
    out.extend(format!("--- {from}\n+++ {to}\n").bytes());
    write_hunks(&mut out, old_content, new_content, deadline);
    out
}

fn is_binary(content: &[u8]) -> bool {
    content[..content.len().min(BINARY_PROBE)].contains(&0)
}

/// The hunks turning `old` into `new`, each with [`CONTEXT_LINES`] lines of context.
fn write_hunks(out: &mut Vec<u8>, old: &[u8], new: &[u8], deadline: Instant) {
    let old_lines: Vec<&[u8]> = old.split_inclusive(|b| *b == b'\n').collect();
    let new_lines: Vec<&[u8]> = new.split_inclusive(|b| *b == b'\n').collect();
    let ops =
        capture_diff_slices_deadline(Algorithm::Myers, &old_lines, &new_lines, Some(deadline));
    for group in group_diff_ops(ops, CONTEXT_LINES) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old_range = first.old_range().start..last.old_range().end;
        let new_range = first.new_range().start..last.new_range().end;
        out.extend(
            format!(
                "@@ -{} +{} @@\n",
                hunk_range(&old_range),
                hunk_range(&new_range)
            )
            .bytes(),
        );
        for op in &group {
            let (tag, old_part, new_part) = match *op {
                DiffOp::Equal { old_index, len, .. } => (b' ', old_index..old_index + len, 0..0),
                DiffOp::Delete {
                    old_index, old_len, ..
                } => (b'-', old_index..old_index + old_len, 0..0),
                DiffOp::Insert {
                    new_index, new_len, ..
                } => (b'+', 0..0, new_index..new_index + new_len),
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => (
                    b'~',
                    old_index..old_index + old_len,
                    new_index..new_index + new_len,
                ),
            };
            let old_tag = if tag == b'~' { b'-' } else { tag };
            for line in &old_lines[old_part] {
                write_line(out, old_tag, line);
            }
            for line in &new_lines[new_part] {
                write_line(out, b'+', line);
            }
        }
    }
}

fn write_line(out: &mut Vec<u8>, tag: u8, line: &[u8]) {
    out.push(tag);
    out.extend_from_slice(line);
    if !line.ends_with(b"\n") {
        out.extend_from_slice(b"\n\\ No newline at end of file\n");
    }
}

/// `start,len` as git writes it: 1-based, `len` left out when 1, and an empty range named by
/// the line before it.
fn hunk_range(range: &std::ops::Range<usize>) -> String {
    let len = range.end - range.start;
    match len {
        1 => format!("{}", range.start + 1),
        0 => format!("{},0", range.start),
        _ => format!("{},{}", range.start + 1, len),
    }
}

/// `prefix` + `path`, in double quotes with C escapes when the path has a quote, a backslash,
/// a control character or a non-ASCII byte (git's `core.quotePath` default).
pub fn quote_path(prefix: &str, path: &str) -> String {
    let plain = path
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        return format!("{prefix}{path}");
    }
    let mut out = String::from("\"");
    out.push_str(prefix);
    for b in path.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{FileEntry, FileTree};

    fn tree(files: &[(&str, &[u8], FileMode)]) -> FileTree {
        files
            .iter()
            .map(|(p, c, m)| {
                (
                    p.to_string(),
                    FileEntry {
                        content: c.to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    /// The diff from `old` to `new`, rendered from the trees' contents.
    fn diff(old: &FileTree, new: &FileTree, limits: &DiffLimits) -> RenderedDiff {
        let (from, to) = (Manifest::of(old), Manifest::of(new));
        let planned = plan(changed_paths(&from, &to), limits);
        let loaded: Vec<LoadedChange> = planned
            .shown
            .iter()
            .map(|c| LoadedChange {
                path: c.path.to_string(),
                old: c.old.map(|e| (e.clone(), old[c.path].content.clone())),
                new: c.new.map(|e| (e.clone(), new[c.path].content.clone())),
            })
            .collect();
        render(&loaded, &planned.omitted, limits)
    }

    fn text(d: &RenderedDiff) -> String {
        String::from_utf8(d.text.clone()).unwrap()
    }

    use FileMode::{Executable as X, Regular as R, Symlink as L};

    #[test]
    fn counts_come_from_manifests() {
        let old = tree(&[
            ("a", b"1", R),
            ("b", b"2", R),
            ("c", b"3", R),
            ("d", b"4", R),
        ]);
        let new = tree(&[
            ("a", b"1", R),
            ("b", b"22", R),
            ("c", b"3", X),
            ("e", b"5", R),
        ]);
        let counts = ChangeCounts::between(&Manifest::of(&old), &Manifest::of(&new));
        assert_eq!(
            counts,
            ChangeCounts {
                added: 1,
                modified: 2,
                deleted: 1
            }
        );
    }

    #[test]
    fn a_modification_is_written_like_git_diff() {
        let old = tree(&[("x.txt", b"1\n2\n3\n4\n5\n6\n7\n8\n9\n", R)]);
        let new = tree(&[("x.txt", b"1\n2\n3\n4\nfive\n6\n7\n8\n9", R)]);
        let d = diff(&old, &new, &DiffLimits::default());
        assert_eq!(
            text(&d),
            "diff --git a/x.txt b/x.txt\nindex 0719398..f563de5 100644\n--- a/x.txt\n+++ b/x.txt\n\
@@ -2,8 +2,8 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n-9\n+9\n\\ No newline at end of file\n"
        );
    }

    #[test]
    fn additions_deletions_modes_and_binaries_have_their_headers() {
        let old = tree(&[
            ("gone.txt", b"bye\n", R),
            ("run.sh", b"echo\n", R),
            ("img.png", b"\x89PNG\0\x01", R),
            ("link", b"target", L),
        ]);
        let new = tree(&[
            ("new.txt", b"hi\n", R),
            ("run.sh", b"echo\n", X),
            ("img.png", b"\x89PNG\0\x02", R),
            ("link", b"now a file\n", R),
            ("empty", b"", R),
        ]);
        let t = text(&diff(&old, &new, &DiffLimits::default()));
        assert!(t.contains("diff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\ndiff --git a/gone.txt"), "{t}");
        assert!(t.contains("deleted file mode 100644\nindex "), "{t}");
        assert!(
            t.contains("--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"),
            "{t}"
        );
        assert!(
            t.contains("Binary files a/img.png and b/img.png differ\n"),
            "{t}"
        );
        assert!(
            t.contains("diff --git a/link b/link\ndeleted file mode 120000\n"),
            "{t}"
        );
        assert!(
            t.contains("diff --git a/link b/link\nnew file mode 100644\n"),
            "{t}"
        );
        assert!(
            t.contains("--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hi\n"),
            "{t}"
        );
        assert!(
            t.ends_with("diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n"),
            "{t}"
        );
    }

    #[test]
    fn the_diff_applies_back_with_the_gateways_own_patcher() {
        let old = tree(&[
            ("a b/c.txt", b"one\r\ntwo\rstill two\nthree\n", R),
            ("caf\u{e9}.txt", b"x\n", R),
            ("q\"uote", b"1\n", R),
        ]);
        let new = tree(&[
            ("a b/c.txt", b"one\r\nTWO\rstill two\nthree\nfour", R),
            ("caf\u{e9}.txt", b"y\n", X),
            ("q\"uote", b"1\n2\n", R),
        ]);
        let d = diff(&old, &new, &DiffLimits::default());
        let t = text(&d);
        assert!(
            t.contains("diff --git \"a/caf\\303\\251.txt\" \"b/caf\\303\\251.txt\""),
            "{t}"
        );
        let applied = crate::workspace::apply_patch_set(&old, &d.text).expect("applies");
        assert_eq!(applied, new);
    }

    #[test]
    fn a_diff_over_its_limits_names_what_it_left_out() {
        let old = tree(&[]);
        let big = vec![b'x'; 100];
        let new = tree(&[("a", b"small\n", R), ("b", &big, R), ("c", b"after\n", R)]);
        let limits = DiffLimits {
            max_input_bytes: 50,
            ..DiffLimits::default()
        };
        let d = diff(&old, &new, &limits);
        let t = text(&d);
        assert_eq!((d.files, d.omitted), (1, 2));
        assert!(t.contains("+++ b/a\n"), "{t}");
        assert!(
            t.contains("# diff truncated: 2 more changed files not shown"),
            "{t}"
        );
        assert!(t.contains("# not shown: b\n# not shown: c\n"), "{t}");
        // What is shown still applies.
        let applied = crate::workspace::apply_patch_set(&old, &d.text).expect("applies");
        assert_eq!(applied.keys().collect::<Vec<_>>(), ["a"]);

        let limits = DiffLimits {
            max_output_bytes: 120,
            ..DiffLimits::default()
        };
        let d = diff(&old, &new, &limits);
        assert_eq!((d.files, d.omitted), (1, 2), "{}", text(&d));
    }
}
