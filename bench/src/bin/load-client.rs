//! `load-client`: opens SSE streams against the mock agent directly, through nginx, or through
//! agentgate, and reports time to first event, per-event latency (receive CLOCK_MONOTONIC minus
//! the mock's `sentNs` stamp), events/s, errors, stalled streams and the CPU time the system
//! under test used. `--ramp` holds idle heartbeat streams in steps and reports how many are held
//! and the RSS per stream; with `--tail-runs N` the held streams are subscribers to N live runs.
//! `--follow-via` follows every run on a second gateway as well
//! (`GET /runs/{id}/events`) and reports both streams' latency side by side. The last line on
//! stdout is a JSON summary.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentgate_bench::client::{self, Heartbeats, Outcome, StreamOptions, Target};
use agentgate_bench::mock::MockParams;
use agentgate_bench::{histogram, mono_ns, procfs};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::task::JoinSet;

#[derive(Parser, Clone)]
#[command(about = "SSE load client for agentgate benchmarks")]
struct Args {
    /// The mock agent itself (or nginx in front of it): POST <url>/message, agent protocol.
    #[arg(long, conflicts_with = "gateway")]
    direct: Option<String>,
    /// agentgate: POST <url>/message with a bearer token, client protocol.
    #[arg(long)]
    gateway: Option<String>,
    /// Cross mode (with `--gateway`): follow each run on this gateway too, from the moment
    /// `POST /message` returned its head, and read both streams to the end.
    #[arg(long, requires = "gateway")]
    follow_via: Option<String>,
    #[arg(long)]
    token: Option<String>,
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Label printed in the summary.
    #[arg(long, default_value = "")]
    label: String,
    /// Running events per stream (sent to the mock in `settings`).
    #[arg(long, default_value_t = 10)]
    events: u64,
    #[arg(long, default_value_t = 256)]
    pad: usize,
    #[arg(long, default_value_t = 0)]
    interval_us: u64,
    #[arg(long, default_value_t = 0)]
    first_delay_us: u64,
    /// Streams to run (measured), after `--warmup` unmeasured ones.
    #[arg(long, default_value_t = 100)]
    streams: u64,
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Closed loop: this many streams in flight, each starting when one ends.
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    /// Open loop: start streams at this rate (per second) whatever the in-flight count.
    #[arg(long)]
    rate: Option<f64>,
    /// Bind client sockets to 127.0.0.1 .. 127.0.0.N in turn.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// A stream that receives nothing for this long counts as stalled.
    #[arg(long, default_value_t = 30.0)]
    stall_secs: f64,
    /// Processes of the system under test (CPU from /proc/<pid>/stat, RSS from status).
    #[arg(long = "sut-pid")]
    sut_pids: Vec<u32>,
    /// Helper processes whose CPU is reported apart (e.g. the PostgreSQL server).
    #[arg(long = "aux-pid")]
    aux_pids: Vec<u32>,
    /// Hold mode: idle heartbeat streams, ramped to each of these counts in turn.
    #[arg(long, value_delimiter = ',')]
    ramp: Vec<u64>,
    #[arg(long, default_value_t = 5000)]
    heartbeat_ms: u64,
    /// Hold mode: how long heartbeats are counted at each step.
    #[arg(long, default_value_t = 11.0)]
    window_secs: f64,
    /// Hold mode: new streams per second while ramping.
    #[arg(long, default_value_t = 1000.0)]
    open_rate: f64,
    /// Hold mode on a gateway: first start this many live runs (KeepAlive-only, their POST
    /// streams held open), then ramp subscribers (`GET /runs/{id}/events`) spread over them
    /// instead of one run per stream. A subscriber costs the gateway one descriptor, a relayed
    /// stream two.
    #[arg(long, default_value_t = 0)]
    tail_runs: u64,
}

#[derive(Default)]
struct Totals {
    streams: u64,
    complete: u64,
    errors: u64,
    stalled: u64,
    events: u64,
    first_errors: Vec<String>,
}

impl Totals {
    fn merge(&mut self, t: Totals) {
        self.streams += t.streams;
        self.complete += t.complete;
        self.errors += t.errors;
        self.stalled += t.stalled;
        self.events += t.events;
        for e in t.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
    }

