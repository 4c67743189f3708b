//! Deployment workers: claim a due job, advance it one step through its provider, write the
//! result back, release the lease. A worker that dies leaves a lease that simply expires.
use crate::workspace::FileTree;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use super::jobs::{self, Update, BUILDING, DEPLOYING, FAILED, HEALTHY, QUEUED, SUPERSEDED};
use super::provider::{
    DeployError, DeployRequest, Deployer, ProviderState, ProviderStatus, RepositoryInfo,
};
use super::DeploySettings;
use crate::apps::{self, NewMessage};
use crate::files::FileVersions;
use crate::git::publish::{GitPublisher, PENDING as GIT_PENDING};
use crate::provision::{AppDatabases, ProvisionError, ENV_KEY as DATABASE_ENV_KEY};
use entity::{apps as apps_table, deployments};

/// Why a deployment's request could not be put together.
enum RequestError {
    /// Not ready yet (its commit is not pushed): check again soon, within the status deadline.
    Wait(String),
    Failed(DeployError),
}

impl From<sea_orm::DbErr> for RequestError {
    fn from(e: sea_orm::DbErr) -> Self {
        RequestError::Failed(DeployError::Transient(e.to_string()))
    }
}

impl From<ProvisionError> for RequestError {
    fn from(e: ProvisionError) -> Self {
        RequestError::Failed(if e.is_transient() {
            DeployError::Transient(e.to_string())
        } else {
            DeployError::Permanent(e.to_string())
        })
    }
}

const MAX_POLL_DELAY: Duration = Duration::from_secs(15);

/// Marks a job whose provider `start` has not completed yet (see [`DeployWorker::step`]).
const STARTING: &str = "starting";

/// The key under which a provider's `start` records the URL the app will be served at, as soon
/// as it knows it: the app's `appUrl` is set from it before the deployment is live.
pub const STATE_URL: &str = "url";

#[derive(Clone)]
pub struct DeployWorker {
    pub db: DatabaseConnection,
    pub deployer: Arc<dyn Deployer>,
    pub files: FileVersions,
    pub settings: DeploySettings,
    pub id: String,
    /// Sets the repository homepage once a deploy gives the app a URL.
    pub git: Option<GitPublisher>,
    /// Each app's database, created on its first deployment (`APP_DATABASE_URL`).
    pub databases: AppDatabases,
}

impl DeployWorker {
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(worker = %self.id, "deploy worker started");
        let mut next_sweep = tokio::time::Instant::now();
        while !stop.is_cancelled() {
            // Overdue jobs are swept once per poll interval, not once per step: under load a
            // worker takes steps back to back.
            if tokio::time::Instant::now() >= next_sweep {
                if let Err(e) = jobs::fail_overdue(&self.db).await {
                    tracing::warn!(error = %e, "could not fail overdue deployments");
                }
                self.report_timeouts().await;
                next_sweep = tokio::time::Instant::now() + self.settings.poll_interval;
            }
            // Registered before the claim, so a job queued while claiming still wakes us.
            let enqueued = jobs::enqueued();
            tokio::pin!(enqueued);
            enqueued.as_mut().enable();
            match jobs::claim(&self.db, &self.id, self.lease()).await {
                // A worker that found work looks for more at once; it sleeps only when the
                // queue has nothing due.
                Ok(Some(job)) => {
                    self.process(job).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not claim a deployment"),
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = &mut enqueued => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    fn lease(&self) -> ChronoDuration {
        ChronoDuration::from_std(self.settings.lease).unwrap_or(ChronoDuration::seconds(60))
    }

    /// One step of one job, with the lease kept alive while the provider works.
    pub async fn process(&self, job: deployments::Model) {
        let heartbeat = {
            let db = self.db.clone();
            let (id, worker, lease) = (job.id.clone(), self.id.clone(), self.lease());
            let every = self.settings.lease / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if !matches!(jobs::extend_lease(&db, &id, &worker, lease).await, Ok(true)) {
                        break;
                    }
                }
            })
        };
        let update = self.step(&job).await;
        heartbeat.abort();
        let status = update.status;
        let url = update.url.clone();
        match jobs::apply(&self.db, &job.id, &self.id, update).await {
            Ok(true) => match status.filter(|s| jobs::is_terminal(s)) {
                Some(status) => self.on_terminal(&job.id, status).await,
                None => self.on_url_known(&job, url.as_deref()).await,
            },
            Ok(false) => {
                tracing::info!(deployment = %job.id, "lease lost or job superseded; step discarded");
                // A cancelled job's clean-up waits for its lease: give it up at once.
                if let Err(e) = jobs::release_lease(&self.db, &job.id, &self.id).await {
                    tracing::warn!(deployment = %job.id, error = %e, "could not release a lease");
                }
            }
            Err(e) => {
                tracing::warn!(deployment = %job.id, error = %e, "could not record a deployment step")
            }
        }
    }

