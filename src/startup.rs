//! Builds the application from a config: connects and migrates the database, binds the listener
//! (port 0 works; the bound address is reported), wires the state, and serves until shutdown.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{AgentClient, AgentClientConfig};
use crate::auth::Authenticator;
use crate::cluster::members::{self, Member};
use crate::config::Config;
use crate::limits::Limiter;
use crate::runs::log_writer::LogWriter;
use crate::runs::{RunDeps, RunManager, Runner};
use crate::server::{self, ConnectionLimits};
use crate::state::AppState;
use crate::wiring::Components;
use crate::{db, http, secrets};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    address: SocketAddr,
    limits: ConnectionLimits,
    /// Stops background loops (job workers, lease keeping) at shutdown.
    background: CancellationToken,
    /// The background loops, waited for (bounded) at shutdown.
    tasks: TaskTracker,
    /// This gateway in the database's gateway registry (PostgreSQL only).
    member: Option<String>,
}

/// How long shutdown waits for background loops to finish their current step.
const BACKGROUND_GRACE: Duration = Duration::from_secs(10);

impl Application {
    /// The API plus deployment workers (what `agentgate serve` runs).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, true).await
    }

    /// `with_workers = false` serves only the API (`serve --no-worker`): such hosts need no
    /// build tools or cloud credentials.
    pub async fn build_with(config: Config, with_workers: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.server.data_dir)?;
        let hs256 = secrets::hs256_secret(&config.auth.hs256_secret, &config.server.data_dir)?;
        let db = db::connect(&config.database_url(), config.database.max_connections).await?;
        let log_db = db::connect_log_writer(&config.database_url(), &db).await?;
        let runner_id = config.instance_id();
        // Several gateways share only a PostgreSQL database; SQLite is one machine's.
        let member = (db.get_database_backend() == sea_orm::DbBackend::Postgres)
            .then(|| Member::from_config(&runner_id, &config));
        let has_peers = match &member {
            Some(me) => members::join(&db, me, members::alive_window(&config)).await?,
            None => false,
        };
        let listener = TcpListener::bind(config.server.bind).await?;
        let address = listener.local_addr()?;
        let max_connections = server::fd_limit::max_connections(
            config.server.max_connections,
            config.database.max_connections,
        );
        let limits = ConnectionLimits::from_config(&config.server, max_connections);

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
        crate::git::local::stored_urls::rewrite_at_start(&config, &db, &public_url).await;
        let parts = Components::build(&config, &db, public_url, with_workers)?;
        sync_operator_webhooks(&config, &db).await?;
        let files = parts.files.clone();
        let local_store = parts.local_store.clone();
        let runs = RunManager::new(
            RunDeps {
                db: db.clone(),
                agent,
                pipeline: parts.pipeline.clone(),
                turn_deadline: Duration::from_secs(config.agent.turn_deadline_secs),
                log: LogWriter::start(log_db, db.clone())?,
            },
            limiter.clone(),
            config.runs.live_buffer,
            Runner {
                id: runner_id,
                lease: Duration::from_secs(config.runs.lease_secs.max(3)),
            },
        );
        runs.peers().set(has_peers);
        let recovered = runs.recover_interrupted().await?;
        if recovered > 0 {
            tracing::warn!(
                runs = recovered,
                "marked runs from a previous process as interrupted"
            );
        }

        let config = Arc::new(config);
        let db_for_background = db.clone();
        let state = AppState {
            config: config.clone(),
            db,
            auth,
            limiter,
            runs,
            files: files.clone(),
            local_store,
            preview: parts.preview.clone(),
            deploy_provider: parts.provider,
            git: parts.git.clone(),
            started_at: Instant::now(),
        };
        let background = CancellationToken::new();
        let tasks = TaskTracker::new();
        parts.spawn_background(
            &config,
            &db_for_background,
            Some(state.runs.signal_sink()),
            background.clone(),
            &tasks,
        );
        let sweep_every = Duration::from_secs(config.runs.sweep_interval_secs.max(1));
        tasks.spawn((state.runs.clone()).keep_leases(sweep_every, background.clone()));
        if let Some(me) = &member {
            tasks.spawn(members::keep_heartbeat(
                state.db.clone(),
                me.id.clone(),
                sweep_every,
                members::alive_window(&config),
                state.runs.peers().clone(),
                background.clone(),
            ));
        }
        let mut extra = Router::new();
        if config.server.demo_agent {
            let demo_secret = demo_token.or_else(|| {
                let s = config.agent.secret.expose_secret();
                (!s.is_empty()).then(|| s.to_string())
            });
            extra = extra.nest_service("/demo-agent", demo_agent::router(demo_secret));
        }
        let router = http::router(state.clone(), extra)?;
        tracing::info!(%address, "agentgate bound");
        Ok(Self {
            listener,
            router,
            state,
            address,
            limits,
            background,
            tasks,
            member: member.map(|m| m.id),
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
        let mut server = tokio::spawn(server::serve(
            self.listener,
            self.router,
            self.limits,
            stopping.clone(),
        ));
        if let Some(bind) = self.state.config.server.metrics_bind {
            serve_metrics(bind, &self.state.config, stopping.clone()).await?;
        }
        let ended_early = tokio::select! {
            result = &mut server => Some(result),
            _ = stopping.cancelled() => None,
        };
        if let Some(result) = ended_early {
            // The server ended first (or in the same instant as the stop): the background
            // loops must still stop, or they outlive the database they use.
            self.background.cancel();
            stop_background(self.tasks).await;
            return result.map_err(Into::into);
        }
        tracing::info!("shutting down: waiting for active runs");
        self.background.cancel();
        runs.shutdown(grace).await;
        stop_background(self.tasks).await;
        if let Some(me) = &self.member {
            if let Err(e) = members::leave(&self.state.db, me).await {
                tracing::warn!(error = %e, "could not unregister this gateway");
            }
        }
        // Every run has logged `done` now, so their streams end; give them a moment to drain.
        match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
            Ok(result) => result?,
            Err(_) => {
                tracing::warn!("closing connections that outlived the shutdown grace period");
                server.abort();
            }
        }
        Ok(())
    }
}