    fn add(&mut self, o: &Outcome) {
        self.streams += 1;
        self.events += o.events;
        if o.complete && o.error.is_none() {
            self.complete += 1;
        }
        if o.stalled {
            self.stalled += 1;
        }
        if let Some(e) = &o.error {
            self.errors += 1;
            if self.first_errors.len() < 5 {
                self.first_errors.push(e.clone());
            }
        }
    }
}

fn summary(h: &Histogram<u64>) -> Value {
    let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
    json!({
        "count": h.len(),
        "p50_us": us(h.value_at_quantile(0.5)),
        "p90_us": us(h.value_at_quantile(0.9)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
        "mean_us": (h.mean() / 100.0).round() / 10.0,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(std::fs::read_to_string(f)?.trim().to_string()),
        (None, None) => None,
    };
    let target = match (&args.direct, &args.gateway) {
        (Some(url), None) => Target::parse(url, None, false)?,
        (None, Some(url)) => Target::parse(url, token, true)?,
        _ => anyhow::bail!("give exactly one of --direct URL or --gateway URL"),
    };
    let follow = match &args.follow_via {
        Some(url) => Some(Arc::new(Target::parse(url, target.token.clone(), true)?)),
        None => None,
    };
    if args.tail_runs > 0 && args.gateway.is_none() {
        anyhow::bail!("--tail-runs subscribes to runs, which only a gateway has: give --gateway");
    }
    if args.tail_runs > 0 && args.ramp.is_empty() {
        anyhow::bail!("--tail-runs holds subscribers: give the steps with --ramp");
    }
    let result = if args.ramp.is_empty() {
        streams(&args, Arc::new(target), follow).await?
    } else {
        hold(&args, Arc::new(target)).await?
    };
    println!("{result}");
    Ok(())
}

async fn streams(
    args: &Args,
    target: Arc<Target>,
    follow: Option<Arc<Target>>,
) -> anyhow::Result<Value> {
    let settings = MockParams {
        events: args.events,
        pad: args.pad,
        interval_us: args.interval_us,
        first_delay_us: args.first_delay_us,
        heartbeat_ms: 0,
    }
    .to_settings();
    if args.warmup > 0 {
        run_batch(args, &target, &follow, &settings, args.warmup, 0).await?;
    }
    let cpu_before = procfs::cpu_us_sum(&args.sut_pids);
    let aux_before = procfs::cpu_us_sum(&args.aux_pids);
    let started = mono_ns();
    let batch = run_batch(args, &target, &follow, &settings, args.streams, args.warmup).await?;
    let totals = &batch.totals;
    let wall = (mono_ns() - started) as f64 / 1e9;
    let cpu = procfs::cpu_us_sum(&args.sut_pids).saturating_sub(cpu_before);
    let aux = procfs::cpu_us_sum(&args.aux_pids).saturating_sub(aux_before);
    let per_event = (totals.events > 0).then(|| cpu as f64 / totals.events as f64);
    let aux_per_event = (totals.events > 0).then(|| aux as f64 / totals.events as f64);
    let mut result = json!({
        "label": args.label,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "streams": totals.streams,
        "complete": totals.complete,
        "errors": totals.errors + batch.follow.errors,
        "stalled": totals.stalled + batch.follow.stalled,
        "first_errors": totals.first_errors,
        "events": totals.events,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "events_per_s": (totals.events as f64 / wall).round(),
        "ttfe": summary(&batch.ttfe),
        "latency": summary(&batch.latency),
        "sut_cpu_us": cpu,
        "sut_cpu_us_per_event": per_event.map(|v| (v * 1000.0).round() / 1000.0),
        "aux_cpu_us": aux,
        "aux_cpu_us_per_event": aux_per_event.map(|v| (v * 1000.0).round() / 1000.0),
    });
    if let Some(via) = &args.follow_via {
        // "latency" above is the POST stream's (same gateway); these are the follow streams'.
        let f = &batch.follow;
        result["post_errors"] = json!(totals.errors);
        result["untimed_events"] = json!(batch.untimed);
        result["follow"] = json!({
            "via": via,
            "streams": f.streams,
            "complete": f.complete,
            "errors": f.errors,
            "stalled": f.stalled,
            "first_errors": f.first_errors,
            "events": f.events,
            "ttfe": summary(&batch.follow_ttfe),
            "latency": summary(&batch.follow_latency),
        });
        eprintln!(
            "{}: follow via {via}: {} streams ({} complete, {} errors, {} stalled), {} events ({} untimed), latency p50 {} µs p99 {} µs",
            args.label,
            f.streams,
            f.complete,
            f.errors,
            f.stalled,
            f.events,
            batch.untimed,
            result["follow"]["latency"]["p50_us"],
            result["follow"]["latency"]["p99_us"],
        );
    }
    eprintln!(
        "{}: {} streams ({} complete, {} errors, {} stalled), {} events, {:.0} ev/s, ttfe p50 {} µs p99 {} µs, latency p50 {} µs p99 {} µs, sut cpu {:?} µs/event",
        args.label,
        totals.streams,
        totals.complete,
        totals.errors,
        totals.stalled,
        totals.events,
        totals.events as f64 / wall,
        result["ttfe"]["p50_us"],
        result["ttfe"]["p99_us"],
        result["latency"]["p50_us"],
        result["latency"]["p99_us"],
        result["sut_cpu_us_per_event"],
    );
    Ok(result)
}

/// What a set of streams measured; `follow*` are the same runs followed on `--follow-via`.
struct Batch {
    totals: Totals,
    ttfe: Histogram<u64>,
    latency: Histogram<u64>,
    follow: Totals,
    follow_ttfe: Histogram<u64>,
    follow_latency: Histogram<u64>,
    /// Events sent before the follow stream's head arrived (it could only replay them from the
    /// log): counted and checked on both streams, in neither latency histogram.
    untimed: u64,
}

impl Batch {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            totals: Totals::default(),
            ttfe: histogram()?,
            latency: histogram()?,
            follow: Totals::default(),
            follow_ttfe: histogram()?,
            follow_latency: histogram()?,
            untimed: 0,
        })
    }

    fn merge(&mut self, b: Batch) -> anyhow::Result<()> {
        self.totals.merge(b.totals);
        self.follow.merge(b.follow);
        self.ttfe.add(&b.ttfe)?;
        self.latency.add(&b.latency)?;
        self.follow_ttfe.add(&b.follow_ttfe)?;
        self.follow_latency.add(&b.follow_latency)?;
        self.untimed += b.untimed;
        Ok(())
    }
}

