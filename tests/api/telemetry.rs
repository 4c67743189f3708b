//! OpenTelemetry traces, end to end: the real `agentgate` binary exports to an OTLP/HTTP
//! receiver speaking the collector's protobuf service, and the trace a caller started is the
//! one the run's spans and the agent request continue.
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::db_test;
use crate::fake_agent::{event, with, FakeAgent, Script};
use crate::helpers::{
    assert_complete_run, drop_database, fresh_database, spawn_app_with, DbKind, SseReader,
};
use crate::process::{start_gateway, start_gateway_with_env, write_config, Gateway};

/// What the receiver was sent: each export's raw body and its decoded spans.
#[derive(Default)]
struct Received {
    bodies: Vec<Bytes>,
    spans: Vec<Span>,
    service_names: Vec<String>,
}

/// A collector's OTLP/HTTP traces endpoint on 127.0.0.1:0; stops when dropped.
struct OtlpReceiver {
    url: String,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let router = Router::new()
            .route("/v1/traces", post(export))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            received,
            server,
        }
    }

    /// Everything received so far.
    fn take(&self) -> Received {
        std::mem::take(&mut *self.received.lock().expect("lock"))
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn export(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body.clone()) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut received = received.lock().expect("lock");
    received.bodies.push(body);
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        if let Some(name) = resource.attributes.iter().find(|a| a.key == "service.name") {
            received
                .service_names
                .push(string_value(name.value.as_ref()));
        }
        for scope in resource_spans.scope_spans {
            received.spans.extend(scope.spans);
        }
    }
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    (StatusCode::OK, answer)
}

fn string_value(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        _ => String::new(),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| string_value(a.value.as_ref()))
}

/// The one span of `trace` named `name`.
fn the<'a>(spans: &'a [Span], trace: &[u8], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name:?} span in the trace: {found:#?}");
    found[0]
}

/// `version-traceid-parentid-flags`, the ids as bytes.
fn parse_traceparent(value: &str) -> (Vec<u8>, Vec<u8>) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (
        hex::decode(parts[1]).expect("trace id"),
        hex::decode(parts[2]).expect("span id"),
    )
}

/// SIGTERM, and wait for a clean exit: the spans still buffered are sent before it.
async fn stop(mut gateway: Gateway) {
    let pid = gateway.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill").success());
    let exit = tokio::task::spawn_blocking(move || gateway.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "graceful exit: {exit:?}");
}

const SECRET_MESSAGE: &str = "build a todo app for project Bluebird-7731";
const NEW_FILE_DIFF: &str = "diff --git a/index.html b/index.html\nnew file mode 100644\n--- /dev/null\n+++ b/index.html\n@@ -0,0 +1 @@\n+<h1>Todo</h1>\n";

