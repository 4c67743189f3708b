//! The OpenAPI description: public, complete, and true to the router.
//!
//! Completeness is checked two ways. Each resource router registers its handlers with
//! `utoipa_axum::routes!`, which adds the route and its `#[utoipa::path]` description in one
//! step; a route added any other way (`.route("...")`, `.nest(...)`, ...) is found by scanning the
//! sources that build the router, and must appear in the description or be listed in
//! `UNDOCUMENTED` with a reason. Then every documented operation is sent to the running app:
//! it must be routed (another method gets 405, not the fallback's 404), guarded exactly as its
//! `security` says, and answer with a documented status and, for errors, a documented code.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, DbKind, TestApp};

/// Routes deliberately left out of the description, and why.
const UNDOCUMENTED: &[(&str, &str)] = &[(
    "/demo-agent",
    "the built-in demo agent stands in for an external agent server: it speaks the agent \
     protocol rather than this API, checks its own secret, and is mounted only with \
     server.demo_agent",
)];

/// The router-building calls whose first argument is a path.
const ROUTE_CALLS: &[&str] = &[".route(", ".route_service(", ".nest(", ".nest_service("];

fn sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("src/http"))
        .expect("src/http")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    // `http::router`'s `extra` routes (the demo agent) are added here.
    files.push(root.join("src/startup.rs"));
    files.sort();
    files
}

/// The string literal at the start of `rest` (after whitespace), if there is one.
fn leading_literal(rest: &str) -> Option<String> {
    let rest = rest.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

/// `(file, call, path)` of every router-building call, and the calls whose path is not a literal.
#[allow(clippy::type_complexity)]
fn route_calls() -> (Vec<(String, &'static str, String)>, Vec<String>) {
    let mut found = Vec::new();
    let mut opaque = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).expect("source");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for call in ROUTE_CALLS {
            for (at, _) in text.match_indices(call) {
                let rest = &text[at + call.len()..];
                match leading_literal(rest) {
                    Some(path) => found.push((name.clone(), *call, path)),
                    None => opaque.push(format!(
                        "{name}: {call}{}",
                        rest.chars().take(40).collect::<String>()
                    )),
                }
            }
        }
    }
    (found, opaque)
}

/// The `path = "..."` of every `#[utoipa::path(...)]` in `src/http`.
fn annotated_paths() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).expect("source");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (at, _) in text.match_indices("#[utoipa::path(") {
            let attribute = &text[at..];
            let start = attribute
                .find("path = ")
                .expect("path = in #[utoipa::path]");
            let path = leading_literal(&attribute[start + "path = ".len()..]).expect("literal");
            found.push((name.clone(), path));
        }
    }
    found
}

/// axum's `{*rest}` is OpenAPI's `{rest}`.
fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

fn undocumented_reason(path: &str) -> Option<&'static str> {
    UNDOCUMENTED
        .iter()
        .find(|(prefix, _)| path == *prefix || path.starts_with(&format!("{prefix}/")))
        .map(|(_, reason)| *reason)
}

async fn served_spec(app: &TestApp) -> Value {
    let response = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "/openapi.json is public");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    response.json().await.expect("json")
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// `(path, method, operation)` of every operation.
fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(operation) = item.get(*method) {
                out.push((path.clone(), method.to_string(), operation.clone()));
            }
        }
    }
    out
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local $ref");
            spec.pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} does not resolve"))
        }
        None => value,
    }
}

/// The `code`s a documented response shows in its example(s).
fn documented_codes(spec: &Value, response: &Value) -> BTreeSet<String> {
    let response = resolve(spec, response);
    let content = &response["content"]["application/json"];
    let mut codes = BTreeSet::new();
    if let Some(code) = content["example"]["code"].as_str() {
        codes.insert(code.to_string());
    }
    if let Some(examples) = content["examples"].as_object() {
        for example in examples.values() {
            if let Some(code) = resolve(spec, example)["value"]["code"].as_str() {
                codes.insert(code.to_string());
            }
        }
    }
    codes
}