async fn run_batch(
    args: &Args,
    target: &Arc<Target>,
    follow: &Option<Arc<Target>>,
    settings: &Value,
    count: u64,
    first_id: u64,
) -> anyhow::Result<Batch> {
    let sources = Arc::new(client::sources(args.sources));
    let stall = Duration::from_secs_f64(args.stall_secs);
    let mut set: JoinSet<anyhow::Result<Batch>> = JoinSet::new();
    if let Some(rate) = args.rate {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let start = tokio::time::Instant::now();
        for i in 0..count {
            tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
            set.spawn(one_stream(
                first_id + i,
                target.clone(),
                follow.clone(),
                sources.clone(),
                settings.clone(),
                stall,
            ));
        }
    } else {
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..args.concurrency.max(1).min(count.max(1)) {
            let next = next.clone();
            let (target, follow, sources, settings) = (
                target.clone(),
                follow.clone(),
                sources.clone(),
                settings.clone(),
            );
            set.spawn(async move {
                let mut acc = Batch::new()?;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let one = one_stream(
                        first_id + n,
                        target.clone(),
                        follow.clone(),
                        sources.clone(),
                        settings.clone(),
                        stall,
                    )
                    .await?;
                    acc.merge(one)?;
                }
                Ok(acc)
            });
        }
    }
    let mut acc = Batch::new()?;
    while let Some(joined) = set.join_next().await {
        acc.merge(joined??)?;
    }
    Ok(acc)
}

