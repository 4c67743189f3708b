//! Job workers: claim a due job, run one step through the handler, record the outcome. A worker
//! that found work claims again at once; it sleeps only when nothing is due, and wakes when a
//! job is enqueued in this process or (PostgreSQL) in another one. For jobs that come due
//! later (a retry's backoff), one idle worker of the process looks each poll interval and
//! wakes the others when it finds one. A worker that dies leaves a lease that simply expires.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::RetryPolicy;
use super::queue::{self, Step};
use entity::jobs::{JobKind, Model as Job};

/// Who holds a job while its step runs, for writes that must happen only under the lease
/// (see [`queue::lease_held`]).
#[derive(Debug, Clone)]
pub struct Lease {
    pub job_id: String,
    pub worker: String,
}

/// What the jobs do.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Runs one step of `job` (its whole work, or one provider poll).
    async fn run(&self, job: &Job, lease: &Lease) -> Step;

    /// How `kind` is retried after a transient failure.
    fn policy(&self, kind: JobKind) -> RetryPolicy;

    /// Called once a job finished (done or failed), by the worker that finished it.
    async fn finished(&self, _job: &Job) {}

    /// Called about once per poll interval by one of the process's workers (deadlines, gauges).
    async fn sweep(&self) {}
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How long an idle worker sleeps before looking again without being woken.
    pub poll_interval: Duration,
    /// How long a claim is held without a heartbeat; renewed every third of it.
    pub lease: Duration,
    /// Which gateway's jobs this worker may take.
    pub affinity: super::Affinity,
}

/// Turns that the workers of a process share, so that some work is done once per poll interval
/// however many workers the process has: the sweep (requeue expired jobs, then the handler's
/// sweep: a few queries) and the idle look for due jobs (a claim). Eight workers doing each on
/// their own made most of an idle gateway's database traffic.
#[derive(Debug, Default, Clone)]
pub struct WorkerClocks {
    sweep: Turns,
    poll: Turns,
}

/// One caller per interval takes the turn.
#[derive(Debug, Default, Clone)]
struct Turns(Arc<Mutex<Option<Instant>>>);

impl Turns {
    /// Whether the caller takes the turn now: true for one caller per `interval`.
    fn take_due(&self, now: Instant, interval: Duration) -> bool {
        let mut next = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if next.is_some_and(|next| now < next) {
            return false;
        }
        *next = Some(now + interval);
        true
    }

    /// The turn that `take_due` granted has ended: the next one is due an interval after its
    /// end, so that a slow sweep is never joined by the next one.
    fn finished(&self, now: Instant, interval: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(now + interval);
    }
}

#[derive(Clone)]
pub struct JobWorker {
    pub db: DatabaseConnection,
    pub handler: Arc<dyn JobHandler>,
    pub settings: WorkerSettings,
    pub id: String,
    /// The kinds this worker takes; None: all.
    pub kinds: Option<Vec<JobKind>>,
    /// Shared with the process's other workers.
    pub clocks: WorkerClocks,
}