/// Serves /metrics on its own address, with the API's deadlines and a small connection cap.
async fn serve_metrics(
    bind: SocketAddr,
    config: &Config,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).await?;
    tracing::info!(address = %listener.local_addr()?, "metrics bound");
    let limits = ConnectionLimits::from_config(&config.server, server::METRICS_MAX_CONNECTIONS);
    tokio::spawn(server::serve(
        listener,
        http::metrics::router::<()>(),
        limits,
        stop,
    ));
    Ok(())
}

/// `agentgate worker`: only the job workers, until `shutdown`.
pub async fn run_workers(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.server.data_dir)?;
    let db = db::connect(&config.database_url(), config.database.max_connections).await?;
    let public_url = if config.server.public_url.is_empty() {
        format!("http://{}", config.server.bind)
    } else {
        config.server.public_url.clone()
    };
    let parts = Components::build(&config, &db, public_url, true)?;
    sync_operator_webhooks(&config, &db).await?;
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    parts.spawn_background(&config, &db, None, stop.clone(), &tasks);
    // Deploy outcomes and git/storage retries are counted here, so this process has metrics too.
    if let Some(bind) = config.server.metrics_bind {
        serve_metrics(bind, &config, stop.clone()).await?;
    }
    shutdown.await;
    stop.cancel();
    stop_background(tasks).await;
    Ok(())
}

/// The operator's webhook endpoints, as the config lists them now, get every event from here on.
async fn sync_operator_webhooks(
    config: &Config,
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<()> {
    let endpoints = config.webhooks.delivery_settings().operator_endpoints;
    crate::webhooks::sync_operator_endpoints(db, &endpoints)
        .await
        .map_err(|e| anyhow::anyhow!("webhooks: could not record the operator's endpoints: {e}"))
}

/// Waits for the background loops to finish their current step (they were told to stop), up
/// to [`BACKGROUND_GRACE`]; a step cut short is retried elsewhere once its lease expires.
async fn stop_background(tasks: TaskTracker) {
    tasks.close();
    if tokio::time::timeout(BACKGROUND_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background work still running at shutdown; its leases will expire");
    }
}
