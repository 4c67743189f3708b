//! A small client for the Koyeb REST API v1 (`https://app.koyeb.com/v1/...`), following the
//! shapes in Koyeb's published OpenAPI spec (the one koyeb-api-client-go is generated from):
//! `POST /v1/apps {name}` → `{app}`, `GET /v1/apps?name=` → `{apps}`, `GET /v1/apps/{id}` →
//! `{app: {domains: [{name, type}]}}`, `POST /v1/services {app_id, definition}` → `{service}`,
//! `GET /v1/services?app_id=&name=` → `{services}`, `PATCH /v1/services/{id} {definition}` →
//! `{service: {latest_deployment_id}}`, `GET /v1/deployments/{id}` → `{deployment: {status,
//! messages}}`, `DELETE /v1/services/{id}`, `DELETE /v1/apps/{id}`, and registry secrets
//! `POST /v1/secrets`, `GET /v1/secrets?name=`, `PATCH /v1/secrets/{id}`. Errors come as
//! `{status, code, message, fields: [{field, description}]}`.
//!
//! Every call we make is safe to repeat (creates are keyed by name and a duplicate answers
//! 409, or 400 "already exists" as the description documents validation errors), so transient failures (network, 408, 429, 5xx) are retried a few times here with
//! backoff, honouring a short `Retry-After`; what still fails becomes `DeployError::Transient`
//! for the job runner. The token only ever travels in the `Authorization` header.
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::deploy::provider::DeployError;

/// A longer `Retry-After` is left to the job runner instead of waiting here.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Koyeb's error text is cut to this many bytes.
const MAX_MESSAGE: usize = 500;

#[derive(Debug)]
pub(super) enum ApiError {
    NotFound,
    /// The name is taken (409, or 400 "already exists").
    Conflict,
    Transient(String),
    Permanent(String),
}

