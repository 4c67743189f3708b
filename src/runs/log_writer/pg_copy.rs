//! A batch of log rows in PostgreSQL's binary `COPY` format, for `COPY ... FROM STDIN`.
//!
//! Why COPY: the server reads the rows as they stream in. The `INSERT ... UNNEST` of six
//! arrays made it build each array, copy it into the function scan's result and only then
//! form the rows, which was a large part of its CPU per event (BENCHMARKS.md, round 2, fifth
//! part). A `COPY` takes two round trips, so only batches of `sql_store::COPY_FROM_EVENTS` or
//! more go this way. The format: a header, then per row a field count and each field as a length and its
//! bytes in the type's binary form (-1 for NULL), then a trailer.
use super::chunks::{self, RowBound};
use super::Append;

pub(super) const COPY_IN: &str = "COPY run_events (run_id, seq, event, data, sizes, created_at) \
     FROM STDIN (FORMAT binary)";

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// run_id, seq, event, data, sizes, created_at.
const FIELDS: i16 = 6;
/// 2000-01-01T00:00:00Z, PostgreSQL's epoch for timestamps, in microseconds since Unix's.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A field the format cannot carry: its length is an `i32`.
#[derive(Debug)]
pub(super) struct FieldTooLarge(usize);

impl std::fmt::Display for FieldTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a log row's field of {} bytes is too large", self.0)
    }
}

impl std::error::Error for FieldTooLarge {}

/// The `COPY` data of `rows`: a row of the log per chunk of them (see `chunks`).
pub(super) fn encode(rows: &[Append], bound: RowBound) -> Result<Vec<u8>, FieldTooLarge> {
    let payloads: usize = rows.iter().map(|r| r.event.data.len()).sum();
    let mut out = Vec::with_capacity(SIGNATURE.len() + 10 + payloads + rows.len() * 96);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    out.extend_from_slice(&0i32.to_be_bytes()); // no header extension
    for chunk in chunks::chunks(rows, bound) {
        let row = chunks::encode(chunk);
        out.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut out, Some(chunk[0].live.run_id.as_bytes()))?;
        field(&mut out, Some(&row.seq.to_be_bytes()))?;
        field(&mut out, Some(row.event.as_bytes()))?;
        field(&mut out, Some(row.data.as_bytes()))?;
        field(&mut out, row.sizes.as_ref().map(String::as_bytes))?;
        let created_at = chunk[0].created_at.timestamp_micros() - POSTGRES_EPOCH_MICROS;
        field(&mut out, Some(&created_at.to_be_bytes()))?;
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(out)
}

fn field(out: &mut Vec<u8>, value: Option<&[u8]>) -> Result<(), FieldTooLarge> {
    match value {
        Some(bytes) => {
            let len = i32::try_from(bytes.len()).map_err(|_| FieldTooLarge(bytes.len()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::runs::event_log::StoredEvent;
    use crate::runs::live::{LiveRun, LiveRuns};

    fn append(live: &Arc<LiveRun>, seq: i64, event: &str, data: &str) -> Append {
        Append {
            live: live.clone(),
            event: Arc::new(StoredEvent {
                seq,
                event: event.into(),
                data: data.into(),
            }),
            created_at: Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).unwrap(),
            arrived: std::time::Instant::now(),
        }
    }

    /// Reads the format back: per row, its fields (`None` for NULL).
    fn decode(mut data: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        let mut take = |n: usize| {
            let (head, rest) = data.split_at(n);
            data = rest;
            head.to_vec()
        };
        assert_eq!(take(SIGNATURE.len()), SIGNATURE);
        assert_eq!(take(8), [0; 8], "flags and extension length");
        let mut rows = Vec::new();
        loop {
            let count = i16::from_be_bytes(take(2).try_into().unwrap());
            if count == -1 {
                break;
            }
            let fields = (0..count)
                .map(|_| {
                    let len = i32::from_be_bytes(take(4).try_into().unwrap());
                    (len >= 0).then(|| take(len as usize))
                })
                .collect();
            rows.push(fields);
        }
        assert!(
            take(0).is_empty() && data.is_empty(),
            "nothing after the trailer"
        );
        rows
    }

    #[test]
    fn rows_are_the_chunks_with_their_fields_in_binary_form() {
        let runs = LiveRuns::default();
        let (a, b) = (
            runs.insert("run-a", "app", 16),
            runs.insert("run-b", "app", 16),
        );
        let rows = [
            append(&a, 7, "message", r#"{"a":1}"#),
            append(&a, 8, "message", r#"{"b":"é"}"#),
            append(&b, 1, "done", "{}"),
        ];
        let decoded = decode(&encode(&rows, RowBound::POSTGRES).expect("encodes"));
        let second = 1_000_000i64.to_be_bytes().to_vec();
        assert_eq!(
            decoded,
            [
                vec![
                    Some(b"run-a".to_vec()),
                    Some(7i64.to_be_bytes().to_vec()),
                    Some(b"message".to_vec()),
                    Some(r#"{"a":1}{"b":"é"}"#.as_bytes().to_vec()),
                    Some(b"7,10".to_vec()),
                    Some(second.clone()),
                ],
                vec![
                    Some(b"run-b".to_vec()),
                    Some(1i64.to_be_bytes().to_vec()),
                    Some(b"done".to_vec()),
                    Some(b"{}".to_vec()),
                    None,
                    Some(second),
                ],
            ]
        );
    }
}
