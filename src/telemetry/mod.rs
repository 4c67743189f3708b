//! Structured logs: JSON in production, pretty locally. `RUST_LOG` overrides the configured level.
//!
//! With `[telemetry] enabled`, the spans of this crate are also exported as OpenTelemetry traces
//! over OTLP/HTTP ([`otlp`]), and W3C trace context crosses our HTTP edges ([`context`]). Off,
//! the subscriber is the plain log formatter it always was: no exporter, no extra layer.
pub mod context;
mod otlp;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// Set once the OTel layer is installed: the trace-context work at our edges is skipped
/// without it.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported, so trace context is worth reading and sending.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The exporter's handle: [`Telemetry::shutdown`] sends the spans still buffered.
#[must_use = "shut it down before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (on a blocking thread: the flush waits for the export).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = stopped {
            eprintln!("warning: the trace exporter did not shut down cleanly: {e}");
        }
    }
}

/// Logs only, for commands whose work is not worth a trace (migrate, demo-agent).
pub fn init_logs(log: &LogConfig) {
    let builder = tracing_subscriber::fmt().with_env_filter(log_filter(log));
    let result = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}

fn log_filter(log: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn,sea_orm=warn", log.level)))
}

/// Installs the global subscriber. Fails only on a trace exporter that cannot be built (a
/// bad `OTEL_EXPORTER_OTLP_ENDPOINT`); a second call (tests) keeps the first subscriber.
pub fn init(log: &LogConfig, traces: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    if !traces.enabled {
        init_logs(log);
        return Ok(Telemetry { provider: None });
    }
    let provider = otlp::provider(traces)?;
    let fmt = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
    };
    // Each layer filters for itself: `RUST_LOG=warn` quiets the logs, not the traces.
    let spans = Targets::new().with_target("agentgate", tracing::Level::INFO);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("agentgate"))
        .with_filter(spans);
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(log_filter(log)))
        .with(otel)
        .try_init();
    if installed.is_ok() {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry {
        provider: Some(provider),
    })
}
