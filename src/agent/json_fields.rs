//! A JSON object read as its fields' byte ranges, in one validating pass.
//!
//! Every agent event is checked to be JSON by the grammar serde_json accepts (the same escapes,
//! control characters, numbers and literals; no depth limit inside a value, as serde_json's own
//! skipping has none), but nothing the gateway does not read is decoded, copied or allocated.
//! Reading the event through serde_json's visitors cost ≈ 9,400 instructions per relayed event,
//! most of it per-field machinery rather than bytes (BENCHMARKS.md, round 2, fourth part).
//! The tests check acceptance against serde_json itself on generated and mutated documents.
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

/// A field: its key (unescaped) and the byte range of its JSON value in the source.
#[derive(Debug, Clone)]
pub struct Field {
    pub key: FieldKey,
    pub value: Range<usize>,
}

/// A key without escapes (nearly all) is where it is in the source, between its quotes; one
/// with escapes is kept unescaped.
#[derive(Debug, Clone)]
pub enum FieldKey {
    Span(Range<usize>),
    Unescaped(Box<str>),
}

impl Field {
    pub fn key<'a>(&'a self, source: &'a str) -> &'a str {
        match &self.key {
            FieldKey::Span(range) => &source[range.clone()],
            FieldKey::Unescaped(key) => key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Valid JSON, but not an object.
    NotAnObject,
    /// Not JSON: what was wrong, and the byte offset where it was found.
    Invalid { reason: &'static str, at: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::NotAnObject => f.write_str("not a JSON object"),
            Error::Invalid { reason, at } => write!(f, "{reason} at byte {at}"),
        }
    }
}

/// The fields of a document that is one JSON object, in their order, without the field named
/// `nested`; and, when that field's value is an object, its fields (`None` when it is absent
/// or not an object). A repeated key keeps its last value, as a JSON object parsed into a map
/// would.
pub fn read_object(source: &str, nested: &str) -> Result<(Vec<Field>, Option<Vec<Field>>), Error> {
    let mut scanner = Scanner {
        source,
        bytes: source.as_bytes(),
        pos: 0,
    };
    let read = match scanner.peek() {
        Some(b'{') => scanner.object(Some(nested))?,
        Some(_) => {
            scanner.value()?;
            scanner.end()?;
            return Err(Error::NotAnObject);
        }
        None => return scanner.fail("end of input, expected a value"),
    };
    scanner.end()?;
    Ok(read)
}

/// The text of a JSON string value, borrowed when it has no escapes; `None` for any other value.
pub fn string_value(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    // No escape (nor anything else special) inside: the text is the value as it stands.
    if find_special(inner.as_bytes()) == inner.len() {
        return Some(inner.into());
    }
    serde_json::from_str::<String>(raw).ok().map(Into::into)
}

struct Scanner<'a> {
    source: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, Error> {
        Err(Error::Invalid {
            reason,
            at: self.pos,
        })
    }

    /// The next byte that is not whitespace, without taking it.
    fn peek(&mut self) -> Option<u8> {
        // Compact JSON, as agents send it, has no whitespace: no loop for it.
        match self.bytes.get(self.pos) {
            Some(&byte) if byte > b' ' => return Some(byte),
            _ => {}
        }
        while let Some(&byte) = self.bytes.get(self.pos) {
            match byte {
                b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                _ => return Some(byte),
            }
        }
        None
    }

