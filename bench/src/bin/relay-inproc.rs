//! `relay-inproc`: one agentgate (SQLite in a temp dir) and one mock agent in this process, one
//! run of `--events` events relayed to a client, then exit. Run it under
//! `valgrind --tool=callgrind` and divide the instruction count by the events relayed; running it
//! a second time with `--events 0` gives the fixed cost (start-up, migrations, one run) to
//! subtract.
use std::time::Duration;

use agentgate::config::Config;
use agentgate::Application;
use agentgate_bench::client::{self, StreamOptions, Target};
use agentgate_bench::mock::{self, MockParams};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Relay one run of N events through an in-process agentgate and exit")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    #[arg(long, default_value_t = 256)]
    pad: usize,
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
        ..MockParams::default()
    };
    let mock_task = tokio::spawn(mock::serve(listener, params));
    let layer = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = {:?}\ndemo_agent = false\n\
         [agent]\nurl = {:?}\n[limits]\ndaily_messages = 100000000\n\
         [deploy]\non_new_version = false\n[log]\nlevel = \"warn\"\n",
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
    let body = target.body(&params.to_settings(), 0);
    let mut latency = agentgate_bench::histogram()?;
    let opts = StreamOptions {
        source: None,
        stall: Duration::from_secs(60),
        heartbeats: None,
    };
    let outcome = client::run_stream(&target, body, opts, &mut latency).await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    mock_task.abort();
    println!(
        "{}",
        serde_json::json!({
            "events_requested": args.events + 1,
            "events_received": outcome.events,
            "complete": outcome.complete,
            "error": outcome.error,
        })
    );
    if !outcome.complete || outcome.events != args.events + 1 {
        anyhow::bail!("the run did not relay every event: {outcome:?}");
    }
    Ok(())
}
