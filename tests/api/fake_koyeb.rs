//! A stateful fake of the Koyeb REST API v1 subset agentgate uses, with Koyeb's documented
//! shapes: apps (with an auto-assigned `<name>.koyeb.app` domain), services, deployments,
//! secrets, `{status, code, message}` errors, and bearer-token auth (401 otherwise).
//!
//! Each deployment walks PENDING → PROVISIONING → STARTING → HEALTHY, one step per `step`
//! (configurable), unless a script says otherwise: `script_next_deployment`,
//! `unknown_status_next`, `hang_next` (stays STARTING). A deployment whose health check probes
//! another port than the app's `PORT` ends UNHEALTHY, and definitions whose routes or health
//! checks name a port the service does not expose are refused. `fail_next(n, status)` makes
//! the next n authenticated requests fail. Every request and answer is recorded for assertions.
//!
//! Every request is checked against Koyeb's official API description (the operations we use,
//! kept in tests/fixtures/koyeb-openapi; see `openapi_check.rs`); one that breaks it gets the
//! described 400 "Validation error" and is recorded, and so is an answer of the fake that
//! breaks it. Dropping the fake with a violation left fails the test (unless it already
//! panics); a test that breaks it on purpose takes them with `take_request_violations`.
//! Duplicate names are answered as the description documents validation errors: 400 with
//! `fields` naming the field.
//!
//! Env values and registry passwords are recorded for tests but never put into answers, so a
//! test can check that a secret reached Koyeb without Koyeb (or us) echoing it.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::openapi_check::{Description, Operation};

pub const TOKEN: &str = "fake-koyeb-token";
const DEFAULT_PATH: [&str; 4] = ["PENDING", "PROVISIONING", "STARTING", "HEALTHY"];

/// `Deployment.Status` in Koyeb's description. A script may name another status (one Koyeb
/// may add later): it is answered as scripted, and that answer is not checked.
const DOCUMENTED_STATUSES: [&str; 16] = [
    "PENDING",
    "PROVISIONING",
    "SCHEDULED",
    "CANCELING",
    "CANCELED",
    "ALLOCATING",
    "STARTING",
    "HEALTHY",
    "DEGRADED",
    "UNHEALTHY",
    "STOPPING",
    "STOPPED",
    "ERRORING",
    "ERROR",
    "STASHED",
    "SLEEPING",
];

/// The statuses Koyeb's description lists for every operation, answered with its `Error`
/// shape; any other is its `default`, a `google.rpc.Status`.
const DESCRIBED_ERRORS: [u16; 6] = [400, 401, 403, 404, 500, 503];

/// The operations the fake serves, as Koyeb's description names them.
const SERVED: &[(&str, &str)] = &[
    ("POST", "/v1/apps"),
    ("GET", "/v1/apps"),
    ("GET", "/v1/apps/{id}"),
    ("DELETE", "/v1/apps/{id}"),
    ("POST", "/v1/services"),
    ("GET", "/v1/services"),
    ("GET", "/v1/services/{id}"),
    ("PUT", "/v1/services/{id}"),
    ("PATCH", "/v1/services/{id}"),
    ("POST", "/v1/services/{id}/redeploy"),
    ("DELETE", "/v1/services/{id}"),
    ("GET", "/v1/deployments/{id}"),
    ("POST", "/v1/secrets"),
    ("GET", "/v1/secrets"),
    ("PUT", "/v1/secrets/{id}"),
    ("PATCH", "/v1/secrets/{id}"),
    ("DELETE", "/v1/secrets/{id}"),
];

/// Koyeb's description, loaded once per test process.
fn description() -> &'static Description {
    static DESCRIPTION: std::sync::LazyLock<Description> = std::sync::LazyLock::new(|| {
        Description::load(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/koyeb-openapi/openapi.json"
            ),
            SERVED,
        )
    });
    &DESCRIPTION
}

#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Parsed JSON body (`Null` when there was none).
    pub body: Value,
    pub status: u16,
    pub response: String,
    pub user_agent: String,
}

#[derive(Clone)]
struct App {
    id: String,
    name: String,
    created_at: String,
}

#[derive(Clone)]
struct Service {
    id: String,
    app_id: String,
    name: String,
    latest_deployment_id: String,
    created_at: String,
}

#[derive(Clone)]
struct Deployment {
    id: String,
    app_id: String,
    service_id: String,
    started: Instant,
    path: Vec<String>,
    messages: Vec<String>,
    definition: Value,
    created_at: String,
}

