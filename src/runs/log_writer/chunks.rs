//! Which of a batch's events share a row of the log (see `event_log::rows`): consecutive events
//! of one run with the same name, up to the store's [`RowBound`]. A batch is first grouped by
//! run, so that a run's events are next to each other however the runs interleaved in the
//! queue.
//!
//! Chunking is a function of the rows and the store alone, so a chunk written again on its own
//! (a retry, the failure path in `batches::commit`) is the same row with the same key, and a
//! row that committed already is seen as a duplicate.
use std::collections::HashMap;
use std::sync::Arc;

use super::Append;
use crate::runs::event_log::rows::{self, EncodedRow};
use crate::runs::event_log::StoredEvent;
use crate::runs::live::LiveRun;

/// The most a row's `data` and `sizes` may hold together (a single larger event has a row of
/// its own). A resume from inside a row reads the whole row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowBound(pub usize);

impl RowBound {
    /// SQLite keeps a large row's bytes in a chain of overflow pages beside its B-tree cell,
    /// and its cost is per row (two B-tree inserts): rows may be large.
    pub(super) const SQLITE: Self = Self(64 << 10);
    /// PostgreSQL moves a row larger than a page into its TOAST table, about 2 KB per chunk,
    /// each chunk a heap tuple of its own with an index entry: most of the server's CPU per
    /// logged event in a burst (BENCHMARKS.md, round 2, fifth part). Rows stay under a page
    /// instead (`run_events.toast_tuple_target` is the most a page takes, 8,160 bytes),
    /// leaving room for the row's other columns and its tuple header.
    pub(super) const POSTGRES: Self = Self(7_900);

    /// What an event takes of a row: its payload and its entry in `sizes` (digits and comma).
    fn charge(data: &str) -> usize {
        let digits = data.len().checked_ilog10().unwrap_or(0) as usize + 1;
        data.len() + digits + 1
    }
}

/// `batch` with each run's rows together, runs in the order they first appear, each run's
/// rows in their order.
pub(super) fn group_by_run(batch: Vec<Append>) -> Vec<Append> {
    if batch
        .windows(2)
        .all(|w| Arc::ptr_eq(&w[0].live, &w[1].live))
    {
        return batch;
    }
    let mut runs: Vec<Vec<Append>> = Vec::new();
    let mut index: HashMap<*const LiveRun, usize> = HashMap::new();
    let rows = batch.len();
    for row in batch {
        let at = *index.entry(Arc::as_ptr(&row.live)).or_insert_with(|| {
            runs.push(Vec::new());
            runs.len() - 1
        });
        runs[at].push(row);
    }
    let mut grouped = Vec::with_capacity(rows);
    for run in runs {
        grouped.extend(run);
    }
    grouped
}

/// The chunks of `rows`, in order; together they are `rows`.
pub(super) fn chunks(rows: &[Append], bound: RowBound) -> impl Iterator<Item = &[Append]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let mut bytes = RowBound::charge(&first.event.data);
        let mut len = 1;
        for row in &rest[1..] {
            let previous = &rest[len - 1];
            bytes += RowBound::charge(&row.event.data);
            let joins = Arc::ptr_eq(&row.live, &first.live)
                && row.event.event == first.event.event
                && row.event.seq == previous.event.seq + 1
                && bytes <= bound.0;
            if !joins {
                break;
            }
            len += 1;
        }
        let (chunk, after) = rest.split_at(len);
        rest = after;
        Some(chunk)
    })
}