impl From<ApiError> for DeployError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound => DeployError::Permanent("Koyeb: resource not found".into()),
            ApiError::Conflict => DeployError::Transient("Koyeb: name already taken".into()),
            ApiError::Transient(m) => DeployError::Transient(m),
            ApiError::Permanent(m) => DeployError::Permanent(m),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct App {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Domain {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Service {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub latest_deployment_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Deployment {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub messages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Secret {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize)]
struct AppReply {
    app: App,
}
#[derive(Deserialize)]
struct AppsReply {
    #[serde(default)]
    apps: Vec<App>,
}
#[derive(Deserialize)]
struct ServiceReply {
    service: Service,
}
#[derive(Deserialize)]
struct ServicesReply {
    #[serde(default)]
    services: Vec<Service>,
}
#[derive(Deserialize)]
struct DeploymentReply {
    deployment: Deployment,
}
#[derive(Deserialize)]
struct SecretReply {
    secret: Secret,
}
#[derive(Deserialize)]
struct SecretsReply {
    #[serde(default)]
    secrets: Vec<Secret>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    fields: Vec<FieldError>,
}
#[derive(Deserialize)]
struct FieldError {
    #[serde(default)]
    field: String,
    #[serde(default)]
    description: String,
}

pub(super) struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
}

pub(super) struct KoyebApi {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    retry: RetryPolicy,
}

impl KoyebApi {
    pub fn new(
        base: &str,
        token: SecretString,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, DeployError> {
        let http = reqwest::Client::builder()
            .user_agent(crate::USER_AGENT)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DeployError::Permanent(format!("building the Koyeb client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
            retry,
        })
    }

    pub async fn create_app(&self, name: &str) -> Result<App, ApiError> {
        let body = serde_json::json!({ "name": name });
        let reply: AppReply = self
            .call(Method::POST, "/v1/apps", &[], Some(&body))
            .await?;
        Ok(reply.app)
    }

    /// The list filter may match more loosely; only an exact name counts.
    pub async fn find_app(&self, name: &str) -> Result<Option<App>, ApiError> {
        let reply: AppsReply = self
            .call(Method::GET, "/v1/apps", &[("name", name)], None)
            .await?;
        Ok(reply.apps.into_iter().find(|a| a.name == name))
    }

    pub async fn get_app(&self, id: &str) -> Result<App, ApiError> {
        let path = format!("/v1/apps/{}", segment(id)?);
        let reply: AppReply = self.call(Method::GET, &path, &[], None).await?;
        Ok(reply.app)
    }

    pub async fn delete_app(&self, id: &str) -> Result<(), ApiError> {
        let path = format!("/v1/apps/{}", segment(id)?);
        self.call::<Value>(Method::DELETE, &path, &[], None)
            .await
            .map(drop)
    }

    pub async fn create_service(
        &self,
        app_id: &str,
        definition: &Value,
    ) -> Result<Service, ApiError> {
        let body = serde_json::json!({ "app_id": app_id, "definition": definition });
        let reply: ServiceReply = self
            .call(Method::POST, "/v1/services", &[], Some(&body))
            .await?;
        Ok(reply.service)
    }

    pub async fn list_services(&self, app_id: &str) -> Result<Vec<Service>, ApiError> {
        let reply: ServicesReply = self
            .call(Method::GET, "/v1/services", &[("app_id", app_id)], None)
            .await?;
        Ok(reply.services)
    }

    pub async fn find_service(
        &self,
        app_id: &str,
        name: &str,
    ) -> Result<Option<Service>, ApiError> {
        let reply: ServicesReply = self
            .call(
                Method::GET,
                "/v1/services",
                &[("app_id", app_id), ("name", name)],
                None,
            )
            .await?;
        Ok(reply.services.into_iter().find(|s| s.name == name))
    }

    pub async fn get_service(&self, id: &str) -> Result<Service, ApiError> {
        let path = format!("/v1/services/{}", segment(id)?);
        let reply: ServiceReply = self.call(Method::GET, &path, &[], None).await?;
        Ok(reply.service)
    }

    /// Replaces the definition, which starts a new deployment.
    pub async fn update_service(&self, id: &str, definition: &Value) -> Result<Service, ApiError> {
        let path = format!("/v1/services/{}", segment(id)?);
        let body = serde_json::json!({ "definition": definition });
        let reply: ServiceReply = self.call(Method::PATCH, &path, &[], Some(&body)).await?;
        Ok(reply.service)
    }

    pub async fn delete_service(&self, id: &str) -> Result<(), ApiError> {
        let path = format!("/v1/services/{}", segment(id)?);
        self.call::<Value>(Method::DELETE, &path, &[], None)
            .await
            .map(drop)
    }

    pub async fn get_deployment(&self, id: &str) -> Result<Deployment, ApiError> {
        let path = format!("/v1/deployments/{}", segment(id)?);
        let reply: DeploymentReply = self.call(Method::GET, &path, &[], None).await?;
        Ok(reply.deployment)
    }

    pub async fn find_secret(&self, name: &str) -> Result<Option<Secret>, ApiError> {
        let reply: SecretsReply = self
            .call(Method::GET, "/v1/secrets", &[("name", name)], None)
            .await?;
        Ok(reply.secrets.into_iter().find(|s| s.name == name))
    }

    /// `body` holds credentials: it is sent, never logged or put into errors.
    pub async fn create_secret(&self, body: &Value) -> Result<Secret, ApiError> {
        let reply: SecretReply = self
            .call(Method::POST, "/v1/secrets", &[], Some(body))
            .await?;
        Ok(reply.secret)
    }

    pub async fn update_secret(&self, id: &str, body: &Value) -> Result<Secret, ApiError> {
        let path = format!("/v1/secrets/{}", segment(id)?);
        let reply: SecretReply = self.call(Method::PATCH, &path, &[], Some(body)).await?;
        Ok(reply.secret)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        let mut attempt = 1;
        loop {
            match self.attempt(method.clone(), path, query, body).await {
                Err(Retry { after, .. }) if attempt < self.retry.max_attempts => {
                    let backoff = self.retry.base_delay * 2u32.saturating_pow(attempt - 1);
                    let wait = after.unwrap_or(backoff);
                    // Koyeb's error text stays out of logs: it may quote what we sent.
                    tracing::debug!(%method, path, attempt, ?wait, "retrying a Koyeb call");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(Retry { error, .. }) => return Err(error),
                Ok(Err(error)) => return Err(error),
                Ok(Ok(value)) => return Ok(value),
            }
        }
    }

    /// One request: `Err` when it is worth another try.
    async fn attempt<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Result<T, ApiError>, Retry> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.expose_secret())
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| Retry {
            error: ApiError::Transient(format!("Koyeb unreachable: {}", e.without_url())),
            after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            let bytes = response.bytes().await.map_err(|e| Retry {
                error: ApiError::Transient(format!("reading a Koyeb answer: {}", e.without_url())),
                after: None,
            })?;
            // DELETE may answer with an empty body.
            let bytes = if bytes.is_empty() {
                &b"{}"[..]
            } else {
                &bytes[..]
            };
            return Ok(serde_json::from_slice(bytes).map_err(|e| {
                ApiError::Transient(format!("unexpected Koyeb answer to {path}: {e}"))
            }));
        }
        let after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let error = classify(status, &text, after);
        match error {
            ApiError::Transient(_) if after.is_none_or(|a| a <= MAX_RETRY_AFTER) => {
                Err(Retry { error, after })
            }
            error => Ok(Err(error)),
        }
    }
}

struct Retry {
    error: ApiError,
    after: Option<Duration>,
}

fn classify(status: StatusCode, text: &str, after: Option<Duration>) -> ApiError {
    let body: ErrorBody = serde_json::from_str(text).unwrap_or_default();
    let mut message = body.message.clone();
    for field in &body.fields {
        message.push_str(&format!("; {}: {}", field.field, field.description));
    }
    let message = cut(&message);
    let described = format!("Koyeb answered {}: {message}", status.as_u16());
    match status.as_u16() {
        404 => ApiError::NotFound,
        409 => ApiError::Conflict,
        // Koyeb's description documents validation errors (a taken name among them) as 400
        // with `fields`; the text may be in the message or in a field's description.
        400 if message.to_ascii_lowercase().contains("already exist") => ApiError::Conflict,
        408 | 429 | 500..=599 => match after {
            Some(after) => {
                ApiError::Transient(format!("{described} (retry after {} s)", after.as_secs()))
            }
            None => ApiError::Transient(described),
        },
        401 | 403 => ApiError::Permanent(format!(
            "Koyeb refused the API token ({}): {message}",
            status.as_u16()
        )),
        _ => ApiError::Permanent(described),
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Ids go into paths: they must not be able to change the path.
fn segment(id: &str) -> Result<&str, ApiError> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(id)
    } else {
        Err(ApiError::Permanent("Koyeb returned a malformed id".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let body = r#"{"status":400,"code":"invalid_argument","message":"bad","fields":[{"field":"definition.name","description":"too long"}]}"#;
        match classify(StatusCode::BAD_REQUEST, body, None) {
            ApiError::Permanent(m) => {
                assert_eq!(m, "Koyeb answered 400: bad; definition.name: too long")
            }
            other => panic!("{other:?}"),
        }
        let exists = r#"{"message":"App name already exists"}"#;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, exists, None),
            ApiError::Conflict
        ));
        let exists = r#"{"status":400,"code":"invalid_argument","message":"Validation error","fields":[{"field":"name","description":"already exists"}]}"#;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, exists, None),
            ApiError::Conflict
        ));
        assert!(matches!(
            classify(StatusCode::CONFLICT, "", None),
            ApiError::Conflict
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, "", None),
            ApiError::NotFound
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, "<html>", None),
            ApiError::Transient(_)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, "", Some(Duration::from_secs(3))),
            ApiError::Transient(m) if m.contains("retry after 3 s")
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, "", None),
            ApiError::Permanent(_)
        ));
    }

    #[test]
    fn ids_cannot_escape_the_path() {
        assert!(segment("0f1e-2d3c_4b").is_ok());
        for bad in ["", "../x", "a/b", "a?b", "a%2F"] {
            assert!(segment(bad).is_err(), "{bad}");
        }
    }
}
