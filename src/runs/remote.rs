//! Subscribers of runs that another gateway runs. They cannot hear the runner's in-process
//! broadcast, so they wait on a per-run watch that the signal listener bumps when that run's
//! log grows (see `cluster::bus`), then read the new rows from the log. A bump carries no
//! event: it only says "read again", so a duplicate or a late one is harmless, and a missed
//! one is covered by [`RECHECK`].
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// How long a remote subscriber waits for a signal before it looks at the log and the run
/// anyway: the safety net for a lost notification or a runner that died without `done`.
pub const RECHECK: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct RemoteTails {
    runs: Mutex<HashMap<String, watch::Sender<i64>>>,
}

impl RemoteTails {
    /// A watch on `run_id`'s log, registered until the returned handle is dropped.
    pub fn watch(self: &Arc<Self>, run_id: &str) -> TailWatch {
        let receiver = match self.runs.lock() {
            Ok(mut runs) => runs
                .entry(run_id.to_string())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            // A poisoned registry still lets the subscriber poll.
            Err(_) => watch::channel(0).1,
        };
        TailWatch {
            receiver: Some(receiver),
            registry: self.clone(),
            run_id: run_id.to_string(),
        }
    }

    /// The run's log holds events up to `last_seq`: wake its subscribers here, if any.
    pub fn logged(&self, run_id: &str, last_seq: i64) {
        if let Ok(runs) = self.runs.lock() {
            if let Some(sender) = runs.get(run_id) {
                sender.send_if_modified(|known| {
                    let newer = last_seq > *known;
                    *known = (*known).max(last_seq);
                    newer
                });
            }
        }
    }

    /// Wakes every subscriber to re-read (notifications may have been lost).
    pub fn wake_all(&self) {
        if let Ok(runs) = self.runs.lock() {
            for sender in runs.values() {
                sender.send_modify(|_| {});
            }
        }
    }

    pub fn len(&self) -> usize {
        self.runs.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One subscriber's watch on a remote run.
pub struct TailWatch {
    receiver: Option<watch::Receiver<i64>>,
    registry: Arc<RemoteTails>,
    run_id: String,
}

impl TailWatch {
    /// Marks what has been signalled so far as seen: call before reading the log, so that a
    /// signal arriving during the read makes the next [`Self::changed`] return at once.
    pub fn mark_seen(&mut self) {
        if let Some(receiver) = self.receiver.as_mut() {
            receiver.borrow_and_update();
        }
    }

    /// Waits for a signal newer than the last [`Self::mark_seen`], at most [`RECHECK`]. True
    /// when a signal came, false when the wait timed out.
    pub async fn changed(&mut self) -> bool {
        let Some(receiver) = self.receiver.as_mut() else {
            tokio::time::sleep(RECHECK).await;
            return false;
        };
        matches!(
            tokio::time::timeout(RECHECK, receiver.changed()).await,
            Ok(Ok(()))
        )
    }
}

impl Drop for TailWatch {
    fn drop(&mut self) {
        drop(self.receiver.take());
        if let Ok(mut runs) = self.registry.runs.lock() {
            if runs
                .get(&self.run_id)
                .is_some_and(|sender| sender.receiver_count() == 0)
            {
                runs.remove(&self.run_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_during_the_read_is_not_lost() {
        let tails = Arc::new(RemoteTails::default());
        let mut watch = tails.watch("r");
        watch.mark_seen();
        tails.logged("r", 3);
        assert!(watch.changed().await, "the signal is pending");
        watch.mark_seen();
        tails.logged("r", 3);
        let waited = tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;
        assert!(waited.is_err(), "an old seq wakes nobody");
    }

    #[tokio::test]
    async fn a_resync_wakes_every_subscriber() {
        let tails = Arc::new(RemoteTails::default());
        let mut a = tails.watch("a");
        let mut b = tails.watch("b");
        a.mark_seen();
        b.mark_seen();
        tails.wake_all();
        assert!(a.changed().await);
        assert!(b.changed().await);
    }

    #[test]
    fn the_last_subscriber_leaving_unregisters_the_run() {
        let tails = Arc::new(RemoteTails::default());
        let first = tails.watch("r");
        let second = tails.watch("r");
        assert_eq!(tails.len(), 1);
        drop(first);
        assert_eq!(tails.len(), 1);
        drop(second);
        assert!(tails.is_empty());
    }
}