fn schema_ref(spec: &Value, response: &Value) -> Option<String> {
    resolve(spec, response)["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .map(str::to_string)
}

fn every_ref(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => out.push(reference.clone()),
                    _ => every_ref(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| every_ref(item, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_in_the_source_is_documented() {
    let app = spawn_app(DbKind::Sqlite).await;
    let spec = served_spec(&app).await;
    let documented: BTreeSet<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();

    let (calls, opaque) = route_calls();
    assert!(
        opaque.is_empty(),
        "routes whose path is not a string literal cannot be checked; register them with \
         utoipa_axum::routes! and #[utoipa::path]: {opaque:#?}"
    );
    let mut missing = Vec::new();
    for (file, call, path) in &calls {
        let path = openapi_path(path);
        let nested = call.starts_with(".nest");
        let covered = documented.contains(&path)
            || (nested
                && documented
                    .iter()
                    .any(|p| p.starts_with(&format!("{path}/"))))
            || undocumented_reason(&path).is_some();
        if !covered {
            missing.push(format!("{file}: {call}{path:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a description (document them with #[utoipa::path] and register them \
         with utoipa_axum::routes!, or list them in UNDOCUMENTED with a reason): {missing:#?}"
    );
    // The demo agent is the one exclusion, and it is really mounted where the scan says.
    assert!(calls.iter().any(|(_, _, path)| path == "/demo-agent"));

    // Every description belongs to a registered route.
    let annotated = annotated_paths();
    assert!(annotated.len() >= 20, "found {annotated:?}");
    for (file, path) in &annotated {
        assert!(
            documented.contains(&openapi_path(path)),
            "{file}: #[utoipa::path(path = {path:?})] is not registered with routes!"
        );
    }

    // Every public path the auth middleware lets through is a documented route (or excluded).
    for prefix in agentgate::auth::PUBLIC_PATH_PREFIXES {
        let covered = documented
            .iter()
            .any(|p| p == prefix || p.starts_with(&format!("{}/", prefix.trim_end_matches('/'))))
            || undocumented_reason(prefix).is_some();
        assert!(covered, "public path {prefix} has no documented route");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_is_well_formed() {
    let app = spawn_app(DbKind::Sqlite).await;
    let spec = served_spec(&app).await;

    // It is exactly what the library builds for this configuration.
    let built = serde_json::to_value(agentgate::http::openapi(&app.state.config.server))
        .expect("serialize");
    assert_eq!(spec, built);
    let mut config = app.state.config.server.clone();
    config.metrics_bind = Some("127.0.0.1:9".parse().unwrap());
    let separate = agentgate::http::openapi(&config);
    assert!(
        !separate.paths.paths.contains_key("/metrics"),
        "/metrics is documented only where it is served"
    );

    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"],
        json!({
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": spec["components"]["securitySchemes"]["bearer"]["description"],
        })
    );
    let error_body = &spec["components"]["schemas"]["ErrorBody"];
    assert_eq!(error_body["required"], json!(["code", "message", "error"]));

    let mut refs = Vec::new();
    every_ref(&spec, &mut refs);
    assert!(!refs.is_empty());
    for reference in &refs {
        resolve(&spec, &json!({ "$ref": reference }));
    }

    let tags: BTreeSet<&str> = spec["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut operation_ids = BTreeSet::new();
    for (path, method, operation) in operations(&spec) {
        let at = format!("{} {path}", method.to_uppercase());
        let id = operation["operationId"].as_str().expect("operationId");
        assert!(
            operation_ids.insert(id.to_string()),
            "{at}: duplicate id {id}"
        );
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{at}: no summary"
        );
        for tag in operation["tags"].as_array().expect("tags") {
            assert!(
                tags.contains(tag.as_str().unwrap()),
                "{at}: undeclared {tag}"
            );
        }
        // Every path parameter is declared.
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|params| {
                params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let templated: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .map(|part| part.split('}').next().unwrap())
            .collect();
        assert_eq!(declared, templated, "{at}: path parameters");

        let responses = operation["responses"].as_object().expect("responses");
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        if secured {
            assert_eq!(
                responses.get("401"),
                Some(&json!({"$ref": "#/components/responses/Unauthorized"})),
                "{at}: a secured operation documents 401"
            );
        }
        let success = responses
            .iter()
            .find(|(status, _)| status.starts_with('2'))
            .and_then(|(_, r)| schema_ref(&spec, r));
        for (status, response) in responses {
            if status.as_str() < "400" {
                continue;
            }
            let schema = schema_ref(&spec, response);
            let is_error = matches!(
                schema.as_deref(),
                Some("#/components/schemas/ErrorBody" | "#/components/schemas/GitFailure")
            );
            assert!(
                is_error || (schema.is_some() && schema == success),
                "{at} {status}: an error response is an ErrorBody (got {schema:?})"
            );
            if is_error {
                assert!(
                    !documented_codes(&spec, response).is_empty(),
                    "{at} {status}: no documented error code"
                );
            }
        }
    }
    app.stop().await;
}

/// A concrete path for a template: ids are fresh UUIDs, so nothing is found or changed.
fn concrete(path: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("}") + start;
        let name = &rest[start + 1..end];
        out.push_str(match name {
            "scope" => "user",
            // A repository: `/git/{owner}/{repo}/...` takes one path segment each.
            "owner" => "local",
            "repo" => "app.git",
            _ if name.ends_with("id") => &id,
            _ => "a/b.txt",
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

struct Probe {
    status: u16,
    body: Option<Value>,
    www_authenticate: bool,
}

async fn probe(
    client: &reqwest::Client,
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Probe {
    let mut request = client.request(method.clone(), app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method == Method::POST || method == Method::PUT {
        // Never a valid body: the probe must not start runs or change anything.
        request = request.json(&json!({}));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let www_authenticate = response.headers().contains_key("www-authenticate");
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = if is_json {
        let bytes = tokio::time::timeout(Duration::from_secs(10), response.bytes())
            .await
            .expect("body in time")
            .expect("body");
        serde_json::from_slice(&bytes).ok()
    } else {
        None
    };
    Probe {
        status,
        body,
        www_authenticate,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_answers_as_documented() {
    let app = spawn_app(DbKind::Sqlite).await;
    let spec = served_spec(&app).await;
    let token = app.token("openapi-probe");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut paths_seen = BTreeMap::new();
    for (template, method, operation) in operations(&spec) {
        let at = format!("{} {template}", method.to_uppercase());
        let path = concrete(&template);
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let responses = operation["responses"].as_object().expect("responses");
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));

        for token in [None, Some(token.as_str())] {
            let answer = probe(&client, &app, method.clone(), &path, token).await;
            let who = if token.is_some() { "with" } else { "without" };
            assert_ne!(answer.status, 405, "{at}: the method is not routed");
            if secured && token.is_none() {
                assert_eq!(
                    answer.status, 401,
                    "{at}: secured, yet open without a token"
                );
                assert!(
                    answer.www_authenticate,
                    "{at}: 401 without WWW-Authenticate"
                );
            } else {
                assert_ne!(
                    answer.status, 401,
                    "{at}: documented as public, yet guarded"
                );
            }
            let status = answer.status.to_string();
            let documented = responses.get(&status).unwrap_or_else(|| {
                panic!("{at} {who} a token answered {status}, which is not documented")
            });
            if answer.status >= 400 {
                let body = answer.body.as_ref().unwrap_or_else(|| {
                    panic!("{at} {who} a token: a {status} without a JSON body")
                });
                let code = body["code"].as_str().expect("code");
                assert!(body["message"].is_string(), "{at}: message");
                let codes = documented_codes(&spec, documented);
                assert!(
                    codes.contains(code),
                    "{at} {who} a token answered {status} {code:?}, documented {codes:?}"
                );
            } else if let (Some(body), Some(schema)) =
                (answer.body.as_ref(), schema_ref(&spec, documented))
            {
                let schema = resolve(&spec, &json!({ "$ref": schema })).clone();
                for key in schema["required"].as_array().into_iter().flatten() {
                    let key = key.as_str().unwrap();
                    assert!(body.get(key).is_some(), "{at}: the body lacks {key}");
                }
            }
        }
        paths_seen.insert(template, path);
    }
    // A method no route uses: a routed path answers 405, an unrouted one the fallback's 404.
    for (template, path) in &paths_seen {
        let answer = probe(&client, &app, Method::PATCH, path, Some(&token)).await;
        assert_eq!(
            answer.status, 405,
            "{template} is documented but not routed"
        );
    }
    let answer = probe(&client, &app, Method::PATCH, "/no/such/route", Some(&token)).await;
    assert_eq!(answer.status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_public_and_self_contained() {
    let app = spawn_app(DbKind::Sqlite).await;
    let page = app
        .http
        .get(app.url("/docs"))
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    let html = page.text().await.expect("text");
    assert!(html.contains(r#"spec-url="/openapi.json""#));
    assert!(html.contains(r#"<script src="/docs/redoc.standalone.js">"#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from another origin"
    );

    let script = app
        .http
        .get(app.url("/docs/redoc.standalone.js"))
        .send()
        .await
        .expect("request");
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let body = script.bytes().await.expect("body");
    assert!(body.len() > 100_000, "the vendored bundle");
    app.stop().await;
}
