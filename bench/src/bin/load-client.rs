//! `load-client`: opens SSE streams against the mock agent directly, through nginx, or through
//! agentgate, and reports time to first event, per-event latency (receive CLOCK_MONOTONIC minus
//! the mock's `sentNs` stamp), events/s, errors, stalled streams and the CPU time the system
//! under test used. `--ramp` holds idle heartbeat streams in steps and reports how many are held
//! and the RSS per stream. The last line on stdout is a JSON summary.
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
    let result = if args.ramp.is_empty() {
        streams(&args, Arc::new(target)).await?
    } else {
        hold(&args, Arc::new(target)).await?
    };
    println!("{result}");
    Ok(())
}

async fn streams(args: &Args, target: Arc<Target>) -> anyhow::Result<Value> {
    let settings = MockParams {
        events: args.events,
        pad: args.pad,
        interval_us: args.interval_us,
        first_delay_us: args.first_delay_us,
        heartbeat_ms: 0,
    }
    .to_settings();
    if args.warmup > 0 {
        run_batch(args, &target, &settings, args.warmup, 0).await?;
    }
    let cpu_before = procfs::cpu_us_sum(&args.sut_pids);
    let aux_before = procfs::cpu_us_sum(&args.aux_pids);
    let started = mono_ns();
    let (totals, ttfe, latency) =
        run_batch(args, &target, &settings, args.streams, args.warmup).await?;
    let wall = (mono_ns() - started) as f64 / 1e9;
    let cpu = procfs::cpu_us_sum(&args.sut_pids).saturating_sub(cpu_before);
    let aux = procfs::cpu_us_sum(&args.aux_pids).saturating_sub(aux_before);
    let per_event = (totals.events > 0).then(|| cpu as f64 / totals.events as f64);
    let aux_per_event = (totals.events > 0).then(|| aux as f64 / totals.events as f64);
    let result = json!({
        "label": args.label,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "streams": totals.streams,
        "complete": totals.complete,
        "errors": totals.errors,
        "stalled": totals.stalled,
        "first_errors": totals.first_errors,
        "events": totals.events,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "events_per_s": (totals.events as f64 / wall).round(),
        "ttfe": summary(&ttfe),
        "latency": summary(&latency),
        "sut_cpu_us": cpu,
        "sut_cpu_us_per_event": per_event.map(|v| (v * 1000.0).round() / 1000.0),
        "aux_cpu_us": aux,
        "aux_cpu_us_per_event": aux_per_event.map(|v| (v * 1000.0).round() / 1000.0),
    });
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

type Batch = (Totals, Histogram<u64>, Histogram<u64>);

async fn run_batch(
    args: &Args,
    target: &Arc<Target>,
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
                sources.clone(),
                settings.clone(),
                stall,
            ));
        }
    } else {
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..args.concurrency.max(1).min(count.max(1)) {
            let next = next.clone();
            let (target, sources, settings) = (target.clone(), sources.clone(), settings.clone());
            set.spawn(async move {
                let mut acc: Batch = (Totals::default(), histogram()?, histogram()?);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let (t, h1, h2) = one_stream(
                        first_id + n,
                        target.clone(),
                        sources.clone(),
                        settings.clone(),
                        stall,
                    )
                    .await?;
                    merge(&mut acc, t, &h1, &h2)?;
                }
                Ok(acc)
            });
        }
    }
    let mut acc: Batch = (Totals::default(), histogram()?, histogram()?);
    while let Some(joined) = set.join_next().await {
        let (t, h1, h2) = joined??;
        merge(&mut acc, t, &h1, &h2)?;
    }
    Ok(acc)
}

async fn one_stream(
    n: u64,
    target: Arc<Target>,
    sources: Arc<Vec<std::net::IpAddr>>,
    settings: Value,
    stall: Duration,
) -> anyhow::Result<Batch> {
    let mut totals = Totals::default();
    let mut ttfe = histogram()?;
    let mut latency = histogram()?;
    let source = sources.get(n as usize % sources.len()).copied();
    let body = target.body(&settings, n);
    let opts = StreamOptions {
        source,
        stall,
        heartbeats: None,
    };
    let outcome = client::run_stream(&target, body, opts, &mut latency).await;
    if let Some(t) = outcome.ttfe_ns {
        ttfe.record(t.max(1))?;
    }
    totals.add(&outcome);
    Ok((totals, ttfe, latency))
}

