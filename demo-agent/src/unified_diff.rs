//! Git extended unified diffs (`diff --git`), accepted by `git apply`.
//!
//! The gateway and its clients apply these patches with real git, so the
//! format follows git byte for byte: `a/`/`b/` prefixes, mode and `index`
//! lines, 3 lines of context, `\ No newline at end of file` markers.

use super::blob_id::short_blob_id;
use super::line_diff::{diff_lines, Op};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const CONTEXT: usize = 3;
const NULL_ID: &str = "0000000";

/// Cumulative diff from `old` to `new` (path → content), in path order;
/// `""` when both trees are equal.
pub fn tree_diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> String {
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    let mut out = String::new();
    for path in paths {
        out.push_str(&file_diff(
            path,
            old.get(path).map(String::as_str),
            new.get(path).map(String::as_str),
        ));
    }
    out
}

/// The patch for one file (`None` = absent); `""` when unchanged.
pub fn file_diff(path: &str, old: Option<&str>, new: Option<&str>) -> String {
    if old == new {
        return String::new();
    }
    let a_label = quote_path("a/", path);
    let b_label = quote_path("b/", path);
    let mut out = format!("diff --git {a_label} {b_label}\n");
    let old_id = old.map_or_else(|| NULL_ID.to_string(), |c| short_blob_id(c.as_bytes()));
    let new_id = new.map_or_else(|| NULL_ID.to_string(), |c| short_blob_id(c.as_bytes()));
    match (old, new) {
        (None, _) => out.push_str(&format!("new file mode 100644\nindex {old_id}..{new_id}\n")),
        (_, None) => out.push_str(&format!(
            "deleted file mode 100644\nindex {old_id}..{new_id}\n"
        )),
        _ => out.push_str(&format!("index {old_id}..{new_id} 100644\n")),
    }
    let old_lines = split_lines(old.unwrap_or(""));
    let new_lines = split_lines(new.unwrap_or(""));
    let ops = diff_lines(&old_lines, &new_lines);
    if ops.iter().all(|op| *op == Op::Equal) {
        // Creating or deleting an empty file: git prints no hunk at all.
        return out;
    }
    let minus = if old.is_some() {
        a_label
    } else {
        "/dev/null".to_string()
    };
    let plus = if new.is_some() {
        b_label
    } else {
        "/dev/null".to_string()
    };
    out.push_str(&format!("--- {minus}{}\n", name_tab(&minus)));
    out.push_str(&format!("+++ {plus}{}\n", name_tab(&plus)));
    write_hunks(&mut out, &old_lines, &new_lines, &ops);
    out
}

/// Lines including their `\n`; the last one may lack it.
fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// git ends a `---`/`+++` name containing a space with a tab.
fn name_tab(label: &str) -> &'static str {
    if label.contains(' ') {
        "\t"
    } else {
        ""
    }
}

/// `prefix + path`, C-quoted the way git does when the path needs it
/// (control characters, quotes, backslashes, non-ASCII bytes).
fn quote_path(prefix: &str, path: &str) -> String {
    let full = format!("{prefix}{path}");
    let needs = full
        .bytes()
        .any(|b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f);
    if !needs {
        return full;
    }
    let mut out = String::from("\"");
    for b in full.bytes() {
        match b {
            b'\x07' => out.push_str("\\a"),
            b'\x08' => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\x0b' => out.push_str("\\v"),
            b'\x0c' => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b if !(0x20..0x7f).contains(&b) => {
                let _ = write!(out, "\\{b:03o}");
            }
            b => out.push(char::from(b)),
        }
    }
    out.push('"');
    out
}

/// Groups changes into hunks with `CONTEXT` lines around them; changes
/// separated by at most `2 * CONTEXT` equal lines share a hunk (as in git).
fn write_hunks(out: &mut String, old: &[&str], new: &[&str], ops: &[Op]) {
    // Positions (old, new) before each op, plus the end position.
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0usize, 0usize);
    for op in ops {
        pos.push((i, j));
        match op {
            Op::Equal => {
                i += 1;
                j += 1;
            }
            Op::Delete => i += 1,
            Op::Insert => j += 1,
        }
    }
    pos.push((i, j));

    let changes: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Equal).collect();
    let mut c = 0;
    while c < changes.len() {
        let first = changes[c];
        let mut last = first;
        while c + 1 < changes.len() && changes[c + 1] - last - 1 <= 2 * CONTEXT {
            c += 1;
            last = changes[c];
        }
        c += 1;
        let start = first.saturating_sub(CONTEXT);
        let end = (last + 1 + CONTEXT).min(ops.len());
        let (o0, n0) = pos[start];
        let (o1, n1) = pos[end];
        let _ = write!(out, "@@ -{} +{} @@", range(o0, o1 - o0), range(n0, n1 - n0));
        if let Some(func) = function_context(old, o0) {
            out.push(' ');
            out.push_str(func);
        }
        out.push('\n');
        for k in start..end {
            let (oi, ni) = pos[k];
            let (sign, line) = match ops[k] {
                Op::Equal => (' ', old[oi]),
                Op::Delete => ('-', old[oi]),
                Op::Insert => ('+', new[ni]),
            };
            out.push(sign);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
}

/// git's default hunk-header context: the nearest line before the hunk
/// that starts with a letter, `_` or `$`, cut to 80 bytes, right-trimmed.
fn function_context<'a>(old: &[&'a str], hunk_start: usize) -> Option<&'a str> {
    let line = old[..hunk_start].iter().rev().find(|l| {
        l.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
    })?;
    let mut end = line.len().min(80);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Some(line[..end].trim_end())
}