async fn one_stream(
    n: u64,
    target: Arc<Target>,
    follow: Option<Arc<Target>>,
    sources: Arc<Vec<std::net::IpAddr>>,
    settings: Value,
    stall: Duration,
) -> anyhow::Result<Batch> {
    let mut batch = Batch::new()?;
    let source = sources.get(n as usize % sources.len()).copied();
    let body = target.body(&settings, n);
    let opts = StreamOptions {
        source,
        stall,
        heartbeats: None,
    };
    let Some(follow) = follow else {
        let outcome = client::run_stream(&target, body, opts, &mut batch.latency).await;
        if let Some(t) = outcome.ttfe_ns {
            batch.ttfe.record(t.max(1))?;
        }
        batch.totals.add(&outcome);
        return Ok(batch);
    };
    let mut cross = client::run_cross(&target, &follow, body, opts).await;
    check_ids(&mut cross.post, &mut cross.follow);
    let cutoff = cross.follow_head_ns;
    for &(sent, now) in &cross.post_samples {
        if sent >= cutoff {
            batch.latency.record(now.saturating_sub(sent).max(1))?;
        }
    }
    for &(sent, now) in &cross.follow_samples {
        if sent >= cutoff {
            batch
                .follow_latency
                .record(now.saturating_sub(sent).max(1))?;
        } else {
            batch.untimed += 1;
        }
    }
    if let Some(t) = cross.post.ttfe_ns {
        batch.ttfe.record(t.max(1))?;
    }
    if let Some(t) = cross.follow.ttfe_ns {
        batch.follow_ttfe.record(t.max(1))?;
    }
    batch.totals.add(&cross.post);
    batch.follow.add(&cross.follow);
    Ok(batch)
}

/// Every event on both streams exactly once and in order: each stream's ids consecutive, and
/// both from the same first to the same last id. Otherwise the stream at fault gets an error.
fn check_ids(post: &mut client::Outcome, follow: &mut client::Outcome) {
    for o in [&mut *post, &mut *follow] {
        if o.id_gaps > 0 && o.error.is_none() {
            o.error = Some(format!("{} event ids out of sequence", o.id_gaps));
        }
    }
    let ids = |o: &client::Outcome| (o.first_id, o.last_id);
    if post.error.is_none() && follow.error.is_none() && ids(post) != ids(follow) {
        follow.error = Some(format!(
            "follow stream carried ids {:?}, the POST stream {:?}",
            ids(follow),
            ids(post)
        ));
    }
}

/// Streams that ended during a hold, and why the first one did.
#[derive(Default)]
struct Failures {
    count: AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl Failures {
    fn record(&self, outcome: &Outcome) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            if first.is_none() {
                *first = Some(format!(
                    "{} stalled={}",
                    outcome.error.clone().unwrap_or_default(),
                    outcome.stalled
                ));
            }
        }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn first(&self) -> Option<String> {
        self.first.lock().ok().and_then(|f| f.clone())
    }
}

/// Descriptors this client needs beyond its streams: stdio, the runtime's, `/proc` reads.
const FD_MARGIN: u64 = 64;

/// A hold of `streams` streams (plus `runs` run streams in tail mode) must fit in the client's
/// own open-files limit: every stream is a socket here.
fn check_fd_budget(streams: u64, runs: u64, limit: u64) -> anyhow::Result<()> {
    let need = streams + runs + FD_MARGIN;
    anyhow::ensure!(
        need <= limit,
        "holding {streams} streams ({runs} runs) needs about {need} open files, the limit is \
         {limit}: raise `ulimit -Hn` or lower the ramp"
    );
    Ok(())
}

/// Tail mode: the run the `i`-th subscriber follows, round robin, so every step spreads its new
/// subscribers evenly.
fn run_for(i: u64, runs: &[String]) -> &str {
    &runs[(i % runs.len() as u64) as usize]
}

/// What one held stream opens: its own run, or a subscription to a run started before.
enum HeldStream {
    Post(bytes::Bytes),
    Subscribe(String),
}

