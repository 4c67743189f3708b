//! The probes behind `/health`, each cached so a busy health endpoint costs the database,
//! storage and agent one round trip every few seconds at most.
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use tokio::sync::Mutex;

use crate::state::AppState;
use entity::health_checks;

/// How long a probe's answer is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(5);
/// How long a probe may take before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The row the database probe rewrites.
const PROBE_ROW: &str = "gateway";

/// The cached outcome of one probe: `true` when it passed.
#[derive(Clone, Default)]
struct Cached(Arc<Mutex<Option<(Instant, bool)>>>);

impl Cached {
    /// The last outcome while fresh; otherwise runs `probe` (one caller at a time, so a burst
    /// of health requests makes one round trip).
    async fn get_or_probe<F>(&self, what: &str, probe: F) -> bool
    where
        F: Future<Output = anyhow::Result<()>>,
    {
        let mut slot = self.0.lock().await;
        if let Some((at, passed)) = *slot {
            if at.elapsed() < CACHE_FOR {
                return passed;
            }
        }
        let passed = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    check = what,
                    "health check failed"
                );
                false
            }
            Err(_) => {
                tracing::warn!(check = what, "health check timed out");
                false
            }
        };
        *slot = Some((Instant::now(), passed));
        passed
    }
}

/// Per-gateway cache of the three checks.
#[derive(Clone, Default)]
pub struct HealthCache {
    database: Cached,
    storage: Cached,
    agent: Cached,
}

/// What `/health` reports: each check passed or not.
pub struct Outcome {
    pub database: bool,
    pub storage: bool,
    pub agent: bool,
}

impl HealthCache {
    pub async fn run(&self, state: &AppState) -> Outcome {
        let (database, storage, agent) = tokio::join!(
            self.database
                .get_or_probe("database", database_accepts_a_write(&state.db)),
            self.storage
                .get_or_probe("storage", async { Ok(state.files.store().probe().await?) }),
            self.agent
                .get_or_probe("agent", agent_is_reachable(&state.config.agent.url)),
        );
        Outcome {
            database,
            storage,
            agent,
        }
    }
}

/// A `SELECT 1` passes on a read-only, full or locked database; an upsert does not.
async fn database_accepts_a_write(db: &DatabaseConnection) -> anyhow::Result<()> {
    let row = health_checks::ActiveModel {
        probe: Set(PROBE_ROW.to_string()),
        checked_at: Set(chrono::Utc::now()),
    };
    health_checks::Entity::insert(row)
        .on_conflict(
            OnConflict::column(health_checks::Column::Probe)
                .update_column(health_checks::Column::CheckedAt)
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// The built-in agent runs in this process; another must accept a TCP connection.
async fn agent_is_reachable(url: &str) -> anyhow::Result<()> {
    if url == "builtin" {
        return Ok(());
    }
    let parsed = url::Url::parse(url)?;
    let host = parsed
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("the agent URL has no host"))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| anyhow::anyhow!("the agent URL has no port"))?;
    tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| anyhow::anyhow!("the agent is unreachable: {e}"))?;
    Ok(())
}
