//! Test helpers: file trees on disk and real `git apply`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub fn write_tree(dir: &Path, files: &BTreeMap<String, String>) {
    for (path, content) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(full, content).unwrap();
    }
}

/// Every regular file under `dir`: relative path → content.
pub fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

/// Applies `patch` with real `git apply` on top of `old`; returns the tree.
/// Panics (failing the test) when git rejects the patch.
pub fn git_apply(old: &BTreeMap<String, String>, patch: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), old);
    let patch_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(patch_file.path(), patch).unwrap();
    let out = Command::new("git")
        .arg("apply")
        .arg(patch_file.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git apply failed: {}\n{patch}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_tree(dir.path())
}

/// Applies a patch *strictly*: every hunk must sit exactly at its stated
/// line numbers with exact counts (git apply tolerates offsets, so it alone
/// would not catch wrong hunk headers). Returns the new tree.
pub fn strict_apply(old: &BTreeMap<String, String>, patch: &str) -> BTreeMap<String, String> {
    let mut tree = old.clone();
    let lines: Vec<&str> = patch.split_inclusive('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let header = lines[i];
        assert!(
            header.starts_with("diff --git "),
            "expected a file header: {header:?}"
        );
        let path = header_path(header);
        i += 1;
        let (mut is_new, mut is_deleted) = (false, false);
        while i < lines.len()
            && !lines[i].starts_with("diff --git ")
            && !lines[i].starts_with("--- ")
        {
            is_new |= lines[i] == "new file mode 100644\n";
            is_deleted |= lines[i] == "deleted file mode 100644\n";
            assert!(
                lines[i].starts_with("index ") || lines[i].ends_with("file mode 100644\n"),
                "{:?}",
                lines[i]
            );
            i += 1;
        }
        let source = if is_new {
            assert!(!tree.contains_key(&path), "{path} already exists");
            String::new()
        } else {
            tree.get(&path)
                .cloned()
                .unwrap_or_else(|| panic!("{path} missing"))
        };
        let mut result = String::new();
        if i < lines.len() && lines[i].starts_with("--- ") {
            i += 2; // `---` and `+++`
            let old_lines: Vec<&str> = source.split_inclusive('\n').collect();
            let mut pos = 0;
            while i < lines.len() && lines[i].starts_with("@@ ") {
                let (a, b, c, d) = hunk_numbers(lines[i]);
                i += 1;
                let start = if b == 0 { a } else { a - 1 };
                assert!(start >= pos, "hunks out of order");
                result.push_str(&old_lines[pos..start].concat());
                let new_start = result.split_inclusive('\n').count();
                assert_eq!(
                    new_start,
                    if d == 0 { c } else { c - 1 },
                    "new start of {path}"
                );
                let (mut seen_old, mut seen_new) = (0, 0);
                while i < lines.len() && matches!(lines[i].as_bytes()[0], b' ' | b'-' | b'+') {
                    let sign = lines[i].as_bytes()[0];
                    let mut text = lines[i][1..].to_string();
                    if lines
                        .get(i + 1)
                        .is_some_and(|l| l.starts_with("\\ No newline at end of file"))
                    {
                        text.pop();
                        i += 1;
                    }
                    match sign {
                        b'+' => {
                            result.push_str(&text);
                            seen_new += 1;
                        }
                        s => {
                            assert_eq!(
                                old_lines[start + seen_old],
                                text,
                                "context/removal mismatch in {path}"
                            );
                            seen_old += 1;
                            if s == b' ' {
                                result.push_str(&text);
                                seen_new += 1;
                            }
                        }
                    }
                    i += 1;
                }
                assert_eq!((seen_old, seen_new), (b, d), "hunk counts of {path}");
                pos = start + b;
            }
            result.push_str(&old_lines[pos..].concat());
        }
        if is_deleted {
            assert!(result.is_empty(), "deleted {path} must end empty");
            tree.remove(&path);
        } else {
            tree.insert(path, result);
        }
    }
    tree
}

fn hunk_numbers(line: &str) -> (usize, usize, usize, usize) {
    let inner = line.trim_start_matches("@@ ").split(" @@").next().unwrap();
    let mut parts = inner.split(' ');
    let parse = |s: &str| -> (usize, usize) {
        let s = &s[1..];
        match s.split_once(',') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => (s.parse().unwrap(), 1),
        }
    };
    let (a, b) = parse(parts.next().unwrap());
    let (c, d) = parse(parts.next().unwrap());
    (a, b, c, d)
}

/// The path of a `diff --git a/P b/P` line, C-unquoting if needed.
fn header_path(header: &str) -> String {
    let rest = header
        .trim_start_matches("diff --git ")
        .trim_end_matches('\n');
    if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted.find("\" \"").unwrap();
        return unquote(&quoted[..end])[2..].to_string();
    }
    let half = (rest.len() - 1) / 2;
    rest[2..half].to_string()
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match b[i + 1] {
            b'a' => (7, 2),
            b'b' => (8, 2),
            b't' => (b'\t', 2),
            b'n' => (b'\n', 2),
            b'v' => (11, 2),
            b'f' => (12, 2),
            b'r' => (b'\r', 2),
            b'0'..=b'7' => (u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap(), 4),
            other => (other, 2),
        };
        out.push(byte);
        i += used;
    }
    String::from_utf8(out).unwrap()
}