    async fn step(&self, job: &deployments::Model) -> Update {
        match self.newer_exists(job).await {
            Ok(true) => {
                return Update {
                    status: Some(SUPERSEDED),
                    error: Some("a newer version is being deployed".into()),
                    ..Default::default()
                }
            }
            Ok(false) => {}
            Err(e) => return self.retry(job, None, DeployError::Transient(e.to_string())),
        }
        let mut state: ProviderState =
            serde_json::from_str(&job.provider_state).unwrap_or_default();
        // Only a start publishes files; a status poll needs the ids in the state, and loading
        // the whole tree for every poll made each step cost as much as a start.
        let starting = job.status == QUEUED || state.contains_key(STARTING);
        let request = match self.request(job, starting).await {
            Ok(request) => request,
            Err(RequestError::Wait(reason)) => {
                return Update {
                    error: Some(reason),
                    next_attempt_at: Some(
                        Utc::now()
                            + to_chrono(self.settings.poll_interval.max(Duration::from_secs(1))),
                    ),
                    ..Default::default()
                }
            }
            Err(RequestError::Failed(e)) => return self.retry(job, None, e),
        };
        if job.status == QUEUED {
            // `start` may build an image for many minutes: the job is building from here on,
            // under the building deadline, not the deadline for waiting in the queue.
            state.insert(STARTING.into(), true.into());
            let deadline = Utc::now() + to_chrono(self.settings.building_deadline);
            match jobs::mark_building(&self.db, &job.id, &self.id, &state, deadline).await {
                Ok(true) => {}
                Ok(false) => return Update::default(),
                Err(e) => return self.retry(job, None, DeployError::Transient(e.to_string())),
            }
        }
        if state.contains_key(STARTING) {
            return match self.deployer.start(&request, &mut state).await {
                Ok(()) => {
                    state.remove(STARTING);
                    let url = state.get(STATE_URL).and_then(|v| v.as_str());
                    Update {
                        url: url.map(str::to_string),
                        status: Some(BUILDING),
                        provider_state: Some(serde_json::Value::Object(state).to_string()),
                        attempts: Some(0),
                        next_attempt_at: Some(Utc::now()),
                        ..Default::default()
                    }
                }
                Err(e) => self.retry(job, Some(&state), e),
            };
        }
        let now = Utc::now();
        match self.deployer.poll(&request, &state).await {
            Ok(ProviderStatus::Building) => self.keep(job, BUILDING),
            Ok(ProviderStatus::Deploying) => self.keep(job, DEPLOYING),
            Ok(ProviderStatus::Healthy { url }) => Update {
                status: Some(HEALTHY),
                url: Some(url),
                ..Default::default()
            },
            Ok(ProviderStatus::Failed { reason }) => Update {
                status: Some(FAILED),
                error: Some(reason),
                ..Default::default()
            },
            Ok(ProviderStatus::Unknown(raw)) => {
                let since = job.unknown_since.unwrap_or(now);
                if now - since > to_chrono(self.settings.unknown_status_wait) {
                    return Update {
                        status: Some(FAILED),
                        error: Some(format!(
                            "the provider kept reporting an unknown status {raw:?}"
                        )),
                        ..Default::default()
                    };
                }
                Update {
                    unknown_since: Some(Some(since)),
                    next_attempt_at: Some(now + to_chrono(self.poll_delay(job))),
                    ..Default::default()
                }
            }
            Err(e) => self.retry(job, Some(&state), e),
        }
    }

    /// A started deployment's URL goes on the app at once: clients show the app's preview
    /// while it deploys instead of after.
    async fn on_url_known(&self, job: &deployments::Model, url: Option<&str>) {
        let Some(url) = url else {
            return;
        };
        if let Err(e) = jobs::record_app_url(&self.db, job, url).await {
            tracing::warn!(deployment = %job.id, error = %e, "could not record the app's URL");
        }
    }

