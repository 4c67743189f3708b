//! Applies text hunks to a file held as a list of lines, the way
//! `git apply` does by default: exact context, no fuzz, a hunk may land
//! at an offset (searched outward from its stated position), and lines
//! written by an earlier hunk are never matched again.

use super::gap::GapVec;
use super::header::line_len;
use super::parse::Hunk;

/// One line: a span of `Image::bytes`, including its `\n` if it has one.
#[derive(Debug, Clone, Copy, Default)]
struct Line {
    start: usize,
    len: usize,
    hash: u32,
    patched: bool,
}

/// A file being patched. Replaced lines stay in `bytes`; only `lines`
/// says what the file is, so a hunk costs its own size plus the distance
/// from the previous hunk.
pub(crate) struct Image {
    bytes: Vec<u8>,
    lines: GapVec<Line>,
}

/// Git's whitespace-blind line hash, kept to 24 bits as git stores it; it
/// only filters candidates before the exact byte comparison.
fn hash_line(line: &[u8]) -> u32 {
    let h = line
        .iter()
        .filter(|&&c| !super::header::is_space(c))
        .fold(0u32, |h, &c| h.wrapping_mul(3).wrapping_add(u32::from(c)));
    h & 0x00ff_ffff
}

fn split_lines(bytes: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = line_len(&bytes[at..]);
        lines.push(Line {
            start: at,
            len,
            hash: hash_line(&bytes[at..at + len]),
            patched: false,
        });
        at += len;
    }
    lines
}

impl Image {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        let lines = GapVec::from_vec(split_lines(&bytes));
        Image { bytes, lines }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        let total = self.lines.iter().map(|l| l.len).sum();
        let mut out = Vec::with_capacity(total);
        for l in self.lines.iter() {
            out.extend_from_slice(&self.bytes[l.start..l.start + l.len]);
        }
        out
    }

    fn line(&self, i: usize) -> &[u8] {
        let l = self.lines.get(i);
        &self.bytes[l.start..l.start + l.len]
    }

    /// Whether the image, read from line `lno` on, starts with `expect`.
    fn starts_with_at(&self, lno: usize, mut expect: &[u8]) -> bool {
        let mut i = lno;
        while !expect.is_empty() {
            if i >= self.lines.len() {
                return false;
            }
            let line = self.line(i);
            let n = line.len().min(expect.len());
            if line[..n] != expect[..n] {
                return false;
            }
            expect = &expect[n..];
            i += 1;
        }
        true
    }
}

/// The old (`-` and context) or new (`+` and context) side of a hunk.
struct Side {
    bytes: Vec<u8>,
    /// (length, hash) of each line.
    lines: Vec<(usize, u32)>,
}

