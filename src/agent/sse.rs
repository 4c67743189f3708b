//! An incremental SSE parser for the upstream stream. It works on bytes (so a UTF-8 character
//! split across reads is fine), accepts LF, CRLF and CR line endings, skips comments, and refuses
//! an event larger than the configured maximum instead of buffering without bound.

/// One dispatched event: the `event:` name (if any) and the joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("event exceeds the {max} byte limit")]
    TooLarge { max: usize },
    #[error("event is not valid UTF-8")]
    InvalidUtf8,
}

pub struct SseParser {
    max_event_bytes: usize,
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// A CR ended the previous chunk; a LF at the start of the next one belongs to it.
    pending_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    /// Bytes seen since the last dispatched event (lines plus separators).
    event_bytes: usize,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            pending_cr: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            event_bytes: 0,
        }
    }

    /// Feeds one chunk and returns the events it completed, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        if self.pending_cr {
            self.pending_cr = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', chunk) {
            let is_cr = chunk[pos] == b'\r';
            let mut next = pos + 1;
            if is_cr {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    None => self.pending_cr = true,
                    Some(_) => {}
                }
            }
            // A line that is whole in this chunk is read where it is, not copied first.
            let event = if self.line.is_empty() {
                self.count(pos)?;
                self.process_line(&chunk[..pos])?
            } else {
                self.extend_line(&chunk[..pos])?;
                let line = std::mem::take(&mut self.line);
                let event = self.process_line(&line)?;
                self.line = line;
                self.line.clear();
                event
            };
            out.extend(event);
            chunk = &chunk[next..];
        }
        self.extend_line(chunk)?;
        Ok(out)
    }

    /// Counts `len` more bytes towards the current event's limit.
    fn count(&mut self, len: usize) -> Result<(), SseError> {
        self.event_bytes += len;
        if self.event_bytes > self.max_event_bytes {
            return Err(SseError::TooLarge {
                max: self.max_event_bytes,
            });
        }
        Ok(())
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        self.count(bytes.len())?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event = Some(String::from_utf8_lossy(value).into_owned());
            }
            // id and retry carry nothing the gateway uses; unknown fields are ignored per spec.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Result<Option<SseEvent>, SseError> {
        self.event_bytes = 0;
        let event = self.event.take();
        if !self.has_data {
            return Ok(None);
        }
        self.has_data = false;
        let data =
            String::from_utf8(std::mem::take(&mut self.data)).map_err(|_| SseError::InvalidUtf8)?;
        Ok(Some(SseEvent { event, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(
                parser
                    .push(chunk)
                    .expect("parse")
                    .into_iter()
                    .map(|e| e.data),
            );
        }
        out
    }

    #[test]
    fn lf_crlf_and_cr_endings() {
        assert_eq!(
            parse_all(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\r"]),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn split_anywhere_including_utf8_and_crlf() {
        let whole =
            "data: {\"x\":\"h\u{e9}llo \u{1f600}\"}\r\n\r\n: comment\n\ndata: 2\n\n".as_bytes();
        for split in 0..whole.len() {
            let got = parse_all(&[&whole[..split], &whole[split..]]);
            assert_eq!(
                got,
                vec!["{\"x\":\"h\u{e9}llo \u{1f600}\"}", "2"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn comments_and_multiline_data() {
        assert_eq!(
            parse_all(&[b": ping\n\ndata: a\ndata: b\nid: 3\n\n"]),
            vec!["a\nb"]
        );
    }

    #[test]
    fn event_name_is_kept() {
        let mut parser = SseParser::new(100);
        let events = parser.push(b"event: done\ndata: {}\n\n").expect("parse");
        assert_eq!(events[0].event.as_deref(), Some("done"));
    }

    #[test]
    fn oversized_event_is_refused_without_buffering_it_all() {
        let mut parser = SseParser::new(16);
        assert!(parser.push(b"data: 0123456789").is_ok());
        assert_eq!(
            parser.push(b"0123456789"),
            Err(SseError::TooLarge { max: 16 })
        );
    }

    #[test]
    fn size_limit_resets_per_event() {
        let mut parser = SseParser::new(16);
        for _ in 0..100 {
            assert_eq!(parser.push(b"data: 012345\n\n").expect("fits").len(), 1);
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut parser = SseParser::new(100);
        assert_eq!(
            parser.push(b"data: \xff\xfe\n\n"),
            Err(SseError::InvalidUtf8)
        );
    }
}
