//! The trace exporter: OTLP/HTTP protobuf through a batch processor, sent with our own reqwest
//! (the exporter's bundled clients would add a second reqwest and HTTP stack).
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::TelemetryConfig;

const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SERVICE_NAME: &str = "agentgate";

/// A provider exporting to the configured collector, or to the one the standard `OTEL_*`
/// variables name. Must be called inside the Tokio runtime that sends the exports.
pub fn provider(config: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let client = RuntimeClient::new()?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_timeout(EXPORT_TIMEOUT);
    if !config.endpoint.is_empty() {
        // A programmatic endpoint is used as given: it names the traces path itself.
        let base = config.endpoint.trim_end_matches('/');
        exporter = exporter.with_endpoint(format!("{base}/v1/traces"));
    }
    let exporter = exporter
        .build()
        .map_err(|e| anyhow::anyhow!("telemetry: could not build the OTLP exporter: {e}"))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource(config))
        .build())
}

/// `service.name`: configured, else `OTEL_SERVICE_NAME` (the SDK's detectors read it), else ours.
fn resource(config: &TelemetryConfig) -> Resource {
    let builder = Resource::builder();
    let from_env = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.is_empty());
    if !config.service_name.is_empty() {
        builder
            .with_service_name(config.service_name.clone())
            .build()
    } else if from_env {
        builder.build()
    } else {
        builder.with_service_name(DEFAULT_SERVICE_NAME).build()
    }
}

/// reqwest needs a Tokio reactor, and the batch processor exports from a thread of its own:
/// each export is sent as a task on the runtime the provider was built in.
#[derive(Debug)]
struct RuntimeClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl RuntimeClient {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("telemetry: the exporter needs a Tokio runtime"))?;
        let http = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build()?;
        Ok(Self { http, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let response = http.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}