/// Hunk range as git prints it: `start,count`, `start` alone when count is
/// 1, and the line before the hunk when count is 0.
fn range(start0: usize, count: usize) -> String {
    match count {
        0 => format!("{start0},0"),
        1 => format!("{}", start0 + 1),
        _ => format!("{},{count}", start0 + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{git_apply, strict_apply};
    use super::*;
    use std::process::Command;

    fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect()
    }

    fn check_roundtrip(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> String {
        let patch = tree_diff(old, new);
        assert_eq!(&git_apply(old, &patch), new, "patch:\n{patch}");
        assert_eq!(&strict_apply(old, &patch), new, "patch:\n{patch}");
        patch
    }

    #[test]
    fn unchanged_trees_give_empty_diff() {
        let t = tree(&[("a.txt", "x\n")]);
        assert_eq!(tree_diff(&t, &t), "");
        assert_eq!(tree_diff(&BTreeMap::new(), &BTreeMap::new()), "");
    }

    #[test]
    fn new_file_format_is_git_exact() {
        let patch = tree_diff(&BTreeMap::new(), &tree(&[("hello.txt", "hello world\n")]));
        assert_eq!(
            patch,
            "diff --git a/hello.txt b/hello.txt\nnew file mode 100644\nindex 0000000..3b18e51\n--- /dev/null\n+++ b/hello.txt\n@@ -0,0 +1 @@\n+hello world\n"
        );
    }

    #[test]
    fn deletion_and_missing_newline_formats() {
        let patch = tree_diff(&tree(&[("x", "a\nb")]), &BTreeMap::new());
        assert_eq!(
            patch,
            format!(
                "diff --git a/x b/x\ndeleted file mode 100644\nindex {}..0000000\n--- a/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n\\ No newline at end of file\n",
                short_blob_id(b"a\nb")
            )
        );
    }

    #[test]
    fn matches_git_diff_no_index_output() {
        // Byte-compare against git itself on a case with two hunks.
        let old: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let new = old
            .replace("line 3\n", "line three\n")
            .replace("line 25\n", "line 25\nextra\n");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("a/f.txt"), &old).unwrap();
        std::fs::write(dir.path().join("b/f.txt"), &new).unwrap();
        let out = Command::new("git")
            .args([
                "diff",
                "--no-index",
                "--no-color",
                "--no-ext-diff",
                "a/f.txt",
                "b/f.txt",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let git = String::from_utf8(out.stdout).unwrap();
        let git = git
            .replace("a/a/f.txt", "a/f.txt")
            .replace("b/b/f.txt", "b/f.txt");
        assert_eq!(file_diff("f.txt", Some(&old), Some(&new)), git);
    }

    #[test]
    fn git_apply_accepts_assorted_changes() {
        let long: String = (1..=40).map(|i| format!("row {i}\n")).collect();
        let old = tree(&[
            ("keep.txt", "same\n"),
            ("gone.txt", "bye\n"),
            ("empty-gone.txt", ""),
            ("nl.txt", "no newline"),
            ("long.txt", &long),
            ("dir/nested.md", "# t\n\nbody\n"),
            ("with space.txt", "s\n"),
            ("ünï \"q\".txt", "u\n"),
        ]);
        let new = tree(&[
            ("keep.txt", "same\n"),
            ("added.txt", "hi\nthere"),
            ("empty-new.txt", ""),
            ("nl.txt", "no newline\nnow more\n"),
            (
                "long.txt",
                &long
                    .replace("row 2\n", "")
                    .replace("row 20\n", "ROW 20\n")
                    .replace("row 40\n", "row 40\nrow 41"),
            ),
            ("dir/nested.md", "# title\n\nbody\n"),
            ("with space.txt", "s2\n"),
            ("ünï \"q\".txt", "u2\n"),
        ]);
        check_roundtrip(&old, &new);
        check_roundtrip(&new, &old);
        check_roundtrip(&BTreeMap::new(), &new);
        check_roundtrip(&old, &BTreeMap::new());
    }

    /// Many pseudo-random edits (deterministic LCG), applied by git at once.
    #[test]
    fn git_apply_accepts_random_edits() {
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n.max(1)
        };
        let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
        for f in 0..120 {
            let mut lines: Vec<String> = (0..next(40)).map(|_| format!("l{}\n", next(8))).collect();
            let before = lines.concat();
            for _ in 0..next(6) {
                let at = next(lines.len() as u64 + 1) as usize;
                match next(3) {
                    0 if at < lines.len() => {
                        lines.remove(at);
                    }
                    1 if at < lines.len() => lines[at] = format!("c{}\n", next(8)),
                    _ => lines.insert(at, format!("n{}\n", next(8))),
                }
            }
            let mut after = lines.concat();
            if next(5) == 0 {
                after.pop(); // drop the final newline
            }
            let path = format!("d{}/f{f}.txt", f % 3);
            match next(10) {
                0 => {
                    old.insert(path, before);
                }
                1 => {
                    new.insert(path, after);
                }
                _ => {
                    old.insert(path.clone(), before);
                    new.insert(path, after);
                }
            }
        }
        check_roundtrip(&old, &new);
        check_roundtrip(&new, &old);
    }

    #[test]
    fn huge_middles_fall_back_but_still_apply() {
        let old: String = (0..2_500).map(|i| format!("o{i}\n")).collect();
        let new: String = (0..2_500).map(|i| format!("n{i}\n")).collect();
        check_roundtrip(&tree(&[("big.txt", &old)]), &tree(&[("big.txt", &new)]));
    }
}
