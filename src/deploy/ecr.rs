//! Amazon ECR (or an ECR-compatible endpoint) as the image registry for image-mode deployments:
//! one repository per app, named from the app id, and short-lived push/pull credentials.
//!
//! GetAuthorizationToken returns base64 `AWS:<password>` valid for about 12 hours; it is cached
//! until five minutes before it expires (a token already expired on arrival, i.e. a skewed
//! clock, is reused for one minute), so callers can ask for it on every deployment.
//! [`EcrRegistry::with_max_token_age`] can shorten that: tokens are then also replaced once they
//! are that old. [`EcrRegistry::next_refresh`] tells background work when the token rotates. The
//! SDK's standard retry strategy already retries throttling and 5xx answers; what still fails
//! is classified as transient (network, 5xx, throttling) or permanent (everything else).
use std::time::Duration;

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::config::timeout::TimeoutConfig;
use aws_sdk_ecr::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::Client;
use base64::Engine;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::deploy::provider::DeployError;

/// A cached token is replaced this long before it expires.
const REFRESH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// How long to reuse a token whose expiry is missing or already past on arrival (a skewed
/// clock): long enough not to fetch one per deployment, short enough to recover quickly.
const FALLBACK_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

#[derive(Debug, Clone)]
pub struct EcrSettings {
    pub region: String,
    /// Empty for AWS itself; set for compatible servers (tests use moto).
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// Repositories are named `<prefix>/<app hex>` (just `<app hex>` when empty).
    pub repository_prefix: String,
}

/// Registry credentials for `docker login`-style use.
#[derive(Debug, Clone)]
pub struct RegistryAuth {
    pub username: String,
    pub password: SecretString,
    /// Registry host without scheme, e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    pub expires_at: DateTime<Utc>,
    /// When this token was obtained: two tokens with equal text are still two renewals.
    pub fetched_at: DateTime<Utc>,
}

pub struct EcrRegistry {
    client: Client,
    prefix: String,
    cached: Mutex<Option<CachedAuth>>,
    /// Tokens are replaced once this old, even if ECR would accept them longer.
    max_token_age: Option<chrono::TimeDelta>,
}

struct CachedAuth {
    auth: RegistryAuth,
    refresh_at: DateTime<Utc>,
}

impl EcrRegistry {
    pub fn new(settings: EcrSettings) -> Self {
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.expose_secret().to_string(),
            None,
            None,
            "agentgate-config",
        );
        let mut builder = aws_sdk_ecr::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if !settings.endpoint.is_empty() {
            builder = builder.endpoint_url(settings.endpoint.clone());
        }
        Self {
            client: Client::from_conf(builder.build()),
            prefix: settings.repository_prefix.trim_matches('/').to_string(),
            cached: Mutex::new(None),
            max_token_age: None,
        }
    }

    /// Also replaces tokens once they are `age` old, when that comes before the usual refresh
    /// (to rotate more often than ECR requires, or for tests that watch a token expire).
    pub fn with_max_token_age(mut self, age: Duration) -> Self {
        self.max_token_age = chrono::TimeDelta::from_std(age).ok();
        self
    }

    /// The repository name for an app: only the app id's hex, never user text.
    pub fn repository_name(&self, app_id: &str) -> Result<String, DeployError> {
        let hex = uuid::Uuid::parse_str(app_id)
            .map_err(|_| DeployError::Permanent("app id is not a UUID".to_string()))?
            .simple()
            .to_string();
        Ok(if self.prefix.is_empty() {
            hex
        } else {
            format!("{}/{hex}", self.prefix)
        })
    }

    /// Creates the app's repository if needed and returns its URI.
    pub async fn ensure_repository(&self, app_id: &str) -> Result<String, DeployError> {
        let name = self.repository_name(app_id)?;
        let created = self
            .client
            .create_repository()
            .repository_name(&name)
            .send()
            .await;
        match created {
            Ok(out) => out
                .repository()
                .and_then(|r| r.repository_uri())
                .map(str::to_string)
                .ok_or_else(|| DeployError::Transient("ECR returned no repository URI".into())),
            Err(e)
                if e.as_service_error()
                    .map(|s| s.is_repository_already_exists_exception())
                    == Some(true) =>
            {
                self.describe_uri(&name).await
            }
            Err(e) => Err(classify("creating the ECR repository", e)),
        }
    }

    async fn describe_uri(&self, name: &str) -> Result<String, DeployError> {
        let out = self
            .client
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
            .map_err(|e| classify("describing the ECR repository", e))?;
        out.repositories()
            .iter()
            .find(|r| r.repository_name() == Some(name))
            .and_then(|r| r.repository_uri())
            .map(str::to_string)
            .ok_or_else(|| DeployError::Transient("ECR did not list the repository".into()))
    }

    /// Deletes the app's repository with its images; a missing repository is fine.
    pub async fn delete_repository(&self, app_id: &str) -> Result<(), DeployError> {
        let name = self.repository_name(app_id)?;
        let deleted = self
            .client
            .delete_repository()
            .repository_name(&name)
            .force(true)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .map(|s| s.is_repository_not_found_exception())
                    == Some(true) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("deleting the ECR repository", e)),
        }
    }

    /// Registry credentials, from the cache while they have more than five minutes left.
    pub async fn authorization(&self) -> Result<RegistryAuth, DeployError> {
        // Held across the fetch so concurrent deployments share one request.
        let mut cached = self.cached.lock().await;
        if let Some(entry) = cached.as_ref() {
            if Utc::now() < entry.refresh_at {
                return Ok(entry.auth.clone());
            }
        }
        let auth = self.fetch_authorization().await?;
        *cached = Some(CachedAuth {
            refresh_at: refresh_at(auth.expires_at, auth.fetched_at, self.max_token_age),
            auth: auth.clone(),
        });
        Ok(auth)
    }

    /// When the cached token will be replaced; None before the first one is fetched.
    pub async fn next_refresh(&self) -> Option<DateTime<Utc>> {
        self.cached.lock().await.as_ref().map(|c| c.refresh_at)
    }

    async fn fetch_authorization(&self) -> Result<RegistryAuth, DeployError> {
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| classify("getting an ECR authorization token", e))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| DeployError::Transient("ECR returned no authorization data".into()))?;
        let malformed = || DeployError::Transient("ECR returned a malformed token".to_string());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.authorization_token().unwrap_or_default())
            .map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (username, password) = decoded.split_once(':').ok_or_else(malformed)?;
        let endpoint = data.proxy_endpoint().unwrap_or_default();
        let endpoint = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .unwrap_or(endpoint)
            .trim_end_matches('/')
            .to_string();
        let expires_at = data
            .expires_at()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
            .unwrap_or_else(Utc::now);
        Ok(RegistryAuth {
            username: username.to_string(),
            password: SecretString::from(password.to_string()),
            endpoint,
            expires_at,
            fetched_at: Utc::now(),
        })
    }
}