    /// Only whitespace may follow the document.
    fn end(&mut self) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("trailing characters"),
        }
    }

    /// At `{`: the object's fields (see [`read_object`] for `nested`).
    fn object(&mut self, nested: Option<&str>) -> Result<(Vec<Field>, Option<Vec<Field>>), Error> {
        self.pos += 1;
        let mut fields = FieldList::default();
        let mut inner = None;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok((fields.fields, inner));
        }
        loop {
            let key = self.key()?;
            let name = match &key {
                FieldKey::Span(range) => &self.bytes[range.clone()],
                FieldKey::Unescaped(key) => key.as_bytes(),
            };
            if nested.is_some_and(|nested| nested.as_bytes() == name) {
                inner = match self.peek() {
                    Some(b'{') => Some(self.object(None)?.0),
                    _ => {
                        self.value()?;
                        None
                    }
                };
            } else {
                // Strings and nulls (nearly every field's value) without `value`'s set-up.
                let start = match self.peek() {
                    Some(b'"') => {
                        let start = self.pos;
                        self.string()?;
                        start
                    }
                    Some(b'n') => {
                        let start = self.pos;
                        self.literal(b"null")?;
                        start
                    }
                    _ => {
                        let start = self.pos;
                        self.value()?;
                        start
                    }
                };
                fields.push(
                    self.source,
                    Field {
                        key,
                        value: start..self.pos,
                    },
                );
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok((fields.fields, inner));
                }
                Some(_) => return self.fail("expected `,` or `}`"),
                None => return self.fail("end of input inside an object"),
            }
        }
    }

    /// A key and its colon, unescaped.
    fn key(&mut self) -> Result<FieldKey, Error> {
        let (quoted, escaped) = self.key_span()?;
        Ok(match escaped {
            false => FieldKey::Span(quoted.start + 1..quoted.end - 1),
            // Rare: serde_json unescapes it, and refuses what cannot be text (a lone surrogate).
            true => match serde_json::from_str::<String>(&self.source[quoted]) {
                Ok(key) => FieldKey::Unescaped(key.into()),
                Err(_) => return self.fail("invalid escape in a key"),
            },
        })
    }

    /// A key and its colon, only checked (keys inside a skipped value are not unescaped, as
    /// serde_json does not unescape them either): the key with its quotes, and whether it has
    /// escapes.
    fn key_span(&mut self) -> Result<(Range<usize>, bool), Error> {
        match self.peek() {
            Some(b'"') => {}
            Some(_) => return self.fail("expected a string key"),
            None => return self.fail("end of input inside an object"),
        }
        let start = self.pos;
        let escaped = self.string()?;
        let quoted = start..self.pos;
        match self.peek() {
            Some(b':') => self.pos += 1,
            Some(_) => return self.fail("expected `:`"),
            None => return self.fail("end of input inside an object"),
        }
        Ok((quoted, escaped))
    }

    /// At `"`: moves past the string. Whether it has escapes.
    fn string(&mut self) -> Result<bool, Error> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.pos += find_special(&self.bytes[self.pos..]);
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => return self.fail("control character in a string"),
                None => return self.fail("end of input inside a string"),
            }
        }
    }

    /// At `\`: moves past the escape.
    fn escape(&mut self) -> Result<(), Error> {
        match self.bytes.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
            Some(b'u') => {
                let hex = self.bytes.get(self.pos + 2..self.pos + 6);
                if !hex.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return self.fail("invalid \\u escape");
                }
                self.pos += 6;
            }
            _ => return self.fail("invalid escape"),
        }
        Ok(())
    }

    /// Moves past one value of any depth, without recursion.
    fn value(&mut self) -> Result<(), Error> {
        let mut open = Nesting::default();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.string()?;
                }
                Some(bracket @ (b'{' | b'[')) => {
                    let object = bracket == b'{';
                    self.pos += 1;
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.pos += 1;
                    } else {
                        open.push(object);
                        if object {
                            self.key_span()?;
                        }
                        continue;
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return self.fail("expected a value"),
                None => return self.fail("end of input, expected a value"),
            }
            // After a value: close what ends here, then take the next element's comma.
            loop {
                let Some(in_object) = open.innermost() else {
                    return Ok(());
                };
                match (self.peek(), in_object) {
                    (Some(b','), _) => {
                        self.pos += 1;
                        if in_object {
                            self.key_span()?;
                        }
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        open.pop();
                    }
                    (Some(_), _) => return self.fail("expected `,` or the container's end"),
                    (None, _) => return self.fail("end of input inside a container"),
                }
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        if !self.bytes[self.pos..].starts_with(word) {
            return self.fail("invalid literal");
        }
        self.pos += word.len();
        Ok(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), Error> {
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => {
                self.pos += 1;
                if self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    return self.fail("a number with a leading zero");
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.fail("invalid number"),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                return self.fail("invalid number");
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if !self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                return self.fail("invalid number");
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }
}

/// The offset of the first `"`, `\` or control character (or the length). Every byte of every
/// string goes through here (the agent's text is most of an event), so it looks at sixteen
/// bytes per step with SSE2, which every x86-64 processor has; other processors, eight.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn find_special(bytes: &[u8]) -> usize {
    let mut offset = 0;
    while let Some(block) = bytes.get(offset..offset + 16) {
        // SAFETY: the build enables SSE2 (see the `cfg`), which every x86-64 processor has.
        let found = unsafe { special_bytes(block.try_into().unwrap_or(&[0; 16])) };
        if found != 0 {
            return offset + found.trailing_zeros() as usize;
        }
        offset += 16;
    }
    offset + find_special_by_words(&bytes[offset..])
}