/// Tail mode: starts `count` live runs (KeepAlive-only, held open by the mock until the gateway
/// leaves) and keeps their POST streams open, each read by a task of its own, for as long as the
/// client runs. The runs' ids, and each POST stream's liveness.
async fn start_runs(
    count: u64,
    target: &Arc<Target>,
    settings: &Value,
    sources: &[std::net::IpAddr],
    stall: Duration,
    failures: &Arc<Failures>,
) -> anyhow::Result<(Vec<String>, Vec<Arc<Heartbeats>>)> {
    // Their keep-alives are not measured: a window of their own that never records.
    let unmeasured = client::heartbeat_shared(stall)?;
    let (mut ids, mut live) = (Vec::new(), Vec::new());
    for i in 0..count {
        let source = sources.get(i as usize % sources.len()).copied();
        let body = target.body(settings, i);
        let (id, response) = client::start_run(target, body, source)
            .await
            .map_err(|e| anyhow::anyhow!("starting run {i} of {count}: {e}"))?;
        let hb = Arc::new(Heartbeats::new());
        let (target, unmeasured, failures, hb2) = (
            target.clone(),
            unmeasured.clone(),
            failures.clone(),
            hb.clone(),
        );
        tokio::spawn(async move {
            let opts = StreamOptions {
                source,
                stall,
                heartbeats: Some((&hb2, &unmeasured)),
            };
            let outcome = client::read_stream(&target, response, opts).await;
            failures.record(&outcome);
        });
        ids.push(id);
        live.push(hb);
    }
    Ok((ids, live))
}