fn merge(
    acc: &mut Batch,
    t: Totals,
    ttfe: &Histogram<u64>,
    lat: &Histogram<u64>,
) -> anyhow::Result<()> {
    acc.0.streams += t.streams;
    acc.0.complete += t.complete;
    acc.0.errors += t.errors;
    acc.0.stalled += t.stalled;
    acc.0.events += t.events;
    for e in t.first_errors {
        if acc.0.first_errors.len() < 5 {
            acc.0.first_errors.push(e);
        }
    }
    acc.1.add(ttfe)?;
    acc.2.add(lat)?;
    Ok(())
}

/// Hold mode: ramp idle heartbeat streams through `--ramp`, counting heartbeats at each step.
async fn hold(args: &Args, target: Arc<Target>) -> anyhow::Result<Value> {
    let interval = Duration::from_millis(args.heartbeat_ms.max(1));
    let shared = client::heartbeat_shared(interval)?;
    let settings = MockParams {
        heartbeat_ms: args.heartbeat_ms,
        ..MockParams::default()
    }
    .to_settings();
    let sources = client::sources(args.sources);
    let stall = interval * 3;
    let failures = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut held: Vec<Arc<Heartbeats>> = Vec::new();
    let mut steps = Vec::new();
    let mut points = Vec::new();
    let mut best_held = 0u64;
    let period = Duration::from_secs_f64(1.0 / args.open_rate.max(1.0));
    let base_rss = procfs::rss_bytes_sum(&args.sut_pids);
    for &step in &args.ramp {
        let start = tokio::time::Instant::now();
        let from = held.len() as u64;
        for i in from..step {
            tokio::time::sleep_until(start + period.mul_f64((i - from) as f64)).await;
            let hb = Arc::new(Heartbeats::new());
            held.push(hb.clone());
            let (target, shared, failures, first_failure) = (
                target.clone(),
                shared.clone(),
                failures.clone(),
                first_failure.clone(),
            );
            let source = sources.get(i as usize % sources.len()).copied();
            let body = target.body(&settings, i);
            tokio::spawn(async move {
                let Ok(mut unused) = histogram() else { return };
                let opts = StreamOptions {
                    source,
                    stall,
                    heartbeats: Some((&hb, &shared)),
                };
                let outcome = client::run_stream(&target, body, opts, &mut unused).await;
                failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = first_failure.lock() {
                    if first.is_none() {
                        *first = Some(format!(
                            "{} stalled={}",
                            outcome.error.unwrap_or_default(),
                            outcome.stalled
                        ));
                    }
                }
            });
        }
        // Let every new stream get its response head.
        let ready_by = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < ready_by
            && held
                .iter()
                .filter(|h| h.t0_ns.load(Ordering::Relaxed) == 0)
                .count() as u64
                > failures.load(Ordering::Relaxed)
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
        let ok = ratio >= 0.999 && late_p99_ms < 250.0 && alive >= step * 999 / 1000;
        if ok {
            best_held = step;
        }
        points.push((step as f64, rss as f64));
        let row = json!({
            "streams": step, "alive": alive, "expected": expected, "received": received,
            "ratio": (ratio * 1e5).round() / 1e5, "late_p99_ms": (late_p99_ms * 10.0).round() / 10.0,
            "rss_bytes": rss, "ok": ok,
        });
        eprintln!("{}: {row}", args.label);
        steps.push(row);
        if !ok {
            break;
        }
    }
    let slope = procfs::slope(&points);
    let first = first_failure.lock().ok().and_then(|f| f.clone());
    Ok(json!({
        "label": args.label,
        "mode": "hold",
        "held": best_held,
        "failures": failures.load(Ordering::Relaxed),
        "first_failure": first,
        "base_rss_bytes": base_rss,
        "rss_per_stream_bytes": slope.map(|s| s.round()),
        "steps": steps,
    }))
}
