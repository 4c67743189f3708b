//! `GIT binary patch` hunks: base85 lines of zlib data holding either the
//! whole new file (`literal`) or a git delta against the old one (`delta`).

use flate2::{Decompress, FlushDecompress, Status};

use super::header::{line_len, strtoul};
#[cfg(test)]
use super::limits::ApplyLimits;
use super::limits::Budget;
use super::sha1::blob_id_hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Literal,
    Delta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinaryHunk {
    pub method: Method,
    /// Inflated payload: the new content, or the delta instructions.
    pub data: Vec<u8>,
}

/// A binary hunk read from the diff, with how many bytes it took.
pub(crate) struct ParsedHunk {
    pub hunk: BinaryHunk,
    pub used: usize,
}

/// Why a binary hunk could not be read, and where (a byte offset in the
/// buffer given to [`parse_hunk`]).
pub(crate) struct Corrupt {
    pub at: usize,
    pub reason: &'static str,
}

/// Why a binary hunk was not read.
pub(crate) enum HunkError {
    Corrupt(Corrupt),
    /// Its stated size is over a limit of the [`Budget`].
    TooLarge(String),
}

/// Reads one `literal N` / `delta N` hunk at the start of `buf`, charging
/// its inflated size to `budget` before inflating it.
///
/// `Ok(None)` means `buf` does not start with a hunk at all.
pub(crate) fn parse_hunk(buf: &[u8], budget: &mut Budget) -> Result<Option<ParsedHunk>, HunkError> {
    let (method, size) = if let Some(rest) = buf.strip_prefix(b"delta ") {
        (Method::Delta, strtoul(rest, 10).0)
    } else if let Some(rest) = buf.strip_prefix(b"literal ") {
        (Method::Literal, strtoul(rest, 10).0)
    } else {
        return Ok(None);
    };
    budget.charge_binary(size).map_err(HunkError::TooLarge)?;
    let mut pos = line_len(buf);
    let mut deflated = Vec::new();
    loop {
        let at = pos;
        let corrupt = move |reason| HunkError::Corrupt(Corrupt { at, reason });
        let len = line_len(&buf[pos..]);
        let line = &buf[pos..pos + len];
        pos += len;
        // A one-byte line (normally the blank line) ends the hunk.
        if len == 1 {
            break;
        }
        if len < 7 || !(len - 2).is_multiple_of(5) {
            return Err(corrupt("bad line length"));
        }
        let max_bytes = (len - 2) / 5 * 4;
        let bytes = match line[0] {
            c @ b'A'..=b'Z' => usize::from(c - b'A') + 1,
            c @ b'a'..=b'z' => usize::from(c - b'a') + 27,
            _ => return Err(corrupt("bad length byte")),
        };
        // Padding never exceeds three bytes of the last group.
        if max_bytes < bytes || bytes + 4 <= max_bytes {
            return Err(corrupt("length byte does not match the line"));
        }
        decode_85(&line[1..len - 1], bytes, &mut deflated).ok_or(corrupt("bad base85 data"))?;
    }
    let data = inflate_exact(&deflated, size).ok_or(HunkError::Corrupt(Corrupt {
        at: 0,
        reason: "zlib data is corrupt or does not have the stated size",
    }))?;
    Ok(Some(ParsedHunk {
        hunk: BinaryHunk { method, data },
        used: pos,
    }))
}

