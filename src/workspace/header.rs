//! Low-level pieces of patch headers: lines, numbers and file names, read
//! the way `git apply` reads them.

use super::quote::unquote_c_style;

/// Length of the line at the start of `buf`, including its `\n` if any.
pub(crate) fn line_len(buf: &[u8]) -> usize {
    match buf.iter().position(|&c| c == b'\n') {
        Some(i) => i + 1,
        None => buf.len(),
    }
}

/// Git's own `isspace`, which unlike C's leaves out `\v` and `\f`.
pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// C `strtoul`: leading whitespace, an optional sign, digits; saturates on
/// overflow. Returns the value and the bytes consumed (0 when no digits).
pub(crate) fn strtoul(s: &[u8], radix: u32) -> (u64, usize) {
    let mut i = 0;
    // libc's `strtoul` skips C whitespace, `\v` and `\f` included.
    while i < s.len() && (is_space(s[i]) || s[i] == 0x0b || s[i] == 0x0c) {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits_start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(d) = s.get(i).and_then(|&c| char::from(c).to_digit(radix)) {
        match value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start {
        return (0, 0);
    }
    if overflow {
        value = u64::MAX;
    } else if negative {
        value = value.wrapping_neg();
    }
    (value, i)
}

/// Whether a `---`/`+++` name is `/dev/null`.
pub(crate) fn is_dev_null(s: &[u8]) -> bool {
    s.strip_prefix(b"/dev/null")
        .is_some_and(|rest| rest.first().is_some_and(|&c| is_space(c)))
}

/// The prefix `git diff` puts in front of the names on one side of a patch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// Old-side names (`---`, the first `diff --git` name) carry `a/`.
    Old,
    /// New-side names (`+++`, the second `diff --git` name) carry `b/`.
    New,
    /// `rename from` and friends carry none.
    None,
}

impl Prefix {
    fn bytes(self) -> &'static [u8] {
        match self {
            Prefix::Old => b"a/",
            Prefix::New => b"b/",
            Prefix::None => b"",
        }
    }
}

/// Drops the `a/` of an old-side name or the `b/` of a new-side one, as
/// git does. Unlike `git apply -p1`, any other first component is kept,
/// so `--- src/x` names `src/x`; and `+++ a/x` names `a/x`, as a
/// `--no-prefix` diff of a folder called `a` means it.
pub(crate) fn strip_prefix(name: &[u8], prefix: Prefix) -> &[u8] {
    name.strip_prefix(prefix.bytes()).unwrap_or(name)
}

/// `strip_prefix` for the `diff --git` line, where an absolute name is
/// unusable.
fn header_strip(name: &[u8], prefix: Prefix) -> Option<&[u8]> {
    if name.starts_with(b"/") {
        None
    } else {
        Some(strip_prefix(name, prefix))
    }
}

fn squash_slashes(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &c in name {
        if !(c == b'/' && out.last() == Some(&b'/')) {
            out.push(c);
        }
    }
    out
}

/// Which whitespace ends an unquoted name (besides `\n` and `\r`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Terminator {
    /// `rename from` and friends: the name runs to the end of the line.
    LineEnd,
    /// `---`/`+++`: a tab ends the name, spaces belong to it.
    Tab,
}

fn ends_name(c: u8, term: Terminator) -> bool {
    match c {
        b'\n' => true,
        b' ' => false,
        b'\t' => term == Terminator::Tab,
        _ => is_space(c),
    }
}

/// Reads a (possibly quoted) name at the start of `line`, which runs to the
/// end of the diff, without its side's `prefix`; `def` is preferred when
/// the name merely extends it (`file` vs `file.orig`).
pub(crate) fn find_name(
    line: &[u8],
    def: Option<&[u8]>,
    prefix: Prefix,
    term: Terminator,
) -> Option<Vec<u8>> {
    if let Some(name) = quoted_name(line, prefix) {
        return Some(name);
    }
    let end = line
        .iter()
        .position(|&c| ends_name(c, term))
        .unwrap_or(line.len());
    name_common(&line[..end], def, prefix)
}

