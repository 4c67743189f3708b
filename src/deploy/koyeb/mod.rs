//! Deploys apps to Koyeb (provider "koyeb") through its REST API v1.
//!
//! One Koyeb app and one WEB service per agentgate app, both named `ag-<first 12 hex of the
//! app id>` (never user text). The first deployment creates them; later versions update the
//! service's definition, which makes Koyeb roll out a new deployment. Two modes:
//! - `Git`: Koyeb builds from the app's repository at the version's commit.
//! - `Image`: we build the version's files with [`ImageBuilder`], push to ECR, and point the
//!   service at the image; Koyeb pulls with a registry secret that is rewritten whenever the
//!   ECR token rotates, by deployments and by a background refresh ([`registry_secret`]).
//!
//! `start` records Koyeb's ids in the deployment's [`ProviderState`] as it goes, so a retried
//! `start` reuses them, and a deployment that already has a Koyeb deployment id is left alone.
//! Status mapping lives in [`status`].
mod api;
mod definition;
mod registry_secret;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use self::api::{ApiError, KoyebApi, RetryPolicy};
pub use self::registry_secret::RegistrySecretRefresh;
use self::registry_secret::WhenMissing;
use self::status::Phase;
use crate::deploy::builder::{tail_str, ImageBuilder, RegistryLogin};
use crate::deploy::ecr::EcrRegistry;
use crate::deploy::provider::{
    DeployError, DeployRequest, Deployer, ProviderState, ProviderStatus,
};
use crate::deploy::runner::STATE_URL;

/// Keys in [`ProviderState`].
pub const STATE_APP_ID: &str = "koyeb_app_id";
pub const STATE_SERVICE_ID: &str = "koyeb_service_id";
pub const STATE_DEPLOYMENT_ID: &str = "koyeb_deployment_id";
pub const STATE_IMAGE: &str = "image";
pub const STATE_BUILD_LOG: &str = "build_log_tail";

/// How much of a successful build's log is kept in the provider state.
const STATE_LOG_TAIL: usize = 2 * 1024;
/// Env values shorter than this are not worth redacting (and would mangle messages).
const MIN_REDACTED_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KoyebMode {
    /// Koyeb builds from the app's git repository.
    Git,
    /// We build and push an image; Koyeb runs it.
    Image,
}

#[derive(Debug, Clone)]
pub struct KoyebSettings {
    pub api_base: String,
    pub token: SecretString,
    pub mode: KoyebMode,
    /// Koyeb region id, e.g. "fra".
    pub region: String,
    /// Koyeb instance type, e.g. "nano".
    pub instance_type: String,
    /// The port the app listens on (also passed as `PORT` unless the app sets it).
    pub port: u16,
    /// Git mode: overrides for Koyeb's buildpack commands.
    pub build_command: Option<String>,
    pub run_command: Option<String>,
    /// Image mode: the Koyeb secret holding the registry credentials.
    pub registry_secret_name: String,
    /// Image mode: how soon a failed background refresh of that secret is tried again.
    pub registry_refresh_retry: Duration,
    pub request_timeout: Duration,
    /// Tries per API call for transient failures, before the runner takes over.
    pub max_attempts: u32,
    pub retry_base_delay: Duration,
}

impl KoyebSettings {
    pub fn new(token: SecretString, mode: KoyebMode) -> Self {
        Self {
            api_base: "https://app.koyeb.com".to_string(),
            token,
            mode,
            region: "fra".to_string(),
            instance_type: "nano".to_string(),
            port: 8000,
            build_command: None,
            run_command: None,
            registry_secret_name: "agentgate-registry".to_string(),
            registry_refresh_retry: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_attempts: 3,
            retry_base_delay: Duration::from_millis(500),
        }
    }
}

pub struct KoyebDeployer {
    api: KoyebApi,
    settings: KoyebSettings,
    builder: Option<Arc<ImageBuilder>>,
    registry: Option<Arc<EcrRegistry>>,
    /// SHA-256 of the registry credentials (and their fetch time) last written to Koyeb.
    registry_fingerprint: Mutex<Option<String>>,
}