/// A bit per byte of `block` that is `"`, `\` or a control character.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn special_bytes(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: `block` is 16 readable bytes, and `loadu` takes any alignment.
    let block = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
    let quote = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'\\' as i8));
    // A control byte (below 0x20) is its own minimum with 0x1f.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(block, _mm_set1_epi8(0x1f)), block);
    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn find_special(bytes: &[u8]) -> usize {
    find_special_by_words(bytes)
}

/// [`find_special`] eight bytes per step, by the zero-byte test serde_json itself uses
/// (Mycroft's). A flagged byte above a flagged byte may be a false positive; the lowest one
/// never is.
fn find_special_by_words(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let found = (control | quote | backslash) & HIGH;
        if found != 0 {
            return offset + found.trailing_zeros() as usize / 8;
        }
        offset += 8;
    }
    let tail = chunks.remainder();
    offset
        + (tail.iter())
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(tail.len())
}

/// The containers a skipped value is inside: a bit per level (1 = object), 128 levels inline.
#[derive(Default)]
struct Nesting {
    levels: u128,
    depth: usize,
    outer: Vec<u128>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth > 0 && self.depth.is_multiple_of(128) {
            self.outer.push(std::mem::take(&mut self.levels));
        }
        self.levels = self.levels << 1 | u128::from(object);
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.levels >>= 1;
        self.depth -= 1;
        if self.depth > 0 && self.depth.is_multiple_of(128) {
            self.levels = self.outer.pop().unwrap_or_default();
        }
    }

    /// Whether the innermost open container is an object; `None` at the top.
    fn innermost(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.levels & 1 == 1)
    }
}

/// Fields in order, a repeated key replacing the earlier value.
#[derive(Default)]
struct FieldList {
    fields: Vec<Field>,
    /// A key whose bit is not set yet cannot be a repeat: no search for nearly every key.
    seen: u64,
    /// Agents send a handful of fields; a hostile event with thousands gets an index.
    index: Option<HashMap<Box<str>, usize>>,
}

const INDEX_FROM: usize = 16;