impl Side {
    fn new() -> Self {
        Side {
            bytes: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.lines.push((line.len(), hash_line(line)));
    }
}

/// Splits a hunk's text into its old and new sides. A line followed by
/// `\ No newline at end of file` loses its `\n`.
fn sides(text: &[u8]) -> Result<(Side, Side), String> {
    let (mut pre, mut post) = (Side::new(), Side::new());
    let mut at = 0;
    while at < text.len() {
        let len = line_len(&text[at..]);
        let line = &text[at..at + len];
        let no_eol = text.get(at + len) == Some(&b'\\');
        let content = &line[1.min(len)..len - usize::from(no_eol && len > 1)];
        match line[0] {
            b'\n' => {
                if !no_eol {
                    pre.push(b"\n");
                    post.push(b"\n");
                }
            }
            b' ' => {
                pre.push(content);
                post.push(content);
            }
            b'-' => pre.push(content),
            b'+' => post.push(content),
            b'@' | b'\\' => {}
            other => return Err(format!("invalid line start {:?}", char::from(other))),
        }
        at += len;
    }
    Ok((pre, post))
}

/// How a refused zero-context hunk's reason starts.
const NO_CONTEXT: &str = "the diff has no context lines around this hunk (made with -U0?)";

/// Applies one hunk. On failure returns a reason for the error message.
pub(crate) fn apply_hunk(img: &mut Image, diff: &[u8], hunk: &Hunk) -> Result<(), String> {
    let (pre, post) = sides(&diff[hunk.text.clone()])?;
    // A hunk starting at line 0 or 1 must match at the top of the file, one
    // without trailing context at the bottom.
    let match_beginning = hunk.oldpos <= 1;
    let match_end = hunk.trailing == 0;
    // A hunk without context (`diff -U0`) is anchored by its line numbers
    // alone, which git ignores: it would put the hunk at the end of the
    // file. Only a hunk that must cover the whole file is unambiguous.
    let no_context = hunk.context == 0;
    if no_context && !match_beginning {
        return Err(format!(
            "{NO_CONTEXT}, so where it goes is ambiguous; send the diff with context lines"
        ));
    }
    // Git keeps the position in a C int; the same truncation keeps the search
    // order (and so the chosen match) identical for absurd line numbers.
    let pos = if hunk.newpos == 0 {
        0
    } else {
        i64::from((hunk.newpos - 1) as u32 as i32)
    };
    let start = start_line(img, &pre, pos, match_beginning, match_end);
    let Some(at) = find_pos(img, &pre, start, match_beginning, match_end) else {
        let why = diagnose(img, &pre, start, match_beginning, match_end);
        if no_context {
            return Err(format!(
                "{NO_CONTEXT}, so it must cover the whole file: {why}"
            ));
        }
        return Err(why);
    };
    let new_lines = patched_lines(&post, img.bytes.len());
    img.bytes.extend_from_slice(&post.bytes);
    img.lines.replace(at, pre.lines.len(), &new_lines);
    Ok(())
}

/// Image lines for a side stored at `base`, marked so that later hunks
/// cannot match them again.
fn patched_lines(side: &Side, base: usize) -> Vec<Line> {
    let mut start = base;
    side.lines
        .iter()
        .map(|&(len, hash)| {
            let line = Line {
                start,
                len,
                hash,
                patched: true,
            };
            start += len;
            line
        })
        .collect()
}

/// Where the search starts, clamped like git's unsigned comparison.
fn start_line(img: &Image, pre: &Side, pos: i64, beginning: bool, end: bool) -> usize {
    let nr = img.lines.len() as i64;
    let line = if beginning {
        0
    } else if end {
        nr - pre.lines.len() as i64
    } else {
        pos
    };
    if line < 0 || line > nr {
        nr as usize
    } else {
        line as usize
    }
}

/// Searches outward from `start`, alternating forward and backward, for
/// the first place the old side matches.
fn find_pos(img: &Image, pre: &Side, start: usize, beginning: bool, end: bool) -> Option<usize> {
    let nr = img.lines.len();
    let (mut backwards, mut forwards, mut current) = (start, start, start);
    let mut i = 0usize;
    loop {
        if matches_at(img, pre, current, beginning, end) {
            return Some(current);
        }
        loop {
            if backwards == 0 && forwards == nr {
                return None;
            }
            if i & 1 == 1 {
                if backwards == 0 {
                    i += 1;
                    continue;
                }
                backwards -= 1;
                current = backwards;
            } else {
                if forwards == nr {
                    i += 1;
                    continue;
                }
                forwards += 1;
                current = forwards;
            }
            break;
        }
        i += 1;
    }
}

fn matches_at(img: &Image, pre: &Side, lno: usize, beginning: bool, end: bool) -> bool {
    let n = pre.lines.len();
    let nr = img.lines.len();
    if n + lno > nr || (end && n + lno != nr) || (beginning && lno != 0) {
        return false;
    }
    let hashes_agree = pre.lines.iter().enumerate().all(|(k, &(_, h))| {
        let l = img.lines.get(lno + k);
        !l.patched && l.hash == h
    });
    if !hashes_agree {
        return false;
    }
    if end {
        let rest: usize = (lno..nr).map(|k| img.lines.get(k).len).sum();
        if rest != pre.bytes.len() {
            return false;
        }
    }
    img.starts_with_at(lno, &pre.bytes)
}

/// Explains why a hunk found no place, looking at where it should have gone.
fn diagnose(img: &Image, pre: &Side, start: usize, beginning: bool, end: bool) -> String {
    let nr = img.lines.len();
    let mut offset = 0;
    for (i, &(len, _)) in pre.lines.iter().enumerate() {
        let expected = &pre.bytes[offset..offset + len];
        offset += len;
        let lno = start + i;
        if lno >= nr {
            return format!(
                "expected line {} {}, but the file has only {nr} lines",
                lno + 1,
                show(expected)
            );
        }
        if img.line(lno) != expected {
            return format!(
                "context mismatch at line {}: expected {}, found {}",
                lno + 1,
                show(expected),
                show(img.line(lno))
            );
        }
        if img.lines.get(lno).patched {
            return format!("line {} was already changed by an earlier hunk", lno + 1);
        }
    }
    if end && start + pre.lines.len() != nr {
        return format!(
            "hunk has no trailing context so it must end the file, but the file continues after line {}",
            start + pre.lines.len()
        );
    }
    if beginning {
        return "hunk must match at the start of the file".to_string();
    }
    "no matching context found".to_string()
}

fn show(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut short: String = text.chars().take(60).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    format!("{short:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::limits::Budget;
    use crate::workspace::parse::{parse_patch_set, Body};

    fn apply(old: &str, diff: &str) -> Result<String, String> {
        let patches =
            parse_patch_set(diff.as_bytes(), &mut Budget::default()).map_err(|e| e.to_string())?;
        let Body::Text(hunks) = &patches[0].body else {
            panic!("binary")
        };
        let mut img = Image::new(old.as_bytes().to_vec());
        for h in hunks {
            apply_hunk(&mut img, diff.as_bytes(), h)?;
        }
        Ok(String::from_utf8(img.into_bytes()).unwrap())
    }

    const HEAD: &str = "--- a/f\n+++ b/f\n";

    #[test]
    fn applies_at_stated_position_and_at_offset() {
        let diff = format!("{HEAD}@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n");
        assert_eq!(apply("a\nb\nc\nd\ne\n", &diff).unwrap(), "a\nb\nC\nd\ne\n");
        // Two extra lines on top: found two lines further down.
        assert_eq!(
            apply("x\ny\na\nb\nc\nd\ne\n", &diff).unwrap(),
            "x\ny\na\nb\nC\nd\ne\n"
        );
    }

    #[test]
    fn context_mismatch_names_the_line() {
        let diff = format!("{HEAD}@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n");
        let err = apply("a\nb\nX\nd\ne\n", &diff).unwrap_err();
        assert!(err.starts_with("context mismatch at line 3"), "{err}");
    }

    #[test]
    fn no_trailing_context_must_match_end() {
        let diff = format!("{HEAD}@@ -2,2 +2,2 @@\n b\n-c\n+C\n");
        assert_eq!(apply("a\nb\nc\n", &diff).unwrap(), "a\nb\nC\n");
        assert!(apply("a\nb\nc\nd\n", &diff).is_err());
    }

    #[test]
    fn no_newline_markers_and_crlf() {
        let diff = format!("{HEAD}@@ -1,2 +1,2 @@\n a\r\n-b\n\\ No newline at end of file\n+b\r\n");
        assert_eq!(apply("a\r\nb", &diff).unwrap(), "a\r\nb\r\n");
        assert!(apply("a\r\nb\n", &diff).is_err());
    }

    #[test]
    fn later_hunk_cannot_match_patched_lines() {
        let diff = format!("{HEAD}@@ -1,2 +1,2 @@\n-a\n+b\n b\n@@ -1,2 +1,2 @@\n-b\n+c\n b\n");
        assert!(apply("a\nb\nz\n", &diff).is_err());
    }

    #[test]
    fn zero_context_hunk_inside_a_file_is_refused_not_appended() {
        // Meant after "b"; git puts it after "c", at the end of the file.
        let diff = format!("{HEAD}@@ -2,0 +3 @@\n+new\n");
        let err = apply("a\nb\nc\n", &diff).unwrap_err();
        assert!(err.starts_with(NO_CONTEXT), "{err}");
        assert!(err.ends_with("where it goes is ambiguous; send the diff with context lines"));
    }

    #[test]
    fn zero_context_hunk_must_cover_the_whole_file() {
        let diff = format!("{HEAD}@@ -1,2 +1 @@\n-a\n-b\n+c\n");
        assert_eq!(apply("a\nb\n", &diff).unwrap(), "c\n");
        let err = apply("a\nb\nz\n", &diff).unwrap_err();
        assert!(
            err.starts_with(&format!("{NO_CONTEXT}, so it must cover the whole file: ")),
            "{err}"
        );
        let insert = format!("{HEAD}@@ -0,0 +1 @@\n+x\n");
        assert_eq!(apply("", &insert).unwrap(), "x\n");
        assert!(apply("a\n", &insert).unwrap_err().starts_with(NO_CONTEXT));
    }

    #[test]
    fn hash_ignores_whitespace() {
        assert_eq!(hash_line(b"a b\n"), hash_line(b"ab"));
        assert_ne!(hash_line(b"ab"), hash_line(b"ba"));
    }
}