/// Five minutes before expiry, or after a short while when the expiry is (nearly) past;
/// sooner if the token reaches `max_age` first.
fn refresh_at(
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: Option<chrono::TimeDelta>,
) -> DateTime<Utc> {
    let normal = expires_at - REFRESH_MARGIN;
    let at = if normal > now {
        normal
    } else {
        now + FALLBACK_LIFETIME
    };
    match max_age {
        Some(age) => at.min(now + age),
        None => at,
    }
}

/// Network trouble, throttling and 5xx are worth retrying; the rest will not get better.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    err: SdkError<E, HttpResponse>,
) -> DeployError {
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("unknown error");
            let message = ctx.err().message().unwrap_or_default();
            let text = format!("{what}: {code} (HTTP {status}) {message}");
            let throttled = matches!(code, "ThrottlingException" | "ServerException");
            if status >= 500 || status == 429 || throttled {
                DeployError::Transient(text)
            } else {
                DeployError::Permanent(text)
            }
        }
        SdkError::ConstructionFailure(_) => {
            DeployError::Permanent(format!("{what}: the request could not be built"))
        }
        _ => DeployError::Transient(format!(
            "{what}: {}",
            aws_sdk_ecr::error::DisplayErrorContext(&err)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_five_minutes_before_expiry() {
        let now = Utc::now();
        let expires = now + chrono::TimeDelta::hours(12);
        assert_eq!(refresh_at(expires, now, None), expires - REFRESH_MARGIN);
        let soon = now + chrono::TimeDelta::minutes(3);
        assert_eq!(refresh_at(soon, now, None), now + FALLBACK_LIFETIME);
        let past = now - chrono::TimeDelta::days(1);
        assert_eq!(refresh_at(past, now, None), now + FALLBACK_LIFETIME);
    }

    #[test]
    fn a_maximum_age_only_ever_brings_the_refresh_forward() {
        let now = Utc::now();
        let expires = now + chrono::TimeDelta::hours(12);
        let hour = chrono::TimeDelta::hours(1);
        assert_eq!(refresh_at(expires, now, Some(hour)), now + hour);
        let day = chrono::TimeDelta::days(1);
        assert_eq!(
            refresh_at(expires, now, Some(day)),
            expires - REFRESH_MARGIN
        );
        let past = now - chrono::TimeDelta::days(1);
        let second = chrono::TimeDelta::seconds(1);
        assert_eq!(refresh_at(past, now, Some(second)), now + second);
    }
}