fn quoted_name(line: &[u8], prefix: Prefix) -> Option<Vec<u8>> {
    if line.first() != Some(&b'"') {
        return None;
    }
    let (name, _) = unquote_c_style(line)?;
    Some(squash_slashes(strip_prefix(&name, prefix)))
}

fn name_common(token: &[u8], def: Option<&[u8]>, prefix: Prefix) -> Option<Vec<u8>> {
    let name = strip_prefix(token, prefix);
    if name.is_empty() {
        return def.map(squash_slashes);
    }
    if let Some(def) = def {
        if def.len() < name.len() && name.starts_with(def) {
            return Some(squash_slashes(def));
        }
    }
    Some(squash_slashes(name))
}

/// Reads the name of a traditional `---`/`+++` line, dropping a trailing
/// timestamp such as `\t2024-01-01 10:00:00.000000000 +0100`.
pub(crate) fn find_name_traditional(
    line: &[u8],
    def: Option<&[u8]>,
    prefix: Prefix,
) -> Option<Vec<u8>> {
    if let Some(name) = quoted_name(line, prefix) {
        return Some(name);
    }
    let len = line_len(line);
    let len = if line[..len].ends_with(b"\n") {
        len - 1
    } else {
        len
    };
    let date = timestamp_len(&line[..len]);
    if date == 0 {
        return find_name(line, def, prefix, Terminator::Tab);
    }
    name_common(&line[..len - date], def, prefix)
}

fn all_digits(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_digit)
}

/// Length of a trailing ` +0500` style zone, or 0.
fn tz_len(line: &[u8]) -> usize {
    let n = line.len();
    if n < 6 {
        return 0;
    }
    let tz = &line[n - 6..];
    if tz[0] == b' ' && matches!(tz[1], b'+' | b'-') && all_digits(&tz[2..]) {
        6
    } else {
        0
    }
}

/// Length of a trailing ` +08:00` style zone, or 0.
fn tz_colon_len(line: &[u8]) -> usize {
    let n = line.len();
    if n < 7 || line[n - 3] != b':' {
        return 0;
    }
    let tz = &line[n - 7..];
    let ok = tz[0] == b' '
        && matches!(tz[1], b'+' | b'-')
        && all_digits(&tz[2..4])
        && tz[4] == b':'
        && all_digits(&tz[5..7]);
    if ok {
        7
    } else {
        0
    }
}

/// Length of a trailing `72-02-05` or `1972-02-05`, or 0.
fn date_len(line: &[u8]) -> usize {
    let n = line.len();
    if n < 8 || line[n - 3] != b'-' {
        return 0;
    }
    let d = &line[n - 8..];
    let ok = all_digits(&d[0..2]) && d[2] == b'-' && all_digits(&d[3..5]) && d[5] == b'-';
    if !ok || !all_digits(&d[6..8]) {
        return 0;
    }
    if n >= 10 && line[n - 9].is_ascii_digit() && line[n - 10].is_ascii_digit() {
        10
    } else {
        8
    }
}

/// Length of a trailing ` 07:01:32`, or 0.
fn short_time_len(line: &[u8]) -> usize {
    let n = line.len();
    if n < 9 || line[n - 3] != b':' {
        return 0;
    }
    let t = &line[n - 9..];
    let ok = t[0] == b' '
        && all_digits(&t[1..3])
        && t[3] == b':'
        && all_digits(&t[4..6])
        && t[6] == b':'
        && all_digits(&t[7..9]);
    if ok {
        9
    } else {
        0
    }
}

/// Length of a trailing ` 19:41:17.620000023`, or 0.
fn fractional_time_len(line: &[u8]) -> usize {
    let n = line.len();
    if n == 0 || !line[n - 1].is_ascii_digit() {
        return 0;
    }
    let mut p = n - 1;
    while p > 0 && line[p].is_ascii_digit() {
        p -= 1;
    }
    if line[p] != b'.' {
        return 0;
    }
    match short_time_len(&line[..p]) {
        0 => 0,
        t => n - p + t,
    }
}