async fn a_run_is_one_trace_from_the_callers_traceparent_to_the_agent(kind: DbKind) {
    let (database_url, pg) = fresh_database(kind).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = OtlpReceiver::start().await;
    let agent = FakeAgent::start().await;
    let telemetry = format!(
        "[telemetry]\nenabled = true\nendpoint = {:?}\nservice_name = \"agentgate-test\"\n",
        receiver.url
    );
    let config = write_config(dir.path(), &database_url, &agent, &telemetry);
    // Logs at warn (start_gateway): traces do not depend on the log level.
    let gateway = start_gateway(&config);
    let token = gateway.token.clone();
    let reply = with(
        with(
            event("idle", "ReviewResult", Some("Here is your app")),
            "unifiedDiff",
            json!(NEW_FILE_DIFF),
        ),
        "app_name",
        json!("todo-app"),
    );
    agent.push(Script::events(&[
        event("running", "WipUpdate", Some("Planning the app")),
        reply,
    ]));

    let trace_hex = uuid::Uuid::new_v4().simple().to_string();
    let caller_span_hex = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let response = reqwest::Client::new()
        .post(format!("{}/message", gateway.address))
        .bearer_auth(&token)
        .header(
            "traceparent",
            format!("00-{trace_hex}-{caller_span_hex}-01"),
        )
        .json(&json!({"message": SECRET_MESSAGE}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let run_id = crate::resume::run_id_of(&response);
    let frames = SseReader::new(response).collect().await;
    assert_complete_run(&frames);

    stop(gateway).await;

    let received = receiver.take();
    let spans = &received.spans;
    let trace = hex::decode(&trace_hex).expect("hex");
    let caller_span = hex::decode(caller_span_hex).expect("hex");
    assert!(
        received.service_names.iter().all(|n| n == "agentgate-test"),
        "{:?}",
        received.service_names
    );

    // The caller's span parents the request; the run's stages are children of the run.
    let request = the(spans, &trace, "request");
    assert_eq!(request.parent_span_id, caller_span);
    let run = the(spans, &trace, "run");
    assert_eq!(run.parent_span_id, request.span_id);
    assert_eq!(
        the(spans, &trace, "limits.reserve").parent_span_id,
        request.span_id
    );
    for stage in ["agent.connect", "agent.first_event", "pipeline.apply_diff"] {
        assert_eq!(
            the(spans, &trace, stage).parent_span_id,
            run.span_id,
            "{stage} is a stage of the run"
        );
    }
    assert_eq!(attribute(run, "run_id").as_deref(), Some(run_id.as_str()));
    assert_eq!(attribute(run, "user_id").as_deref(), Some("dev"));
    let app_id = attribute(run, "app_id").expect("app id");
    assert!(!app_id.is_empty());

    // The agent server was told to continue the trace under the connect span.
    let requests = agent.requests();
    assert_eq!(requests.len(), 1);
    let sent = requests[0].headers["traceparent"].to_str().expect("ascii");
    let (sent_trace, sent_parent) = parse_traceparent(sent);
    assert_eq!(sent_trace, trace);
    assert_eq!(sent_parent, the(spans, &trace, "agent.connect").span_id);

    // Jobs the run enqueued trace on their own, linked back to where they were enqueued.
    let run_spans: HashMap<&[u8], &str> = spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .map(|s| (s.span_id.as_slice(), s.name.as_str()))
        .collect();
    let jobs: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "job" && attribute(s, "app_id").as_deref() == Some(&app_id))
        .collect();
    assert!(!jobs.is_empty(), "job spans: {spans:#?}");
    for job in &jobs {
        assert_ne!(job.trace_id, trace, "a job is a trace of its own");
        assert!(job.parent_span_id.is_empty(), "a job span is a root");
        let link = job.links.first().expect("a link to the run");
        assert_eq!(link.trace_id, trace);
        assert!(
            run_spans.contains_key(link.span_id.as_slice()),
            "the link names a span of the run"
        );
    }
    let upload = jobs
        .iter()
        .find(|j| attribute(j, "kind").as_deref() == Some("upload_version"))
        .expect("the version's upload job");
    let uploaded = spans
        .iter()
        .find(|s| s.name == "version.upload" && s.parent_span_id == upload.span_id);
    assert!(uploaded.is_some(), "the upload runs under its job span");

    // Ids only: neither the message nor any credential is in what was exported.
    for body in &received.bodies {
        let text = String::from_utf8_lossy(body);
        for secret in [
            "Bluebird-7731",
            "Here is your app",
            "agent-secret",
            token.as_str(),
        ] {
            assert!(!text.contains(secret), "{secret:?} was exported");
        }
    }
    drop_database(pg).await;
}
db_test!(a_run_is_one_trace_from_the_callers_traceparent_to_the_agent);

#[tokio::test]
async fn the_standard_otel_variables_configure_the_exporter_and_a_malformed_traceparent_starts_a_trace(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = OtlpReceiver::start().await;
    let agent = FakeAgent::start().await;
    let config = write_config(dir.path(), "", &agent, "[telemetry]\nenabled = true\n");
    let gateway = start_gateway_with_env(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str()),
            ("OTEL_SERVICE_NAME", "gateway-from-env"),
        ],
    );
    let health = reqwest::Client::new()
        .get(format!("{}/health", gateway.address))
        .header("traceparent", "00-not-a-trace-01")
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    stop(gateway).await;

    let received = receiver.take();
    assert!(!received.service_names.is_empty(), "nothing was exported");
    assert!(received
        .service_names
        .iter()
        .all(|n| n == "gateway-from-env"));
    let request = received
        .spans
        .iter()
        .find(|s| s.name == "request" && attribute(s, "path").as_deref() == Some("/health"))
        .expect("the request's span");
    // W3C: a traceparent that does not parse is ignored, and the request starts its own trace.
    assert!(request.parent_span_id.is_empty(), "{request:?}");
    assert_eq!(request.trace_id.len(), 16);
    assert!(request.trace_id.iter().any(|b| *b != 0));
}

#[test]
fn bad_exporter_settings_stop_start_up_with_one_line() {
    for (env, expect) in [
        (
            [("AGENTGATE__TELEMETRY__ENDPOINT", "collector:4318")],
            "telemetry.endpoint",
        ),
        (
            [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://bad host:4318")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_agentgate"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(std::env::temp_dir().join("agentgate-telemetry-config-test"))
            .env("AGENTGATE__TELEMETRY__ENABLED", "true")
            .envs(env)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{env:?} must stop start-up");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expect), "{env:?}: {stderr}");
    }
}

async fn with_traces_off_the_agent_request_carries_no_traceparent(kind: DbKind) {
    let agent = FakeAgent::start().await;
    let toml = format!(
        "{}[deploy]\non_new_version = false\n[git]\nhost = \"none\"\n",
        agent.config("")
    );
    let app = spawn_app_with(kind, &toml).await;
    agent.push(Script::events(&[event(
        "idle",
        "ReviewResult",
        Some("Done"),
    )]));
    let response = app
        .http
        .post(app.url("/message"))
        .bearer_auth(app.token("alice"))
        .header(
            "traceparent",
            format!("00-{}-{}-01", "ab".repeat(16), "cd".repeat(8)),
        )
        .json(&json!({"message": "build a todo app"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    assert_complete_run(&SseReader::new(response).collect().await);
    let requests = agent.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].headers.get("traceparent").is_none());
}
db_test!(with_traces_off_the_agent_request_carries_no_traceparent);
