//! Splits a diff into per-file patches, following `git apply`'s parser:
//! `diff --git` extended headers, traditional `---`/`+++` pairs, text hunks
//! and `GIT binary patch` data. Text before, between and after patches is
//! ignored, as git does.

use std::ops::Range;

use super::binary::{self, BinaryHunk, HunkError};
use super::error::shown;
use super::header::{
    find_name, find_name_traditional, git_header_name, has_ab_names, has_epoch_timestamp,
    is_dev_null, is_space, line_len, strtoul, Prefix, Terminator,
};
use super::limits::Budget;
use super::PatchError;

/// One `@@ -a,b +c,d @@` hunk; `text` spans its lines in the diff,
/// starting with the `@@` line.
#[derive(Debug, Clone)]
pub(crate) struct Hunk {
    pub oldpos: u64,
    pub oldlines: u64,
    pub newpos: u64,
    pub newlines: u64,
    pub trailing: u64,
    /// Context lines anywhere in the hunk; 0 for a `-U0` diff.
    pub context: u64,
    pub text: Range<usize>,
    /// `@@ -a,b +c,d @@`, for messages.
    pub header: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    Text(Vec<Hunk>),
    /// `None`: "Binary files ... differ" without data.
    Binary(Option<BinaryHunk>),
}

/// One file's patch. `is_new`/`is_delete` are tri-state like git's:
/// 1 yes, 0 no, -1 unknown (traditional diffs, decided against the tree).
#[derive(Debug, Clone)]
pub(crate) struct FilePatch {
    pub old_name: Option<Vec<u8>>,
    pub new_name: Option<Vec<u8>>,
    pub is_new: i8,
    pub is_delete: i8,
    pub is_rename: bool,
    pub is_copy: bool,
    pub old_mode: u32,
    pub new_mode: u32,
    pub old_id: Vec<u8>,
    pub new_id: Vec<u8>,
    pub body: Body,
}

impl FilePatch {
    fn new() -> Self {
        FilePatch {
            old_name: None,
            new_name: None,
            is_new: -1,
            is_delete: -1,
            is_rename: false,
            is_copy: false,
            old_mode: 0,
            new_mode: 0,
            old_id: Vec::new(),
            new_id: Vec::new(),
            body: Body::Text(Vec::new()),
        }
    }

    /// Whether the patch does something even without hunks.
    fn changes_metadata(&self) -> bool {
        self.is_rename
            || self.is_copy
            || self.is_new > 0
            || self.is_delete != 0
            || (self.old_mode != 0 && self.new_mode != 0 && self.old_mode != self.new_mode)
    }
}

/// Why parsing stopped.
enum Fail {
    /// Malformed input at a byte offset of the diff.
    Syntax { at: usize, reason: String },
    /// Well-formed, but refused as it stands (a size limit).
    Refused(PatchError),
}

type Parsed<T> = Result<T, Fail>;

fn fail<T>(at: usize, reason: impl Into<String>) -> Parsed<T> {
    Err(Fail::Syntax {
        at,
        reason: reason.into(),
    })
}

/// Parses every file patch in `diff`, charging inflated binary data to
/// `budget`.
pub(crate) fn parse_patch_set(
    diff: &[u8],
    budget: &mut Budget,
) -> Result<Vec<FilePatch>, PatchError> {
    let mut patches = Vec::new();
    let mut offset = 0;
    while offset < diff.len() {
        match parse_chunk(diff, offset, budget) {
            Ok(Some((patch, used))) => {
                patches.push(patch);
                offset += used;
            }
            Ok(None) => break,
            Err(Fail::Syntax { at, reason }) => {
                return Err(PatchError::parse(line_number(diff, at), reason))
            }
            Err(Fail::Refused(e)) => return Err(e),
        }
    }
    if patches.is_empty() {
        return Err(PatchError::NoPatches);
    }
    Ok(patches)
}