    /// Stays in (or moves to) `status`; a new status gets its own deadline.
    fn keep(&self, job: &deployments::Model, status: &'static str) -> Update {
        let now = Utc::now();
        let deadline = (job.status != status).then(|| {
            let limit = if status == DEPLOYING {
                self.settings.deploying_deadline
            } else {
                self.settings.building_deadline
            };
            Some(now + to_chrono(limit))
        });
        Update {
            status: Some(status),
            next_attempt_at: Some(now + to_chrono(self.poll_delay(job))),
            status_deadline_at: deadline,
            unknown_since: Some(None),
            ..Default::default()
        }
    }

    /// Polls back off as a deployment ages (a tenth of its age, from `poll_interval` up to
    /// [`MAX_POLL_DELAY`]): quick answers for quick deploys, few calls for a long build.
    fn poll_delay(&self, job: &deployments::Model) -> Duration {
        let age = (Utc::now() - job.created_at).to_std().unwrap_or_default();
        (age / 10)
            .min(MAX_POLL_DELAY)
            .max(self.settings.poll_interval)
    }

    /// Retries later after a transient error, or fails. `state` keeps what the failed step
    /// recorded (ids, a pushed image), so the retried step reuses it instead of redoing it.
    fn retry(
        &self,
        job: &deployments::Model,
        state: Option<&ProviderState>,
        error: DeployError,
    ) -> Update {
        let attempts = job.attempts + 1;
        let provider_state = state.map(|s| serde_json::Value::Object(s.clone()).to_string());
        match error {
            DeployError::Transient(reason) if (attempts as u32) < self.settings.max_attempts => {
                let backoff = Duration::from_millis(500 * 2u64.pow(attempts.clamp(0, 7) as u32))
                    .min(Duration::from_secs(60));
                tracing::warn!(deployment = %job.id, attempts, %reason, "deployment step failed; retrying");
                Update {
                    attempts: Some(attempts),
                    next_attempt_at: Some(Utc::now() + to_chrono(backoff)),
                    error: Some(reason),
                    provider_state,
                    ..Default::default()
                }
            }
            DeployError::Transient(reason) => Update {
                status: Some(FAILED),
                attempts: Some(attempts),
                error: Some(format!("gave up after {attempts} attempts: {reason}")),
                ..Default::default()
            },
            DeployError::Permanent(reason) => Update {
                status: Some(FAILED),
                attempts: Some(attempts),
                error: Some(reason),
                ..Default::default()
            },
        }
    }

    async fn newer_exists(&self, job: &deployments::Model) -> Result<bool, sea_orm::DbErr> {
        let newer = deployments::Entity::find()
            .filter(deployments::Column::AppId.eq(job.app_id.as_str()))
            .filter(deployments::Column::Version.gt(job.version))
            .one(&self.db)
            .await?;
        Ok(newer.is_some())
    }

    async fn request(
        &self,
        job: &deployments::Model,
        with_files: bool,
    ) -> Result<DeployRequest, RequestError> {
        let version = self
            .files
            .get(&job.app_id, job.version)
            .await?
            .ok_or_else(|| {
                RequestError::Failed(DeployError::Permanent(format!(
                    "version {} of app {} does not exist",
                    job.version, job.app_id
                )))
            })?;
        let app = apps_table::Entity::find_by_id(job.app_id.clone())
            .one(&self.db)
            .await?
            .filter(|a| a.deleted_at.is_none())
            .ok_or_else(|| {
                RequestError::Failed(DeployError::Permanent("the app was deleted".into()))
            })?;
        // Building from git needs the version's commit on the host; its push may be retrying.
        if job.status == QUEUED
            && self.deployer.needs_repository()
            && version.git_status.as_deref() == Some(GIT_PENDING)
        {
            return Err(RequestError::Wait(format!(
                "waiting for version {} to be pushed to the git host",
                job.version
            )));
        }
        let files = match with_files {
            true => self.files.load_tree(&version).await.map_err(|e| {
                RequestError::Failed(DeployError::Transient(format!(
                    "loading the version's files: {e:#}"
                )))
            })?,
            false => FileTree::new(),
        };
        let repository = match self.git.as_ref().and_then(|git| git.repo_of(&app)) {
            Some(repo) => Some(RepositoryInfo {
                url: repo.url,
                branch: repo.default_branch,
                commit_sha: version.commit_sha.clone(),
            }),
            None => app.repository_url.clone().map(|url| RepositoryInfo {
                url,
                branch: "main".into(),
                commit_sha: version.commit_sha.clone(),
            }),
        };
        let mut env = BTreeMap::new();
        if let Some(url) = self.databases.url_for(&job.app_id).await? {
            self.check_not_deleted(&job.app_id).await?;
            env.insert(
                DATABASE_ENV_KEY.to_string(),
                url.expose_secret().to_string(),
            );
        }
        Ok(DeployRequest {
            deployment_id: job.id.clone(),
            app_id: job.app_id.clone(),
            version: job.version,
            files,
            repository,
            env,
        })
    }