impl FieldList {
    fn push(&mut self, source: &str, field: Field) {
        let key = field.key(source);
        let first = usize::from(key.as_bytes().first().copied().unwrap_or(0));
        let bit = 1u64 << ((key.len() + 7 * first) % 64);
        let earlier = match &self.index {
            Some(index) => index.get(key).copied(),
            None if self.seen & bit == 0 => None,
            None => self.fields.iter().position(|f| f.key(source) == key),
        };
        self.seen |= bit;
        if let Some(i) = earlier {
            self.fields[i].value = field.value;
            return;
        }
        if self.index.is_none() && self.fields.len() == INDEX_FROM {
            let index = (self.fields.iter().enumerate())
                .map(|(i, f)| (f.key(source).into(), i))
                .collect();
            self.index = Some(index);
        }
        if let Some(index) = &mut self.index {
            index.insert(key.into(), self.fields.len());
        }
        if self.fields.capacity() == 0 {
            self.fields.reserve(12);
        }
        self.fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::value::RawValue;

    fn fields(source: &str, list: &[Field]) -> Vec<(String, String)> {
        (list.iter())
            .map(|f| {
                (
                    f.key(source).to_string(),
                    source[f.value.clone()].to_string(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        (list.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Both searches against the byte-by-byte definition: every length up to four blocks, the
    /// special byte at every position, with bytes that are special in neither (`#`, `]`, 0x7f,
    /// 0x80..) and the nearest ones that are (0x1f, 0x00) around it.
    #[test]
    fn the_block_searches_find_the_first_special_byte() {
        let naive = |bytes: &[u8]| {
            (bytes.iter())
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len())
        };
        let mut rng = StdRng::seed_from_u64(16);
        let plain = [b'a', b'#', b'!', b']', b' ', 0x7f, 0x80, 0xff, b'[', b'~'];
        let special = [b'"', b'\\', 0x00, 0x1f, b'\n'];
        for len in 0..=64 {
            for at in 0..=len {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| plain[rng.gen_range(0..plain.len())])
                    .collect();
                if at < len {
                    bytes[at] = special[rng.gen_range(0..special.len())];
                    // Later special bytes must not change the answer.
                    if rng.gen_bool(0.5) && at + 1 < len {
                        let later = rng.gen_range(at + 1..len);
                        bytes[later] = special[rng.gen_range(0..special.len())];
                    }
                }
                assert_eq!(find_special(&bytes), naive(&bytes), "{bytes:?}");
                assert_eq!(find_special_by_words(&bytes), naive(&bytes), "{bytes:?}");
            }
        }
    }

    #[test]
    fn fields_and_the_nested_object_in_order() {
        let source = r#" {"a" : 1, "message" : {"k":[1,{"x":"}"}], "e\u0041":"v\"" }, "b":"\\"} "#;
        let (top, message) = read_object(source, "message").expect("valid");
        assert_eq!(fields(source, &top), pairs(&[("a", "1"), ("b", r#""\\""#)]));
        assert_eq!(
            fields(source, &message.expect("an object")),
            pairs(&[("k", r#"[1,{"x":"}"}]"#), ("eA", r#""v\"""#)])
        );
    }

    #[test]
    fn a_nested_value_that_is_not_an_object_is_none_and_the_last_one_wins() {
        let (_, message) = read_object(r#"{"message":[1]}"#, "message").expect("valid");
        assert!(message.is_none());
        let (_, message) = read_object(r#"{"message":{"a":1},"message":2}"#, "message").expect("v");
        assert!(message.is_none());
        let source = r#"{"message":2,"message":{"a":1}}"#;
        let (_, message) = read_object(source, "message").expect("valid");
        assert_eq!(
            fields(source, &message.expect("object")),
            pairs(&[("a", "1")])
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_place_and_its_last_value() {
        let many: String = (0..100).map(|i| format!(r#""k{}":{i},"#, i % 40)).collect();
        let source = format!(r#"{{"x":1,{many}"x":2}}"#);
        let (top, _) = read_object(&source, "message").expect("valid");
        assert_eq!(top.len(), 41);
        assert_eq!(
            fields(&source, &top[0..2]),
            pairs(&[("x", "2"), ("k0", "80")])
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(read_object("[1,2]", "m").unwrap_err(), Error::NotAnObject);
        assert_eq!(read_object(" 5 ", "m").unwrap_err(), Error::NotAnObject);
        let error = read_object(r#"{"a":tru}"#, "m").unwrap_err();
        assert_eq!(error.to_string(), "invalid literal at byte 5");
        let error = read_object(r#"{"a":1} x"#, "m").unwrap_err();
        assert_eq!(error.to_string(), "trailing characters at byte 8");
        let error = read_object(r#"{"\ud800":1}"#, "m").unwrap_err();
        assert_eq!(error.to_string(), "invalid escape in a key at byte 10");
    }

    #[test]
    fn deep_nesting_is_skipped_without_recursion() {
        let deep = format!(
            r#"{{"a":{}1{}}}"#,
            "[{\"b\":".repeat(5_000),
            "}]".repeat(5_000)
        );
        let (top, _) = read_object(&deep, "m").expect("valid");
        assert_eq!(top[0].value.len(), deep.len() - 6);
        let unbalanced = format!(r#"{{"a":{}1{}}}"#, "[{\"b\":".repeat(300), "]}".repeat(300));
        assert!(read_object(&unbalanced, "m").is_err());
    }

    #[test]
    fn string_values() {
        assert_eq!(string_value(r#""plain""#).as_deref(), Some("plain"));
        assert_eq!(string_value(r#""a\nb\u00e9""#).as_deref(), Some("a\nbé"));
        assert_eq!(string_value("null"), None);
        assert_eq!(string_value("12"), None);
    }

    /// What serde_json says of a document: whether it is valid, and if it is an object, its
    /// fields by key (the last value of a repeated key).
    fn oracle(source: &str) -> Option<Option<HashMap<String, String>>> {
        serde_json::from_str::<&RawValue>(source).ok()?;
        let map = serde_json::from_str::<HashMap<String, &RawValue>>(source).ok();
        if map.is_none() && source.trim_start().starts_with('{') {
            // Valid JSON, but a top-level key is not text (a lone surrogate): serde_json
            // refuses it when it reads the key, and so do we.
            return None;
        }
        Some(map.map(|map| {
            (map.into_iter())
                .map(|(k, v)| (k, v.get().to_string()))
                .collect()
        }))
    }

    fn ours(source: &str) -> Option<Option<HashMap<String, String>>> {
        match read_object(source, "\u{0}none") {
            Ok((top, _)) => Some(Some(fields(source, &top).into_iter().collect())),
            Err(Error::NotAnObject) => Some(None),
            Err(Error::Invalid { .. }) => None,
        }
    }

    /// A random document: mostly valid JSON with odd spacing, escapes and numbers.
    fn document(rng: &mut StdRng, depth: u32, out: &mut String) {
        let ws = |rng: &mut StdRng, out: &mut String| {
            for _ in 0..rng.gen_range(0..3) {
                out.push([' ', '\n', '\r', '\t'][rng.gen_range(0..4)]);
            }
        };
        let string = |rng: &mut StdRng, out: &mut String| {
            out.push('"');
            for _ in 0..rng.gen_range(0..20) {
                let pieces = [
                    "a",
                    "é",
                    "😀",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\n",
                    "\\u00e9",
                    "\\uD83D\\uDE00",
                    " ",
                    "x",
                    "{",
                    "]",
                    ":",
                    ",",
                ];
                out.push_str(pieces[rng.gen_range(0..pieces.len())]);
            }
            out.push('"');
        };
        ws(rng, out);
        let choice = if depth > 6 {
            rng.gen_range(0..6)
        } else {
            rng.gen_range(0..9)
        };
        match choice {
            0 => string(rng, out),
            1 => {
                let numbers = [
                    "0",
                    "-0",
                    "12",
                    "-3.25",
                    "1e9",
                    "2E-3",
                    "0.5e+2",
                    "123456789012345678901234567890",
                ];
                out.push_str(numbers[rng.gen_range(0..numbers.len())]);
            }
            2 => out.push_str("true"),
            3 => out.push_str("false"),
            4 => out.push_str("null"),
            5 => string(rng, out),
            6 | 7 => {
                out.push('{');
                for i in 0..rng.gen_range(0..5) {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(rng, out);
                    if rng.gen_bool(0.3) {
                        out.push_str(
                            ["\"k\"", "\"k\"", "\"\\u006b\"", "\"m\""][rng.gen_range(0..4)],
                        );
                    } else {
                        string(rng, out);
                    }
                    ws(rng, out);
                    out.push(':');
                    document(rng, depth + 1, out);
                }
                ws(rng, out);
                out.push('}');
            }
            _ => {
                out.push('[');
                for i in 0..rng.gen_range(0..5) {
                    if i > 0 {
                        out.push(',');
                    }
                    document(rng, depth + 1, out);
                }
                ws(rng, out);
                out.push(']');
            }
        }
        ws(rng, out);
    }

    /// Breaks a document in one place: a byte inserted, removed or replaced by one of those
    /// that matter to JSON's grammar.
    fn mutate(rng: &mut StdRng, source: &str) -> String {
        let mut bytes = source.as_bytes().to_vec();
        let interesting = b"{}[]\",:\\u0123456789-+.eEtrufalsn \n\x01\x1fx";
        let at = rng.gen_range(0..=bytes.len());
        let byte = interesting[rng.gen_range(0..interesting.len())];
        match rng.gen_range(0..3) {
            0 => bytes.insert(at, byte),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ if at < bytes.len() => bytes[at] = byte,
            _ => bytes.push(byte),
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn accepts_exactly_what_serde_json_accepts() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let (mut valid, mut invalid) = (0, 0);
        for case in 0..40_000 {
            let mut source = String::new();
            if rng.gen_bool(0.7) {
                // Most cases are objects, as events are.
                source.push('{');
                source.push_str(r#""m":"#);
                document(&mut rng, 0, &mut source);
                source.push('}');
            } else {
                document(&mut rng, 0, &mut source);
            }
            let original = source.clone();
            for _ in 0..rng.gen_range(0..3) {
                source = mutate(&mut rng, &source);
            }
            let expected = oracle(&source);
            assert_eq!(
                ours(&source),
                expected,
                "case {case}: {source:?} (from {original:?})"
            );
            match expected {
                Some(_) => valid += 1,
                None => invalid += 1,
            }
        }
        // Both sides of the boundary are exercised, not just one.
        assert!(
            valid > 10_000 && invalid > 10_000,
            "{valid} valid, {invalid} invalid"
        );
    }
}