fn base85_value(c: u8) -> Option<u32> {
    const ALPHABET: &[u8; 85] =
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Decodes `len` bytes from groups of five base85 characters.
fn decode_85(text: &[u8], mut len: usize, out: &mut Vec<u8>) -> Option<()> {
    for group in text.chunks(5) {
        if len == 0 {
            break;
        }
        if group.len() != 5 {
            return None;
        }
        let mut acc: u64 = 0;
        for &c in group {
            acc = acc * 85 + u64::from(base85_value(c)?);
        }
        let acc = u32::try_from(acc).ok()?;
        let take = len.min(4);
        out.extend_from_slice(&acc.to_be_bytes()[..take]);
        len -= take;
    }
    (len == 0).then_some(())
}

/// Inflates zlib `data` that must produce exactly `size` bytes; the caller
/// has checked `size` against the budget. Output never grows past `size`.
fn inflate_exact(data: &[u8], size: u64) -> Option<Vec<u8>> {
    // Deflate expands at most ~1032:1; a bigger claim cannot be honest.
    let bound = (data.len() as u64).saturating_mul(1032).saturating_add(64);
    if size > bound {
        return None;
    }
    let size = usize::try_from(size).ok()?;
    // `decompress_vec` only fills spare capacity, so a stream that inflates
    // to more than it claims stops here and is rejected below.
    let mut out = Vec::with_capacity(size);
    let mut z = Decompress::new(true);
    loop {
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let consumed = usize::try_from(in_before).ok()?;
        let status = z
            .decompress_vec(data.get(consumed..)?, &mut out, FlushDecompress::Finish)
            .ok()?;
        if status == Status::StreamEnd {
            break;
        }
        if z.total_in() == in_before && z.total_out() == out_before {
            return None;
        }
    }
    (out.len() == size).then_some(out)
}

/// The result size a git delta states in its header.
fn delta_result_size(delta: &[u8]) -> u64 {
    let mut pos = 0;
    delta_header_size(delta, &mut pos);
    delta_header_size(delta, &mut pos)
}

/// Replays a git delta (`patch-delta.c`) against `src`. The caller has
/// checked the stated result size ([`delta_result_size`]) against the
/// budget; the output is never longer than that.
fn patch_delta(src: &[u8], delta: &[u8]) -> Option<Vec<u8>> {
    if delta.len() < 4 {
        return None;
    }
    let mut pos = 0;
    let src_size = delta_header_size(delta, &mut pos);
    if src_size != src.len() as u64 {
        return None;
    }
    let mut remaining = delta_header_size(delta, &mut pos);
    // Only what the inputs can plausibly make is reserved up front; a delta
    // that really repeats its source grows the buffer as it goes.
    let plausible = (src.len() as u64).saturating_add(delta.len() as u64);
    let mut out = Vec::with_capacity(usize::try_from(remaining.min(plausible)).ok()?);
    while pos < delta.len() {
        let cmd = delta[pos];
        pos += 1;
        if cmd & 0x80 != 0 {
            let mut offset: u64 = 0;
            let mut len: u64 = 0;
            for (bit, shift) in [(0x01, 0), (0x02, 8), (0x04, 16), (0x08, 24)] {
                if cmd & bit != 0 {
                    offset |= u64::from(*delta.get(pos)?) << shift;
                    pos += 1;
                }
            }
            for (bit, shift) in [(0x10, 0), (0x20, 8), (0x40, 16)] {
                if cmd & bit != 0 {
                    len |= u64::from(*delta.get(pos)?) << shift;
                    pos += 1;
                }
            }
            if len == 0 {
                len = 0x10000;
            }
            if offset + len > src.len() as u64 || len > remaining {
                return None;
            }
            let start = usize::try_from(offset).ok()?;
            let end = usize::try_from(offset + len).ok()?;
            out.extend_from_slice(src.get(start..end)?);
            remaining -= len;
        } else if cmd != 0 {
            let n = usize::from(cmd);
            if n as u64 > remaining || n > delta.len() - pos {
                return None;
            }
            out.extend_from_slice(&delta[pos..pos + n]);
            pos += n;
            remaining -= n as u64;
        } else {
            // Opcode 0 is reserved.
            return None;
        }
    }
    (remaining == 0).then_some(out)
}

fn delta_header_size(delta: &[u8], pos: &mut usize) -> u64 {
    let mut size: u64 = 0;
    let mut shift = 0u32;
    while let Some(&byte) = delta.get(*pos) {
        *pos += 1;
        if shift < 64 {
            size |= u64::from(byte & 0x7f) << shift;
        }
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    size
}

/// Why a binary patch did not apply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BinaryError {
    Invalid(String),
    /// Its result is over a limit of the [`Budget`].
    TooLarge(String),
}

impl From<String> for BinaryError {
    fn from(reason: String) -> Self {
        BinaryError::Invalid(reason)
    }
}

/// Applies a binary patch the way `git apply` does: both ids on the `index`
/// line must be full, the old content must hash to the old id, and the
/// result must hash to the new id. An all-zero new id deletes the file.
/// A literal's data was charged to `budget` when it was inflated; a delta's
/// result is charged here, before it is built.
pub(crate) fn apply_binary(
    old_id: &[u8],
    new_id: &[u8],
    has_old: bool,
    old: &[u8],
    hunk: Option<BinaryHunk>,
    budget: &mut Budget,
) -> Result<Vec<u8>, BinaryError> {
    if !is_full_id(old_id) || !is_full_id(new_id) {
        return Err(BinaryError::Invalid(
            "the index line lacks full object ids (regenerate with --binary)".into(),
        ));
    }
    if has_old {
        let actual = blob_id_hex(old);
        if actual.as_bytes() != old_id {
            return Err(BinaryError::Invalid(format!(
                "the patch expects object {}, but the current content is {actual}",
                String::from_utf8_lossy(old_id)
            )));
        }
    } else if !old.is_empty() {
        return Err(BinaryError::Invalid(
            "the patch expects an empty file".into(),
        ));
    }
    if new_id.iter().all(|&c| c == b'0') {
        return Ok(Vec::new());
    }
    let hunk = hunk.ok_or_else(|| {
        "no binary data in the diff (\"Binary files differ\"); regenerate with --binary".to_string()
    })?;
    let result = match hunk.method {
        Method::Literal => hunk.data,
        Method::Delta => {
            budget
                .charge_binary(delta_result_size(&hunk.data))
                .map_err(BinaryError::TooLarge)?;
            patch_delta(old, &hunk.data)
                .ok_or_else(|| "delta does not apply to the current content".to_string())?
        }
    };
    let actual = blob_id_hex(&result);
    if actual.as_bytes() != new_id {
        return Err(BinaryError::Invalid(format!(
            "result is {actual}, expected {}",
            String::from_utf8_lossy(new_id)
        )));
    }
    Ok(result)
}

fn is_full_id(id: &[u8]) -> bool {
    id.len() == 40 && id.iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn encode_85(data: &[u8]) -> String {
        const ALPHABET: &[u8; 85] =
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
        let mut out = String::new();
        for chunk in data.chunks(52) {
            let len = chunk.len();
            out.push(if len <= 26 {
                (b'A' + len as u8 - 1) as char
            } else {
                (b'a' + len as u8 - 27) as char
            });
            for group in chunk.chunks(4) {
                let mut word = [0u8; 4];
                word[..group.len()].copy_from_slice(group);
                let mut acc = u32::from_be_bytes(word);
                let mut chars = [0u8; 5];
                for c in chars.iter_mut().rev() {
                    *c = ALPHABET[(acc % 85) as usize];
                    acc /= 85;
                }
                out.push_str(std::str::from_utf8(&chars).unwrap());
            }
            out.push('\n');
        }
        out
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn parses_literal_hunk() {
        let payload = b"\x00\x01binary\xffdata".repeat(9);
        let text = format!(
            "literal {}\n{}\nrest",
            payload.len(),
            encode_85(&deflate(&payload))
        );
        let parsed = parse_hunk(text.as_bytes(), &mut Budget::default())
            .ok()
            .flatten()
            .unwrap();
        assert_eq!(parsed.hunk.method, Method::Literal);
        assert_eq!(parsed.hunk.data, payload);
        assert_eq!(&text.as_bytes()[parsed.used..], b"rest");
    }

    #[test]
    fn rejects_wrong_size_and_bad_alphabet() {
        let payload = b"hello".to_vec();
        let good = encode_85(&deflate(&payload));
        let parse = |text: &[u8]| parse_hunk(text, &mut Budget::default());
        let wrong_size = format!("literal 6\n{good}\n");
        assert!(parse(wrong_size.as_bytes()).is_err());
        let bad = format!("literal 5\n{}\n", good.replace('0', "\""));
        let bad_alphabet = good.contains('0');
        assert_eq!(parse(bad.as_bytes()).is_err(), bad_alphabet);
        assert!(parse(b"literal 5\nA0000\n\n").is_err());
        assert!(parse(b"nonsense\n").ok().unwrap().is_none());
    }

    #[test]
    fn huge_claimed_size_is_rejected_without_allocating() {
        let text = format!("literal 99999999999\n{}\n", encode_85(&deflate(b"x")));
        assert!(parse_hunk(text.as_bytes(), &mut Budget::default()).is_err());
    }

    #[test]
    fn delta_copies_and_inserts() {
        let src = b"0123456789abcdef";
        // src size 16, result size 9: copy 4 bytes at offset 10, insert "XYZ", copy 2 at 0.
        let delta = [16, 9, 0x91, 10, 4, 3, b'X', b'Y', b'Z', 0x90, 2];
        assert_eq!(patch_delta(src, &delta).unwrap(), b"abcdXYZ01");
        // Wrong source size, copy out of range, reserved opcode.
        assert!(patch_delta(b"short", &delta).is_none());
        assert!(patch_delta(src, &[16, 4, 0x91, 14, 4]).is_none());
        assert!(patch_delta(src, &[16, 1, 0]).is_none());
    }

    #[test]
    fn apply_checks_ids() {
        let old = b"old".to_vec();
        let new = b"new".to_vec();
        let hunk = BinaryHunk {
            method: Method::Literal,
            data: new.clone(),
        };
        let old_id = blob_id_hex(&old);
        let new_id = blob_id_hex(&new);
        let apply = |old_id: &[u8], new_id: &[u8], hunk: Option<&BinaryHunk>| {
            apply_binary(
                old_id,
                new_id,
                true,
                &old,
                hunk.cloned(),
                &mut Budget::default(),
            )
        };
        let ok = apply(old_id.as_bytes(), new_id.as_bytes(), Some(&hunk));
        assert_eq!(ok.unwrap(), new);
        assert!(apply(b"abc", new_id.as_bytes(), Some(&hunk)).is_err());
        assert!(apply(new_id.as_bytes(), new_id.as_bytes(), Some(&hunk)).is_err());
        assert!(apply(old_id.as_bytes(), new_id.as_bytes(), None).is_err());
        let zeros = "0".repeat(40);
        let deleted = apply(old_id.as_bytes(), zeros.as_bytes(), None);
        assert_eq!(deleted.unwrap(), Vec::<u8>::new());
    }

    /// A zlib stream of `mib` MiB of zeros, about 1 KB per MiB, built
    /// without compressing it all: one MiB compressed with a full flush is a
    /// byte-aligned run of deflate blocks that can be repeated.
    pub(crate) fn zeros_bomb(mib: usize) -> Vec<u8> {
        use flate2::{Compress, Compression, FlushCompress};
        let mut z = Compress::new(Compression::best(), false);
        let mut one_mib = Vec::with_capacity(1 << 16);
        z.compress_vec(&vec![0; 1 << 20], &mut one_mib, FlushCompress::Full)
            .unwrap();
        assert_eq!(z.total_in(), 1 << 20);
        let mut last = Vec::with_capacity(64);
        z.compress_vec(&[], &mut last, FlushCompress::Finish)
            .unwrap();
        let mut out = vec![0x78, 0xda];
        for _ in 0..mib {
            out.extend_from_slice(&one_mib);
        }
        out.extend_from_slice(&last);
        // Adler-32 of zeros: a stays 1, b counts the bytes.
        let b = ((mib as u64) << 20) % 65521;
        out.extend_from_slice(&((b << 16 | 1) as u32).to_be_bytes());
        out
    }

    /// A delta that copies all of a 64 KiB `src` `copies` times: one byte
    /// per 64 KiB of output (a copy command with no operands).
    fn amplifying_delta(copies: u64) -> Vec<u8> {
        let mut delta = Vec::new();
        for mut n in [1u64 << 16, copies << 16] {
            while n >= 0x80 {
                delta.push(n as u8 | 0x80);
                n >>= 7;
            }
            delta.push(n as u8);
        }
        delta.extend(std::iter::repeat_n(0x80, copies as usize));
        delta
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn zeros_bomb_is_a_valid_stream() {
        let bomb = zeros_bomb(2);
        assert!(bomb.len() < 8 << 10, "{} bytes", bomb.len());
        assert_eq!(inflate_exact(&bomb, 2 << 20), Some(vec![0; 2 << 20]));
    }

    #[test]
    fn zlib_bomb_literal_is_refused_before_inflating() {
        let started = std::time::Instant::now();
        // 200 MiB of zeros in ~250 KB of diff: over the limit per file.
        let size = 200u64 << 20;
        let text = format!("literal {size}\n{}\n", encode_85(&zeros_bomb(200)));
        assert!(text.len() < 300 << 10, "{} bytes", text.len());
        let mut budget = Budget::default();
        match parse_hunk(text.as_bytes(), &mut budget) {
            Err(HunkError::TooLarge(reason)) => {
                assert!(reason.contains("64 MiB per file"), "{reason}")
            }
            _ => panic!("a 200 MiB literal must be refused as too large"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn zlib_bomb_under_a_small_stated_size_stops_at_that_size() {
        // Claims 4 KiB, inflates to 16 MiB: the output buffer never grows
        // past the claim, and the hunk is corrupt.
        let text = format!("literal 4096\n{}\n", encode_85(&zeros_bomb(16)));
        match parse_hunk(text.as_bytes(), &mut Budget::default()) {
            Err(HunkError::Corrupt(c)) => assert!(c.reason.contains("stated size")),
            _ => panic!("a hunk that inflates past its size must be corrupt"),
        }
        assert_eq!(inflate_exact(&zeros_bomb(16), 4096), None);
    }

    #[test]
    fn literal_hunks_charge_the_patch_set_budget() {
        let mut budget = Budget::new(ApplyLimits {
            max_binary_file_bytes: 1 << 20,
            max_patch_set_bytes: 5 << 19,
        });
        let text = format!("literal {}\n{}\n", 1 << 20, encode_85(&zeros_bomb(1)));
        for _ in 0..2 {
            let parsed = parse_hunk(text.as_bytes(), &mut budget).ok().flatten();
            assert_eq!(parsed.unwrap().hunk.data.len(), 1 << 20);
        }
        match parse_hunk(text.as_bytes(), &mut budget) {
            Err(HunkError::TooLarge(reason)) => assert!(
                reason.contains("in total") || reason.contains("per diff"),
                "{reason}"
            ),
            _ => panic!("the third MiB is over the 2.5 MiB budget"),
        }
    }

    #[test]
    fn delta_amplification_is_refused_before_building_the_result() {
        let started = std::time::Instant::now();
        let src = pattern(1 << 16);
        let src_id = blob_id_hex(&src);
        // 16 KB of delta that would copy 64 KiB 16384 times: 1 GiB.
        let hunk = BinaryHunk {
            method: Method::Delta,
            data: amplifying_delta(1 << 14),
        };
        assert!(hunk.data.len() < 17 << 10);
        let any_id = "1".repeat(40);
        let err = apply_binary(
            src_id.as_bytes(),
            any_id.as_bytes(),
            true,
            &src,
            Some(hunk),
            &mut Budget::default(),
        )
        .unwrap_err();
        match err {
            BinaryError::TooLarge(reason) => assert!(reason.contains("per file"), "{reason}"),
            other => panic!("expected too large, got {other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn deltas_within_the_file_limit_still_charge_the_patch_set() {
        let src = pattern(1 << 16);
        let src_id = blob_id_hex(&src);
        // 16 copies: 1 MiB each time, in a 2.5 MiB budget.
        let result = src.repeat(16);
        let result_id = blob_id_hex(&result);
        let mut budget = Budget::new(ApplyLimits {
            max_binary_file_bytes: 1 << 20,
            max_patch_set_bytes: 5 << 19,
        });
        let apply = |budget: &mut Budget| {
            let hunk = BinaryHunk {
                method: Method::Delta,
                data: amplifying_delta(16),
            };
            apply_binary(
                src_id.as_bytes(),
                result_id.as_bytes(),
                true,
                &src,
                Some(hunk),
                budget,
            )
        };
        assert_eq!(apply(&mut budget).unwrap(), result);
        assert_eq!(apply(&mut budget).unwrap(), result);
        match apply(&mut budget) {
            Err(BinaryError::TooLarge(reason)) => assert!(reason.contains("per diff"), "{reason}"),
            other => panic!("expected too large, got {other:?}"),
        }
    }

    /// A `diff --git` patch creating `path` from a literal hunk.
    fn new_binary_file(path: &str, content_len: u64, deflated: &[u8], id: &str) -> String {
        format!(
            "diff --git a/{path} b/{path}\nnew file mode 100644\nindex {zeros}..{id}\nGIT binary patch\nliteral {content_len}\n{data}\nliteral 0\nHcmV?d00001\n\n",
            zeros = "0".repeat(40),
            data = encode_85(deflated),
        )
    }

    #[test]
    fn many_paths_cannot_add_up_past_the_patch_set_limit() {
        use crate::workspace::{apply_patch_set, apply_patch_set_with_limits, FileTree};
        let zeros_id = blob_id_hex(&vec![0; 1 << 20]);
        let bomb = zeros_bomb(1);
        let diff: String = (1..=4)
            .map(|n| new_binary_file(&format!("assets/z{n}.bin"), 1 << 20, &bomb, &zeros_id))
            .collect();
        let limits = ApplyLimits {
            max_binary_file_bytes: 1 << 20,
            max_patch_set_bytes: 3 << 20,
        };
        let err =
            apply_patch_set_with_limits(&FileTree::new(), diff.as_bytes(), limits).unwrap_err();
        assert_eq!(err.code(), "diff_too_large");
        assert_eq!(
            err.to_string(),
            "assets/z4.bin: the diff would produce more than 3 MiB of file content (the limit per diff)"
        );
        // The same ordinary diff applies under the default limits.
        let tree = apply_patch_set(&FileTree::new(), diff.as_bytes()).unwrap();
        assert_eq!(tree.len(), 4);
        assert!(tree.values().all(|f| f.content == vec![0; 1 << 20]));
    }

    #[test]
    fn copies_of_a_big_file_count_against_the_patch_set_limit() {
        use crate::workspace::{apply_patch_set_with_limits, FileEntry, FileMode, FileTree};
        let base = FileTree::from([(
            "big.bin".to_string(),
            FileEntry {
                content: vec![7; 1 << 20],
                mode: FileMode::Regular,
            },
        )]);
        let diff: String = (1..=5)
            .map(|n| format!("diff --git a/big.bin b/c{n}.bin\nsimilarity index 100%\ncopy from big.bin\ncopy to c{n}.bin\n"))
            .collect();
        let limits = ApplyLimits {
            max_binary_file_bytes: 1 << 20,
            max_patch_set_bytes: 3 << 20,
        };
        let err = apply_patch_set_with_limits(&base, diff.as_bytes(), limits).unwrap_err();
        assert_eq!(err.code(), "diff_too_large");
        assert!(err.to_string().starts_with("big.bin: "), "{err}");
        let roomy = ApplyLimits {
            max_patch_set_bytes: 5 << 20,
            ..limits
        };
        let tree = apply_patch_set_with_limits(&base, diff.as_bytes(), roomy).unwrap();
        assert_eq!(tree.len(), 6);
    }
}