fn trailing_spaces_len(line: &[u8]) -> usize {
    line.iter().rev().take_while(|&&c| c == b' ').count()
}

/// Length of the timestamp (with its separator) that GNU or POSIX diff
/// appends to a traditional name line, or 0 when there is none.
fn timestamp_len(line: &[u8]) -> usize {
    if !line.last().is_some_and(u8::is_ascii_digit) {
        return 0;
    }
    let mut end = line.len();
    let zone = match tz_len(&line[..end]) {
        0 => tz_colon_len(&line[..end]),
        n => n,
    };
    end -= zone;
    let time = match short_time_len(&line[..end]) {
        0 => fractional_time_len(&line[..end]),
        n => n,
    };
    end -= time;
    let date = date_len(&line[..end]);
    if date == 0 {
        return 0;
    }
    end -= date;
    if end == 0 {
        return 0;
    }
    match line[end - 1] {
        b'\t' => line.len() - (end - 1),
        b' ' => line.len() - (end - trailing_spaces_len(&line[..end])),
        _ => 0,
    }
}

/// Whether a traditional name line carries the epoch timestamp GNU diff
/// uses to mark a created or deleted file.
pub(crate) fn has_epoch_timestamp(line: &[u8]) -> bool {
    let line = &line[..line_len(line)];
    let Some(tab) = line.iter().rposition(|&c| c == b'\t') else {
        return false;
    };
    let stamp = &line[tab + 1..];
    let (epoch_hour, rest) = if let Some(r) = stamp.strip_prefix(b"1969-12-31 ") {
        (24, r)
    } else if let Some(r) = stamp.strip_prefix(b"1970-01-01 ") {
        (0, r)
    } else {
        return false;
    };
    epoch_clock(rest).is_some_and(|minutes| minutes == epoch_hour * 60)
}

/// Parses `hh:mm:00(.0+)? [+-]hh:?mm\n` and returns local minutes minus the
/// zone offset.
fn epoch_clock(s: &[u8]) -> Option<i64> {
    let digit = |i: usize| {
        s.get(i)
            .filter(|c| c.is_ascii_digit())
            .map(|c| i64::from(c - b'0'))
    };
    if !matches!(s.first(), Some(b'0'..=b'2')) || s.get(2) != Some(&b':') {
        return None;
    }
    if !matches!(s.get(3), Some(b'0'..=b'5')) || s.get(5) != Some(&b':') {
        return None;
    }
    let hour = digit(0)? * 10 + digit(1)?;
    let minute = digit(3)? * 10 + digit(4)?;
    if s.get(6..8) != Some(b"00") {
        return None;
    }
    let mut i = 8;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let zeros = s[i..].iter().take_while(|&&c| c == b'0').count();
        if zeros == 0 {
            return None;
        }
        i += zeros;
    }
    if s.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let sign = match s.get(i) {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    if !matches!(s.get(i + 1), Some(b'0'..=b'2')) {
        return None;
    }
    let zh = digit(i + 1)? * 10 + digit(i + 2)?;
    i += 3;
    if s.get(i) == Some(&b':') {
        i += 1;
    }
    if !matches!(s.get(i), Some(b'0'..=b'5')) {
        return None;
    }
    let zm = digit(i)? * 10 + digit(i + 1)?;
    if s.get(i + 2) != Some(&b'\n') {
        return None;
    }
    Some(hour * 60 + minute - sign * (zh * 60 + zm))
}

