//! The shared application state: cheap, cloneable handles only.
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::deploy::LocalPreview;
use crate::files::FileVersions;
use crate::git::publish::GitPublisher;
use crate::limits::Limiter;
use crate::runs::RunManager;
use crate::storage::LocalStore;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub auth: Arc<Authenticator>,
    pub limiter: Limiter,
    pub runs: RunManager,
    pub files: FileVersions,
    /// Set when objects live in a local directory: the gateway serves its signed links.
    pub local_store: Option<Arc<LocalStore>>,
    /// Set when deploys are local previews served by this gateway.
    pub preview: Option<Arc<LocalPreview>>,
    /// The configured deployment provider's name ("local", "koyeb").
    pub deploy_provider: &'static str,
    /// The git host and version publisher; None when `git.host = "none"`.
    pub git: Option<GitPublisher>,
    pub started_at: Instant,
}

impl AppState {
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.config.runs.keep_alive_secs.max(1))
    }
}