/// The row that holds `chunk`.
pub(super) fn encode(chunk: &[Append]) -> EncodedRow<'_> {
    match chunk {
        [only] => rows::encode(&[&*only.event]),
        _ => {
            let events: Vec<&StoredEvent> = chunk.iter().map(|row| &*row.event).collect();
            rows::encode(&events)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::live::LiveRuns;

    fn row(live: &Arc<LiveRun>, seq: i64, event: &str, bytes: usize) -> Append {
        Append {
            live: live.clone(),
            event: Arc::new(StoredEvent {
                seq,
                event: event.into(),
                data: "x".repeat(bytes),
            }),
            created_at: chrono::Utc::now(),
            arrived: std::time::Instant::now(),
        }
    }

    fn shape(rows: &[Append]) -> Vec<(String, i64, usize)> {
        chunks(rows, RowBound::SQLITE)
            .map(|c| (c[0].live.run_id.clone(), c[0].event.seq, c.len()))
            .collect()
    }

    #[test]
    fn interleaved_runs_become_one_row_each() {
        let runs = LiveRuns::default();
        let (a, b) = (runs.insert("a", "app", 16), runs.insert("b", "app", 16));
        let batch = (1..=3)
            .flat_map(|seq| {
                [
                    row(&a, seq, "message", 10),
                    row(&b, seq + 10, "message", 10),
                ]
            })
            .collect();
        let grouped = group_by_run(batch);
        let seqs: Vec<i64> = grouped.iter().map(|r| r.event.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 11, 12, 13]);
        assert_eq!(shape(&grouped), [("a".into(), 1, 3), ("b".into(), 11, 3)]);
    }

    #[test]
    fn a_row_ends_at_another_name_a_gap_or_its_size() {
        let runs = LiveRuns::default();
        let a = runs.insert("a", "app", 16);
        let half = RowBound::SQLITE.0 / 2 - 8;
        let rows = vec![
            row(&a, 1, "message", 10),
            row(&a, 2, "message", 10),
            row(&a, 3, "error", 10),
            row(&a, 4, "done", 10),
            row(&a, 6, "message", 10),
            row(&a, 7, "message", half),
            row(&a, 8, "message", half),
            row(&a, 9, "message", RowBound::SQLITE.0 * 2),
            row(&a, 10, "message", 1),
        ];
        let starts: Vec<(i64, usize)> = shape(&rows).into_iter().map(|(_, s, n)| (s, n)).collect();
        assert_eq!(
            starts,
            [(1, 2), (3, 1), (4, 1), (6, 2), (8, 1), (9, 1), (10, 1)]
        );
    }

    /// The bound holds for what is stored: the payloads and the `sizes` list together.
    #[test]
    fn a_row_of_several_events_holds_at_most_the_bound() {
        let runs = LiveRuns::default();
        let a = runs.insert("a", "app", 16);
        let lengths = [1, 9, 10, 99, 100, 700, 999, 1000, 4000, 7000];
        let rows: Vec<Append> = (1..=2000)
            .map(|seq| {
                row(
                    &a,
                    seq,
                    "message",
                    lengths[seq as usize * 7 % lengths.len()],
                )
            })
            .collect();
        for bound in [RowBound::POSTGRES, RowBound::SQLITE] {
            let mut several = 0;
            for chunk in chunks(&rows, bound).filter(|c| c.len() > 1) {
                several += 1;
                let row = encode(chunk);
                let stored = row.data.len() + row.sizes.as_deref().map_or(0, str::len);
                assert!(
                    stored <= bound.0,
                    "{stored} bytes in a row bound to {bound:?}"
                );
                let next = rows
                    .iter()
                    .find(|r| r.event.seq == row.seq + chunk.len() as i64);
                if let Some(next) = next {
                    // The next event did not fit: rows are as full as the bound lets them be.
                    assert!(stored + next.event.data.len() + 1 > bound.0 - 8);
                }
            }
            assert!(several > 10, "{several} rows of several events");
        }
    }

    #[test]
    fn a_chunk_chunked_again_is_the_same_row() {
        let runs = LiveRuns::default();
        let a = runs.insert("a", "app", 16);
        let rows: Vec<Append> = (1..=50).map(|seq| row(&a, seq, "message", 4000)).collect();
        for bound in [RowBound::SQLITE, RowBound::POSTGRES] {
            for chunk in chunks(&rows, bound) {
                let again: Vec<&[Append]> = chunks(chunk, bound).collect();
                assert_eq!(again.len(), 1);
                assert_eq!(encode(again[0]), encode(chunk));
            }
        }
    }
}