impl JobWorker {
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(worker = %self.id, "job worker started");
        let interval = self.settings.poll_interval;
        // Whether to claim on this pass: at start, after a job, when woken, or on the poll turn.
        let mut look = true;
        // This pass's look is the process's poll: a job it finds may have others due beside it.
        let mut polled = false;
        while !stop.is_cancelled() {
            // Swept once per poll interval, not once per job: under load a worker takes jobs
            // back to back.
            let now = tokio::time::Instant::now().into_std();
            if self.clocks.sweep.take_due(now, interval) {
                match queue::requeue_expired(&self.db).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(
                            jobs = n,
                            "jobs whose worker stopped renewing its lease were put back in the queue"
                        );
                        // Due again now: this worker and the idle ones take them.
                        look = true;
                        queue::wake();
                    }
                    Err(e) => tracing::warn!(error = %e, "could not requeue expired jobs"),
                }
                self.handler.sweep().await;
                let now = tokio::time::Instant::now().into_std();
                self.clocks.sweep.finished(now, interval);
            }
            // Registered before the claim, so a job enqueued while claiming still wakes us.
            let woken = queue::woken();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if look {
                let claimed = queue::claim_for(
                    &self.db,
                    &self.id,
                    &self.settings.affinity,
                    self.settings.lease,
                    self.kinds.as_deref(),
                )
                .await;
                match claimed {
                    Ok(Some(job)) => {
                        if polled {
                            // Jobs that came due while all slept: the other workers help.
                            queue::wake();
                            polled = false;
                        }
                        self.process(job).await;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "could not claim a job"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = &mut woken => {
                    (look, polled) = (true, false);
                }
                _ = tokio::time::sleep(interval) => {
                    // Jobs due later (a retry's backoff) wake nobody: one idle worker of the
                    // process looks for them per interval, not each.
                    let now = tokio::time::Instant::now().into_std();
                    look = self.clocks.poll.take_due(now, interval);
                    polled = look;
                }
            }
        }
    }

    /// One step of one job, with its lease kept alive while the handler works.
    pub async fn process(&self, job: Job) {
        let metrics = crate::metrics::metrics();
        let waited = (chrono::Utc::now() - job.run_at)
            .to_std()
            .unwrap_or_default();
        metrics.job_started(job.kind, waited);
        let lease = Lease {
            job_id: job.id.clone(),
            worker: self.id.clone(),
        };
        let heartbeat = {
            let db = self.db.clone();
            let lease = lease.clone();
            let (every, length) = (self.settings.lease / 3, self.settings.lease);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let held = queue::extend_lease(&db, &lease.job_id, &lease.worker, length);
                    if !matches!(held.await, Ok(true)) {
                        break;
                    }
                }
            })
        };
        let started = Instant::now();
        let span = tracing::info_span!(parent: None, "job", kind = job.kind.as_str(), job_id = %job.id, app_id = %job.app_id, attempt = job.attempts + 1);
        crate::telemetry::context::link_to(&span, job.traceparent.as_deref());
        let step = self.handler.run(&job, &lease).instrument(span).await;
        heartbeat.abort();
        metrics.job_stepped(job.kind, step_label(&step), started.elapsed());
        if let Step::Retry { error, .. } | Step::Fail(error) = &step {
            tracing::warn!(job = %job.id, kind = job.kind.as_str(), app_id = %job.app_id, attempts = job.attempts + 1, %error, "job step failed");
        }
        let policy = self.handler.policy(job.kind);
        let finished = queue::finish(&self.db, &job, &self.id, &policy, step).await;
        super::watch::notify(&job.id);
        match finished {
            Ok((true, Some(finished))) => self.handler.finished(&finished).await,
            Ok((true, None)) => {}
            Ok((false, _)) => {
                tracing::info!(job = %job.id, "lease lost while the step ran; its outcome was discarded")
            }
            Err(e) => tracing::warn!(job = %job.id, error = %e, "could not record a job step"),
        }
    }
}

