//! A subscriber's view of a run: the logged events after its position, then the live tail.
//! It never misses or repeats an event: live events arrive in seq order, anything skipped (a
//! subscriber that lagged behind the in-memory buffer, or one that joined mid-way) is re-read
//! from the log, which always holds an event before it is broadcast.
use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::{self, error::RecvError};

use super::event_log::{self, SharedEvent};

const PAGE: u64 = 500;

pub struct Subscription {
    db: DatabaseConnection,
    run_id: String,
    last_seq: i64,
    backlog: VecDeque<SharedEvent>,
    live: Option<broadcast::Receiver<SharedEvent>>,
    need_log_read: bool,
    finished: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("could not read the run's event log: {0}")]
pub struct SubscriptionError(#[from] sea_orm::DbErr);

impl Subscription {
    /// `live` must be subscribed before the first log read, so nothing falls between the two.
    pub fn new(
        db: DatabaseConnection,
        run_id: String,
        after_seq: i64,
        live: Option<broadcast::Receiver<SharedEvent>>,
    ) -> Self {
        Self {
            db,
            run_id,
            last_seq: after_seq,
            backlog: VecDeque::new(),
            live,
            need_log_read: true,
            finished: false,
        }
    }

    /// For the client that started the run: `live` was subscribed before the run's task was
    /// spawned, so it gets every event from the first and the (empty) log needs no read.
    pub fn from_start(
        db: DatabaseConnection,
        run_id: String,
        live: broadcast::Receiver<SharedEvent>,
    ) -> Self {
        Self {
            need_log_read: false,
            ..Self::new(db, run_id, 0, Some(live))
        }
    }

    pub async fn next(&mut self) -> Result<Option<SharedEvent>, SubscriptionError> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                if event.seq <= self.last_seq {
                    continue;
                }
                self.last_seq = event.seq;
                self.finished = event.is_done();
                return Ok(Some(event));
            }
            if self.finished {
                return Ok(None);
            }
            if self.need_log_read {
                let page =
                    event_log::read_after(&self.db, &self.run_id, self.last_seq, PAGE).await?;
                self.need_log_read = page.len() as u64 == PAGE;
                let got_any = !page.is_empty();
                self.backlog.extend(page.into_iter().map(Arc::new));
                if got_any {
                    continue;
                }
            }
            let Some(live) = self.live.as_mut() else {
                // Not live and the log has nothing more: the run ended (or never logged `done`).
                return Ok(None);
            };
            match live.recv().await {
                Ok(event) if event.seq <= self.last_seq => {}
                Ok(event) if event.seq == self.last_seq + 1 => self.backlog.push_back(event),
                // A gap: the missing events are in the log already.
                Ok(_) | Err(RecvError::Lagged(_)) => self.need_log_read = true,
                Err(RecvError::Closed) => {
                    self.live = None;
                    self.need_log_read = true;
                }
            }
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = Result<SharedEvent, SubscriptionError>> + Send {
        futures::stream::unfold(Some(self), |state| async move {
            let mut sub = state?;
            match sub.next().await {
                Ok(Some(event)) => Some((Ok(event), Some(sub))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}