/// Koyeb names derived from the app id.
struct Names {
    app: String,
    service: String,
}

impl Names {
    fn for_app(app_id: &str) -> Result<Self, DeployError> {
        let hex = uuid::Uuid::parse_str(app_id)
            .map_err(|_| DeployError::Permanent("app id is not a UUID".to_string()))?
            .simple()
            .to_string();
        let name = format!("ag-{}", &hex[..12]);
        Ok(Self {
            app: name.clone(),
            service: name,
        })
    }
}

impl KoyebDeployer {
    /// Image mode needs both an image builder and a registry.
    pub fn new(
        settings: KoyebSettings,
        image_builder: Option<Arc<ImageBuilder>>,
        registry: Option<Arc<EcrRegistry>>,
    ) -> Result<Self, DeployError> {
        if settings.mode == KoyebMode::Image && (image_builder.is_none() || registry.is_none()) {
            return Err(DeployError::Permanent(
                "Koyeb image mode needs an image builder and a registry".to_string(),
            ));
        }
        let api = KoyebApi::new(
            &settings.api_base,
            settings.token.clone(),
            settings.request_timeout,
            RetryPolicy {
                max_attempts: settings.max_attempts.max(1),
                base_delay: settings.retry_base_delay,
            },
        )?;
        Ok(Self {
            api,
            settings,
            builder: image_builder,
            registry,
            registry_fingerprint: Mutex::new(None),
        })
    }

    async fn start_inner(
        &self,
        request: &DeployRequest,
        state: &mut ProviderState,
        names: &Names,
        secrets: &mut Vec<String>,
    ) -> Result<(), DeployError> {
        // Checked before anything is created: a bad repository will not get better.
        let git = match self.settings.mode {
            KoyebMode::Git => Some(definition::git_source(request, &self.settings)?),
            KoyebMode::Image => None,
        };
        let app_id = self.ensure_app(names, state).await?;
        let source = match git {
            Some(source) => source,
            None => self.image_source(request, state, secrets).await?,
        };
        let port = definition::app_port(&request.files, self.settings.port);
        let definition =
            definition::service(&names.service, &self.settings, port, &request.env, source)?;
        let deployment_id = self
            .deploy_service(&app_id, names, &definition, state)
            .await?;
        state.insert(STATE_DEPLOYMENT_ID.into(), deployment_id.into());
        // The service exists: its URL can go on the app now, long before it is live. Koyeb
        // may assign the domain later; then the healthy poll records it.
        match self.public_url(&app_id).await {
            Ok(Some(url)) => {
                state.insert(STATE_URL.into(), url.into());
            }
            Ok(None) => {}
            Err(e) => tracing::info!(error = %e, "the Koyeb app's URL is not known yet"),
        }
        Ok(())
    }

    async fn ensure_app(
        &self,
        names: &Names,
        state: &mut ProviderState,
    ) -> Result<String, DeployError> {
        if let Some(id) = state_str(state, STATE_APP_ID) {
            return Ok(id.to_string());
        }
        // Looked up by name first: a redeploy never depends on how Koyeb words a duplicate
        // (its description documents no 409 for app creation).
        let app = match self.api.find_app(&names.app).await? {
            Some(app) => app,
            None => match self.api.create_app(&names.app).await {
                Ok(app) => app,
                // Created meanwhile by another deployment of the same app: take that one.
                Err(ApiError::Conflict) => {
                    self.api.find_app(&names.app).await?.ok_or_else(|| {
                        DeployError::Transient("Koyeb app exists but is not listed".into())
                    })?
                }
                Err(e) => return Err(e.into()),
            },
        };
        state.insert(STATE_APP_ID.into(), app.id.clone().into());
        Ok(app.id)
    }

