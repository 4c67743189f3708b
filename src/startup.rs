//! Builds the application from a config: connects and migrates the database, binds the listener
//! (port 0 works; the bound address is reported), wires the state, and serves until shutdown.
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentClient, AgentClientConfig};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::config::StorageKind;
use crate::files::{BlobCache, FileVersions, WorkspaceSink};
use crate::limits::Limiter;
use crate::runs::sink::DiffSink;
use crate::runs::{RunDeps, RunManager};
use crate::state::AppState;
use crate::storage::{LocalStore, S3Settings, S3Store, SharedStore, UrlSigner};
use crate::{db, http, secrets};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    address: SocketAddr,
    /// Stops background loops (upload retries) at shutdown.
    background: CancellationToken,
}

/// The object store the config names, the local blob cache, and the version service over both.
fn build_files(
    config: &Config,
    db: &sea_orm::DatabaseConnection,
    public_url: String,
) -> anyhow::Result<(FileVersions, Option<Arc<LocalStore>>)> {
    let (store, local): (SharedStore, Option<Arc<LocalStore>>) = match config.storage.kind {
        StorageKind::Local => {
            let secret = secrets::load_or_create(&config.server.data_dir, "url-signing.secret")?;
            let signer = UrlSigner::new(secret.expose_secret().as_bytes());
            let local = Arc::new(LocalStore::new(config.storage_dir(), public_url, signer)?);
            (local.clone(), Some(local))
        }
        StorageKind::S3 => {
            let s = &config.storage;
            let store = S3Store::new(&S3Settings {
                bucket: s.bucket.clone(),
                region: s.region.clone(),
                endpoint: s.endpoint.clone(),
                path_style: s.path_style,
                access_key_id: s.access_key_id.clone(),
                secret_access_key: s.secret_access_key.expose_secret().to_string(),
                prefix: s.prefix.clone(),
                max_attempts: s.max_attempts,
            });
            (Arc::new(store), None)
        }
    };
    let cache = BlobCache::new(config.server.data_dir.join("blob-cache"))?;
    Ok((FileVersions::new(db.clone(), store, cache), local))
}

/// Uploads versions that could not be stored during their run, until `stop` is cancelled.
fn spawn_upload_retries(files: FileVersions, every: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {
                    files.upload_pending(50).await;
                }
            }
        }
    });
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.server.data_dir)?;
        let hs256 = secrets::hs256_secret(&config.auth.hs256_secret, &config.server.data_dir)?;
        let db = db::connect(&config.database_url(), config.database.max_connections).await?;
        let listener = TcpListener::bind(config.server.bind).await?;
        let address = listener.local_addr()?;

        let http_client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let auth = Arc::new(Authenticator::new(&config.auth, &hs256, http_client));
        let limiter = Limiter::new(db.clone(), config.limits.daily_messages);

        let (agent_url, agent_secret, demo_token) = if config.agent.url == "builtin" {
            let token = secrets::random_token();
            (
                format!("http://{address}/demo-agent"),
                SecretString::from(token.clone()),
                Some(token),
            )
        } else {
            (config.agent.url.clone(), config.agent.secret.clone(), None)
        };
        let agent = AgentClient::new(AgentClientConfig {
            base_url: agent_url,
            secret: agent_secret,
            connect_timeout: Duration::from_secs(config.agent.connect_timeout_secs),
            connect_retries: config.agent.connect_retries,
            idle_timeout: Duration::from_secs(config.agent.idle_timeout_secs),
            max_event_bytes: config.agent.max_event_bytes,
        })?;
        let public_url = if config.server.public_url.is_empty() {
            format!("http://{address}")
        } else {
            config.server.public_url.clone()
        };
        let (files, local_store) = build_files(&config, &db, public_url)?;
        let sink: Arc<dyn DiffSink> = Arc::new(WorkspaceSink::new(files.clone(), Vec::new()));
        let runs = RunManager::new(
            RunDeps {
                db: db.clone(),
                agent,
                sink,
                turn_deadline: Duration::from_secs(config.agent.turn_deadline_secs),
            },
            config.runs.live_buffer,
        );
        let recovered = runs.recover_interrupted().await?;
        if recovered > 0 {
            tracing::warn!(
                runs = recovered,
                "marked runs from a previous process as interrupted"
            );
        }

        let config = Arc::new(config);
        let state = AppState {
            config: config.clone(),
            db,
            auth,
            limiter,
            runs,
            files: files.clone(),
            local_store,
            started_at: Instant::now(),
        };
        let background = CancellationToken::new();
        spawn_upload_retries(
            files,
            Duration::from_secs(config.storage.retry_interval_secs.max(1)),
            background.clone(),
        );
        let mut extra = Router::new();
        if config.server.demo_agent {
            let demo_secret = demo_token.or_else(|| {
                let s = config.agent.secret.expose_secret();
                (!s.is_empty()).then(|| s.to_string())
            });
            extra = extra.nest_service("/demo-agent", crate::agent::demo::router(demo_secret));
        }
        let router = http::router(state.clone(), extra);
        tracing::info!(%address, "agentgate bound");
        Ok(Self {
            listener,
            router,
            state,
            address,
            background,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets active runs finish within the
    /// grace period, interrupts the rest, and returns once streams have closed (bounded).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stopping = CancellationToken::new();
        let trigger = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let grace = Duration::from_secs(self.state.config.runs.shutdown_grace_secs);
        let runs = self.state.runs.clone();
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stopping.clone().cancelled_owned());
        let mut server = tokio::spawn(server.into_future());
        tokio::select! {
            result = &mut server => return result?.map_err(Into::into),
            _ = stopping.cancelled() => {}
        }
        tracing::info!("shutting down: waiting for active runs");
        self.background.cancel();
        runs.shutdown(grace).await;
        // Every run has logged `done` now, so their streams end; give them a moment to drain.
        match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
            Ok(result) => result??,
            Err(_) => {
                tracing::warn!("closing connections that outlived the shutdown grace period");
                server.abort();
            }
        }
        Ok(())
    }
}