/// The name on a `diff --git` line when both sides agree (mode changes,
/// empty files); `None` when it is ambiguous, e.g. for renames or names
/// with spaces that do not repeat exactly. `line` starts after
/// `diff --git ` and runs to the end of the diff; `llen` is the rest of the
/// line's length including `\n`.
pub(crate) fn git_header_name(line: &[u8], llen: usize) -> Option<Vec<u8>> {
    if line.first() == Some(&b'"') {
        let (first, used) = unquote_c_style(line)?;
        let first = header_strip(&first, Prefix::Old)?.to_vec();
        let mut second = used;
        while second < llen && is_space(line[second]) {
            second += 1;
        }
        if second >= llen {
            return None;
        }
        if line[second] == b'"' {
            let (other, _) = unquote_c_style(&line[second..])?;
            return (header_strip(&other, Prefix::New)? == first.as_slice()).then_some(first);
        }
        // An unquoted second name is compared with its newline, as git does.
        let rest = header_strip(&line[second..llen], Prefix::New)?;
        return (rest == first.as_slice()).then_some(first);
    }
    let name = header_strip(&line[..llen], Prefix::Old)?;
    let name_start = llen - name.len();
    if let Some(q) = name.iter().position(|&c| c == b'"') {
        let (other, _) = unquote_c_style(&line[name_start + q..])?;
        let np = header_strip(&other, Prefix::New)?;
        let len = np.len();
        let ok = len < q && name[..len] == *np && name.get(len).is_some_and(|&c| is_space(c));
        return ok.then(|| np.to_vec());
    }
    let line_end = name.iter().position(|&c| c == b'\n')?;
    for (len, &c) in name[..line_end].iter().enumerate() {
        if c != b' ' && c != b'\t' {
            continue;
        }
        let Some(second) = header_strip(&name[len + 1..line_end], Prefix::New) else {
            continue;
        };
        if second.len() == len && name[..len] == *second {
            return Some(second.to_vec());
        }
    }
    None
}