/// Hold mode: ramp idle heartbeat streams through `--ramp`, counting heartbeats at each step.
/// Each stream is a run of its own, or with `--tail-runs N` a subscriber to one of N live runs.
async fn hold(args: &Args, target: Arc<Target>) -> anyhow::Result<Value> {
    let fd_limit = agentgate_bench::raise_fd_limit()?;
    let most = args.ramp.iter().copied().max().unwrap_or(0);
    check_fd_budget(most, args.tail_runs, fd_limit)?;
    let interval = Duration::from_millis(args.heartbeat_ms.max(1));
    let shared = client::heartbeat_shared(interval)?;
    let settings = MockParams {
        heartbeat_ms: args.heartbeat_ms,
        ..MockParams::default()
    }
    .to_settings();
    let sources = client::sources(args.sources);
    let stall = interval * 3;
    let base_rss = procfs::rss_bytes_sum(&args.sut_pids);
    let run_failures = Arc::new(Failures::default());
    let (runs, runs_live) = start_runs(
        args.tail_runs,
        &target,
        &settings,
        &sources,
        stall,
        &run_failures,
    )
    .await?;
    let failures = Arc::new(Failures::default());
    let mut held: Vec<Arc<Heartbeats>> = Vec::new();
    let mut steps = Vec::new();
    let mut points = Vec::new();
    let mut best_held = 0u64;
    let period = Duration::from_secs_f64(1.0 / args.open_rate.max(1.0));
    for &step in &args.ramp {
        let start = tokio::time::Instant::now();
        let from = held.len() as u64;
        for i in from..step {
            tokio::time::sleep_until(start + period.mul_f64((i - from) as f64)).await;
            let hb = Arc::new(Heartbeats::new());
            held.push(hb.clone());
            let (target, shared, failures) = (target.clone(), shared.clone(), failures.clone());
            let source = sources.get(i as usize % sources.len()).copied();
            let stream = if runs.is_empty() {
                HeldStream::Post(target.body(&settings, i))
            } else {
                HeldStream::Subscribe(run_for(i, &runs).to_string())
            };
            tokio::spawn(async move {
                let opts = StreamOptions {
                    source,
                    stall,
                    heartbeats: Some((&hb, &shared)),
                };
                let outcome = match stream {
                    HeldStream::Post(body) => {
                        let Ok(mut unused) = histogram() else { return };
                        client::run_stream(&target, body, opts, &mut unused).await
                    }
                    HeldStream::Subscribe(run) => client::run_subscriber(&target, &run, opts).await,
                };
                failures.record(&outcome);
            });
        }
        // Let every new stream get its response head.
        let ready_by = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < ready_by
            && held
                .iter()
                .filter(|h| h.t0_ns.load(Ordering::Relaxed) == 0)
                .count() as u64
                > failures.count()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(mut h) = shared.lateness.lock() {
            h.reset();
        }
        let ws = mono_ns();
        let counts_ws: Vec<u64> = held
            .iter()
            .map(|h| h.count.load(Ordering::Relaxed))
            .collect();
        shared.recording.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(args.window_secs)).await;
        let we = mono_ns();
        // Heartbeats due inside the window may arrive a little after it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        shared.recording.store(false, Ordering::Relaxed);
        let rss = procfs::rss_bytes_sum(&args.sut_pids);
        let (mut expected, mut received, mut alive) = (0u64, 0u64, 0u64);
        let ival = interval.as_nanos() as u64;
        for (h, c_ws) in held.iter().zip(counts_ws) {
            let t0 = h.t0_ns.load(Ordering::Relaxed);
            if h.alive.load(Ordering::Relaxed) {
                alive += 1;
            }
            let (kmin, kmax) = if t0 == 0 {
                // Never opened: everything in the window is missing.
                (ws / ival, we / ival)
            } else {
                (
                    (ws.saturating_sub(t0)) / ival,
                    (we.saturating_sub(t0)) / ival,
                )
            };
            expected += kmax - kmin;
            let now = h.count.load(Ordering::Relaxed);
            received += now.min(kmax).saturating_sub(c_ws.min(kmin));
        }
        let ratio = if expected > 0 {
            received as f64 / expected as f64
        } else {
            0.0
        };
        let late_p99_ms = shared
            .lateness
            .lock()
            .map(|h| h.value_at_quantile(0.99) as f64 / 1e6)
            .unwrap_or(f64::NAN);
        let runs_alive = runs_live
            .iter()
            .filter(|h| h.alive.load(Ordering::Relaxed))
            .count() as u64;
        // A run that ended takes its subscribers with it (`done`): every run must stay live.
        let ok = ratio >= 0.999
            && late_p99_ms < 250.0
            && alive >= step * 999 / 1000
            && runs_alive == args.tail_runs;
        if ok {
            best_held = step;
        }
        points.push((step as f64, rss as f64));
        let mut row = json!({
            "streams": step, "alive": alive, "expected": expected, "received": received,
            "ratio": (ratio * 1e5).round() / 1e5, "late_p99_ms": (late_p99_ms * 10.0).round() / 10.0,
            "rss_bytes": rss, "ok": ok,
        });
        if args.tail_runs > 0 {
            row["runs_alive"] = json!(runs_alive);
        }
        eprintln!("{}: {row}", args.label);
        steps.push(row);
        if !ok {
            break;
        }
    }
    let slope = procfs::slope(&points);
    let mut result = json!({
        "label": args.label,
        "mode": "hold",
        "held": best_held,
        "failures": failures.count(),
        "first_failure": failures.first(),
        "base_rss_bytes": base_rss,
        "rss_per_stream_bytes": slope.map(|s| s.round()),
        "fd_limit": fd_limit,
        "steps": steps,
    });
    if args.tail_runs > 0 {
        result["tail_runs"] = json!(args.tail_runs);
        result["run_failures"] = json!(run_failures.count());
        result["first_run_failure"] = json!(run_failures.first());
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::{check_fd_budget, check_ids, run_for};
    use agentgate_bench::client::Outcome;

    fn stream(first: u64, last: u64, gaps: u64) -> Outcome {
        Outcome {
            complete: true,
            first_id: Some(first),
            last_id: Some(last),
            id_gaps: gaps,
            ..Outcome::default()
        }
    }

    #[test]
    fn both_streams_must_carry_the_same_events_in_order() {
        let (mut post, mut follow) = (stream(1, 201, 0), stream(1, 201, 0));
        check_ids(&mut post, &mut follow);
        assert!(post.error.is_none() && follow.error.is_none());

        let (mut post, mut follow) = (stream(1, 201, 0), stream(1, 200, 0));
        check_ids(&mut post, &mut follow);
        assert!(post.error.is_none());
        assert!(follow.error.unwrap().contains("follow stream carried ids"));

        let (mut post, mut follow) = (stream(1, 201, 0), stream(1, 201, 1));
        check_ids(&mut post, &mut follow);
        assert_eq!(follow.error.as_deref(), Some("1 event ids out of sequence"));
    }

    #[test]
    fn a_hold_must_fit_in_the_open_files_limit() {
        assert!(check_fd_budget(10_000, 100, 20_000).is_ok());
        let err = check_fd_budget(19_900, 100, 20_000)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs about 20064 open files, the limit is 20000"),
            "{err}"
        );
    }

    #[test]
    fn subscribers_spread_evenly_over_the_runs() {
        let runs: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let picked: Vec<&str> = (0..7).map(|i| run_for(i, &runs)).collect();
        assert_eq!(picked, ["a", "b", "c", "a", "b", "c", "a"]);
    }
}
