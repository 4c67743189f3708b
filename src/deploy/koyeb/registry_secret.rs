//! Image mode: the Koyeb secret holding the ECR credentials Koyeb pulls images with.
//!
//! A deployment writes the secret, creating it on first use. ECR tokens expire after about 12
//! hours, but Koyeb pulls again whenever it restarts, reschedules or wakes a service, so while
//! the deploy workers run, [`KoyebDeployer::keep_registry_secret_fresh`] wakes when the cached
//! token is due for renewal (five minutes before it expires), renews it and rewrites the
//! secret. The refresh only updates a secret that exists: a gateway that never deployed an
//! image creates none. Only a SHA-256 fingerprint of what was last written is kept, in memory,
//! and credentials never reach logs or errors.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::api::ApiError;
use super::{redact, KoyebDeployer, KoyebMode};
use crate::deploy::ecr::{EcrRegistry, RegistryAuth};
use crate::deploy::provider::DeployError;

/// The refresh loop never checks more often than this, whatever the token's lifetime.
const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Nor less often: the sleep runs on the monotonic clock and the refresh time on the wall
/// clock, which can jump (a suspended VM), so the loop looks again at least hourly.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// What a refresh of the registry secret did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrySecretRefresh {
    /// Koyeb already holds the current token.
    Current,
    /// The secret was written with the current token.
    Updated,
    /// No secret exists yet (no image was deployed), so none was written.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WhenMissing {
    Create,
    Skip,
}

impl KoyebDeployer {
    /// Rewrites Koyeb's registry secret if the ECR token was renewed since it was last
    /// written (renewing it first when it is due). Never creates the secret.
    pub async fn refresh_registry_secret(&self) -> Result<RegistrySecretRefresh, DeployError> {
        match self.image_registry() {
            Some(registry) => {
                self.write_registry_secret(registry, WhenMissing::Skip)
                    .await
            }
            None => Ok(RegistrySecretRefresh::Missing),
        }
    }

    /// Keeps the registry secret current until `stop`: checks at once (Koyeb may still hold a
    /// token from before this process started), then whenever the cached token is due for
    /// renewal. Failures are logged and retried after `registry_refresh_retry`. Returns at once
    /// outside image mode.
    pub async fn keep_registry_secret_fresh(self: Arc<Self>, stop: CancellationToken) {
        let Some(registry) = self.image_registry().cloned() else {
            return;
        };
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = match self.refresh_registry_secret().await {
                Ok(outcome) => {
                    if outcome == RegistrySecretRefresh::Updated {
                        tracing::info!(
                            "rewrote the Koyeb registry secret with a renewed ECR token"
                        );
                    }
                    until_refresh(registry.next_refresh().await, Utc::now())
                }
                Err(error) => {
                    let retry = self.settings.registry_refresh_retry;
                    tracing::warn!(%error, ?retry, "refreshing the Koyeb registry secret failed");
                    retry
                }
            };
        }
    }

    fn image_registry(&self) -> Option<&Arc<EcrRegistry>> {
        self.registry
            .as_ref()
            .filter(|_| self.settings.mode == KoyebMode::Image)
    }

    /// Writes the current registry credentials to Koyeb unless they were the last written.
    pub(super) async fn write_registry_secret(
        &self,
        registry: &EcrRegistry,
        when_missing: WhenMissing,
    ) -> Result<RegistrySecretRefresh, DeployError> {
        // The token is read under this lock, so the last write always carries the newest
        // token: a deployment holding an older one cannot overwrite a refresh.
        let mut known = self.registry_fingerprint.lock().await;
        let auth = registry.authorization().await?;
        let fingerprint = fingerprint(&auth);
        if known.as_deref() == Some(fingerprint.as_str()) {
            return Ok(RegistrySecretRefresh::Current);
        }
        let written = self
            .put_registry_secret(&auth, when_missing)
            .await
            .map_err(|e| redact(e, &[auth.password.expose_secret().to_string()]))?;
        if written {
            *known = Some(fingerprint);
            Ok(RegistrySecretRefresh::Updated)
        } else {
            Ok(RegistrySecretRefresh::Missing)
        }
    }

    /// False when the secret does not exist and `when_missing` is `Skip`.
    async fn put_registry_secret(
        &self,
        auth: &RegistryAuth,
        when_missing: WhenMissing,
    ) -> Result<bool, DeployError> {
        let name = &self.settings.registry_secret_name;
        let body = json!({
            "name": name,
            "type": "REGISTRY",
            "private_registry": {
                "username": auth.username,
                "password": auth.password.expose_secret(),
                "url": auth.endpoint,
            },
        });
        match self.api.find_secret(name).await? {
            Some(secret) => drop(self.api.update_secret(&secret.id, &body).await?),
            None if when_missing == WhenMissing::Skip => return Ok(false),
            None => match self.api.create_secret(&body).await {
                Ok(_) => {}
                Err(ApiError::Conflict) => {
                    let secret = self.api.find_secret(name).await?.ok_or_else(|| {
                        DeployError::Transient("Koyeb secret exists but is not listed".into())
                    })?;
                    self.api.update_secret(&secret.id, &body).await?;
                }
                Err(e) => return Err(e.into()),
            },
        }
        Ok(true)
    }
}

/// How long to sleep until the token is due for renewal, within the check bounds.
fn until_refresh(refresh_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    let Some(at) = refresh_at else {
        return MAX_CHECK_INTERVAL;
    };
    (at - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .clamp(MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL)
}

/// Identifies credentials without keeping them. The fetch time is part of it: every renewal
/// is written, even when ECR hands out the same text again.
fn fingerprint(auth: &RegistryAuth) -> String {
    let mut hasher = Sha256::new();
    for part in [
        auth.endpoint.as_str(),
        auth.username.as_str(),
        auth.password.expose_secret(),
        &auth.fetched_at.to_rfc3339(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_wakes_when_the_token_is_due_within_bounds() {
        let now = Utc::now();
        let in_half_an_hour = now + chrono::TimeDelta::minutes(30);
        assert_eq!(
            until_refresh(Some(in_half_an_hour), now),
            Duration::from_secs(30 * 60)
        );
        let past = now - chrono::TimeDelta::minutes(1);
        assert_eq!(until_refresh(Some(past), now), MIN_CHECK_INTERVAL);
        let far = now + chrono::TimeDelta::hours(12);
        assert_eq!(until_refresh(Some(far), now), MAX_CHECK_INTERVAL);
        assert_eq!(until_refresh(None, now), MAX_CHECK_INTERVAL);
    }

    #[test]
    fn every_renewal_has_its_own_fingerprint() {
        let auth = RegistryAuth {
            username: "AWS".into(),
            password: "token".to_string().into(),
            endpoint: "123.dkr.ecr.us-east-1.amazonaws.com".into(),
            expires_at: Utc::now(),
            fetched_at: Utc::now(),
        };
        let renewed = RegistryAuth {
            fetched_at: auth.fetched_at + chrono::TimeDelta::seconds(1),
            ..auth.clone()
        };
        assert_eq!(fingerprint(&auth), fingerprint(&auth.clone()));
        assert_ne!(fingerprint(&auth), fingerprint(&renewed));
    }
}
