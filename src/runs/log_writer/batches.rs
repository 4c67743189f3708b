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

use super::{Append, Request, Store, StoreError, BATCH_ATTEMPTS, MAX_BATCH_BYTES, MAX_ROWS};
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
            count = requests.recv_many(&mut buffer, MAX_ROWS), if open && received.is_empty() => {
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
    (batch, flushes)
}

/// Writes `batch`, retrying it whole, then row by row so that only the runs whose rows fail
/// hear about it. Returns the rows that committed.
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
            // A retry after a commit whose answer was lost: the rows are there already; row by
            // row below tells which.
            Err(StoreError::Duplicate) if attempt > 0 => break,
            Err(e) => {
                tracing::warn!(error = %e, rows = batch.len(), attempt, "event log write failed")
            }
        }
    }
    let mut committed = Vec::with_capacity(batch.len());
    for row in batch {
        if row.live.log_failed() {
            continue;
        }
        match store.insert(std::slice::from_ref(&row), peers).await {
            Ok(()) | Err(StoreError::Duplicate) => committed.push(row),
            Err(e) => {
                tracing::error!(error = %e, run_id = %row.live.run_id, seq = row.event.seq, "could not log an event");
                row.live.record_log_failure(row.event.seq, e.to_string());
            }
        }
    }
    committed
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
