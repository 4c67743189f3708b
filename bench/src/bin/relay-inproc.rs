//! `relay-inproc`: one agentgate (SQLite in a temp dir) and one mock agent in this process,
//! `--runs` concurrent runs of `--events` events each relayed to clients, then exit. Run it under
//! `valgrind --tool=callgrind` and divide the instruction count by the events relayed; running it
//! a second time with `--events 0` gives the fixed cost (the runs' start and end) to subtract.
//! One run makes one-row log batches; concurrent runs share batches.
//!
//! The measured relay lies between calls of `agentgate_bench_window_start` and
//! `agentgate_bench_window_end`: with callgrind's `--zero-before` and `--dump-before` on them,
//! start-up, migrations and shutdown stay out of the figure. Before the window, the same runs
//! relay a few events unmeasured, so the database pool's connections and prepared statements
//! exist (opening them varies from run to run with the threads' scheduling). The job workers'
//! polls and the lease sweeps, timers that fire by wall-clock time (and callgrind runs ~50 times
//! slower than the machine), are set an hour apart: no job or expired lease exists here.
use std::time::Duration;

use agentgate::config::Config;
use agentgate::Application;
use agentgate_bench::client::{self, Outcome, StreamOptions, Target};
use agentgate_bench::mock::{self, MockParams};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Relay one run of N events through an in-process agentgate and exit")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    #[arg(long, default_value_t = 256)]
    pad: usize,
    /// Concurrent runs, each of `--events` events.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Microseconds between a run's events (0: as fast as the relay takes them). Paced events
    /// are each relayed alone, so the work per event does not depend on how many a read, a log
    /// batch or a write happened to gather.
    #[arg(long, default_value_t = 0)]
    interval_us: u64,
    /// Events per run of the unmeasured warm-up (0: none).
    #[arg(long, default_value_t = 10)]
    warmup_events: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let listener = mock::listen("127.0.0.1:0".parse()?)?;
    let agent_url = format!("http://{}", listener.local_addr()?);
    let params = MockParams {
        events: args.events,
        pad: args.pad,
        interval_us: args.interval_us,
        ..MockParams::default()
    };
    let mock_task = tokio::spawn(mock::serve(listener, params));
    let layer = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = {:?}\ndemo_agent = false\n\
         [agent]\nurl = {:?}\n[limits]\ndaily_messages = 100000000\n\
         [deploy]\non_new_version = false\npoll_interval_ms = 3600000\n\
         [runs]\nsweep_interval_secs = 3600\nlease_secs = 7200\n[log]\nlevel = \"warn\"\n",
        dir.path().display().to_string(),
        agent_url,
    );
    let config = Config::from_toml_layers(&[&layer])?;
    let app = Application::build(config).await?;
    let url = format!("http://{}", app.address());
    let token = app
        .state()
        .auth
        .mint_dev_token("bench", false)
        .ok_or_else(|| anyhow::anyhow!("dev tokens need auth.mode = hs256"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));

    let target = Target::parse(&url, Some(token), true)?;
    if args.warmup_events > 0 {
        let warmup = MockParams {
            events: args.warmup_events,
            ..params
        };
        check(&relay(&target, args.runs, &warmup).await?, &warmup)?;
    }
    agentgate_bench_window_start();
    let outcomes = relay(&target, args.runs, &params).await?;
    agentgate_bench_window_end();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    mock_task.abort();
    let received: u64 = outcomes.iter().map(|o| o.events).sum();
    let expected = args.runs * (args.events + 1);
    println!(
        "{}",
        serde_json::json!({
            "runs": args.runs,
            "events_requested": expected,
            "events_received": received,
            "complete": outcomes.iter().all(|o| o.complete),
            "errors": outcomes.iter().filter_map(|o| o.error.clone()).collect::<Vec<_>>(),
        })
    );
    check(&outcomes, &params)
}

/// `runs` concurrent runs of `params`, each read to its end by a client of its own.
async fn relay(target: &Target, runs: u64, params: &MockParams) -> anyhow::Result<Vec<Outcome>> {
    let streams: Vec<_> = (0..runs)
        .map(|i| {
            let target = target.clone();
            let body = target.body(&params.to_settings(), i);
            tokio::spawn(async move {
                let mut latency = agentgate_bench::histogram()?;
                let opts = StreamOptions {
                    source: None,
                    stall: Duration::from_secs(60),
                    heartbeats: None,
                };
                anyhow::Ok(client::run_stream(&target, body, opts, &mut latency).await)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for stream in streams {
        outcomes.push(stream.await??);
    }
    Ok(outcomes)
}

/// Every run relayed every event (the running ones and the final one) and ended.
fn check(outcomes: &[Outcome], params: &MockParams) -> anyhow::Result<()> {
    if let Some(bad) = outcomes
        .iter()
        .find(|o| !o.complete || o.events != params.events + 1)
    {
        anyhow::bail!("a run did not relay every event: {bad:?}");
    }
    Ok(())
}

/// Marks the start of the measured relay for callgrind (`--zero-before`); an unmangled name that
/// is never inlined, so callgrind finds it. The two markers' bodies differ: identical ones are
/// folded into one function by an optimised build, and both names then mark the same call.
#[no_mangle]
#[inline(never)]
pub extern "C" fn agentgate_bench_window_start() {
    std::hint::black_box(1u8);
}

/// Marks the end of the measured relay for callgrind (`--dump-before`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn agentgate_bench_window_end() {
    std::hint::black_box(2u8);
}
