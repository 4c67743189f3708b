//! The gateways that share one database. Each registers at start with a heartbeat it renews
//! with its run leases, and says what it keeps on its own disk. Several gateways work only when
//! everything a route serves is shared (PostgreSQL, object storage, configured secrets, a
//! shared git directory or GitHub), so a gateway that finds another live one refuses to start
//! when either of them keeps state on its own disk, or when they sign with different secrets.
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value};
use secrecy::ExposeSecret;

use super::bus::{self, Peers, Signal};
use crate::config::{AuthMode, Config, GitHostKind, ProvisionKind, StorageKind};
use crate::db::statement;

/// Gateways silent for longer than this are gone; their rows are deleted.
const FORGET_AFTER: chrono::Duration = chrono::Duration::days(1);

/// This gateway as the others see it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    /// What this gateway keeps on its own disk, as the config settings to change; empty when
    /// nothing is.
    pub local_state: Vec<String>,
    /// Tells whether two gateways sign tokens with the same secrets, without storing them.
    pub secrets_digest: String,
}

impl Member {
    pub fn from_config(id: &str, config: &Config) -> Self {
        Self {
            id: id.to_string(),
            local_state: local_state(config),
            secrets_digest: secrets_digest(config),
        }
    }
}

/// What `config` keeps on this machine's disk that other gateways cannot see.
pub fn local_state(config: &Config) -> Vec<String> {
    let mut found = Vec::new();
    if config.storage.kind == StorageKind::Local {
        found.push("storage.kind = \"local\" (use \"s3\")".to_string());
    }
    if config.auth.mode == AuthMode::Hs256 && config.auth.hs256_secret.expose_secret().is_empty() {
        found.push("auth.hs256_secret generated under the data dir (set it)".to_string());
    }
    if config.database_provision.kind != ProvisionKind::None
        && config
            .database_provision
            .encryption_key
            .expose_secret()
            .is_empty()
    {
        found.push(
            "database_provision.encryption_key generated under the data dir (set it)".to_string(),
        );
    }
    if config.git.host == GitHostKind::Local && !config.git.local_shared {
        found.push(
            "git.host = \"local\" on this machine's disk (use \"github\", or a shared \
             git.local_dir with git.local_shared = true)"
                .to_string(),
        );
    }
    found
}

/// A short digest of the secrets gateways must share: equal secrets give equal digests. It is
/// truncated and labelled, so the table never holds a secret or a plain hash of one.
fn secrets_digest(config: &Config) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"agentgate gateway secrets v1\0");
    let shared = [
        (
            config.auth.mode == AuthMode::Hs256,
            &config.auth.hs256_secret,
        ),
        (
            config.database_provision.kind != ProvisionKind::None,
            &config.database_provision.encryption_key,
        ),
    ];
    for (_, secret) in shared.iter().filter(|(used, _)| *used) {
        let bytes = secret.expose_secret().as_bytes();
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// How recent a gateway's heartbeat must be for it to count as live: it renews it every
/// sweep, so three missed sweeps (and at least one lease) mean it is gone.
pub fn alive_window(config: &Config) -> chrono::Duration {
    let secs = (config.runs.sweep_interval_secs.max(1) * 3).max(config.runs.lease_secs);
    chrono::Duration::seconds(secs as i64)
}

/// A live gateway other than this one.
#[derive(Debug, Clone)]
struct Peer {
    id: String,
    local_state: String,
    secrets_digest: String,
}

/// Refuses (with one line saying what to change) when another gateway is live on this
/// database and this one or that one keeps state on its own disk, or their secrets differ.
/// Then registers this gateway and announces it to the others. `alive` is how recent a
/// heartbeat must be. Returns whether other gateways are live.
pub async fn join(
    db: &DatabaseConnection,
    me: &Member,
    alive: chrono::Duration,
) -> anyhow::Result<bool> {
    let now = Utc::now();
    let peers = live_peers(db, &me.id, now - alive).await?;
    if let Some(peer) = peers.first() {
        if !me.local_state.is_empty() {
            anyhow::bail!(
                "another gateway ({}) uses this database, but this one keeps state on its own \
                 disk: {}",
                peer.id,
                me.local_state.join("; ")
            );
        }
        if !peer.local_state.is_empty() {
            anyhow::bail!(
                "gateway {} uses this database and keeps state on its own disk ({}); configure \
                 it for shared state before starting more gateways",
                peer.id,
                peer.local_state
            );
        }
        if peer.secrets_digest != me.secrets_digest {
            anyhow::bail!(
                "gateway {} uses this database with other secrets: set the same \
                 auth.hs256_secret and database_provision.encryption_key on every gateway",
                peer.id
            );
        }
    }
    db.execute_raw(statement(
        db,
        "INSERT INTO gateways (id, local_state, secrets_digest, started_at, heartbeat_at) \
         VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (id) DO UPDATE SET local_state = excluded.local_state, \
         secrets_digest = excluded.secrets_digest, started_at = excluded.started_at, \
         heartbeat_at = excluded.heartbeat_at",
        vec![
            me.id.clone().into(),
            me.local_state.join("; ").into(),
            me.secrets_digest.clone().into(),
            now.into(),
        ],
    ))
    .await?;
    let joined = Signal::Joined {
        gateway: me.id.clone(),
    };
    bus::publish(db, &[joined]).await?;
    Ok(!peers.is_empty())
}

async fn live_peers(
    db: &DatabaseConnection,
    me: &str,
    since: DateTime<Utc>,
) -> Result<Vec<Peer>, DbErr> {
    let rows = db
        .query_all_raw(statement(
            db,
            "SELECT id, local_state, secrets_digest FROM gateways \
             WHERE id <> $1 AND heartbeat_at > $2 ORDER BY id",
            vec![me.into(), since.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Peer {
                id: row.try_get("", "id")?,
                local_state: row.try_get("", "local_state")?,
                secrets_digest: row.try_get("", "secrets_digest")?,
            })
        })
        .collect()
}

/// Renews this gateway's heartbeat and forgets gateways gone for a day.
pub async fn heartbeat(db: &DatabaseConnection, me: &str) -> Result<(), DbErr> {
    let now = Utc::now();
    db.execute_raw(statement(
        db,
        "UPDATE gateways SET heartbeat_at = $2 WHERE id = $1",
        vec![me.into(), now.into()],
    ))
    .await?;
    db.execute_raw(statement(
        db,
        "DELETE FROM gateways WHERE heartbeat_at < $1",
        vec![Value::from(now - FORGET_AFTER)],
    ))
    .await?;
    Ok(())
}

/// Renews the heartbeat every `every` until `stop`, and keeps `peers` up to date.
pub async fn keep_heartbeat(
    db: DatabaseConnection,
    me: String,
    every: std::time::Duration,
    alive: chrono::Duration,
    peers: Peers,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = heartbeat(&db, &me).await {
            tracing::warn!(error = %e, "could not renew this gateway's heartbeat");
        }
        match live_peers(&db, &me, Utc::now() - alive).await {
            Ok(live) => peers.set(!live.is_empty()),
            // Unsure: announcing costs a little, missing a peer costs its streams latency.
            Err(_) => peers.set(true),
        }
    }
}

/// Unregisters this gateway (a clean shutdown), so a successor need not wait for its heartbeat
/// to go stale.
pub async fn leave(db: &DatabaseConnection, me: &str) -> Result<(), DbErr> {
    db.execute_raw(statement(
        db,
        "DELETE FROM gateways WHERE id = $1",
        vec![me.into()],
    ))
    .await?;
    Ok(())
}