fn step_label(step: &Step) -> &'static str {
    match step {
        Step::Done(_) => "done",
        Step::Again(_) => "again",
        Step::Retry { .. } => "retry",
        Step::Fail(_) => "failed",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the sweeps; runs no job (none is ever queued here).
    #[derive(Default)]
    struct CountSweeps(AtomicUsize);

    #[async_trait]
    impl JobHandler for CountSweeps {
        async fn run(&self, _job: &Job, _lease: &Lease) -> Step {
            Step::Done(None)
        }

        fn policy(&self, _kind: JobKind) -> RetryPolicy {
            RetryPolicy {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(1),
                max_attempts: 1,
            }
        }

        async fn sweep(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Four workers of one process, sharing its clocks.
    struct Workers {
        stop: CancellationToken,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Workers {
        fn start(
            db: &DatabaseConnection,
            handler: Arc<dyn JobHandler>,
            interval: Duration,
        ) -> Self {
            let clocks = WorkerClocks::default();
            let stop = CancellationToken::new();
            let tasks = (0..4)
                .map(|i| {
                    let worker = JobWorker {
                        db: db.clone(),
                        handler: handler.clone(),
                        settings: WorkerSettings {
                            poll_interval: interval,
                            lease: Duration::from_secs(30),
                            affinity: crate::jobs::Affinity::none(),
                        },
                        id: format!("worker-{i}"),
                        kinds: None,
                        clocks: clocks.clone(),
                    };
                    tokio::spawn(worker.run(stop.clone()))
                })
                .collect();
            Self { stop, tasks }
        }

        async fn stop(self) {
            self.stop.cancel();
            for task in self.tasks {
                task.await.expect("worker");
            }
        }
    }

    /// Four workers of one process sweep once per poll interval between them, not four times
    /// (each sweep costs the database a few queries, idle or not).
    #[tokio::test]
    async fn the_workers_of_a_process_sweep_once_per_interval() {
        let db = crate::db::connect("sqlite::memory:", 1)
            .await
            .expect("database");
        let handler = Arc::new(CountSweeps::default());
        let interval = Duration::from_millis(50);
        let workers = Workers::start(&db, handler.clone(), interval);
        tokio::time::sleep(interval * 6).await;
        workers.stop().await;
        let swept = handler.0.load(Ordering::Relaxed);
        // At most one per started interval (7 in 300 ms); each worker on its own would be 28.
        assert!((1..=8).contains(&swept), "{swept} sweeps");
    }

    /// Records when each job's step began; each step takes a while.
    #[derive(Default)]
    struct RecordStarts(Mutex<Vec<Instant>>);

    #[async_trait]
    impl JobHandler for RecordStarts {
        async fn run(&self, _job: &Job, _lease: &Lease) -> Step {
            self.0.lock().expect("starts").push(Instant::now());
            tokio::time::sleep(Duration::from_millis(150)).await;
            Step::Done(None)
        }

        fn policy(&self, _kind: JobKind) -> RetryPolicy {
            CountSweeps::default().policy(JobKind::UploadVersion)
        }
    }

    /// Jobs that came due without waking anyone (a retry's backoff ended): one idle worker
    /// finds them at its poll, and the others, woken by it, take the rest at once instead of
    /// one more at each of their own polls.
    #[tokio::test]
    async fn jobs_found_by_the_poll_are_taken_by_every_idle_worker() {
        let db = crate::db::connect("sqlite::memory:", 1)
            .await
            .expect("database");
        let handler = Arc::new(RecordStarts::default());
        let interval = Duration::from_millis(300);
        let workers = Workers::start(&db, handler.clone(), interval);
        // Idle by now; enqueued without a wake-up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 0..4 {
            let job = queue::NewJob::new(JobKind::UploadVersion, &format!("app-{i}"));
            queue::enqueue(&db, job).await.expect("enqueue");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while handler.0.lock().expect("starts").len() < 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        workers.stop().await;
        let starts = handler.0.lock().expect("starts").clone();
        assert_eq!(starts.len(), 4, "every job ran");
        let first = starts.iter().min().expect("first");
        let last = starts.iter().max().expect("last");
        // Together: a worker of its own poll would start one an interval (300 ms) later.
        assert!(
            *last - *first < Duration::from_millis(150),
            "{:?}",
            *last - *first
        );
    }

    #[test]
    fn one_caller_per_interval_sweeps() {
        let clock = Turns::default();
        let interval = Duration::from_millis(500);
        let start = Instant::now();
        assert!(clock.take_due(start, interval));
        assert!(!clock.clone().take_due(start, interval));
        assert!(!clock.take_due(start + interval / 2, interval));
        assert!(clock.take_due(start + interval, interval));
        assert!(!clock.take_due(start + interval, interval));
        // A sweep that took most of an interval: the next waits a whole interval after it.
        clock.finished(start + interval * 2, interval);
        assert!(!clock.take_due(start + interval * 2, interval));
        assert!(clock.take_due(start + interval * 3, interval));
    }
}
