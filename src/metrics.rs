//! Prometheus metrics for what operators watch: runs, subscribers, relayed events and their
//! latency, upstream errors, deployments, storage and git operations, limiter rejections.
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use entity::jobs::JobKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    pub op: String,
    pub result: String,
}

/// A job kind and what one of its steps came to (done, again, retry, failed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobStep {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    pub op: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    pub active_runs: Gauge,
    pub active_subscribers: Gauge,
    pub runs: Family<Outcome, Counter>,
    pub events_relayed: Counter,
    pub relay_latency: Histogram,
    pub event_log_lock_wait: Histogram,
    pub upstream_errors: Family<Kind, Counter>,
    pub deployments: Family<Outcome, Counter>,
    pub deployment_duration: Histogram,
    pub storage_operations: Family<Operation, Counter>,
    pub storage_latency: Family<Op, Histogram, fn() -> Histogram>,
    pub git_operations: Family<Operation, Counter>,
    pub git_latency: Family<Op, Histogram, fn() -> Histogram>,
    pub limiter_rejections: Counter,
    pub analytics_events: Family<Kind, Counter>,
    pub open_connections: Gauge,
    pub connection_limit_hits: Counter,
    pub connection_timeouts: Family<Kind, Counter>,
    pub jobs_enqueued: Family<Kind, Counter>,
    pub job_steps: Family<JobStep, Counter>,
    pub job_wait: Family<Kind, Histogram, fn() -> Histogram>,
    pub job_step_duration: Family<Kind, Histogram, fn() -> Histogram>,
    pub jobs_queued: Family<Kind, Gauge>,
    pub jobs_running: Family<Kind, Gauge>,
    pub jobs_failed: Family<Kind, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("agentgate");
        let metrics = Self {
            active_runs: Gauge::default(),
            active_subscribers: Gauge::default(),
            runs: Family::default(),
            events_relayed: Counter::default(),
            relay_latency: latency_histogram(),
            event_log_lock_wait: latency_histogram(),
            upstream_errors: Family::default(),
            deployments: Family::default(),
            deployment_duration: Histogram::new(exponential_buckets(0.1, 2.0, 16)),
            storage_operations: Family::default(),
            storage_latency: Family::new_with_constructor(latency_histogram),
            git_operations: Family::default(),
            git_latency: Family::new_with_constructor(latency_histogram),
            limiter_rejections: Counter::default(),
            analytics_events: Family::default(),
            open_connections: Gauge::default(),
            connection_limit_hits: Counter::default(),
            connection_timeouts: Family::default(),
            jobs_enqueued: Family::default(),
            job_steps: Family::default(),
            job_wait: Family::new_with_constructor(latency_histogram),
            job_step_duration: Family::new_with_constructor(latency_histogram),
            jobs_queued: Family::default(),
            jobs_running: Family::default(),
            jobs_failed: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "active_runs",
            "Runs in progress in this process",
            metrics.active_runs.clone(),
        );
        registry.register(
            "active_subscribers",
            "Open event streams",
            metrics.active_subscribers.clone(),
        );
        registry.register("runs", "Finished runs by outcome", metrics.runs.clone());
        registry.register(
            "events_relayed",
            "Events logged and sent to subscribers",
            metrics.events_relayed.clone(),
        );
        registry.register(
            "relay_latency_seconds",
            "From an upstream event's arrival to its broadcast (after it is logged)",
            metrics.relay_latency.clone(),
        );
        registry.register(
            "event_log_lock_wait_seconds",
            "How long the SQLite event log writer waited for another connection's write lock",
            metrics.event_log_lock_wait.clone(),
        );
        registry.register(
            "upstream_errors",
            "Agent stream failures by kind",
            metrics.upstream_errors.clone(),
        );
        registry.register(
            "deployments",
            "Finished deployments by outcome",
            metrics.deployments.clone(),
        );
        registry.register(
            "deployment_duration_seconds",
            "From enqueue to a terminal status",
            metrics.deployment_duration.clone(),
        );
        registry.register(
            "storage_operations",
            "Object storage calls by result",
            metrics.storage_operations.clone(),
        );
        registry.register(
            "storage_latency_seconds",
            "Object storage call latency",
            metrics.storage_latency.clone(),
        );
        registry.register(
            "git_operations",
            "Git host calls by result",
            metrics.git_operations.clone(),
        );
        registry.register(
            "git_latency_seconds",
            "Git host call latency",
            metrics.git_latency.clone(),
        );
        registry.register(
            "limiter_rejections",
            "Messages refused by the daily limit",
            metrics.limiter_rejections.clone(),
        );
        registry.register(
            "analytics_events",
            "Client analytics events (POST /analytics/event) by type",
            metrics.analytics_events.clone(),
        );
        registry.register(
            "open_connections",
            "Open client connections (all listeners)",
            metrics.open_connections.clone(),
        );
        registry.register(
            "connection_limit_hits",
            "Times accepting paused because server.max_connections were open",
            metrics.connection_limit_hits.clone(),
        );
        registry.register(
            "connection_timeouts",
            "Connections closed or requests answered 408 for a missed deadline, by kind (header, body, idle)",
            metrics.connection_timeouts.clone(),
        );
        registry.register(
            "jobs_enqueued",
            "Background jobs enqueued, by kind",
            metrics.jobs_enqueued.clone(),
        );
        registry.register(
            "job_steps",
            "Steps of background jobs by kind and outcome (done, again, retry, failed)",
            metrics.job_steps.clone(),
        );
        registry.register(
            "job_wait_seconds",
            "From a job being due to a worker starting it, by kind",
            metrics.job_wait.clone(),
        );
        registry.register(
            "job_step_duration_seconds",
            "How long one step of a job ran, by kind",
            metrics.job_step_duration.clone(),
        );
        registry.register(
            "jobs_queued",
            "Jobs waiting in the queue, by kind (sampled by the workers)",
            metrics.jobs_queued.clone(),
        );
        registry.register(
            "jobs_running",
            "Jobs leased by a worker, by kind (sampled by the workers)",
            metrics.jobs_running.clone(),
        );
        registry.register(
            "jobs_failed",
            "Jobs that gave up, by kind (sampled by the workers)",
            metrics.jobs_failed.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    pub fn storage_call(&self, op: &str, ok: bool, took: Duration) {
        record(
            &self.storage_operations,
            &self.storage_latency,
            op,
            ok,
            took,
        );
    }

    pub fn git_call(&self, op: &str, ok: bool, took: Duration) {
        record(&self.git_operations, &self.git_latency, op, ok, took);
    }

    pub fn job_enqueued(&self, kind: JobKind) {
        self.jobs_enqueued.get_or_create(&kind_label(kind)).inc();
    }

    pub fn job_started(&self, kind: JobKind, waited: Duration) {
        self.job_wait
            .get_or_create(&kind_label(kind))
            .observe(waited.as_secs_f64());
    }

    pub fn job_stepped(&self, kind: JobKind, outcome: &str, took: Duration) {
        let step = JobStep {
            kind: kind.as_str().into(),
            outcome: outcome.into(),
        };
        self.job_steps.get_or_create(&step).inc();
        self.job_step_duration
            .get_or_create(&kind_label(kind))
            .observe(took.as_secs_f64());
    }
}

fn kind_label(kind: JobKind) -> Kind {
    Kind {
        kind: kind.as_str().into(),
    }
}

fn record(
    counts: &Family<Operation, Counter>,
    latency: &Family<Op, Histogram, fn() -> Histogram>,
    op: &str,
    ok: bool,
    took: Duration,
) {
    let result = if ok { "ok" } else { "error" };
    counts
        .get_or_create(&Operation {
            op: op.into(),
            result: result.into(),
        })
        .inc();
    latency
        .get_or_create(&Op { op: op.into() })
        .observe(took.as_secs_f64());
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &metrics().registry).is_err() {
        out.clear();
    }
    out
}

/// Counts an open stream for as long as it lives.
pub struct SubscriberGuard;

impl SubscriberGuard {
    pub fn new() -> Self {
        metrics().active_subscribers.inc();
        Self
    }
}

impl Default for SubscriberGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        metrics().active_subscribers.dec();
    }
}
