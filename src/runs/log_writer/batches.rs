//! The writer's loop: requests become batches, batches are written by up to as many stores as
//! the writer has (their commits overlap), and committed batches are released to subscribers
//! strictly in the order they were formed, so each run's events reach its subscribers in seq
//! order whichever commit finished first.
//!
//! With overlapping commits a later batch can commit a run's events after an earlier batch
//! failed to store one of them. Such events are never released, and they are removed from the
//! log when their batch is released, so the log keeps no event after the one that failed.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::gather::Gather;
use super::{
    chunks, Append, Request, Store, StoreError, BATCH_ATTEMPTS, MAX_BATCH_BYTES, MAX_ROWS,
};
use crate::cluster::bus::Peers;
use crate::runs::event_log::SharedEvent;
use crate::runs::live::LiveRun;

/// A batch whose write finished: the store that wrote it, the rows that committed, and the
/// flushes that wait for it.
struct Written<S> {
    store: Option<S>,
    committed: Vec<Append>,
    flushes: Vec<oneshot::Sender<()>>,
}

pub(super) async fn write_batches<S: Store + 'static>(
    stores: Vec<S>,
    mut requests: mpsc::Receiver<Request>,
    mut gather: Gather,
    peers: Peers,
) {
    let mut free = stores;
    let mut in_flight = FuturesOrdered::new();
    let mut received = VecDeque::with_capacity(MAX_ROWS);
    let mut buffer = Vec::with_capacity(MAX_ROWS);
    let mut open = true;
    loop {
        if !received.is_empty() && !free.is_empty() {
            let (batch, flushes) = next_batch(&mut received);
            if batch.is_empty() && in_flight.is_empty() {
                answer(flushes);
                continue;
            }
            let store = (!batch.is_empty()).then(|| free.pop()).flatten();
            let peers = peers.clone();
            in_flight.push_back(async move {
                let mut store = store;
                let committed = match store.as_mut() {
                    Some(store) => commit(store, batch, &peers).await,
                    None => Vec::new(),
                };
                Written {
                    store,
                    committed,
                    flushes,
                }
            });
            continue;
        }
        tokio::select! {
            biased;
            Some(written) = in_flight.next(), if !in_flight.is_empty() => {
                // A batch of flushes alone has no store and nothing to release.
                if let Some(mut store) = written.store {
                    release(written.committed, &mut store).await;
                    free.push(store);
                }
                answer(written.flushes);
            }
            count = gather.receive(&mut requests, &mut buffer), if open && received.is_empty() => {
                open = count > 0;
                received.extend(buffer.drain(..));
            }
            else => break,
        }
    }
}

fn answer(flushes: Vec<oneshot::Sender<()>>) {
    for done in flushes {
        let _ = done.send(());
    }
}

/// Takes the next batch off `received`: up to [`MAX_ROWS`] rows and [`MAX_BATCH_BYTES`] of
/// data (a single larger event goes alone), with the flushes queued among them.
fn next_batch(received: &mut VecDeque<Request>) -> (Vec<Append>, Vec<oneshot::Sender<()>>) {
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut flushes = Vec::new();
    while let Some(request) = received.pop_front() {
        match request {
            // Queued behind an event that failed: storing it would leave a gap.
            Request::Append(append) if append.live.log_failed() => {}
            Request::Append(append) => {
                let size = append.event.data.len();
                if !batch.is_empty() && (bytes + size > MAX_BATCH_BYTES || batch.len() == MAX_ROWS)
                {
                    received.push_front(Request::Append(append));
                    break;
                }
                bytes += size;
                batch.push(append);
            }
            Request::Flush(done) => flushes.push(done),
        }
    }
    (chunks::group_by_run(batch), flushes)
}

