//! Mutations and random input for the fuzz test.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::corpus::split_lines;

pub(crate) const DIFF_TOKENS: &[&str] = &[
    "diff --git a/x b/x",
    "diff --git a/y b/z",
    "--- a/x",
    "+++ b/x",
    "--- /dev/null",
    "+++ /dev/null",
    "+++ b/../evil",
    "@@ -1,2 +1,2 @@",
    "@@ -0,0 +1 @@",
    "@@ -1 +0,0 @@",
    "@@ -2 +2 @@",
    "+foo",
    "-bar",
    " baz",
    "-baz",
    "",
    "\\ No newline at end of file",
    "new file mode 100644",
    "new file mode 120000",
    "deleted file mode 100644",
    "old mode 100644",
    "new mode 100755",
    "rename from x",
    "rename to y",
    "copy from x",
    "copy to w",
    "similarity index 90%",
    "index 0000000..1111111",
    "GIT binary patch",
    "literal 5",
    "delta 3",
    "Binary files a/x and b/x differ",
    "+../../etc",
];

pub(crate) fn mutate_bytes(rng: &mut StdRng, diff: &[u8]) -> Vec<u8> {
    let mut lines = split_lines(diff);
    let mut out = diff.to_vec();
    match rng.gen_range(0..6) {
        0 if !out.is_empty() => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..out.len());
                out[at] = match rng.gen_range(0..3) {
                    0 => rng.gen(),
                    1 => *b" +-@\\\n\"/.0".choose(rng).unwrap(),
                    _ => out[at] ^ (1 << rng.gen_range(0..8)),
                };
            }
            return out;
        }
        1 if !lines.is_empty() => {
            let at = rng.gen_range(0..lines.len());
            lines.remove(at);
        }
        2 if !lines.is_empty() => {
            let at = rng.gen_range(0..lines.len());
            let line = lines[at].clone();
            lines.insert(at, line);
        }
        3 => {
            out.truncate(rng.gen_range(0..=out.len()));
            return out;
        }
        4 if lines.len() > 1 => {
            let a = rng.gen_range(0..lines.len());
            let b = rng.gen_range(0..lines.len());
            lines.swap(a, b);
        }
        _ => {
            let at = rng.gen_range(0..=lines.len());
            let token = DIFF_TOKENS.choose(rng).unwrap();
            lines.insert(at, format!("{token}\n").into_bytes());
        }
    }
    lines.concat()
}

pub(crate) fn random_diffish(rng: &mut StdRng) -> Vec<u8> {
    let mut out = String::new();
    for _ in 0..rng.gen_range(0..14) {
        out.push_str(DIFF_TOKENS.choose(rng).unwrap());
        out.push('\n');
    }
    out.into_bytes()
}

/// Whether every header path carries git's prefix for its side: `a/` on
/// the old side, `b/` on the new. For any other first component
/// `git apply -p1` strips it while we keep it (a deliberate difference),
/// so only these diffs are compared with git.
pub(crate) fn headers_use_ab_prefixes(diff: &[u8]) -> bool {
    let prefixed = |name: &[u8], prefix: &[u8]| {
        let name = name.strip_prefix(b"\"").unwrap_or(name);
        name.starts_with(prefix) || name.starts_with(b"/dev/null")
    };
    diff.split(|&c| c == b'\n').all(|line| {
        if let Some(names) = line.strip_prefix(b"diff --git ") {
            let second = names.windows(3).any(|w| w == b" b/" || w == b"\"b/");
            prefixed(names, b"a/") && second
        } else if let Some(name) = line.strip_prefix(b"--- ") {
            prefixed(name, b"a/")
        } else if let Some(name) = line.strip_prefix(b"+++ ") {
            prefixed(name, b"b/")
        } else {
            true
        }
    })
}
