//! A database per app: created before the app's first deployment, its connection URL handed to
//! the app as a secret (`APP_DATABASE_URL`), dropped when the app is deleted. Backends: a shared
//! PostgreSQL server (a role and a database per app), Neon (a project per app), or none.
//! [`AppDatabases`] remembers each app's database with its URL encrypted.
mod cipher;
mod neon;
mod postgres;
mod scram;
mod store;

use async_trait::async_trait;
use secrecy::SecretString;

pub use cipher::UrlCipher;
pub use neon::NeonProvisioner;
pub use postgres::PostgresProvisioner;
pub use store::{AppDatabases, CLAIM_TIMEOUT, ENV_KEY};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProvisionError {
    /// No backend is configured; the caller deploys the app without a database.
    #[error("no database provisioner is configured")]
    NotConfigured,
    #[error("app id is not a UUID")]
    InvalidAppId,
    /// Worth retrying (network, server busy, rate limit).
    #[error("database provisioning failed for now: {0}")]
    Transient(String),
    /// Will not get better by retrying (bad credentials, missing privileges, rejected request).
    #[error("database provisioning failed: {0}")]
    Permanent(String),
}

impl ProvisionError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ProvisionError::Transient(_))
    }
}

/// A database `provision` made: its URL (a secret) and its name at the backend.
#[derive(Debug, Clone)]
pub struct ProvisionedDatabase {
    pub url: SecretString,
    /// The role and database name, or the Neon project id.
    pub reference: String,
}

#[async_trait]
pub trait DatabaseProvisioner: Send + Sync {
    /// "postgres", "neon" or "none".
    fn kind(&self) -> &'static str;

    /// Creates (or re-creates access to) the app's database and returns its connection URL.
    /// Idempotent: calling it again for the same app yields a working URL for the same data.
    async fn create(&self, app_id: &str) -> Result<SecretString, ProvisionError>;

    /// `create`, also naming what was created at the backend.
    async fn provision(&self, app_id: &str) -> Result<ProvisionedDatabase, ProvisionError> {
        let url = self.create(app_id).await?;
        Ok(ProvisionedDatabase {
            url,
            reference: String::new(),
        })
    }

    /// Drops the app's database; a database that does not exist is fine.
    async fn delete(&self, app_id: &str) -> Result<(), ProvisionError>;
}

/// Used when no database backend is configured.
pub struct NoProvisioner;

#[async_trait]
impl DatabaseProvisioner for NoProvisioner {
    fn kind(&self) -> &'static str {
        "none"
    }

    async fn create(&self, _app_id: &str) -> Result<SecretString, ProvisionError> {
        Err(ProvisionError::NotConfigured)
    }

    async fn delete(&self, _app_id: &str) -> Result<(), ProvisionError> {
        Ok(())
    }
}

/// The app id's 32 lowercase hex digits: the only input for database, role and project names.
fn app_hex(app_id: &str) -> Result<String, ProvisionError> {
    uuid::Uuid::parse_str(app_id)
        .map(|id| id.simple().to_string())
        .map_err(|_| ProvisionError::InvalidAppId)
}

/// Replaces each secret in `text`; used on error messages from backends.
fn redact(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_hex_accepts_only_uuids() {
        assert_eq!(
            app_hex("0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9")
                .ok()
                .as_deref(),
            Some("0f1e2d3c4b5a49788695a4b3c2d1e0f9")
        );
        for bad in [
            "",
            "app",
            "x; DROP ROLE postgres",
            "0f1e2d3c-4b5a-4978-8695",
        ] {
            assert!(app_hex(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn no_provisioner_is_not_configured() {
        let none = NoProvisioner;
        assert_eq!(none.kind(), "none");
        assert!(matches!(
            none.create("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9").await,
            Err(ProvisionError::NotConfigured)
        ));
        assert!(none.delete("anything").await.is_ok());
    }
}
