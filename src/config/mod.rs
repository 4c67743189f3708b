//! Typed, layered configuration: embedded `config/default.toml` <- optional file <-
//! `AGENTGATE__SECTION__KEY` env vars <- command-line flags. Unknown keys are an error.
mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub agent: AgentConfig,
    pub runs: RunsConfig,
    pub storage: StorageConfig,
    pub deploy: DeployConfig,
    pub git: GitConfig,
    pub koyeb: KoyebConfig,
    pub ecr: EcrConfig,
    pub database_provision: DatabaseProvisionConfig,
    pub log: LogConfig,
    pub webhooks: WebhooksConfig,
    pub telemetry: TelemetryConfig,
}

/// OpenTelemetry traces over OTLP/HTTP (see `crate::telemetry`). Empty strings defer to the
/// standard `OTEL_*` environment variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub enabled: bool,
    /// The collector's base URL (`/v1/traces` is appended); "": `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// else `http://localhost:4318`.
    pub endpoint: String,
    /// "": `OTEL_SERVICE_NAME`, else "agentgate".
    pub service_name: String,
    /// Share of new traces kept (0 to 1); a caller's `traceparent` decides for its own trace.
    pub sample_ratio: f64,
}

/// Outbound webhooks (see `crate::webhooks`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// The operator's endpoints: every user's events go to each.
    pub endpoints: Vec<OperatorEndpointConfig>,
    /// Deliveries to loopback addresses (and http to them) are allowed: development only.
    pub allow_loopback: bool,
    /// Internal networks (CIDR) deliveries may reach.
    pub allowed_networks: Vec<String>,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_cap_secs: u64,
    pub retry_window_secs: u64,
    /// Endpoints one user may register.
    pub max_per_user: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorEndpointConfig {
    pub url: String,
    pub secret: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionKind {
    None,
    Postgres,
    Neon,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseProvisionConfig {
    pub kind: ProvisionKind,
    pub admin_url: SecretString,
    pub public_host: String,
    pub api_base: String,
    pub api_key: SecretString,
    pub region_id: String,
    pub encryption_key: SecretString,
}

impl DatabaseProvisionConfig {
    /// `host:port` apps use to reach the PostgreSQL server: configured, or the admin URL's.
    pub fn postgres_public_host(&self) -> Option<String> {
        if !self.public_host.is_empty() {
            return Some(self.public_host.clone());
        }
        let admin = url::Url::parse(self.admin_url.expose_secret()).ok()?;
        let host = admin.host_str().filter(|h| !h.is_empty())?;
        Some(format!("{host}:{}", admin.port().unwrap_or(5432)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KoyebConfig {
    pub api_base: String,
    pub token: SecretString,
    pub mode: String,
    pub region: String,
    pub instance_type: String,
    pub port: u16,
    pub build_command: String,
    pub run_command: String,
    pub registry_secret_name: String,
    pub request_timeout_secs: u64,
    pub max_attempts: u32,
    pub retry_base_delay_ms: u64,
    pub builder_program: String,
    pub builder_steps: Vec<Vec<String>>,
    pub builder_timeout_secs: u64,
    pub builder_work_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcrConfig {
    pub region: String,
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub repository_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GitHostKind {
    Local,
    Github,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    pub host: GitHostKind,
    pub branch: String,
    pub author_name: String,
    pub author_email: String,
    pub retry_interval_secs: u64,
    pub name_attempts: u32,
    pub dev_endpoints: bool,
    pub archive_on_delete: bool,
    pub api_base: String,
    pub owner: String,
    pub owner_is_org: bool,
    pub private: bool,
    pub token: SecretString,
    pub app_id: u64,
    pub private_key: SecretString,
    pub installation_id: u64,
    pub max_retries: u32,
    pub api_version: String,
    pub local_dir: PathBuf,
    pub local_shared: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployProvider {
    Local,
    Koyeb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    pub provider: DeployProvider,
    pub on_new_version: bool,
    pub stream_wait_secs: u64,
    pub workers: u32,
    pub poll_interval_ms: u64,
    pub lease_secs: u64,
    pub max_attempts: u32,
    pub queued_deadline_secs: u64,
    pub building_deadline_secs: u64,
    pub deploying_deadline_secs: u64,
    pub unknown_status_wait_secs: u64,
    /// Log lines kept per deployment; past it the oldest go, with a note saying how many.
    pub log_lines: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub kind: StorageKind,
    pub local_dir: PathBuf,
    pub presign_ttl_secs: u64,
    pub retry_interval_secs: u64,
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub prefix: String,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub public_url: String,
    pub request_timeout_secs: u64,
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
    pub demo_agent: bool,
    pub dev_login: bool,
    /// Serve /metrics on its own address instead of the API's.
    #[serde(default)]
    pub metrics_bind: Option<SocketAddr>,
    /// Connection hardening (see `crate::server`); 0 turns a timeout off.
    pub header_read_timeout_secs: u64,
    pub body_read_timeout_secs: u64,
    pub keep_alive_idle_secs: u64,
    pub write_stall_timeout_secs: u64,
    /// 0 = derived from the process's file-descriptor limit.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Hs256,
    Jwks,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub hs256_secret: SecretString,
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
    pub privileged_claim: String,
    pub privileged_users: Vec<String>,
    pub jwks_refresh_min_secs: u64,
    pub dev_token_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub daily_messages: u32,
    pub max_message_bytes: usize,
    /// Most files one version of an app may hold; a diff past it is refused.
    pub max_files_per_app: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub url: String,
    pub secret: SecretString,
    pub connect_timeout_secs: u64,
    pub connect_retries: u32,
    pub idle_timeout_secs: u64,
    pub turn_deadline_secs: u64,
    pub max_event_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsConfig {
    pub shutdown_grace_secs: u64,
    pub live_buffer: usize,
    pub keep_alive_secs: u64,
    pub instance_id: String,
    pub lease_secs: u64,
    pub sweep_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CliOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

fn env_layer() -> Env {
    Env::prefixed("AGENTGATE__").split("__")
}

impl Config {
    /// Every configured secret's value: deployment logs mask them before storing a line.
    pub fn secret_values(&self) -> Vec<String> {
        let mut secrets = vec![
            &self.database.url,
            &self.auth.hs256_secret,
            &self.agent.secret,
            &self.storage.secret_access_key,
            &self.git.token,
            &self.git.private_key,
            &self.koyeb.token,
            &self.ecr.secret_access_key,
            &self.database_provision.admin_url,
            &self.database_provision.api_key,
            &self.database_provision.encryption_key,
        ];
        secrets.extend(self.webhooks.endpoints.iter().map(|e| &e.secret));
        secrets
            .into_iter()
            .map(|s| s.expose_secret().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Loads the layers from the process environment; `with_workers` also checks what deploy
    /// workers need.
    pub fn load(
        file: Option<&Path>,
        cli: &CliOverrides,
        with_workers: bool,
    ) -> Result<Self, ConfigError> {
        let config = Self::from_figment(Self::figment(file, cli, Some(env_layer())))?;
        if with_workers {
            config.validate_workers()?;
        }
        Ok(config)
    }

    /// The embedded defaults plus an optional TOML string, without env vars (for tests).
    pub fn from_toml_overrides(toml: &str) -> Result<Self, ConfigError> {
        Self::from_toml_layers(&[toml])
    }

    /// The embedded defaults plus TOML layers merged in order, without env vars (for tests).
    pub fn from_toml_layers(layers: &[&str]) -> Result<Self, ConfigError> {
        let figment = layers
            .iter()
            .fold(Figment::from(Toml::string(DEFAULT_TOML)), |f, layer| {
                f.merge(Toml::string(layer))
            });
        let config = Self::from_figment(figment)?;
        config.validate_workers()?;
        Ok(config)
    }

    /// Defaults, then the file, then the environment, then the command line: each layer wins
    /// over the ones before it.
    fn figment(file: Option<&Path>, cli: &CliOverrides, env: Option<Env>) -> Figment {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        if let Some(env) = env {
            figment = figment.merge(env);
        }
        figment.merge(Serialized::default("server", cli))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(|e| ConfigError(one_line(&e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.server.public_url.is_empty() {
            check_url("server.public_url", &self.server.public_url)?;
        }
        if self.auth.mode == AuthMode::Jwks {
            if self.auth.jwks_url.is_empty() {
                return Err(ConfigError(
                    "auth.jwks_url is required when auth.mode = \"jwks\"".into(),
                ));
            }
            check_url("auth.jwks_url", &self.auth.jwks_url)?;
        }
        if self.agent.url != "builtin" {
            check_url("agent.url", &self.agent.url)?;
        } else if !self.server.demo_agent {
            return Err(ConfigError(
                "agent.url = \"builtin\" needs server.demo_agent = true".into(),
            ));
        }
        let db = self.database.url.expose_secret();
        let known_scheme = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| db.starts_with(scheme));
        if !db.is_empty() && !known_scheme {
            return Err(ConfigError(
                "database.url must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        if self.server.dev_login && !self.server.bind.ip().is_loopback() {
            return Err(ConfigError(
                "server.dev_login mints tokens for anyone; it must be false when server.bind is not a loopback address".into(),
            ));
        }
        if self.storage.kind == StorageKind::S3 {
            for (key, value) in [
                ("storage.bucket", self.storage.bucket.as_str()),
                ("storage.access_key_id", self.storage.access_key_id.as_str()),
                (
                    "storage.secret_access_key",
                    self.storage.secret_access_key.expose_secret(),
                ),
            ] {
                if value.is_empty() {
                    return Err(ConfigError(format!(
                        "{key} is required when storage.kind = \"s3\""
                    )));
                }
            }
            if !self.storage.endpoint.is_empty() {
                check_url("storage.endpoint", &self.storage.endpoint)?;
            }
        }
        if self.git.host == GitHostKind::Github {
            check_url("git.api_base", &self.git.api_base)?;
            if self.git.owner.is_empty() {
                return Err(ConfigError(
                    "git.owner is required when git.host = \"github\"".into(),
                ));
            }
            let has_token = !self.git.token.expose_secret().is_empty();
            let has_app = self.git.app_id != 0 && !self.git.private_key.expose_secret().is_empty();
            if !has_token && !has_app {
                return Err(ConfigError(
                    "git.token, or git.app_id with git.private_key, is required when git.host = \"github\"".into(),
                ));
            }
            // GitHub refuses installation tokens on POST /user/repos: an App creates
            // repositories only in an organisation.
            if !has_token && !self.git.owner_is_org {
                return Err(ConfigError(
                    "a GitHub App can only create repositories in an organisation: set git.owner_is_org = true (and git.owner to the organisation), or use a personal access token (git.token)".into(),
                ));
            }
        }
        if self.runs.instance_id.len() > 100 {
            return Err(ConfigError(
                "runs.instance_id must be at most 100 characters".into(),
            ));
        }
        if self.runs.lease_secs < 2 * self.runs.sweep_interval_secs.max(1) {
            return Err(ConfigError(
                "runs.lease_secs must be at least twice runs.sweep_interval_secs (leases are renewed every sweep)".into(),
            ));
        }
        self.validate_webhooks()?;
        self.validate_telemetry()?;
        if self.limits.max_message_bytes == 0 || self.agent.max_event_bytes == 0 {
            return Err(ConfigError(
                "limits.max_message_bytes and agent.max_event_bytes must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The operator's endpoints must be URLs deliveries may reach, with Standard Webhooks
    /// secrets, and the allowed networks CIDRs.
    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        // On a public gateway, loopback is the gateway's own host: its metrics, its database.
        if self.webhooks.allow_loopback && !self.server.bind.ip().is_loopback() {
            return Err(ConfigError(
                "webhooks.allow_loopback lets deliveries reach this host's own services; it must be false when server.bind is not a loopback address".into(),
            ));
        }
        let policy = self.webhooks.network_policy()?;
        for (i, endpoint) in self.webhooks.endpoints.iter().enumerate() {
            policy
                .check_url(&endpoint.url)
                .map_err(|e| ConfigError(format!("webhooks.endpoints[{i}].url: {e}")))?;
            crate::webhooks::signing::decode_secret(endpoint.secret.expose_secret())
                .map_err(|e| ConfigError(format!("webhooks.endpoints[{i}].secret: {e}")))?;
        }
        Ok(())
    }

    fn validate_telemetry(&self) -> Result<(), ConfigError> {
        let telemetry = &self.telemetry;
        if !telemetry.endpoint.is_empty() {
            check_url("telemetry.endpoint", &telemetry.endpoint)?;
        }
        if !(0.0..=1.0).contains(&telemetry.sample_ratio) {
            return Err(ConfigError(format!(
                "telemetry.sample_ratio must be between 0 and 1, not {}",
                telemetry.sample_ratio
            )));
        }
        Ok(())
    }

    /// What only deploy workers need: provider and cloud credentials, database provisioning.
    /// An API-only host (`serve --no-worker`) skips it.
    pub fn validate_workers(&self) -> Result<(), ConfigError> {
        if self.deploy.provider == DeployProvider::Koyeb {
            check_url("koyeb.api_base", &self.koyeb.api_base)?;
            if self.koyeb.token.expose_secret().is_empty() {
                return Err(ConfigError(
                    "koyeb.token is required when deploy.provider = \"koyeb\"".into(),
                ));
            }
            match self.koyeb.mode.as_str() {
                "git" => {
                    // Koyeb clones over the network; a local repository is a path on this host.
                    if self.git.host != GitHostKind::Github {
                        return Err(ConfigError(
                            "koyeb.mode = \"git\" needs git.host = \"github\" (Koyeb builds from the app's repository)".into(),
                        ));
                    }
                }
                "image" => {
                    if self.ecr.access_key_id.is_empty()
                        || self.ecr.secret_access_key.expose_secret().is_empty()
                    {
                        return Err(ConfigError(
                            "ecr.access_key_id and ecr.secret_access_key are required when koyeb.mode = \"image\"".into(),
                        ));
                    }
                    if !self.ecr.endpoint.is_empty() {
                        check_url("ecr.endpoint", &self.ecr.endpoint)?;
                    }
                    if self.koyeb.builder_program.is_empty() || self.koyeb.builder_steps.is_empty()
                    {
                        return Err(ConfigError(
                            "koyeb.builder_program and koyeb.builder_steps are required when koyeb.mode = \"image\"".into(),
                        ));
                    }
                }
                other => {
                    return Err(ConfigError(format!(
                        "koyeb.mode: {other:?} is not \"git\" or \"image\""
                    )))
                }
            }
        }
        self.validate_database_provision()?;
        Ok(())
    }

    fn validate_database_provision(&self) -> Result<(), ConfigError> {
        let p = &self.database_provision;
        let key = p.encryption_key.expose_secret();
        if !key.is_empty() && key.len() < 32 {
            return Err(ConfigError(
                "database_provision.encryption_key must be at least 32 characters".into(),
            ));
        }
        match p.kind {
            ProvisionKind::None => {}
            ProvisionKind::Postgres => {
                let admin = p.admin_url.expose_secret();
                if admin.is_empty() {
                    return Err(ConfigError(
                        "database_provision.admin_url is required when database_provision.kind = \"postgres\"".into(),
                    ));
                }
                let parsed = url::Url::parse(admin).ok().filter(|u| {
                    matches!(u.scheme(), "postgres" | "postgresql")
                        && u.host_str().is_some_and(|h| !h.is_empty())
                });
                if parsed.is_none() {
                    // The value is a secret: never echo it.
                    return Err(ConfigError(
                        "database_provision.admin_url must be a postgres:// URL with a host".into(),
                    ));
                }
                if p.postgres_public_host().is_none() {
                    return Err(ConfigError(
                        "database_provision.public_host is required when database_provision.kind = \"postgres\"".into(),
                    ));
                }
            }
            ProvisionKind::Neon => {
                check_url("database_provision.api_base", &p.api_base)?;
                if p.api_key.expose_secret().is_empty() {
                    return Err(ConfigError(
                        "database_provision.api_key is required when database_provision.kind = \"neon\"".into(),
                    ));
                }
                if p.region_id.is_empty() {
                    return Err(ConfigError(
                        "database_provision.region_id is required when database_provision.kind = \"neon\"".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `runs.instance_id`, or the host name plus a digest of the data dir: stable across
    /// restarts of one gateway, distinct for gateways on other hosts or with other data dirs.
    pub fn instance_id(&self) -> String {
        if !self.runs.instance_id.is_empty() {
            return self.runs.instance_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let dir = std::fs::canonicalize(&self.server.data_dir)
            .unwrap_or_else(|_| self.server.data_dir.clone());
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(dir.to_string_lossy().as_bytes()));
        format!("{host}:{}", &digest[..12])
    }

    /// Where the local git host keeps its bare repositories.
    pub fn git_dir(&self) -> PathBuf {
        if self.git.local_dir.as_os_str().is_empty() {
            self.server.data_dir.join("git")
        } else {
            self.git.local_dir.clone()
        }
    }

    pub fn storage_dir(&self) -> PathBuf {
        if self.storage.local_dir.as_os_str().is_empty() {
            self.server.data_dir.join("objects")
        } else {
            self.storage.local_dir.clone()
        }
    }

    pub fn database_url(&self) -> String {
        let url = self.database.url.expose_secret();
        if url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.server.data_dir.join("agentgate.db").display()
            )
        } else {
            url.to_string()
        }
    }
}

fn check_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(_) => Err(ConfigError(format!(
            "{key}: {value:?} is not an http(s) URL"
        ))),
        Err(e) => Err(ConfigError(format!(
            "{key}: {value:?} is not a valid URL ({e})"
        ))),
    }
}

fn one_line(e: &figment::Error) -> String {
    // figment prints one line per nested error; start-up should fail with exactly one.
    let mut parts = Vec::new();
    for err in e.clone() {
        let key = err.path.join(".");
        let msg = err.kind.to_string();
        if key.is_empty() {
            parts.push(msg);
        } else {
            parts.push(format!("{key}: {msg}"));
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load() {
        let config = Config::from_toml_overrides("").expect("defaults");
        assert_eq!(config.server.bind.port(), 4444);
        assert_eq!(config.limits.daily_messages, 10);
        assert_eq!(config.auth.mode, AuthMode::Hs256);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_overrides("[server]\nbindd = \"x\"").unwrap_err();
        assert!(err.to_string().contains("bindd"), "{err}");
    }

    #[test]
    fn a_github_app_on_a_personal_account_is_refused_at_start() {
        let app =
            "[git]\nhost = \"github\"\nowner = \"alice\"\napp_id = 1\nprivate_key = \"pem\"\n";
        let err = Config::from_toml_overrides(app).unwrap_err();
        assert!(err.to_string().contains("git.owner_is_org = true"), "{err}");
        let org = format!("{app}owner_is_org = true\n");
        Config::from_toml_overrides(&org).expect("an App in an organisation is fine");
    }

    #[test]
    fn webhook_settings_are_validated_at_start() {
        let public = "[server]\nbind = \"0.0.0.0:4444\"\ndev_login = false\n";
        let err = Config::from_toml_overrides(public).unwrap_err();
        assert!(err.to_string().contains("webhooks.allow_loopback"), "{err}");
        Config::from_toml_overrides(&format!("{public}[webhooks]\nallow_loopback = false\n"))
            .expect("a public gateway without loopback deliveries");
        for (endpoints, key) in [
            (
                r#"[{ url = "https://10.0.0.1/h", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }]"#,
                "endpoints[0].url",
            ),
            (
                r#"[{ url = "https://93.184.216.34/h", secret = "nope" }]"#,
                "endpoints[0].secret",
            ),
        ] {
            let err =
                Config::from_toml_overrides(&format!("[webhooks]\nendpoints = {endpoints}\n"))
                    .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        let err = Config::from_toml_overrides("[webhooks]\nallowed_networks = [\"10.0.0.1\"]\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("webhooks.allowed_networks"),
            "{err}"
        );
    }

    #[test]
    fn bad_url_is_named() {
        let err = Config::from_toml_overrides("[agent]\nurl = \"not a url\"").unwrap_err();
        assert!(err.to_string().contains("agent.url"), "{err}");
    }

    #[test]
    fn telemetry_settings_are_validated_at_start() {
        let config = Config::from_toml_overrides("").expect("defaults");
        assert!(!config.telemetry.enabled, "traces are off by default");
        for (toml, expected) in [
            ("endpoint = \"collector:4318\"", "telemetry.endpoint"),
            ("endpoint = \"grpc://collector:4317\"", "not an http(s) URL"),
            (
                "sample_ratio = 1.5",
                "telemetry.sample_ratio must be between 0 and 1",
            ),
            ("sample_ratio = -0.1", "telemetry.sample_ratio"),
            ("endpointt = \"http://c\"", "endpointt"),
        ] {
            let err = Config::from_toml_overrides(&format!("[telemetry]\nenabled = true\n{toml}"))
                .unwrap_err();
            assert!(err.to_string().contains(expected), "{toml}: {err}");
        }
        let good = "[telemetry]\nenabled = true\nendpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 0.25";
        let config = Config::from_toml_overrides(good).expect("a valid telemetry table");
        assert_eq!(config.telemetry.endpoint, "http://127.0.0.1:4318");
    }

    #[test]
    fn jwks_mode_needs_url() {
        let err = Config::from_toml_overrides("[auth]\nmode = \"jwks\"").unwrap_err();
        assert!(err.to_string().contains("auth.jwks_url"), "{err}");
    }

    #[test]
    fn koyeb_and_database_provision_are_validated() {
        let koyeb = "[deploy]\nprovider = \"koyeb\"\n[koyeb]\ntoken = \"t\"\n";
        let err = Config::from_toml_overrides(koyeb).unwrap_err();
        assert!(err.to_string().contains("git.host"), "{err}");
        let image = format!("{koyeb}mode = \"image\"\n");
        let err = Config::from_toml_overrides(&image).unwrap_err();
        assert!(err.to_string().contains("ecr.access_key_id"), "{err}");
        let with_ecr = format!("{image}[ecr]\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\n");
        assert!(Config::from_toml_overrides(&with_ecr).is_ok());

        let err =
            Config::from_toml_overrides("[database_provision]\nkind = \"postgres\"").unwrap_err();
        assert!(err.to_string().contains("admin_url"), "{err}");
        let bad =
            "[database_provision]\nkind = \"postgres\"\nadmin_url = \"mysql://u:Hidden@h/db\"";
        let err = Config::from_toml_overrides(bad).unwrap_err();
        assert!(!err.to_string().contains("Hidden"), "{err}");
        let good = "[database_provision]\nkind = \"postgres\"\nadmin_url = \"postgres://u:p@db.internal/postgres\"";
        let config = Config::from_toml_overrides(good).expect("postgres provisioning");
        assert_eq!(
            config.database_provision.postgres_public_host().as_deref(),
            Some("db.internal:5432")
        );
        let err = Config::from_toml_overrides("[database_provision]\nkind = \"neon\"").unwrap_err();
        assert!(err.to_string().contains("api_key"), "{err}");
        let err =
            Config::from_toml_overrides("[database_provision]\nkind = \"mysql\"").unwrap_err();
        assert!(err.to_string().contains("database_provision.kind"), "{err}");
        let err = Config::from_toml_overrides("[database_provision]\nencryption_key = \"short\"")
            .unwrap_err();
        assert!(err.to_string().contains("encryption_key"), "{err}");
        let err =
            Config::from_toml_overrides("[database_provision]\nadminurl = \"x\"").unwrap_err();
        assert!(err.to_string().contains("adminurl"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let config =
            Config::from_toml_overrides("[agent]\nsecret = \"very-secret-value\"").expect("cfg");
        assert!(!format!("{config:?}").contains("very-secret-value"));
    }
}
