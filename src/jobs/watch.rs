//! In-process wake-ups for whoever waits on a job (a run before its `done`): the worker that
//! records a job's step notifies its waiter, so a waiting run looks again when something
//! happened instead of polling the database (a thousand waiting runs polling every 100 ms cost
//! more than the jobs they waited for). Waiters still look now and then: a job run by another
//! gateway notifies nobody here.
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::Notify;

static WAITERS: LazyLock<Mutex<HashMap<String, Arc<Notify>>>> = LazyLock::new(Mutex::default);

/// Wakes whoever watches one of some jobs; dropped, it stops watching them.
pub struct Watch {
    ids: Vec<String>,
    notify: Arc<Notify>,
}

impl Watch {
    pub fn new(ids: Vec<String>) -> Self {
        let notify = Arc::new(Notify::new());
        if let Ok(mut waiters) = WAITERS.lock() {
            for id in &ids {
                waiters.insert(id.clone(), notify.clone());
            }
        }
        Self { ids, notify }
    }

    /// Resolves after a step of a watched job was recorded since the last call (a wake-up
    /// that came before is kept, so none is lost between a look and the wait).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut waiters) = WAITERS.lock() {
            for id in &self.ids {
                waiters.remove(id);
            }
        }
    }
}

/// A step of job `id` was recorded.
pub(super) fn notify(id: &str) {
    let waiter = WAITERS.lock().ok().and_then(|w| w.get(id).cloned());
    if let Some(notify) = waiter {
        notify.notify_one();
    }
}
