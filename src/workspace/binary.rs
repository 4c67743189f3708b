//! `GIT binary patch` hunks: base85 lines of zlib data holding either the
//! whole new file (`literal`) or a git delta against the old one (`delta`).

use flate2::{Decompress, FlushDecompress, Status};

use super::header::{line_len, strtoul};
use super::sha1::blob_id_hex;

/// Largest file a binary hunk may produce; larger claims are treated as corrupt
/// rather than trusted for an allocation.
const MAX_BINARY_RESULT: u64 = 1 << 30;

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

/// Reads one `literal N` / `delta N` hunk at the start of `buf`.
///
/// `Ok(None)` means `buf` does not start with a hunk at all.
pub(crate) fn parse_hunk(buf: &[u8]) -> Result<Option<ParsedHunk>, Corrupt> {
    let (method, size) = if let Some(rest) = buf.strip_prefix(b"delta ") {
        (Method::Delta, strtoul(rest, 10).0)
    } else if let Some(rest) = buf.strip_prefix(b"literal ") {
        (Method::Literal, strtoul(rest, 10).0)
    } else {
        return Ok(None);
    };
    let mut pos = line_len(buf);
    let mut deflated = Vec::new();
    loop {
        let at = pos;
        let corrupt = move |reason| Corrupt { at, reason };
        let len = line_len(&buf[pos..]);
        let line = &buf[pos..pos + len];
        pos += len;
        // A one-byte line (normally the blank line) ends the hunk.
        if len == 1 {
            break;
        }
        if len < 7 || (len - 2) % 5 != 0 {
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
    let data = inflate_exact(&deflated, size).ok_or(Corrupt {
        at: 0,
        reason: "zlib data is corrupt or does not have the stated size",
    })?;
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

/// Inflates zlib `data` that must produce exactly `size` bytes.
fn inflate_exact(data: &[u8], size: u64) -> Option<Vec<u8>> {
    // Deflate expands at most ~1032:1; a bigger claim cannot be honest.
    let bound = (data.len() as u64).saturating_mul(1032).saturating_add(64);
    if size > bound || size > MAX_BINARY_RESULT {
        return None;
    }
    let size = usize::try_from(size).ok()?;
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

/// Replays a git delta (`patch-delta.c`) against `src`.
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
    if remaining > MAX_BINARY_RESULT {
        return None;
    }
    let mut out = Vec::with_capacity(usize::try_from(remaining).ok()?);
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

/// Applies a binary patch the way `git apply` does: both ids on the `index`
/// line must be full, the old content must hash to the old id, and the
/// result must hash to the new id. An all-zero new id deletes the file.
pub(crate) fn apply_binary(
    old_id: &[u8],
    new_id: &[u8],
    has_old: bool,
    old: &[u8],
    hunk: Option<&BinaryHunk>,
) -> Result<Vec<u8>, String> {
    if !is_full_id(old_id) || !is_full_id(new_id) {
        return Err("the index line lacks full object ids (regenerate with --binary)".into());
    }
    if has_old {
        let actual = blob_id_hex(old);
        if actual.as_bytes() != old_id {
            return Err(format!(
                "the patch expects object {}, but the current content is {actual}",
                String::from_utf8_lossy(old_id)
            ));
        }
    } else if !old.is_empty() {
        return Err("the patch expects an empty file".into());
    }
    if new_id.iter().all(|&c| c == b'0') {
        return Ok(Vec::new());
    }
    let hunk = hunk.ok_or_else(|| {
        "no binary data in the diff (\"Binary files differ\"); regenerate with --binary".to_string()
    })?;
    let result = match hunk.method {
        Method::Literal => hunk.data.clone(),
        Method::Delta => patch_delta(old, &hunk.data)
            .ok_or_else(|| "delta does not apply to the current content".to_string())?,
    };
    let actual = blob_id_hex(&result);
    if actual.as_bytes() != new_id {
        return Err(format!(
            "result is {actual}, expected {}",
            String::from_utf8_lossy(new_id)
        ));
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
        let parsed = parse_hunk(text.as_bytes()).ok().flatten().unwrap();
        assert_eq!(parsed.hunk.method, Method::Literal);
        assert_eq!(parsed.hunk.data, payload);
        assert_eq!(&text.as_bytes()[parsed.used..], b"rest");
    }

    #[test]
    fn rejects_wrong_size_and_bad_alphabet() {
        let payload = b"hello".to_vec();
        let good = encode_85(&deflate(&payload));
        let wrong_size = format!("literal 6\n{good}\n");
        assert!(parse_hunk(wrong_size.as_bytes()).is_err());
        let bad = format!("literal 5\n{}\n", good.replace('0', "\""));
        let bad_alphabet = good.contains('0');
        assert_eq!(parse_hunk(bad.as_bytes()).is_err(), bad_alphabet);
        assert!(parse_hunk(b"literal 5\nA0000\n\n").is_err());
        assert!(parse_hunk(b"nonsense\n").ok().unwrap().is_none());
    }

    #[test]
    fn huge_claimed_size_is_rejected_without_allocating() {
        let text = format!("literal 99999999999\n{}\n", encode_85(&deflate(b"x")));
        assert!(parse_hunk(text.as_bytes()).is_err());
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
        let ok = apply_binary(
            old_id.as_bytes(),
            new_id.as_bytes(),
            true,
            &old,
            Some(&hunk),
        );
        assert_eq!(ok.unwrap(), new);
        assert!(apply_binary(b"abc", new_id.as_bytes(), true, &old, Some(&hunk)).is_err());
        assert!(apply_binary(
            new_id.as_bytes(),
            new_id.as_bytes(),
            true,
            &old,
            Some(&hunk)
        )
        .is_err());
        assert!(apply_binary(old_id.as_bytes(), new_id.as_bytes(), true, &old, None).is_err());
        let zeros = "0".repeat(40);
        let deleted = apply_binary(old_id.as_bytes(), zeros.as_bytes(), true, &old, None);
        assert_eq!(deleted.unwrap(), Vec::<u8>::new());
    }
}
