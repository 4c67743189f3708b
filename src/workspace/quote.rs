//! Git's C-style path quoting (`"dir/with \"quote\"\t\303\251.txt"`).

/// Decodes a quoted name at the start of `input` (which must begin with `"`).
///
/// Returns the decoded bytes and the number of input bytes consumed,
/// including both quotes. Like git, the scan is not limited to one line; a
/// NUL byte or the end of input before the closing quote is an error.
pub(crate) fn unquote_c_style(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    if input.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        let c = *input.get(i)?;
        i += 1;
        match c {
            0 => return None,
            b'"' => return Some((out, i)),
            b'\\' => {
                let e = *input.get(i)?;
                i += 1;
                let decoded = match e {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 0x0b,
                    b'\\' | b'"' => e,
                    // Three octal digits; a first digit above 3 would overflow a byte.
                    b'0'..=b'3' => {
                        let d2 = octal_digit(input.get(i).copied())?;
                        let d3 = octal_digit(input.get(i + 1).copied())?;
                        i += 2;
                        ((e - b'0') << 6) | (d2 << 3) | d3
                    }
                    _ => return None,
                };
                out.push(decoded);
            }
            _ => out.push(c),
        }
    }
}

fn octal_digit(c: Option<u8>) -> Option<u8> {
    match c {
        Some(d @ b'0'..=b'7') => Some(d - b'0'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_octal() {
        let (name, used) = unquote_c_style(b"\"a/with \\\"quote\\\" and\\ttab.txt\" rest").unwrap();
        assert_eq!(name, b"a/with \"quote\" and\ttab.txt");
        assert_eq!(used, 31);
        let (name, _) = unquote_c_style(b"\"caf\\303\\251.txt\"").unwrap();
        assert_eq!(String::from_utf8(name).unwrap(), "café.txt");
    }

    #[test]
    fn rejects_bad_escapes_and_unterminated() {
        assert!(unquote_c_style(b"\"abc").is_none());
        assert!(unquote_c_style(b"\"a\\qb\"").is_none());
        assert!(unquote_c_style(b"\"a\\4000\"").is_none());
        assert!(unquote_c_style(b"\"a\\30\"").is_none());
        assert!(unquote_c_style(b"\"a\0b\"").is_none());
        assert!(unquote_c_style(b"abc").is_none());
    }

    #[test]
    fn scans_across_lines_like_git() {
        let (name, used) = unquote_c_style(b"\"a\nb\"\n").unwrap();
        assert_eq!(name, b"a\nb");
        assert_eq!(used, 5);
    }
}