/// Writes `batch`, retrying it whole, then chunk by chunk (a chunk is a row of the log, see
/// `chunks`), then, inside a chunk that fails, event by event, so that only the runs whose
/// events fail hear about it. Returns the events that committed. A chunk whose row is there
/// already committed with an earlier attempt whose answer was lost: all of it, since a
/// transaction is all or none, and written again it is the same row (`chunks` is a function
/// of the events alone), so it is seen as a duplicate; never as events written twice.
pub(super) async fn commit(
    store: &mut impl Store,
    batch: Vec<Append>,
    peers: &Peers,
) -> Vec<Append> {
    for attempt in 0..BATCH_ATTEMPTS {
        if attempt > 0 {
            store.pause(Duration::from_millis(100 * attempt)).await;
        }
        let started = Instant::now();
        let result = store.insert(&batch, peers).await;
        tracing::debug!(
            rows = batch.len(),
            micros = started.elapsed().as_micros() as u64,
            "event log batch"
        );
        match &result {
            Ok(()) => return batch,
            // A retry after a commit whose answer was lost: the rows are there already; chunk
            // by chunk below tells which.
            Err(StoreError::Duplicate) if attempt > 0 => break,
            Err(e) => {
                tracing::warn!(error = %e, rows = batch.len(), attempt, "event log write failed")
            }
        }
    }
    let lengths: Vec<usize> = chunks::chunks(&batch, store.row_bound())
        .map(<[Append]>::len)
        .collect();
    let mut rows = batch.into_iter();
    let mut committed = Vec::with_capacity(rows.len());
    for length in lengths {
        let chunk: Vec<Append> = rows.by_ref().take(length).collect();
        if chunk[0].live.log_failed() {
            continue;
        }
        match store.insert(&chunk, peers).await {
            Ok(()) | Err(StoreError::Duplicate) => committed.extend(chunk),
            Err(e) if length == 1 => record_failure(&chunk[0], &e),
            Err(_) => committed.extend(commit_one_by_one(store, chunk, peers).await),
        }
    }
    committed
}

/// The events of a chunk that failed, each alone.
pub(super) async fn commit_one_by_one(
    store: &mut impl Store,
    chunk: Vec<Append>,
    peers: &Peers,
) -> Vec<Append> {
    let mut committed = Vec::with_capacity(chunk.len());
    for (i, row) in chunk.iter().enumerate() {
        if row.live.log_failed() {
            continue;
        }
        match store.insert(std::slice::from_ref(row), peers).await {
            Ok(()) => committed.push(row.clone()),
            // The row that starts where the chunk does is the chunk's own (`chunks` is a
            // function of the events): its write committed though its answer was lost, so all
            // of the chunk is there. Writing the rest one by one would log them twice.
            Err(StoreError::Duplicate) if i == 0 => return chunk,
            Err(StoreError::Duplicate) => committed.push(row.clone()),
            Err(e) => record_failure(row, &e),
        }
    }
    committed
}

fn record_failure(row: &Append, e: &StoreError) {
    tracing::error!(error = %e, run_id = %row.live.run_id, seq = row.event.seq, "could not log an event");
    row.live.record_log_failure(row.event.seq, e.to_string());
}

/// Hands committed rows to their runs' subscribers, one live batch per run in seq order; rows
/// that follow an event of their run that failed in an earlier batch are removed instead.
async fn release(rows: Vec<Append>, store: &mut impl Store) {
    let (rows, orphans): (Vec<Append>, Vec<Append>) = rows
        .into_iter()
        .partition(|row| !row.live.failed_before(row.event.seq));
    broadcast(&rows);
    for row in orphans {
        if let Err(e) = store.discard_from(&row.live.run_id, row.event.seq).await {
            // The run removes them too when it takes the failure (`task::Emitter`).
            tracing::warn!(error = %e, run_id = %row.live.run_id, "could not remove events after a failed one");
        }
    }
}

/// One live batch per run, in seq order.
pub(super) fn broadcast(rows: &[Append]) {
    let mut runs: Vec<(&Arc<LiveRun>, Vec<SharedEvent>)> = Vec::new();
    // Most batches hold one run's events, or a few runs'; a batch of many runs gets an index.
    let mut index: HashMap<*const LiveRun, usize> = HashMap::new();
    for row in rows {
        let known = match runs.len() {
            0..=16 => runs
                .iter()
                .position(|(live, _)| Arc::ptr_eq(live, &row.live)),
            _ => {
                if index.is_empty() {
                    index.extend(
                        runs.iter()
                            .enumerate()
                            .map(|(i, (l, _))| (Arc::as_ptr(l), i)),
                    );
                }
                index.get(&Arc::as_ptr(&row.live)).copied()
            }
        };
        let at = known.unwrap_or_else(|| {
            runs.push((&row.live, Vec::new()));
            if !index.is_empty() {
                index.insert(Arc::as_ptr(&row.live), runs.len() - 1);
            }
            runs.len() - 1
        });
        runs[at].1.push(row.event.clone());
    }
    for (live, events) in runs {
        live.publish(events.into());
    }
    let metrics = crate::metrics::metrics();
    metrics.events_relayed.inc_by(rows.len() as u64);
    for row in rows {
        metrics
            .relay_latency
            .observe(row.arrived.elapsed().as_secs_f64());
    }
}