/// Whether a `diff --git` line reads `a/OLD b/NEW`: the first name starts
/// with `a/` and a later one with `b/`. Git strips any first component
/// instead, and refuses only names without one ("lacks filename
/// information"); that turns a `--no-prefix` diff of `a/x` into `x`.
/// `line` and `llen` are as for [`git_header_name`].
pub(crate) fn has_ab_names(line: &[u8], llen: usize) -> bool {
    let line = &line[..llen];
    let second_is_b = |rest: &[u8]| {
        let rest = rest.strip_prefix(b"\"").unwrap_or(rest);
        rest.starts_with(b"b/")
    };
    if line.first() == Some(&b'"') {
        let Some((first, used)) = unquote_c_style(line) else {
            return false;
        };
        let after = &line[used..];
        let gap = after
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        return first.starts_with(b"a/") && gap > 0 && second_is_b(&after[gap..]);
    }
    line.starts_with(b"a/")
        && line
            .iter()
            .enumerate()
            .any(|(i, &c)| (c == b' ' || c == b'\t') && second_is_b(&line[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(line: &str) -> Option<String> {
        let rest = line.strip_prefix("diff --git ").unwrap();
        let llen = line_len(rest.as_bytes());
        git_header_name(rest.as_bytes(), llen).map(|n| String::from_utf8(n).unwrap())
    }

    #[test]
    fn header_names_strip_only_leading_prefix() {
        assert_eq!(header("diff --git a/x b/x\n").as_deref(), Some("x"));
        assert_eq!(
            header("diff --git a/lib/a/b.txt b/lib/a/b.txt\n").as_deref(),
            Some("lib/a/b.txt")
        );
        assert_eq!(header("diff --git a/b/x b/b/x\n").as_deref(), Some("b/x"));
        assert_eq!(
            header("diff --git a/with space/f g.txt b/with space/f g.txt\n").as_deref(),
            Some("with space/f g.txt")
        );
        assert_eq!(
            header("diff --git \"a/q\\\"t.txt\" \"b/q\\\"t.txt\"\n").as_deref(),
            Some("q\"t.txt")
        );
        assert_eq!(
            header("diff --git a/caf\\303\\251 \"b/caf\\303\\251\"\n"),
            None,
            "an unquoted name never contains an escape"
        );
        assert_eq!(
            header("diff --git a/x \"b/x\"\n").as_deref(),
            Some("x"),
            "mixed quoting still names one file"
        );
        assert_eq!(header("diff --git a/old b/new\n"), None);
        assert_eq!(header("diff --git /etc/passwd /etc/passwd\n"), None);
    }

    #[test]
    fn each_side_strips_only_its_own_prefix() {
        assert_eq!(strip_prefix(b"a/x", Prefix::Old), b"x");
        assert_eq!(strip_prefix(b"b/x", Prefix::Old), b"b/x");
        assert_eq!(strip_prefix(b"b/x", Prefix::New), b"x");
        assert_eq!(strip_prefix(b"a/x", Prefix::New), b"a/x");
        assert_eq!(strip_prefix(b"a/x", Prefix::None), b"a/x");
        // A `--no-prefix` diff of `a/new.txt`: the halves no longer agree.
        assert_eq!(header("diff --git a/new.txt a/new.txt\n"), None);
        assert_eq!(header("diff --git b/x b/x\n"), None);
    }

    #[test]
    fn header_names_must_read_a_then_b() {
        let ab = |line: &str| {
            let rest = line.strip_prefix("diff --git ").unwrap();
            has_ab_names(rest.as_bytes(), line_len(rest.as_bytes()))
        };
        assert!(ab("diff --git a/x b/x\n"));
        assert!(ab("diff --git a/old name b/new name\n"));
        assert!(ab("diff --git \"a/t\\tab\" \"b/t\\tab\"\n"));
        assert!(ab("diff --git a/x \"b/x\"\n"));
        assert!(ab("diff --git \"a/x\" b/x\n"));
        assert!(!ab("diff --git a/new.txt a/new.txt\n"));
        assert!(!ab("diff --git b/x.txt b/x.txt\n"));
        assert!(!ab("diff --git top.txt top.txt\n"));
        assert!(!ab("diff --git a/x.b/y a/x.b/y\n"));
        assert!(!ab("diff --git \"a/x\"b/x\n"));
    }

    #[test]
    fn names_from_minus_plus_lines() {
        let n = |s: &str| {
            find_name(s.as_bytes(), None, Prefix::New, Terminator::Tab)
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            n("b/dir with space/x.txt\n").as_deref(),
            Some("dir with space/x.txt")
        );
        assert_eq!(n("b/x.txt\t2020-01-01\n").as_deref(), Some("x.txt"));
        assert_eq!(n("b/x.txt\r\n").as_deref(), Some("x.txt"));
        assert_eq!(n("b/x//y\n").as_deref(), Some("x/y"));
        assert_eq!(n("\"b/t\\tab\"\n").as_deref(), Some("t\tab"));
        assert_eq!(n("src/a/b.rs\n").as_deref(), Some("src/a/b.rs"));
        let rename = find_name(b"a/x y\tz\n", None, Prefix::None, Terminator::LineEnd).unwrap();
        assert_eq!(rename, b"a/x y\tz");
    }

    #[test]
    fn traditional_names_drop_timestamps() {
        let t = |s: &str| {
            String::from_utf8(find_name_traditional(s.as_bytes(), None, Prefix::Old).unwrap())
                .unwrap()
        };
        assert_eq!(t("a/x.txt\t2024-01-02 10:11:12.123456789 +0100\n"), "x.txt");
        assert_eq!(t("a/my file.txt 2024-01-02 10:11:12\n"), "my file.txt");
        assert_eq!(t("a/x.txt\n"), "x.txt");
        assert!(has_epoch_timestamp(
            b"a/x\t1970-01-01 00:00:00.000000000 +0000\n"
        ));
        assert!(has_epoch_timestamp(b"a/x\t1969-12-31 19:00:00 -0500\n"));
        assert!(!has_epoch_timestamp(b"a/x\t2024-01-01 00:00:00 +0000\n"));
    }

    #[test]
    fn numbers_behave_like_strtoul() {
        assert_eq!(strtoul(b"100644\n", 8), (0o100644, 6));
        assert_eq!(strtoul(b"  12x", 10), (12, 4));
        assert_eq!(strtoul(b"x", 10), (0, 0));
        assert_eq!(strtoul(b"99999999999999999999999", 10).0, u64::MAX);
        assert!(is_dev_null(b"/dev/null\n"));
        assert!(!is_dev_null(b"/dev/nullx\n"));
    }
}