    /// Creates the service, or updates an existing one; returns the new deployment's id.
    async fn deploy_service(
        &self,
        app_id: &str,
        names: &Names,
        definition: &Value,
        state: &mut ProviderState,
    ) -> Result<String, DeployError> {
        let existing = match state_str(state, STATE_SERVICE_ID) {
            Some(id) => Some(id.to_string()),
            None => self
                .api
                .find_service(app_id, &names.service)
                .await?
                .map(|s| s.id),
        };
        let service = match existing {
            Some(id) => self.api.update_service(&id, definition).await?,
            None => match self.api.create_service(app_id, definition).await {
                Ok(service) => service,
                Err(ApiError::Conflict) => {
                    let found = self
                        .api
                        .find_service(app_id, &names.service)
                        .await?
                        .ok_or_else(|| {
                            DeployError::Transient("Koyeb service exists but is not listed".into())
                        })?;
                    self.api.update_service(&found.id, definition).await?
                }
                Err(e) => return Err(e.into()),
            },
        };
        state.insert(STATE_SERVICE_ID.into(), service.id.clone().into());
        if !service.latest_deployment_id.is_empty() {
            return Ok(service.latest_deployment_id);
        }
        let service = self.api.get_service(&service.id).await?;
        if service.latest_deployment_id.is_empty() {
            return Err(DeployError::Transient(
                "Koyeb reported no deployment for the service yet".to_string(),
            ));
        }
        Ok(service.latest_deployment_id)
    }

    /// Builds and pushes the version's image (once per deployment) and writes Koyeb's
    /// registry secret if it does not hold the current token.
    async fn image_source(
        &self,
        request: &DeployRequest,
        state: &mut ProviderState,
        secrets: &mut Vec<String>,
    ) -> Result<Value, DeployError> {
        let (Some(builder), Some(registry)) = (&self.builder, &self.registry) else {
            return Err(DeployError::Permanent(
                "Koyeb image mode needs an image builder and a registry".to_string(),
            ));
        };
        let repository = registry.ensure_repository(&request.app_id).await?;
        let image = format!("{repository}:v{}", request.version);
        let auth = registry.authorization().await?;
        secrets.push(auth.password.expose_secret().to_string());
        if state_str(state, STATE_IMAGE) != Some(image.as_str()) {
            let login = RegistryLogin {
                endpoint: auth.endpoint.clone(),
                username: auth.username.clone(),
                password: auth.password.clone(),
            };
            let output = builder
                .build_and_push_logged(&request.files, &image, Some(&login), &request.log)
                .await?;
            state.insert(STATE_IMAGE.into(), image.clone().into());
            state.insert(
                STATE_BUILD_LOG.into(),
                tail_str(&output.log, STATE_LOG_TAIL).into(),
            );
        }
        self.write_registry_secret(registry, WhenMissing::Create)
            .await?;
        Ok(definition::docker_source(
            &image,
            &self.settings.registry_secret_name,
        ))
    }

    async fn public_url(&self, app_id: &str) -> Result<Option<String>, DeployError> {
        let app = self.api.get_app(app_id).await?;
        // Koyeb's own domain first; custom domains may not be verified yet.
        let domain = app
            .domains
            .iter()
            .find(|d| d.kind == "AUTOASSIGNED" && !d.name.is_empty())
            .or_else(|| app.domains.iter().find(|d| !d.name.is_empty()));
        Ok(domain.map(|d| format!("https://{}", d.name)))
    }
}

