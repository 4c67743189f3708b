//! A stateful fake of the Neon API v2 project endpoints agentgate uses, under `/api/v2`:
//! `POST /projects` (201, `{project, connection_uris, roles, databases, ...}`),
//! `GET /projects?search=` (substring match on name or id, as Neon does), `GET /projects/{id}`,
//! `GET /projects/{id}/connection_uri?database_name=&role_name=` (`{uri}`),
//! `DELETE /projects/{id}`; errors as `{code, message}`; bearer-token auth (401 otherwise).
//! Like Neon, project names need not be unique. `fail_next(n, status)` makes the next n
//! authenticated requests fail; every request is recorded.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

pub const API_KEY: &str = "fake-neon-key";

#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    pub status: u16,
}

#[derive(Clone)]
struct Project {
    id: String,
    name: String,
    region_id: String,
    role: String,
    database: String,
    password: String,
    created_at: String,
}

impl Project {
    fn host(&self) -> String {
        format!(
            "ep-{}.{}.aws.neon.tech",
            self.id,
            self.region_id.trim_start_matches("aws-")
        )
    }

    fn uri(&self) -> String {
        format!(
            "postgresql://{}:{}@{}/{}?sslmode=require",
            self.role,
            self.password,
            self.host(),
            self.database
        )
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "region_id": self.region_id,
            "platform_id": "aws",
            "pg_version": 17,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        })
    }
}

struct Inner {
    projects: BTreeMap<String, Project>,
    failures: VecDeque<u16>,
    requests: Vec<RecordedRequest>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct FakeNeon {
    /// The API base, ending in `/api/v2`.
    pub url: String,
    inner: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNeon {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeNeon {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            projects: BTreeMap::new(),
            failures: VecDeque::new(),
            requests: Vec::new(),
        }));
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Neon");
        let url = format!(
            "http://{}/api/v2",
            listener.local_addr().expect("local addr")
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, inner, server }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fail_next(&self, n: usize, status: u16) {
        let mut inner = self.lock();
        for _ in 0..n {
            inner.failures.push_back(status);
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// `"METHOD /path"` for each request, in order (path without the `/api/v2` prefix).
    pub fn calls(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    pub fn project_names(&self) -> Vec<String> {
        self.lock()
            .projects
            .values()
            .map(|p| p.name.clone())
            .collect()
    }

    /// The connection URI of the (first) project with this name.
    pub fn connection_uri(&self, name: &str) -> Option<String> {
        self.lock()
            .projects
            .values()
            .find(|p| p.name == name)
            .map(Project::uri)
    }

    /// Adds a project directly, e.g. to simulate a duplicate name.
    pub fn insert_project(&self, name: &str) -> String {
        let project = new_project(name, "aws-us-east-2", "app", "app");
        let id = project.id.clone();
        self.lock().projects.insert(id.clone(), project);
        id
    }
}

fn new_project(name: &str, region_id: &str, role: &str, database: &str) -> Project {
    let id = format!("p-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    Project {
        id,
        name: name.to_string(),
        region_id: region_id.to_string(),
        role: role.to_string(),
        database: database.to_string(),
        password: format!("npg_{}", uuid::Uuid::new_v4().simple()),
        created_at: chrono::Utc::now().to_rfc3339(),
    }
}

async fn handle(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/api/v2")
        .unwrap_or(uri.path())
        .to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::String("<invalid json>".into()))
    };
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    let (status, answer) = answer(&mut guard, &method, &path, &query, &headers, &parsed);
    guard.requests.push(RecordedRequest {
        method: method.to_string(),
        path,
        query,
        body: parsed,
        status: status.as_u16(),
    });
    drop(guard);
    (
        status,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

fn error(message: &str) -> Value {
    json!({ "code": "", "message": message })
}

fn answer(
    inner: &mut Inner,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Value,
) -> (StatusCode, Value) {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {API_KEY}"));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, error("authentication required"));
    }
    if let Some(status) = inner.failures.pop_front() {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, error("injected failure"));
    }
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["projects"]) => create(inner, body),
        ("GET", ["projects"]) => {
            let search = params.get("search").cloned().unwrap_or_default();
            let projects: Vec<Value> = inner
                .projects
                .values()
                .filter(|p| p.name.contains(&search) || p.id.contains(&search))
                .map(Project::json)
                .collect();
            (
                StatusCode::OK,
                json!({ "projects": projects, "pagination": {} }),
            )
        }
        ("GET", ["projects", id]) => match inner.projects.get(*id) {
            Some(p) => (StatusCode::OK, json!({ "project": p.json() })),
            None => (StatusCode::NOT_FOUND, error("project not found")),
        },
        ("GET", ["projects", id, "connection_uri"]) => {
            let Some(project) = inner.projects.get(*id) else {
                return (StatusCode::NOT_FOUND, error("project not found"));
            };
            let database = params.get("database_name").map(String::as_str);
            let role = params.get("role_name").map(String::as_str);
            if database.is_none() || role.is_none() {
                return (
                    StatusCode::BAD_REQUEST,
                    error("database_name and role_name are required"),
                );
            }
            if database != Some(project.database.as_str()) || role != Some(project.role.as_str()) {
                return (StatusCode::NOT_FOUND, error("database or role not found"));
            }
            (StatusCode::OK, json!({ "uri": project.uri() }))
        }
        ("DELETE", ["projects", id]) => match inner.projects.remove(*id) {
            Some(p) => (StatusCode::OK, json!({ "project": p.json() })),
            None => (StatusCode::NOT_FOUND, error("project not found")),
        },
        _ => (StatusCode::NOT_FOUND, error("unknown route")),
    }
}

fn create(inner: &mut Inner, body: &Value) -> (StatusCode, Value) {
    let spec = &body["project"];
    let Some(name) = spec["name"].as_str().filter(|n| !n.is_empty()) else {
        return (StatusCode::BAD_REQUEST, error("project.name is required"));
    };
    let region = spec["region_id"].as_str().unwrap_or("aws-us-east-2");
    let role = spec["branch"]["role_name"]
        .as_str()
        .unwrap_or("neondb_owner");
    let database = spec["branch"]["database_name"].as_str().unwrap_or("neondb");
    let project = new_project(name, region, role, database);
    let answer = json!({
        "project": project.json(),
        "connection_uris": [{
            "connection_uri": project.uri(),
            "connection_parameters": {
                "database": project.database,
                "password": project.password,
                "role": project.role,
                "host": project.host(),
            },
        }],
        "roles": [{ "name": project.role, "password": project.password }],
        "databases": [{ "name": project.database, "owner_name": project.role }],
        "operations": [],
        "branch": { "id": format!("br-{}", &project.id[2..]), "name": "main" },
        "endpoints": [],
    });
    inner.projects.insert(project.id.clone(), project);
    (StatusCode::CREATED, answer)
}
