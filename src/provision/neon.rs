//! Databases on Neon (API v2, `https://console.neon.tech/api/v2`): one project per app, named
//! `ag-<app hex>`, with a role and a database both called `app`.
//!
//! Neon does not keep project names unique, so `create` looks for the project first
//! (`GET /projects?search=`) and then asks for its connection URI
//! (`GET /projects/{id}/connection_uri?database_name=&role_name=` → `{uri}`); otherwise it
//! creates it (`POST /projects {project: {name, region_id, branch: {role_name, database_name}}}`
//! → `{project: {id}, connection_uris: [{connection_uri}]}`). `delete` removes every project
//! with that exact name (`DELETE /projects/{id}`). 423 (project busy), 429 and 5xx are transient.
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{app_hex, DatabaseProvisioner, ProvisionError, ProvisionedDatabase};

const DATABASE: &str = "app";
const ROLE: &str = "app";
const MAX_MESSAGE: usize = 300;

pub struct NeonProvisioner {
    http: reqwest::Client,
    base: String,
    api_key: SecretString,
    region_id: String,
}

#[derive(Deserialize)]
struct Project {
    id: String,
    #[serde(default)]
    name: String,
}
#[derive(Deserialize)]
struct ProjectsReply {
    #[serde(default)]
    projects: Vec<Project>,
}
#[derive(Deserialize)]
struct CreateReply {
    project: ProjectId,
    #[serde(default)]
    connection_uris: Vec<ConnectionUri>,
}
#[derive(Deserialize)]
struct ProjectId {
    id: String,
}
#[derive(Deserialize)]
struct ConnectionUri {
    connection_uri: String,
}
#[derive(Deserialize)]
struct UriReply {
    uri: String,
}
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

impl NeonProvisioner {
    pub fn new(
        api_base: String,
        api_key: SecretString,
        region_id: String,
    ) -> Result<Self, ProvisionError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ProvisionError::Permanent(format!("building the Neon client: {e}")))?;
        Ok(Self {
            http,
            base: api_base.trim_end_matches('/').to_string(),
            api_key,
            region_id,
        })
    }

    /// Projects named exactly `name` (the search also matches substrings and ids).
    async fn find(&self, name: &str) -> Result<Vec<Project>, ProvisionError> {
        let reply: ProjectsReply = self
            .call(
                Method::GET,
                "/projects",
                &[("search", name), ("limit", "100")],
                None,
            )
            .await?;
        Ok(reply
            .projects
            .into_iter()
            .filter(|p| p.name == name)
            .collect())
    }

    async fn connection_uri(&self, project_id: &str) -> Result<SecretString, ProvisionError> {
        let path = format!("/projects/{}/connection_uri", segment(project_id)?);
        let reply: UriReply = self
            .call(
                Method::GET,
                &path,
                &[("database_name", DATABASE), ("role_name", ROLE)],
                None,
            )
            .await?;
        Ok(SecretString::from(reply.uri))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T, ProvisionError> {
        let (status, bytes) = self.send(method, path, query, body).await?;
        if !status.is_success() {
            return Err(classify(status, &bytes));
        }
        let bytes = if bytes.is_empty() {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        // The error names the path only: answers carry passwords.
        serde_json::from_slice(bytes)
            .map_err(|_| ProvisionError::Transient(format!("unexpected Neon answer to {path}")))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), ProvisionError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.api_key.expose_secret())
            .header("Accept", "application/json")
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            ProvisionError::Transient(format!("Neon unreachable: {}", e.without_url()))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            ProvisionError::Transient(format!("reading a Neon answer: {}", e.without_url()))
        })?;
        Ok((status, bytes.to_vec()))
    }
}

#[async_trait]
impl DatabaseProvisioner for NeonProvisioner {
    fn kind(&self) -> &'static str {
        "neon"
    }

    async fn create(&self, app_id: &str) -> Result<SecretString, ProvisionError> {
        self.provision(app_id).await.map(|created| created.url)
    }

    /// The reference is the Neon project id.
    async fn provision(&self, app_id: &str) -> Result<ProvisionedDatabase, ProvisionError> {
        let name = format!("ag-{}", app_hex(app_id)?);
        if let Some(project) = self.find(&name).await?.first() {
            return Ok(ProvisionedDatabase {
                url: self.connection_uri(&project.id).await?,
                reference: project.id.clone(),
            });
        }
        let body = json!({
            "project": {
                "name": name,
                "region_id": self.region_id,
                "branch": { "role_name": ROLE, "database_name": DATABASE },
            }
        });
        let reply: CreateReply = self
            .call(Method::POST, "/projects", &[], Some(&body))
            .await?;
        let url = reply
            .connection_uris
            .into_iter()
            .next()
            .map(|c| SecretString::from(c.connection_uri))
            .ok_or_else(|| ProvisionError::Transient("Neon returned no connection URI".into()))?;
        Ok(ProvisionedDatabase {
            url,
            reference: reply.project.id,
        })
    }

    async fn delete(&self, app_id: &str) -> Result<(), ProvisionError> {
        let name = format!("ag-{}", app_hex(app_id)?);
        for project in self.find(&name).await? {
            let path = format!("/projects/{}", segment(&project.id)?);
            let (status, bytes) = self.send(Method::DELETE, &path, &[], None).await?;
            // Already gone (a concurrent delete) is what we wanted.
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                return Err(classify(status, &bytes));
            }
        }
        Ok(())
    }
}

fn classify(status: StatusCode, bytes: &[u8]) -> ProvisionError {
    let body: ErrorBody = serde_json::from_slice(bytes).unwrap_or_default();
    let mut end = body.message.len().min(MAX_MESSAGE);
    while !body.message.is_char_boundary(end) {
        end -= 1;
    }
    let text = format!(
        "Neon answered {}: {}",
        status.as_u16(),
        &body.message[..end]
    );
    match status.as_u16() {
        408 | 423 | 429 | 500..=599 => ProvisionError::Transient(text),
        _ => ProvisionError::Permanent(text),
    }
}

/// Ids go into paths: they must not be able to change the path.
fn segment(id: &str) -> Result<&str, ProvisionError> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(id)
    } else {
        Err(ProvisionError::Permanent(
            "Neon returned a malformed project id".into(),
        ))
    }
}