#[async_trait]
impl Deployer for KoyebDeployer {
    fn provider(&self) -> &'static str {
        "koyeb"
    }

    fn needs_repository(&self) -> bool {
        self.settings.mode == KoyebMode::Git
    }

    async fn start(
        &self,
        request: &DeployRequest,
        state: &mut ProviderState,
    ) -> Result<(), DeployError> {
        let names = Names::for_app(&request.app_id)?;
        if state_str(state, STATE_DEPLOYMENT_ID).is_some() {
            return Ok(());
        }
        let mut secrets: Vec<String> = request.env.values().cloned().collect();
        self.start_inner(request, state, &names, &mut secrets)
            .await
            .map_err(|e| redact(e, &secrets))
    }

    async fn poll(
        &self,
        request: &DeployRequest,
        state: &ProviderState,
    ) -> Result<ProviderStatus, DeployError> {
        let Some(deployment_id) = state_str(state, STATE_DEPLOYMENT_ID) else {
            return Err(DeployError::Permanent(
                "no Koyeb deployment was started for this deployment".to_string(),
            ));
        };
        let deployment = match self.api.get_deployment(deployment_id).await {
            Ok(d) => d,
            Err(ApiError::NotFound) => {
                return Ok(ProviderStatus::Failed {
                    reason: "the Koyeb deployment no longer exists".to_string(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let secrets: Vec<String> = request.env.values().cloned().collect();
        // Koyeb's messages on the deployment (build and instance events), each stored once.
        request.log.provider_messages(&deployment.messages);
        Ok(
            match status::classify(&deployment.status, &deployment.messages) {
                Phase::Building => ProviderStatus::Building,
                Phase::Deploying => ProviderStatus::Deploying,
                Phase::Unknown(raw) => ProviderStatus::Unknown(raw),
                Phase::Failed(reason) => ProviderStatus::Failed {
                    reason: redact_text(reason, &secrets),
                },
                Phase::Live => {
                    let app_id = state_str(state, STATE_APP_ID).ok_or_else(|| {
                        DeployError::Permanent("the Koyeb app id was not recorded".to_string())
                    })?;
                    match self.public_url(app_id).await? {
                        Some(url) => ProviderStatus::Healthy { url },
                        // Serving, but the domain is not assigned yet: keep waiting.
                        None => ProviderStatus::Deploying,
                    }
                }
            },
        )
    }

    async fn destroy(&self, app_id: &str) -> Result<(), DeployError> {
        let names = Names::for_app(app_id)?;
        if let Some(app) = self.api.find_app(&names.app).await? {
            for service in self.api.list_services(&app.id).await? {
                ignore_missing(self.api.delete_service(&service.id).await)?;
            }
            match self.api.delete_app(&app.id).await {
                // Services may still be shutting down; try again later.
                Err(ApiError::Conflict) => {
                    return Err(DeployError::Transient(
                        "Koyeb app still has services being deleted".to_string(),
                    ))
                }
                other => ignore_missing(other)?,
            }
        }
        if let Some(registry) = &self.registry {
            registry.delete_repository(app_id).await?;
        }
        Ok(())
    }
}

fn ignore_missing(result: Result<(), ApiError>) -> Result<(), DeployError> {
    match result {
        Ok(()) | Err(ApiError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn state_str<'a>(state: &'a ProviderState, key: &str) -> Option<&'a str> {
    state
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn redact(error: DeployError, secrets: &[String]) -> DeployError {
    match error {
        DeployError::Transient(m) => DeployError::Transient(redact_text(m, secrets)),
        DeployError::Permanent(m) => DeployError::Permanent(redact_text(m, secrets)),
    }
}

fn redact_text(mut text: String, secrets: &[String]) -> String {
    for secret in secrets.iter().filter(|s| s.len() >= MIN_REDACTED_LEN) {
        text = text.replace(secret.as_str(), "[redacted]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_app_id_only() {
        let names = Names::for_app("0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9");
        assert!(matches!(&names, Ok(n) if n.app == "ag-0f1e2d3c4b5a" && n.service == n.app));
        assert!(Names::for_app("my-app; drop").is_err());
    }

    #[test]
    fn secrets_are_redacted_from_errors() {
        let e = redact(
            DeployError::Permanent("bad value s3cr3t-value".into()),
            &["s3cr3t-value".to_string(), "x".to_string()],
        );
        assert_eq!(e.to_string(), "bad value [redacted]");
    }
}
