//! The shared application state: cheap, cloneable handles only.
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::limits::Limiter;
use crate::runs::RunManager;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub auth: Arc<Authenticator>,
    pub limiter: Limiter,
    pub runs: RunManager,
    pub started_at: Instant,
}

impl AppState {
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.config.runs.keep_alive_secs.max(1))
    }
}