    /// An app deleted while its database was being created may have missed the database's
    /// clean-up: queue it here.
    async fn check_not_deleted(&self, app_id: &str) -> Result<(), RequestError> {
        let app = apps_table::Entity::find_by_id(app_id.to_string())
            .one(&self.db)
            .await?;
        if app.is_some_and(|a| a.deleted_at.is_none()) {
            return Ok(());
        }
        super::cleanup::enqueue_database(&self.db, app_id).await?;
        Err(RequestError::Failed(DeployError::Permanent(
            "the app was deleted".into(),
        )))
    }

    async fn set_homepage(&self, job: &deployments::Model) {
        let (Some(git), Some(url)) = (&self.git, &job.url) else {
            return;
        };
        let Ok(Some(app)) = apps_table::Entity::find_by_id(job.app_id.clone())
            .one(&self.db)
            .await
        else {
            return;
        };
        if let Some(repo) = git.repo_of(&app) {
            if let Err(e) = git.host().set_homepage(&repo, url).await {
                tracing::warn!(error = %e, "could not set the repository homepage");
            }
        }
    }

    /// Reports deployments that timed out with nobody watching to their app's history.
    async fn report_timeouts(&self) {
        let failed = match jobs::unreported_failures(&self.db, 20).await {
            Ok(failed) => failed,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for unreported deployments");
                return;
            }
        };
        for job in failed {
            self.notify_history(&job).await;
        }
    }

    /// Appends the outcome to the app's history, once (whoever claims the report first).
    async fn notify_history(&self, job: &deployments::Model) {
        if let Ok(true) = jobs::claim_notification(&self.db, &job.id).await {
            let (text, metadata) = super::outcome_notice(job);
            // Kept as a stream would have shown it (a failure is a RuntimeError).
            let shaped = crate::notices::shape(&text, &metadata);
            let message = NewMessage {
                app_id: &job.app_id,
                run_id: None,
                role: "platform",
                kind: shaped.kind,
                content: &shaped.text,
                metadata: Some(&shaped.message_metadata),
            };
            if let Err(e) = apps::append_message(&self.db, message).await {
                tracing::warn!(error = %e, "could not record the deploy outcome in the history");
            }
        }
    }

    /// Records the outcome on the app, and in its history unless a run's stream reports it.
    async fn on_terminal(&self, id: &str, status: &str) {
        let Ok(Some(job)) = jobs::find(&self.db, id).await else {
            return;
        };
        let metrics = crate::metrics::metrics();
        metrics
            .deployments
            .get_or_create(&crate::metrics::Outcome {
                outcome: status.to_string(),
            })
            .inc();
        let took = (job.finished_at.unwrap_or_else(Utc::now) - job.created_at)
            .num_milliseconds()
            .max(0);
        metrics.deployment_duration.observe(took as f64 / 1000.0);
        let mut update = apps_table::Entity::update_many()
            .col_expr(apps_table::Column::DeployStatus, Expr::value(status))
            .col_expr(apps_table::Column::UpdatedAt, Expr::value(Utc::now()));
        if status == HEALTHY {
            update = update.col_expr(apps_table::Column::AppUrl, Expr::value(job.url.clone()));
            self.set_homepage(&job).await;
        } else if status == FAILED {
            if let Err(e) = jobs::forget_unserved_url(&self.db, &job.app_id).await {
                tracing::warn!(error = %e, "could not clear the app's unserved URL");
            }
        }
        if let Err(e) = update
            .filter(apps_table::Column::Id.eq(job.app_id.as_str()))
            .exec(&self.db)
            .await
        {
            tracing::warn!(error = %e, "could not record the deploy status on the app");
        }
        if job.watched || status == SUPERSEDED {
            return;
        }
        self.notify_history(&job).await;
    }
}

pub fn to_chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}