#[derive(Clone)]
struct Secret {
    id: String,
    name: String,
    kind: String,
    /// As sent, credentials included (never answered).
    payload: Value,
}

struct Script {
    path: Vec<String>,
    messages: Vec<String>,
}

struct Inner {
    step: Duration,
    apps: BTreeMap<String, App>,
    services: BTreeMap<String, Service>,
    deployments: BTreeMap<String, Deployment>,
    secrets: BTreeMap<String, Secret>,
    scripts: VecDeque<Script>,
    failures: VecDeque<u16>,
    requests: Vec<RecordedRequest>,
    /// Every definition sent (create or update), in order.
    definitions: Vec<Value>,
    /// Requests whose parameters or body break the operation's description.
    request_violations: Vec<String>,
    /// Answers of the fake that break the operation's description.
    response_violations: Vec<String>,
    /// The answer being made reports a status beyond the description on purpose.
    beyond_description: bool,
}

type Shared = Arc<Mutex<Inner>>;

pub struct FakeKoyeb {
    pub url: String,
    inner: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKoyeb {
    /// A test ends with no request that broke Koyeb's description (and no answer of the fake's
    /// that did).
    fn drop(&mut self) {
        self.server.abort();
        if std::thread::panicking() {
            return;
        }
        let inner = self.lock();
        let broken: Vec<&str> = inner
            .request_violations
            .iter()
            .chain(&inner.response_violations)
            .map(String::as_str)
            .collect();
        assert!(
            broken.is_empty(),
            "the fake Koyeb saw requests or gave answers that break Koyeb's API description:\n{}",
            broken.join("\n")
        );
    }
}

impl FakeKoyeb {
    pub async fn start() -> Self {
        Self::start_with_step(Duration::from_millis(50)).await
    }

    /// `step`: how long a deployment stays in each status of its path.
    pub async fn start_with_step(step: Duration) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            step,
            apps: BTreeMap::new(),
            services: BTreeMap::new(),
            deployments: BTreeMap::new(),
            secrets: BTreeMap::new(),
            scripts: VecDeque::new(),
            failures: VecDeque::new(),
            requests: Vec::new(),
            definitions: Vec::new(),
            request_violations: Vec::new(),
            response_violations: Vec::new(),
            beyond_description: false,
        }));
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Koyeb");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, inner, server }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_step(&self, step: Duration) {
        self.lock().step = step;
    }

    /// The next deployment walks `statuses` (one per step) and stays at the last one.
    pub fn script_next_deployment(&self, statuses: Vec<&str>) {
        self.script_next_deployment_with_messages(statuses, Vec::new());
    }

    /// Like `script_next_deployment`; `messages` are reported once the last status is reached.
    pub fn script_next_deployment_with_messages(&self, statuses: Vec<&str>, messages: Vec<&str>) {
        self.lock().scripts.push_back(Script {
            path: statuses.into_iter().map(str::to_string).collect(),
            messages: messages.into_iter().map(str::to_string).collect(),
        });
    }

    pub fn unknown_status_next(&self, status: &str) {
        self.script_next_deployment(vec!["PENDING", status]);
    }

    /// The next deployment never gets past STARTING.
    pub fn hang_next(&self) {
        self.script_next_deployment(vec!["PENDING", "PROVISIONING", "STARTING"]);
    }

    /// The next `n` authenticated requests answer `status` (429 comes with `Retry-After: 1`).
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut inner = self.lock();
        for _ in 0..n {
            inner.failures.push_back(status);
        }
    }

    /// Requests that broke Koyeb's description (each answered 400), removed from the fake so
    /// that dropping it does not fail the test.
    pub fn take_request_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().request_violations)
    }

    /// Answers of the fake that break Koyeb's description (a bug in the fake).
    pub fn response_violations(&self) -> Vec<String> {
        self.lock().response_violations.clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// `"METHOD /path"` for each request, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// The requests with `method` on registry secrets (`/v1/secrets...`), in order.
    pub fn secret_requests(&self, method: &str) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path.starts_with("/v1/secrets"))
            .cloned()
            .collect()
    }

    pub fn app_names(&self) -> Vec<String> {
        self.lock().apps.values().map(|a| a.name.clone()).collect()
    }

    pub fn service_names(&self) -> Vec<String> {
        self.lock()
            .services
            .values()
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn secret_names(&self) -> Vec<String> {
        self.lock()
            .secrets
            .values()
            .map(|s| s.name.clone())
            .collect()
    }

    /// The registry configuration last sent for a secret (password included).
    pub fn secret_payload(&self, name: &str) -> Option<Value> {
        self.lock()
            .secrets
            .values()
            .find(|s| s.name == name)
            .map(|s| s.payload.clone())
    }

    pub fn deployment_count(&self) -> usize {
        self.lock().deployments.len()
    }

    /// Every definition sent, in order.
    pub fn definitions(&self) -> Vec<Value> {
        self.lock().definitions.clone()
    }

    /// The env of every definition sent, as key → value (or `secret:<name>`).
    pub fn env_seen(&self) -> Vec<BTreeMap<String, String>> {
        self.lock()
            .definitions
            .iter()
            .map(|d| {
                d["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        let key = e["key"].as_str()?.to_string();
                        let value = match (e["value"].as_str(), e["secret"].as_str()) {
                            (Some(v), _) => v.to_string(),
                            (None, Some(s)) => format!("secret:{s}"),
                            (None, None) => return None,
                        };
                        Some((key, value))
                    })
                    .collect()
            })
            .collect()
    }
}

