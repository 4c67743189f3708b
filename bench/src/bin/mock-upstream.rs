//! `mock-upstream`: an agent-protocol SSE server for benchmarks. See `agentgate_bench::mock`.
use agentgate_bench::mock::{self, MockParams};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Agent-protocol SSE server (POST /message) with stamped events")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9000")]
    bind: std::net::SocketAddr,
    /// Running events per stream (a final idle ReviewResult follows).
    #[arg(long, default_value_t = 10)]
    events: u64,
    /// Bytes of padding in each running event's text.
    #[arg(long, default_value_t = 256)]
    pad: usize,
    /// Microseconds between events; 0 = firehose.
    #[arg(long, default_value_t = 0)]
    interval_us: u64,
    /// Microseconds before the first event.
    #[arg(long, default_value_t = 0)]
    first_delay_us: u64,
    /// Heartbeat-only mode: a KeepAlive every N ms, the stream held open (0 = off).
    #[arg(long, default_value_t = 0)]
    heartbeat_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let params = MockParams {
        events: args.events,
        pad: args.pad,
        interval_us: args.interval_us,
        first_delay_us: args.first_delay_us,
        heartbeat_ms: args.heartbeat_ms,
    };
    let listener = mock::listen(args.bind)?;
    eprintln!(
        "mock-upstream listening on http://{}",
        listener.local_addr()?
    );
    tokio::select! {
        _ = mock::serve(listener, params) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
