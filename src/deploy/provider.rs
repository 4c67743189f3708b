//! The `Deployer` trait: what a deployment provider (local preview, Koyeb) must do. The job
//! runner owns retries, leases and deadlines; a provider only starts work and reports status.
use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::logs::DeployLog;
use crate::files::FileTree;

/// What to deploy. Resource names must come from `app_id`, never from user-controlled text.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub deployment_id: String,
    pub app_id: String,
    pub version: i32,
    pub files: FileTree,
    /// The app's repository (clone URL, branch, commit), when git has one.
    pub repository: Option<RepositoryInfo>,
    /// Environment for the app, e.g. APP_DATABASE_URL. Values are secrets: never log them.
    pub env: BTreeMap<String, String>,
    /// The deployment's log (masks `env` already): what the provider does, in lines.
    pub log: DeployLog,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub url: String,
    pub branch: String,
    pub commit_sha: Option<String>,
}

/// Provider-side identifiers, kept on the deployment row between polls (JSON).
pub type ProviderState = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    Building,
    Deploying,
    Healthy {
        url: String,
    },
    Failed {
        reason: String,
    },
    /// A status the provider reported that we do not know; the runner waits a bounded time.
    Unknown(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    /// Worth retrying (network, 5xx, rate limit).
    #[error("{0}")]
    Transient(String),
    /// Will not get better by retrying (bad config, rejected build).
    #[error("{0}")]
    Permanent(String),
}

#[async_trait]
pub trait Deployer: Send + Sync {
    /// "local" or "koyeb".
    fn provider(&self) -> &'static str;

    /// True when it builds from the app's git repository, so a version must be pushed first.
    fn needs_repository(&self) -> bool {
        false
    }

    /// Starts deploying `request`. Called again after a transient error or a lost lease, so
    /// it must be idempotent for the same deployment id (reuse what `state` already holds).
    async fn start(
        &self,
        request: &DeployRequest,
        state: &mut ProviderState,
    ) -> Result<(), DeployError>;

    /// Reports where the deployment started by `start` is now.
    async fn poll(
        &self,
        request: &DeployRequest,
        state: &ProviderState,
    ) -> Result<ProviderStatus, DeployError>;

    /// Removes everything deployed for the app (app deleted).
    async fn destroy(&self, app_id: &str) -> Result<(), DeployError>;
}
