//! One durable job queue for every background effect of a version (upload, push, deploy) and
//! of an app's deletion (clean-up). A job is enqueued in the transaction that makes it
//! necessary, so it exists exactly when its cause does; workers claim due jobs with a lease,
//! and attempts, last error and next run time live in the row, so a restart loses no retry
//! state. This module knows nothing of what the jobs do: a [`JobHandler`] does.
mod backoff;
mod queue;
mod watch;
mod worker;

#[cfg(test)]
mod migration_tests;

pub use backoff::{backoff, RetryPolicy};
pub use entity::jobs::{JobKind, JobStatus, Model as Job};
pub use queue::{
    cancel_for_app, claim, claim_for, claim_report, enqueue, enqueue_now, extend_lease, find,
    finish, lease_held, requeue_expired, save_result, supersede, unwatch, wake, woken, Affinity,
    NewJob, Step, CHANNEL,
};
pub use watch::Watch;
pub use worker::{JobHandler, JobWorker, Lease, WorkerClocks, WorkerSettings};
