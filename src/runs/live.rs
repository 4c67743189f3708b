//! Live runs held in memory: each has a broadcast channel for its tail and a cancel token.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::event_log::SharedEvent;

/// Why a run was stopped before it ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The owner asked for it (`POST /runs/:id/cancel`).
    Cancelled,
    /// The gateway is shutting down and the grace period ran out.
    Interrupted,
}

pub struct LiveRun {
    pub run_id: String,
    pub owner_id: String,
    pub sender: broadcast::Sender<SharedEvent>,
    cancel: CancellationToken,
    stop_reason: Mutex<Option<StopReason>>,
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

    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }
}

#[derive(Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<String, Arc<LiveRun>>>,
}

impl LiveRuns {
    pub fn insert(&self, run_id: &str, owner_id: &str, buffer: usize) -> Arc<LiveRun> {
        let (sender, _) = broadcast::channel(buffer.max(16));
        let run = Arc::new(LiveRun {
            run_id: run_id.to_string(),
            owner_id: owner_id.to_string(),
            sender,
            cancel: CancellationToken::new(),
            stop_reason: Mutex::new(None),
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

    pub fn len(&self) -> usize {
        self.runs.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
