//! Live runs held in memory: each has a broadcast channel for its tail and a cancel token.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::event_log::SharedEvent;

/// Why a run was stopped before it ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The owner asked for it (`POST /runs/:id/cancel`) or deleted the app.
    Cancelled,
    /// The gateway is shutting down and the grace period ran out.
    Interrupted,
}

/// The first event of a run that the log could not store.
#[derive(Debug, Clone)]
pub struct LogFailure {
    pub seq: i64,
    pub error: String,
}

/// Events of one run that committed together, in seq order. The live ring holds batches, not
/// events: a writer batch of hundreds of a run's events is one slot, so a subscriber falls
/// behind (and reads the log) only when it misses many batches, not when one batch is large.
pub type LiveBatch = Arc<[SharedEvent]>;

pub struct LiveRun {
    pub run_id: String,
    pub app_id: String,
    pub sender: broadcast::Sender<LiveBatch>,
    cancel: CancellationToken,
    stop_reason: Mutex<Option<StopReason>>,
    /// Set by the log writer when one of this run's events could not be stored.
    log_failure: Mutex<Option<LogFailure>>,
}

impl LiveRun {
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut current) = self.stop_reason.lock() {
            current.get_or_insert(reason);
        }
        self.cancel.cancel();
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason.lock().ok().and_then(|r| *r)
    }

    /// Records that event `seq` could not be stored. Until the run takes the failure, the
    /// writer drops the run's later events, so the log and the stream keep no gap.
    pub fn record_log_failure(&self, seq: i64, error: String) {
        if let Ok(mut current) = self.log_failure.lock() {
            current.get_or_insert(LogFailure { seq, error });
        }
    }

    /// Whether event `seq` follows an event of this run that could not be stored.
    pub fn failed_before(&self, seq: i64) -> bool {
        self.log_failure
            .lock()
            .map(|f| f.as_ref().is_some_and(|f| seq > f.seq))
            .unwrap_or(false)
    }

    pub fn log_failed(&self) -> bool {
        self.log_failure
            .lock()
            .map(|f| f.is_some())
            .unwrap_or(false)
    }

    /// Clears and returns the failure, after which the run's events are written again.
    pub fn take_log_failure(&self) -> Option<LogFailure> {
        self.log_failure.lock().ok().and_then(|mut f| f.take())
    }

    /// Hands committed events to the run's live subscribers (none is fine: the log has them).
    pub fn publish(&self, events: LiveBatch) {
        let _ = self.sender.send(events);
    }

    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }
}

#[derive(Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<String, Arc<LiveRun>>>,
}

impl LiveRuns {
    pub fn insert(&self, run_id: &str, app_id: &str, buffer: usize) -> Arc<LiveRun> {
        let (sender, _) = broadcast::channel(buffer.max(16));
        let run = Arc::new(LiveRun {
            run_id: run_id.to_string(),
            app_id: app_id.to_string(),
            sender,
            cancel: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            log_failure: Mutex::new(None),
        });
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(run_id.to_string(), run.clone());
        }
        run
    }

    pub fn get(&self, run_id: &str) -> Option<Arc<LiveRun>> {
        self.runs.lock().ok().and_then(|r| r.get(run_id).cloned())
    }

    pub fn remove(&self, run_id: &str) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(run_id);
        }
    }

    pub fn all(&self) -> Vec<Arc<LiveRun>> {
        self.runs
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The ids of the runs live in this process.
    pub fn ids(&self) -> Vec<String> {
        self.runs
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn of_app(&self, app_id: &str) -> Vec<Arc<LiveRun>> {
        self.runs
            .lock()
            .map(|r| {
                r.values()
                    .filter(|run| run.app_id == app_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.runs.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
