//! A subscriber's view of a run: the logged events after its position, then the live tail.
//! It never misses or repeats an event: live events arrive in seq order, anything skipped (a
//! subscriber that lagged behind the in-memory buffer, or one that joined mid-way) is re-read
//! from the log, which always holds an event before it is broadcast. A run that another
//! gateway runs is tailed from the log, woken by that gateway's signals (see `remote`); such a
//! stream ends only with `done`, or when the run is no longer active and its log is read out.
use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::sync::broadcast::{self, error::RecvError};

use super::event_log::{self, SharedEvent};
use super::live::LiveBatch;
use super::remote::TailWatch;
use super::ACTIVE_STATUSES;
use entity::runs;

const PAGE: u64 = 500;

/// Where new events come from once the log is read out.
pub enum Tail {
    /// This gateway runs the run: its in-process broadcast.
    Local(broadcast::Receiver<LiveBatch>),
    /// Another gateway runs it (or nobody does any more): its signals, and the run's status.
    Remote(TailWatch),
}

pub struct Subscription {
    db: DatabaseConnection,
    run_id: String,
    last_seq: i64,
    backlog: VecDeque<SharedEvent>,
    /// None once the run has ended: what is left is in the log.
    tail: Option<Tail>,
    need_log_read: bool,
    /// A remote run was seen active since the last wait that timed out.
    seen_active: bool,
    finished: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("could not read the run's event log: {0}")]
pub struct SubscriptionError(#[from] sea_orm::DbErr);

impl Subscription {
    /// `tail` must be subscribed before the first log read, so nothing falls between the two.
    pub fn new(db: DatabaseConnection, run_id: String, after_seq: i64, tail: Tail) -> Self {
        Self {
            db,
            run_id,
            last_seq: after_seq,
            backlog: VecDeque::new(),
            tail: Some(tail),
            need_log_read: true,
            seen_active: false,
            finished: false,
        }
    }

    /// For the client that started the run: `live` was subscribed before the run's task was
    /// spawned, so it gets every event from the first and the (empty) log needs no read.
    pub fn from_start(
        db: DatabaseConnection,
        run_id: String,
        live: broadcast::Receiver<LiveBatch>,
    ) -> Self {
        Self {
            need_log_read: false,
            ..Self::new(db, run_id, 0, Tail::Local(live))
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
                if let Some(Tail::Remote(watch)) = self.tail.as_mut() {
                    // Before the read: a signal that comes during it is not lost.
                    watch.mark_seen();
                }
                let mut page =
                    event_log::read_after(&self.db, &self.run_id, self.last_seq, PAGE).await?;
                self.need_log_read = page.len() as u64 == PAGE;
                // The writer's commits overlap: a later batch may be in the log before the one
                // ahead of it. Take only what follows without a gap; the rest comes with the
                // earlier batch's release (or its signal from another gateway).
                let contiguous = (page.iter().zip(self.last_seq + 1..))
                    .take_while(|(event, expected)| event.seq == *expected)
                    .count();
                if contiguous < page.len() {
                    page.truncate(contiguous);
                    self.need_log_read = false;
                }
                let got_any = !page.is_empty();
                self.backlog.extend(page.into_iter().map(Arc::new));
                if got_any {
                    continue;
                }
            }
            match self.tail.as_mut() {
                // The run ended and the log has nothing more (or it never logged `done`).
                None => return Ok(None),
                Some(Tail::Local(live)) => match live.recv().await {
                    Ok(batch) => {
                        let mut next = self.last_seq + 1;
                        for event in batch.iter() {
                            if event.seq < next {
                                continue;
                            }
                            if event.seq != next {
                                // A gap: the missing events are in the log already.
                                self.need_log_read = true;
                                break;
                            }
                            self.backlog.push_back(event.clone());
                            next += 1;
                        }
                    }
                    Err(RecvError::Lagged(_)) => self.need_log_read = true,
                    Err(RecvError::Closed) => {
                        self.tail = None;
                        self.need_log_read = true;
                    }
                },
                Some(Tail::Remote(_)) if !self.seen_active => {
                    if run_is_active(&self.db, &self.run_id).await? {
                        self.seen_active = true;
                    } else {
                        // Everything it logged committed before its status changed.
                        self.tail = None;
                        self.need_log_read = true;
                    }
                }
                Some(Tail::Remote(watch)) => {
                    // A signal means new rows; silence past the re-check means "look again,
                    // and check the run is still going".
                    self.seen_active = watch.changed().await;
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

async fn run_is_active(db: &DatabaseConnection, run_id: &str) -> Result<bool, SubscriptionError> {
    let active = runs::Entity::find_by_id(run_id.to_string())
        .filter(runs::Column::Status.is_in(ACTIVE_STATUSES))
        .count(db)
        .await?;
    Ok(active > 0)
}