async fn handle(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::String("<invalid json>".into()))
    };
    let sent = (!body.is_empty()).then_some(&parsed);
    let operation = description().operation(method.as_str(), &path);
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    let request = Request {
        method: &method,
        path: &path,
        query: &query,
        headers: &headers,
        body: sent,
    };
    let (status, answer, retry_after) = answer(&mut guard, &request, operation.as_ref());
    // Whatever the fake serves must be checked: a route outside `SERVED` is a gap.
    if operation.is_none() && status.is_success() {
        guard.response_violations.push(format!(
            "{method} {path} was served but matches no operation in SERVED"
        ));
    }
    let scripted_beyond = std::mem::take(&mut guard.beyond_description);
    if let Some((operation, _)) = operation.as_ref().filter(|_| !scripted_beyond) {
        let problems = operation.check_response(status.as_u16(), &answer);
        if !problems.is_empty() {
            guard.response_violations.push(format!(
                "{} answered {}: {}",
                operation.name,
                status.as_u16(),
                problems.join(" ")
            ));
        }
    }
    let text = answer.to_string();
    guard.requests.push(RecordedRequest {
        method: method.to_string(),
        path,
        query,
        body: parsed,
        status: status.as_u16(),
        response: text.clone(),
        user_agent: headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    });
    drop(guard);
    let mut response = (status, [("content-type", "application/json")], text).into_response();
    if retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    /// The JSON body, when there was one.
    body: Option<&'a Value>,
}

fn answer(
    inner: &mut Inner,
    request: &Request<'_>,
    operation: Option<&(&Operation, Vec<(String, String)>)>,
) -> (StatusCode, Value, bool) {
    let Request {
        method,
        path,
        query,
        headers,
        body,
    } = *request;
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            error(401, "unauthenticated", "Invalid or missing token"),
            false,
        );
    }
    if let Some(status) = inner.failures.pop_front() {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = if DESCRIBED_ERRORS.contains(&status) {
            error(status, "injected", "Injected failure")
        } else {
            json!({ "code": rpc_code(status), "message": "Injected failure", "details": [] })
        };
        return (code, body, status == 429);
    }
    if let Some((operation, path_params)) = operation {
        let problems = operation.check_request(path_params, query, body);
        if !problems.is_empty() {
            inner.request_violations.push(format!(
                "{method} {path}?{query} ({}): {}",
                operation.name,
                problems.join(" ")
            ));
            let fields: Vec<Value> = problems
                .iter()
                .map(|p| json!({ "field": operation.name, "description": p }))
                .collect();
            let answer = json!({
                "status": 400,
                "code": "invalid_argument",
                "message": "Validation error",
                "fields": fields,
            });
            return (StatusCode::BAD_REQUEST, answer, false);
        }
    }
    let body = body.unwrap_or(&Value::Null);
    let params = query_params(query);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "apps"]) => create_app(inner, body),
        ("GET", ["v1", "apps"]) => Ok(list_apps(inner, &params)),
        ("GET", ["v1", "apps", id]) => get_app(inner, id),
        ("DELETE", ["v1", "apps", id]) => delete_app(inner, id),
        ("POST", ["v1", "services"]) => create_service(inner, body),
        ("GET", ["v1", "services"]) => Ok(list_services(inner, &params)),
        ("GET", ["v1", "services", id]) => get_service(inner, id),
        ("PUT" | "PATCH", ["v1", "services", id]) => update_service(inner, id, body),
        ("POST", ["v1", "services", id, "redeploy"]) => redeploy(inner, id),
        ("DELETE", ["v1", "services", id]) => delete_service(inner, id),
        ("GET", ["v1", "deployments", id]) => get_deployment(inner, id),
        ("POST", ["v1", "secrets"]) => create_secret(inner, body),
        ("GET", ["v1", "secrets"]) => Ok(list_secrets(inner, &params)),
        ("PUT" | "PATCH", ["v1", "secrets", id]) => update_secret(inner, id, body),
        ("DELETE", ["v1", "secrets", id]) => delete_secret(inner, id),
        _ => Err((404, "not_found", "Unknown route".to_string())),
    };
    match result {
        Ok(value) => (StatusCode::OK, value, false),
        Err((status, code, message)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            error(status, code, &message),
            false,
        ),
    }
}