/// 1-based line number of byte offset `at`.
fn line_number(diff: &[u8], at: usize) -> usize {
    diff[..at.min(diff.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
}

fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    format!("{short:?}")
}

/// Reads the next file patch at or after `start`; `None` when no header
/// remains. Returns the patch and the bytes consumed from `start`.
fn parse_chunk(
    diff: &[u8],
    start: usize,
    budget: &mut Budget,
) -> Parsed<Option<(FilePatch, usize)>> {
    let Some((at, header_len, mut patch)) = find_header(diff, start)? else {
        return Ok(None);
    };
    if patch.is_new > 0 && patch.old_name.is_some() {
        return fail(at, "a new-file patch also names an old file");
    }
    let body_start = at + header_len;
    let hunks_len = parse_hunks(diff, body_start, &mut patch)?;
    let mut end = body_start + hunks_len;
    if hunks_len == 0 {
        let line = &diff[body_start..body_start + line_len(&diff[body_start..])];
        if line == b"GIT binary patch\n" {
            let name = patch.new_name.as_ref().or(patch.old_name.as_ref());
            let path = name.map(|n| shown(n)).unwrap_or_default();
            let (hunk, used) = parse_binary(diff, body_start + line.len(), &path, budget)?;
            patch.body = Body::Binary(Some(hunk));
            end = body_start + line.len() + used;
        } else if line.ends_with(b" differ\n")
            && (line.starts_with(b"Binary files ") || line.starts_with(b"Files "))
        {
            patch.body = Body::Binary(None);
            end = body_start + line.len();
        } else if !patch.changes_metadata() {
            return fail(
                body_start,
                "patch with only garbage (no hunks and no header change)",
            );
        }
    }
    Ok(Some((patch, end - start)))
}

/// Finds the next `diff --git` header or `---`/`+++`/`@@` triple.
/// Returns where it starts, its length and the patch it describes.
fn find_header(diff: &[u8], start: usize) -> Parsed<Option<(usize, usize, FilePatch)>> {
    // One patch for the whole search: like git, a lone `diff --git` line
    // that is skipped still leaves its names behind for the next header.
    let mut patch = FilePatch::new();
    let mut at = start;
    while at < diff.len() {
        let rest = &diff[at..];
        let len = line_len(rest);
        let line = &rest[..len];
        if len < 6 {
            at += len;
            continue;
        }
        if line.starts_with(b"@@ -") && parse_hunk_header(line).is_some() {
            return fail(at, format!("hunk without a file header: {}", excerpt(line)));
        }
        if rest.len() < len + 6 {
            break;
        }
        if line.starts_with(b"diff --git ") {
            let header_len = parse_git_header(diff, at, len, &mut patch)?;
            if header_len <= len {
                at += len;
                continue;
            }
            return Ok(Some((at, header_len, patch)));
        }
        let next = &rest[len..];
        if !line.starts_with(b"--- ") || !next.starts_with(b"+++ ") {
            at += len;
            continue;
        }
        let next_len = line_len(next);
        if rest.len() < next_len + 14 || !next[next_len..].starts_with(b"@@ -") {
            at += len;
            continue;
        }
        parse_traditional(&rest[4..], &next[4..], &mut patch).ok_or(Fail::Syntax {
            at,
            reason: "unable to find a file name in the ---/+++ lines".into(),
        })?;
        return Ok(Some((at, len + next_len, patch)));
    }
    Ok(None)
}

/// Names and creation/deletion flags from a `---`/`+++` pair.
fn parse_traditional(first: &[u8], second: &[u8], patch: &mut FilePatch) -> Option<()> {
    if is_dev_null(first) {
        patch.is_new = 1;
        patch.is_delete = 0;
        patch.new_name = Some(find_name_traditional(second, None, Prefix::New)?);
    } else if is_dev_null(second) {
        patch.is_new = 0;
        patch.is_delete = 1;
        patch.old_name = Some(find_name_traditional(first, None, Prefix::Old)?);
    } else {
        let first_name = find_name_traditional(first, None, Prefix::Old);
        let name = find_name_traditional(second, first_name.as_deref(), Prefix::New)?;
        if has_epoch_timestamp(first) {
            patch.is_new = 1;
            patch.is_delete = 0;
            patch.new_name = Some(name);
        } else if has_epoch_timestamp(second) {
            patch.is_new = 0;
            patch.is_delete = 1;
            patch.old_name = Some(name);
        } else {
            patch.old_name = Some(name.clone());
            patch.new_name = Some(name);
        }
    }
    Some(())
}

/// Reads a `diff --git` line and the extended header lines after it into
/// `patch`. Returns the header length, stopping before `@@` or the first
/// line it does not know.
fn parse_git_header(
    diff: &[u8],
    at: usize,
    first_len: usize,
    patch: &mut FilePatch,
) -> Parsed<usize> {
    patch.is_new = 0;
    patch.is_delete = 0;
    let prefix = b"diff --git ".len();
    if !has_ab_names(&diff[at + prefix..], first_len - prefix) {
        // Without `a/` and `b/` the names cannot be told from their folders:
        // `diff --git a/x a/x` is `a/x` made with `--no-prefix`, which git
        // would apply to `x`.
        return fail(
            at,
            "git diff header lacks filename information when removing 1 leading pathname \
             component: the names must read a/OLD b/NEW (a diff made with --no-prefix?)",
        );
    }
    let def_name = git_header_name(&diff[at + prefix..], first_len - prefix);
    let mut offset = first_len;
    loop {
        let pos = at + offset;
        let len = line_len(&diff[pos..]);
        if len == 0 || diff[pos + len - 1] != b'\n' {
            break;
        }
        let line = &diff[pos..pos + len];
        let after = |tag: &[u8]| line.starts_with(tag).then(|| &diff[pos + tag.len()..]);
        if line.starts_with(b"@@ -") {
            break;
        } else if let Some(rest) = after(b"--- ") {
            let isnull = patch.is_new != 0;
            verify_name(rest, isnull, &mut patch.old_name, Prefix::Old, pos)?;
        } else if let Some(rest) = after(b"+++ ") {
            let isnull = patch.is_delete != 0;
            verify_name(rest, isnull, &mut patch.new_name, Prefix::New, pos)?;
        } else if let Some(rest) = after(b"old mode ") {
            patch.old_mode = parse_mode(rest, pos)?;
        } else if let Some(rest) = after(b"new mode ") {
            patch.new_mode = parse_mode(rest, pos)?;
        } else if let Some(rest) = after(b"deleted file mode ") {
            patch.is_delete = 1;
            patch.old_name = def_name.clone();
            patch.old_mode = parse_mode(rest, pos)?;
        } else if let Some(rest) = after(b"new file mode ") {
            patch.is_new = 1;
            patch.new_name = def_name.clone();
            patch.new_mode = parse_mode(rest, pos)?;
        } else if let Some(rest) = after(b"copy from ") {
            patch.is_copy = true;
            patch.old_name = find_name(rest, None, Prefix::None, Terminator::LineEnd);
        } else if let Some(rest) = after(b"copy to ") {
            patch.is_copy = true;
            patch.new_name = find_name(rest, None, Prefix::None, Terminator::LineEnd);
        } else if let Some(rest) = after(b"rename old ").or_else(|| after(b"rename from ")) {
            patch.is_rename = true;
            patch.old_name = find_name(rest, None, Prefix::None, Terminator::LineEnd);
        } else if let Some(rest) = after(b"rename new ").or_else(|| after(b"rename to ")) {
            patch.is_rename = true;
            patch.new_name = find_name(rest, None, Prefix::None, Terminator::LineEnd);
        } else if line.starts_with(b"similarity index ")
            || line.starts_with(b"dissimilarity index ")
        {
            // Informational only.
        } else if let Some(rest) = after(b"index ") {
            parse_index(rest, patch, pos)?;
        } else {
            break;
        }
        let kinds = [
            patch.is_delete == 1,
            patch.is_new == 1,
            patch.is_rename,
            patch.is_copy,
        ];
        if kinds.iter().filter(|&&k| k).count() > 1 {
            return fail(
                pos,
                "inconsistent header lines (more than one of new/deleted/rename/copy)",
            );
        }
        offset += len;
    }
    // The ---/+++ lines must name the file of the `diff --git` line: git
    // takes whichever name it reads, so `--- b/x` under `diff --git a/x b/x`
    // would read `b/x`, the file in a folder `b`.
    if let Some(def) = def_name
        .as_ref()
        .filter(|_| !patch.is_rename && !patch.is_copy)
    {
        for (name, side) in [(&patch.old_name, "old"), (&patch.new_name, "new")] {
            if name.as_ref().is_some_and(|n| n != def) {
                return fail(
                    at,
                    format!(
                        "inconsistent {side} file name: the ---/+++ lines name another file \
                         than the diff --git line"
                    ),
                );
            }
        }
    }
    if patch.old_name.is_none() && patch.new_name.is_none() {
        let Some(name) = def_name else {
            return fail(at, "git diff header lacks file name information");
        };
        patch.old_name = Some(name.clone());
        patch.new_name = Some(name);
    }
    if (patch.new_name.is_none() && patch.is_delete == 0)
        || (patch.old_name.is_none() && patch.is_new == 0)
    {
        return fail(at, "git diff header lacks file name information");
    }
    Ok(offset)
}

/// Checks a `---`/`+++` name against what earlier header lines said.
fn verify_name(
    rest: &[u8],
    isnull: bool,
    name: &mut Option<Vec<u8>>,
    side: Prefix,
    pos: usize,
) -> Parsed<()> {
    match name {
        None if !isnull => {
            *name = find_name(rest, None, side, Terminator::Tab);
            Ok(())
        }
        None => {
            if is_dev_null(rest) {
                Ok(())
            } else {
                fail(pos, "expected /dev/null")
            }
        }
        Some(existing) => {
            if isnull {
                return fail(pos, "expected /dev/null");
            }
            match find_name(rest, None, side, Terminator::Tab) {
                Some(other) if other == *existing => Ok(()),
                _ => {
                    let side = if side == Prefix::Old { "old" } else { "new" };
                    fail(pos, format!("inconsistent {side} file name"))
                }
            }
        }
    }
}

/// Parses an octal mode that must be followed by whitespace.
fn parse_mode(rest: &[u8], pos: usize) -> Parsed<u32> {
    let (value, used) = strtoul(rest, 8);
    if used == 0 || !rest.get(used).is_some_and(|&c| is_space(c)) {
        return fail(pos, "invalid mode");
    }
    // Wider values wrap like git's `unsigned int`.
    Ok(canon_mode(value as u32))
}

/// Git keeps only what a tree can record: regular files become 100644 or
/// 100755, and any type other than file, symlink or directory becomes a
/// submodule.
fn canon_mode(mode: u32) -> u32 {
    match mode & 0o170000 {
        0o100000 if mode & 0o100 != 0 => 0o100755,
        0o100000 => 0o100644,
        0o120000 => 0o120000,
        0o040000 => 0o040000,
        _ => 0o160000,
    }
}

/// `index <old>..<new>[ <mode>]`; ids longer than a SHA-1 are ignored.
fn parse_index(rest: &[u8], patch: &mut FilePatch, pos: usize) -> Parsed<()> {
    let Some(dot) = rest.iter().take(41).position(|&c| c == b'.' || c == 0) else {
        return Ok(());
    };
    if rest[dot] != b'.' || rest.get(dot + 1) != Some(&b'.') {
        return Ok(());
    }
    patch.old_id = rest[..dot].to_vec();
    let new = &rest[dot + 2..];
    let end = new
        .iter()
        .position(|&c| c == b' ' || c == b'\n' || c == 0)
        .unwrap_or(new.len());
    if end > 40 {
        return Ok(());
    }
    patch.new_id = new[..end].to_vec();
    if new.get(end) == Some(&b' ') {
        patch.old_mode = parse_mode(&new[end + 1..], pos)?;
    }
    Ok(())
}

/// Parses `@@ -a[,b] +c[,d] @@`; returns the four numbers and the length of
/// the header up to the closing `@@`.
fn parse_hunk_header(line: &[u8]) -> Option<([u64; 4], usize)> {
    if !line.ends_with(b"\n") {
        return None;
    }
    let (old, after_old) = parse_range(line, 4, b" +")?;
    let (new, end) = parse_range(line, after_old, b" @@")?;
    Some(([old.0, old.1, new.0, new.1], end))
}

fn parse_range(line: &[u8], start: usize, expect: &[u8]) -> Option<((u64, u64), usize)> {
    let digits = |at: usize| match line.get(at) {
        Some(c) if c.is_ascii_digit() => Some(strtoul(&line[at..], 10)),
        _ => None,
    };
    let (pos, used) = digits(start)?;
    let mut at = start + used;
    let mut count = 1;
    if line.get(at) == Some(&b',') {
        let (c, used) = digits(at + 1)?;
        count = c;
        at += 1 + used;
    }
    line[at..]
        .starts_with(expect)
        .then_some(((pos, count), at + expect.len()))
}

/// Reads consecutive hunks at `start`; returns the bytes they span.
fn parse_hunks(diff: &[u8], start: usize, patch: &mut FilePatch) -> Parsed<usize> {
    let mut at = start;
    let mut hunks = Vec::new();
    let (mut oldlines, mut newlines) = (0u64, 0u64);
    while diff.len() - at > 4 && diff[at..].starts_with(b"@@ -") {
        let hunk = parse_hunk(diff, at).map_err(|f| match f {
            Fail::Syntax { at, reason } => Fail::Syntax {
                at,
                reason: format!("corrupt hunk {}: {reason}", hunks.len() + 1),
            },
            refused => refused,
        })?;
        oldlines = oldlines.wrapping_add(hunk.oldlines);
        newlines = newlines.wrapping_add(hunk.newlines);
        at = hunk.text.end;
        hunks.push(hunk);
    }
    if patch.is_new < 0 && (oldlines != 0 || hunks.len() > 1) {
        patch.is_new = 0;
    }
    if patch.is_delete < 0 && (newlines != 0 || hunks.len() > 1) {
        patch.is_delete = 0;
    }
    if patch.is_new > 0 && oldlines != 0 {
        return fail(start, "new file depends on old contents");
    }
    if patch.is_delete > 0 && newlines != 0 {
        return fail(start, "deleted file still has contents");
    }
    patch.body = Body::Text(hunks);
    Ok(at - start)
}

/// Reads one hunk and checks that its lines match the counts in its header.
fn parse_hunk(diff: &[u8], start: usize) -> Parsed<Hunk> {
    let first = line_len(&diff[start..]);
    let header_line = &diff[start..start + first];
    let Some(([oldpos, oldcount, newpos, newcount], header_end)) = parse_hunk_header(header_line)
    else {
        return fail(start, format!("bad header {}", excerpt(header_line)));
    };
    let (mut oldlines, mut newlines) = (oldcount, newcount);
    let (mut trailing, mut context, mut added, mut deleted) = (0u64, 0u64, 0u64, 0u64);
    let mut at = start + first;
    while at < diff.len() {
        if oldlines == 0 && newlines == 0 {
            break;
        }
        let len = line_len(&diff[at..]);
        let line = &diff[at..at + len];
        if !line.ends_with(b"\n") {
            return fail(at, "the diff ends in the middle of a line");
        }
        match line[0] {
            b'\n' | b' ' => {
                oldlines = oldlines.wrapping_sub(1);
                newlines = newlines.wrapping_sub(1);
                trailing += 1;
                context += 1;
            }
            b'-' => {
                deleted += 1;
                oldlines = oldlines.wrapping_sub(1);
                trailing = 0;
            }
            b'+' => {
                added += 1;
                newlines = newlines.wrapping_sub(1);
                trailing = 0;
            }
            b'\\' if len >= 12 && line.starts_with(b"\\ ") => {}
            _ => {
                return fail(
                    at,
                    format!(
                        "the header's line counts do not match the hunk (unexpected line {})",
                        excerpt(line)
                    ),
                )
            }
        }
        at += len;
    }
    if oldlines != 0 || newlines != 0 {
        return fail(
            at,
            "the diff ends before the hunk's line counts are reached",
        );
    }
    if deleted == 0 && added == 0 {
        return fail(start, "hunk changes nothing");
    }
    // A final "\ No newline at end of file" belongs to the hunk.
    if diff.len() - at > 12 && diff[at..].starts_with(b"\\ ") {
        at += line_len(&diff[at..]);
    }
    Ok(Hunk {
        oldpos,
        oldlines: oldcount,
        newpos,
        newlines: newcount,
        trailing,
        context,
        text: start..at,
        header: String::from_utf8_lossy(&header_line[..header_end]).into_owned(),
    })
}

/// Reads the forward hunk of a `GIT binary patch` and skips the optional
/// reverse hunk (inflated to check it, and charged to `budget` like the
/// forward one). Returns the forward hunk and the bytes used.
fn parse_binary(
    diff: &[u8],
    start: usize,
    path: &str,
    budget: &mut Budget,
) -> Parsed<(BinaryHunk, usize)> {
    let failed = |e: HunkError, base: usize| match e {
        HunkError::Corrupt(c) => Fail::Syntax {
            at: base + c.at,
            reason: format!("corrupt binary patch: {}", c.reason),
        },
        HunkError::TooLarge(reason) => Fail::Refused(PatchError::TooLarge {
            path: path.to_string(),
            reason,
        }),
    };
    let forward = match binary::parse_hunk(&diff[start..], budget) {
        Ok(Some(h)) => h,
        Ok(None) => return fail(start, "unrecognized binary patch"),
        Err(e) => return Err(failed(e, start)),
    };
    let mut used = forward.used;
    match binary::parse_hunk(&diff[start + used..], budget) {
        Ok(Some(reverse)) => used += reverse.used,
        Ok(None) => {}
        Err(e) => return Err(failed(e, start + used)),
    }
    Ok((forward.hunk, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &FilePatch) -> (Option<String>, Option<String>) {
        let s = |n: &Option<Vec<u8>>| n.as_ref().map(|v| String::from_utf8(v.clone()).unwrap());
        (s(&p.old_name), s(&p.new_name))
    }

    fn hunks(p: &FilePatch) -> &[Hunk] {
        match &p.body {
            Body::Text(h) => h,
            Body::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn parses_git_diff_with_extended_headers() {
        let diff = b"preamble text\n\
diff --git a/src/app.js b/src/app.js\n\
index 1111111..2222222 100644\n\
--- a/src/app.js\n\
+++ b/src/app.js\n\
@@ -1,2 +1,2 @@ fn main\n\
\x20keep\n\
-old\n\
+new\n\
diff --git a/run.sh b/run.sh\n\
old mode 100644\n\
new mode 100755\n\
diff --git a/lib/a/b.txt b/lib/a/c.txt\n\
similarity index 100%\n\
rename from lib/a/b.txt\n\
rename to lib/a/c.txt\n\
diff --git a/gone.txt b/gone.txt\n\
deleted file mode 100644\n\
index e69de29..0000000\n";
        let patches = parse_patch_set(diff, &mut Budget::default()).unwrap();
        assert_eq!(patches.len(), 4);
        assert_eq!(
            names(&patches[0]),
            (Some("src/app.js".into()), Some("src/app.js".into()))
        );
        assert_eq!(patches[0].old_mode, 0o100644);
        let h = &hunks(&patches[0])[0];
        assert_eq!((h.oldpos, h.newpos, h.trailing), (1, 1, 0));
        assert_eq!(h.header, "@@ -1,2 +1,2 @@");
        assert_eq!(
            (patches[1].old_mode, patches[1].new_mode),
            (0o100644, 0o100755)
        );
        assert_eq!(
            names(&patches[1]),
            (Some("run.sh".into()), Some("run.sh".into()))
        );
        assert!(patches[2].is_rename);
        assert_eq!(
            names(&patches[2]),
            (Some("lib/a/b.txt".into()), Some("lib/a/c.txt".into()))
        );
        assert_eq!(patches[3].is_delete, 1);
        assert_eq!(names(&patches[3]), (Some("gone.txt".into()), None));
    }

    #[test]
    fn parses_traditional_diff_and_no_newline_marker() {
        let diff = b"--- a/x.txt\t2024-01-01 00:00:00\n+++ b/x.txt\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n";
        let patches = parse_patch_set(diff, &mut Budget::default()).unwrap();
        assert_eq!(patches.len(), 1);
        assert_eq!(
            names(&patches[0]),
            (Some("x.txt".into()), Some("x.txt".into()))
        );
        assert_eq!((patches[0].is_new, patches[0].is_delete), (0, 0));
        assert_eq!(hunks(&patches[0])[0].text.end, diff.len());
    }

    #[test]
    fn quoted_names_with_spaces() {
        let diff = b"diff --git \"a/with \\\"quote\\\" and\\ttab.txt\" \"b/with \\\"quote\\\" and\\ttab.txt\"\nnew file mode 100644\nindex 0000000..e69de29\n";
        let patches = parse_patch_set(diff, &mut Budget::default()).unwrap();
        assert_eq!(names(&patches[0]).1.unwrap(), "with \"quote\" and\ttab.txt");
        let diff = b"diff --git a/dir x/f y.txt b/dir x/f y.txt\nnew file mode 100755\nindex 0000000..e69de29\n";
        let patches = parse_patch_set(diff, &mut Budget::default()).unwrap();
        assert_eq!(names(&patches[0]).1.unwrap(), "dir x/f y.txt");
        assert_eq!(patches[0].new_mode, 0o100755);
    }

    #[test]
    fn rejects_corrupt_input() {
        let err = |d: &[u8]| parse_patch_set(d, &mut Budget::default()).unwrap_err();
        assert_eq!(err(b""), PatchError::NoPatches);
        assert_eq!(err(b"# Note: nothing\n"), PatchError::NoPatches);
        assert_eq!(err(b"@@ -1 +1 @@\n-a\n+b\n").code(), "diff_parse_error");
        // Counts promise two old lines, only one follows.
        let short = b"--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n";
        assert!(
            matches!(err(short), PatchError::Parse { line: 6, .. }),
            "{}",
            err(short)
        );
        let no_change = b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n a\n";
        assert_eq!(err(no_change).code(), "diff_parse_error");
        let inconsistent =
            b"diff --git a/x b/z\nrename from x\nrename to z\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n";
        assert!(err(inconsistent)
            .to_string()
            .contains("inconsistent new file name"));
        let garbage = b"diff --git a/x b/x\nindex 1234567..89abcde 100644\nnot a hunk\n";
        assert!(err(garbage).to_string().contains("garbage"));
    }

    #[test]
    fn binary_markers() {
        let diff = b"diff --git a/i.png b/i.png\nindex 1111111..2222222 100644\nBinary files a/i.png and b/i.png differ\n";
        let patches = parse_patch_set(diff, &mut Budget::default()).unwrap();
        assert!(matches!(patches[0].body, Body::Binary(None)));
        let corrupt = b"diff --git a/i.png b/i.png\nindex 1111111..2222222 100644\nGIT binary patch\nliteral 3\nzzz\n\n";
        assert_eq!(
            parse_patch_set(corrupt, &mut Budget::default())
                .unwrap_err()
                .code(),
            "diff_parse_error"
        );
    }

    #[test]
    fn modes_are_canonical() {
        assert_eq!(canon_mode(0o100664), 0o100644);
        assert_eq!(canon_mode(0o100777), 0o100755);
        assert_eq!(canon_mode(0o120777), 0o120000);
        assert_eq!(canon_mode(0o644), 0o160000);
        assert_eq!(canon_mode(0o010644), 0o160000);
    }

    #[test]
    fn hunk_header_forms() {
        assert_eq!(parse_hunk_header(b"@@ -1 +1 @@\n").unwrap().0, [1, 1, 1, 1]);
        assert_eq!(
            parse_hunk_header(b"@@ -0,0 +1,3 @@ x\n").unwrap().0,
            [0, 0, 1, 3]
        );
        assert!(parse_hunk_header(b"@@ -1 +1 @@").is_none());
        assert!(parse_hunk_header(b"@@ -a +1 @@\n").is_none());
        assert!(parse_hunk_header(b"@@ -1, +1 @@\n").is_none());
    }
}
