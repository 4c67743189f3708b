//! How the log's rows hold events. A row holds one event, or several consecutive events of one
//! run with the same SSE name (what one writer batch had of that run): `seq` is the first
//! event's number, `data` the events' payloads one after another, and `sizes` their lengths in
//! bytes, comma-separated (`entity::run_events::{join, split}`). A row of one event has no
//! `sizes`, which is also how every row looked before rows could hold more than one, so older
//! logs read as they are.
//!
//! Why: under load a batch holds several to hundreds of a run's events, and a row per event
//! cost two B-tree inserts each (the table and its key), most of the log's CPU on SQLite, and
//! a heap tuple and an index entry each in PostgreSQL.
use std::borrow::Cow;

use entity::run_events;

use super::StoredEvent;

/// The columns of one row, ready to be bound.
#[derive(Debug, PartialEq, Eq)]
pub struct EncodedRow<'a> {
    pub seq: i64,
    pub event: &'a str,
    pub data: Cow<'a, str>,
    pub sizes: Option<String>,
}

/// One row for `events`: consecutive events of one run with the same name (the caller's
/// grouping, see `log_writer::chunks`). Panics on an empty slice, which no caller passes.
pub fn encode<'a>(events: &[&'a StoredEvent]) -> EncodedRow<'a> {
    let first = events[0];
    if let [only] = events {
        return EncodedRow {
            seq: only.seq,
            event: &only.event,
            data: Cow::Borrowed(&only.data),
            sizes: None,
        };
    }
    debug_assert!((events.iter().enumerate())
        .all(|(i, e)| e.seq == first.seq + i as i64 && e.event == first.event));
    let (data, sizes) = run_events::join(events.iter().map(|e| e.data.as_str()));
    EncodedRow {
        seq: first.seq,
        event: &first.event,
        data: Cow::Owned(data),
        sizes: Some(sizes),
    }
}

/// The events of one row, in order.
pub fn decode(
    seq: i64,
    event: &str,
    data: String,
    sizes: Option<&str>,
) -> Result<Vec<StoredEvent>, run_events::MalformedRow> {
    if sizes.is_none() {
        // The common row of one event keeps its string.
        return Ok(vec![StoredEvent {
            seq,
            event: event.to_string(),
            data,
        }]);
    }
    let payloads = run_events::split(seq, &data, sizes)?;
    Ok((payloads.into_iter().zip(seq..))
        .map(|(payload, seq)| StoredEvent {
            seq,
            event: event.to_string(),
            data: payload.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, data: &str) -> StoredEvent {
        StoredEvent {
            seq,
            event: "message".into(),
            data: data.into(),
        }
    }

    #[test]
    fn one_event_is_a_row_as_rows_always_were() {
        let only = event(7, r#"{"a":1}"#);
        let row = encode(&[&only]);
        assert_eq!(row.seq, 7);
        assert_eq!(row.data, r#"{"a":1}"#);
        assert_eq!(row.sizes, None);
        assert!(
            matches!(row.data, Cow::Borrowed(_)),
            "no copy for one event"
        );
        let back = decode(7, "message", row.data.into_owned(), None).expect("decode");
        assert_eq!(back, vec![only]);
    }

    #[test]
    fn several_events_come_back_exactly_as_they_went_in() {
        // Multi-byte characters, whitespace and newlines inside payloads: lengths are bytes.
        let events = [
            event(3, r#"{"text":"héllo ✓"}"#),
            event(4, "{\n  \"spaced\" : [1, 2]\n}"),
            event(5, ""),
            event(6, r#"{"last":"🙂"}"#),
        ];
        let refs: Vec<&StoredEvent> = events.iter().collect();
        let row = encode(&refs);
        assert_eq!(row.seq, 3);
        assert_eq!(row.sizes.as_deref(), Some("21,23,0,15"));
        assert_eq!(run_events::event_count(row.sizes.as_deref()), 4);
        let back =
            decode(3, row.event, row.data.into_owned(), row.sizes.as_deref()).expect("decode");
        assert_eq!(back, events);
    }

    #[test]
    fn sizes_that_do_not_describe_the_data_are_an_error_not_a_panic() {
        for (sizes, data) in [
            ("3,x", "abcdef"),
            ("3,4", "abcdef"),
            ("3,2", "abcdef"),
            ("1", "é"),
            ("", "abc"),
            ("-1", "abc"),
            ("99999999999999999999999", "abc"),
        ] {
            let result = decode(1, "message", data.into(), Some(sizes));
            assert!(result.is_err(), "{sizes:?} over {data:?}: {result:?}");
        }
    }
}