/// The gRPC code behind an HTTP status, as grpc-gateway maps them.
fn rpc_code(status: u16) -> i32 {
    match status {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        408 | 504 => 4,
        409 => 6,
        429 => 8,
        501 => 12,
        502 | 503 => 14,
        _ => 2,
    }
}

type Answer = Result<Value, (u16, &'static str, String)>;

/// Koyeb's error shapes: `Error`, and for a 400 `ErrorWithFields` ("Validation error", with
/// the field and what is wrong with it; our messages read "field: description").
fn error(status: u16, code: &str, message: &str) -> Value {
    match message.split_once(": ") {
        Some((field, description)) if status == 400 => json!({
            "status": status,
            "code": code,
            "message": "Validation error",
            "fields": [{ "field": field, "description": description }],
        }),
        _ => json!({ "status": status, "code": code, "message": message }),
    }
}

fn invalid(message: &str) -> (u16, &'static str, String) {
    (400, "invalid_argument", message.to_string())
}

fn not_found(what: &str) -> (u16, &'static str, String) {
    (404, "not_found", format!("{what} not found"))
}

fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%2F", "/")))
        .collect()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn valid_name(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn app_json(app: &App) -> Value {
    json!({
        "id": app.id,
        "name": app.name,
        "organization_id": "org-fake",
        "created_at": app.created_at,
        "updated_at": app.created_at,
        "status": "HEALTHY",
        "domains": [{
            "id": format!("dom-{}", &app.id[..8]),
            "name": format!("{}-fake.koyeb.app", app.name),
            "type": "AUTOASSIGNED",
            "status": "ACTIVE",
        }],
    })
}

fn create_app(inner: &mut Inner, body: &Value) -> Answer {
    let name = body["name"].as_str().unwrap_or_default();
    if !valid_name(name) {
        return Err(invalid(
            "name: must be 3-64 lowercase letters, digits or dashes",
        ));
    }
    if inner.apps.values().any(|a| a.name == name) {
        return Err(invalid("name: already exists"));
    }
    let app = App {
        id: new_id(),
        name: name.to_string(),
        created_at: now(),
    };
    inner.apps.insert(app.id.clone(), app.clone());
    Ok(json!({ "app": app_json(&app) }))
}

/// Like Koyeb's, the name filter matches substrings.
fn list_apps(inner: &Inner, params: &BTreeMap<String, String>) -> Value {
    let apps: Vec<Value> = inner
        .apps
        .values()
        .filter(|a| {
            params
                .get("name")
                .is_none_or(|n| a.name.contains(n.as_str()))
        })
        .map(app_json)
        .collect();
    json!({ "apps": apps, "limit": 100, "offset": 0, "count": apps.len() })
}

fn get_app(inner: &Inner, id: &str) -> Answer {
    inner
        .apps
        .get(id)
        .map(|a| json!({ "app": app_json(a) }))
        .ok_or_else(|| not_found("app"))
}

fn delete_app(inner: &mut Inner, id: &str) -> Answer {
    if inner.apps.remove(id).is_none() {
        return Err(not_found("app"));
    }
    inner.services.retain(|_, s| s.app_id != id);
    Ok(json!({}))
}

fn service_json(inner: &Inner, service: &Service) -> Value {
    let status = inner
        .deployments
        .get(&service.latest_deployment_id)
        .map(|d| current_status(inner.step, d).0)
        .unwrap_or_else(|| "STARTING".to_string());
    json!({
        "id": service.id,
        "name": service.name,
        "app_id": service.app_id,
        "organization_id": "org-fake",
        "created_at": service.created_at,
        "updated_at": service.created_at,
        "status": if status == "HEALTHY" { "HEALTHY" } else { "STARTING" },
        "messages": [],
        "latest_deployment_id": service.latest_deployment_id,
        "active_deployment_id": service.latest_deployment_id,
    })
}

/// Checks a definition the way Koyeb would reject it.
fn check_definition(inner: &Inner, definition: &Value) -> Result<(), (u16, &'static str, String)> {
    let name = definition["name"].as_str().unwrap_or_default();
    if !valid_name(name) {
        return Err(invalid("definition.name: invalid"));
    }
    if definition["type"] != "WEB" {
        return Err(invalid("definition.type: expected WEB"));
    }
    for list in ["regions", "instance_types", "scalings", "ports", "routes"] {
        if definition[list].as_array().is_none_or(|a| a.is_empty()) {
            return Err(invalid(&format!("definition.{list}: required")));
        }
    }
    let mut regions = definition["regions"].as_array().into_iter().flatten();
    if regions.any(|r| r.as_str().is_none_or(str::is_empty)) {
        return Err(invalid("definition.regions: unknown region"));
    }
    let mut types = definition["instance_types"]
        .as_array()
        .into_iter()
        .flatten();
    if types.any(|t| t["type"].as_str().is_none_or(str::is_empty)) {
        return Err(invalid("definition.instance_types: unknown instance type"));
    }
    for env in definition["env"].as_array().into_iter().flatten() {
        let key_ok = env["key"].as_str().is_some_and(|k| !k.is_empty());
        let one_value = env["value"].is_string() != env["secret"].is_string();
        if !key_ok || !one_value {
            return Err(invalid(
                "definition.env: each entry needs a key and a value or a secret",
            ));
        }
    }
    // Routes and health checks name a port the service exposes; a health check is tcp or
    // http, not both.
    let ports: Vec<&Value> = definition["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["port"])
        .collect();
    for route in definition["routes"].as_array().into_iter().flatten() {
        if !ports.contains(&&route["port"]) {
            return Err(invalid("definition.routes: port is not exposed"));
        }
    }
    for check in definition["health_checks"].as_array().into_iter().flatten() {
        let port = match (check.get("tcp"), check.get("http")) {
            (Some(probe), None) | (None, Some(probe)) => &probe["port"],
            _ => {
                return Err(invalid(
                    "definition.health_checks: exactly one of tcp or http",
                ))
            }
        };
        if !ports.contains(&port) {
            return Err(invalid("definition.health_checks: port is not exposed"));
        }
    }
    match (definition.get("git"), definition.get("docker")) {
        (Some(git), None) => {
            if git.get("buildpack").is_some() && git.get("docker").is_some() {
                return Err(invalid("definition.git: one builder, buildpack or docker"));
            }
            if git["repository"].as_str().is_none_or(str::is_empty)
                || git["branch"].as_str().is_none_or(str::is_empty)
            {
                return Err(invalid(
                    "definition.git: repository and branch are required",
                ));
            }
        }
        (None, Some(docker)) => {
            if docker["image"].as_str().is_none_or(str::is_empty) {
                return Err(invalid("definition.docker.image: required"));
            }
            if let Some(secret) = docker["image_registry_secret"].as_str() {
                if !inner
                    .secrets
                    .values()
                    .any(|s| s.name == secret && s.kind == "REGISTRY")
                {
                    return Err(invalid(
                        "definition.docker.image_registry_secret: not found",
                    ));
                }
            }
        }
        _ => {
            return Err(invalid(
                "definition: exactly one of git or docker is required",
            ))
        }
    }
    Ok(())
}

/// The app listens on `PORT`; a health check on another port never passes.
fn health_check_misses_the_app(definition: &Value) -> bool {
    let listening = definition["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["key"] == "PORT")
        .and_then(|e| e["value"].as_str()?.parse::<u64>().ok());
    let checked = definition["health_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("tcp").or_else(|| c.get("http"))?["port"].as_u64());
    let mut checked = checked.peekable();
    checked.peek().is_some() && listening.is_some_and(|port| checked.any(|c| c != port))
}

fn new_deployment(inner: &mut Inner, service_id: &str, app_id: &str, definition: &Value) -> String {
    let script = inner.scripts.pop_front().unwrap_or_else(|| Script {
        path: DEFAULT_PATH.iter().map(|s| s.to_string()).collect(),
        messages: Vec::new(),
    });
    let script = match health_check_misses_the_app(definition) {
        true => Script {
            path: ["PENDING", "PROVISIONING", "STARTING", "UNHEALTHY"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            messages: vec!["TCP health check failed on the configured port".to_string()],
        },
        false => script,
    };
    let deployment = Deployment {
        id: new_id(),
        app_id: app_id.to_string(),
        service_id: service_id.to_string(),
        started: Instant::now(),
        path: script.path,
        messages: script.messages,
        definition: definition.clone(),
        created_at: now(),
    };
    let id = deployment.id.clone();
    inner.deployments.insert(id.clone(), deployment);
    inner.definitions.push(definition.clone());
    id
}

fn create_service(inner: &mut Inner, body: &Value) -> Answer {
    let app_id = body["app_id"].as_str().unwrap_or_default().to_string();
    if !inner.apps.contains_key(&app_id) {
        return Err(invalid("app_id: app not found"));
    }
    let definition = &body["definition"];
    check_definition(inner, definition)?;
    let name = definition["name"].as_str().unwrap_or_default().to_string();
    if inner
        .services
        .values()
        .any(|s| s.app_id == app_id && s.name == name)
    {
        return Err(invalid("definition.name: already exists"));
    }
    let id = new_id();
    let deployment_id = new_deployment(inner, &id, &app_id, definition);
    let service = Service {
        id: id.clone(),
        app_id,
        name,
        latest_deployment_id: deployment_id,
        created_at: now(),
    };
    inner.services.insert(id, service.clone());
    Ok(json!({ "service": service_json(inner, &service) }))
}

fn list_services(inner: &Inner, params: &BTreeMap<String, String>) -> Value {
    let services: Vec<Value> = inner
        .services
        .values()
        .filter(|s| params.get("app_id").is_none_or(|a| &s.app_id == a))
        .filter(|s| {
            params
                .get("name")
                .is_none_or(|n| s.name.contains(n.as_str()))
        })
        .map(|s| service_json(inner, s))
        .collect();
    json!({ "services": services, "limit": 100, "offset": 0, "count": services.len() })
}

fn get_service(inner: &Inner, id: &str) -> Answer {
    inner
        .services
        .get(id)
        .map(|s| json!({ "service": service_json(inner, s) }))
        .ok_or_else(|| not_found("service"))
}

fn update_service(inner: &mut Inner, id: &str, body: &Value) -> Answer {
    let Some(service) = inner.services.get(id).cloned() else {
        return Err(not_found("service"));
    };
    let definition = &body["definition"];
    check_definition(inner, definition)?;
    let deployment_id = new_deployment(inner, id, &service.app_id, definition);
    let service = Service {
        latest_deployment_id: deployment_id,
        ..service
    };
    inner.services.insert(id.to_string(), service.clone());
    Ok(json!({ "service": service_json(inner, &service) }))
}

fn redeploy(inner: &mut Inner, id: &str) -> Answer {
    let Some(service) = inner.services.get(id).cloned() else {
        return Err(not_found("service"));
    };
    let definition = inner
        .deployments
        .get(&service.latest_deployment_id)
        .map(|d| d.definition.clone())
        .unwrap_or(Value::Null);
    let deployment_id = new_deployment(inner, id, &service.app_id, &definition);
    if let Some(s) = inner.services.get_mut(id) {
        s.latest_deployment_id = deployment_id.clone();
    }
    let deployment = inner.deployments.get(&deployment_id).cloned();
    Ok(json!({ "deployment": deployment.map(|d| deployment_json(inner.step, &d)) }))
}

fn delete_service(inner: &mut Inner, id: &str) -> Answer {
    inner
        .services
        .remove(id)
        .map(|_| json!({}))
        .ok_or_else(|| not_found("service"))
}

/// The status reached by now, and whether it is the last of the path.
fn current_status(step: Duration, deployment: &Deployment) -> (String, bool) {
    let steps = deployment.started.elapsed().as_millis() / step.as_millis().max(1);
    let last = deployment.path.len().saturating_sub(1);
    let index = usize::try_from(steps).unwrap_or(usize::MAX).min(last);
    let status = deployment.path.get(index).cloned().unwrap_or_default();
    (status, index == last)
}

/// Env values are left out: the fake never echoes secrets.
fn redacted_definition(definition: &Value) -> Value {
    let mut definition = definition.clone();
    if let Some(env) = definition.get_mut("env").and_then(Value::as_array_mut) {
        for entry in env {
            if let Some(object) = entry.as_object_mut() {
                object.remove("value");
            }
        }
    }
    definition
}

fn deployment_json(step: Duration, deployment: &Deployment) -> Value {
    let (status, finished) = current_status(step, deployment);
    let messages = if finished {
        deployment.messages.clone()
    } else {
        Vec::new()
    };
    json!({
        "id": deployment.id,
        "app_id": deployment.app_id,
        "service_id": deployment.service_id,
        "organization_id": "org-fake",
        "created_at": deployment.created_at,
        "updated_at": deployment.created_at,
        "status": status,
        "messages": messages,
        "definition": redacted_definition(&deployment.definition),
    })
}

fn get_deployment(inner: &mut Inner, id: &str) -> Answer {
    let deployment = inner
        .deployments
        .get(id)
        .ok_or_else(|| not_found("deployment"))?;
    let answer = deployment_json(inner.step, deployment);
    inner.beyond_description = answer["status"]
        .as_str()
        .is_some_and(|s| !DOCUMENTED_STATUSES.contains(&s));
    Ok(json!({ "deployment": answer }))
}

fn secret_json(secret: &Secret) -> Value {
    let mut answer = Map::new();
    answer.insert("id".into(), secret.id.clone().into());
    answer.insert("name".into(), secret.name.clone().into());
    answer.insert("type".into(), secret.kind.clone().into());
    answer.insert("organization_id".into(), "org-fake".into());
    // Registry configuration without the password, like Koyeb.
    if let Some(registry) = secret.payload.get("private_registry") {
        answer.insert(
            "private_registry".into(),
            json!({ "username": registry["username"], "url": registry["url"] }),
        );
    }
    Value::Object(answer)
}

fn check_secret(body: &Value) -> Result<(String, String), (u16, &'static str, String)> {
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(invalid("name: required"));
    }
    let kind = body["type"].as_str().unwrap_or("SIMPLE").to_string();
    match kind.as_str() {
        "REGISTRY" => {
            let registry = &body["private_registry"];
            for field in ["username", "password", "url"] {
                if registry[field].as_str().is_none_or(str::is_empty) {
                    return Err(invalid(&format!("private_registry.{field}: required")));
                }
            }
        }
        "SIMPLE" if body["value"].is_string() => {}
        _ => return Err(invalid("type: unsupported secret")),
    }
    Ok((name, kind))
}

fn create_secret(inner: &mut Inner, body: &Value) -> Answer {
    let (name, kind) = check_secret(body)?;
    if inner.secrets.values().any(|s| s.name == name) {
        return Err(invalid("name: already exists"));
    }
    let secret = Secret {
        id: new_id(),
        name,
        kind,
        payload: body.clone(),
    };
    inner.secrets.insert(secret.id.clone(), secret.clone());
    Ok(json!({ "secret": secret_json(&secret) }))
}

fn list_secrets(inner: &Inner, params: &BTreeMap<String, String>) -> Value {
    let secrets: Vec<Value> = inner
        .secrets
        .values()
        .filter(|s| {
            params
                .get("name")
                .is_none_or(|n| s.name.contains(n.as_str()))
        })
        .map(secret_json)
        .collect();
    json!({ "secrets": secrets, "limit": 100, "offset": 0, "count": secrets.len() })
}

fn update_secret(inner: &mut Inner, id: &str, body: &Value) -> Answer {
    let (name, kind) = check_secret(body)?;
    let Some(secret) = inner.secrets.get_mut(id) else {
        return Err(not_found("secret"));
    };
    secret.name = name;
    secret.kind = kind;
    secret.payload = body.clone();
    Ok(json!({ "secret": secret_json(secret) }))
}

fn delete_secret(inner: &mut Inner, id: &str) -> Answer {
    inner
        .secrets
        .remove(id)
        .map(|_| json!({}))
        .ok_or_else(|| not_found("secret"))
}
