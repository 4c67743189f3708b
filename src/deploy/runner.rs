//! Advances a deployment one step per `deploy` job run: start it through its provider, then
//! poll it until it is healthy or failed. Each step's result is written under the job's lease;
//! the queue (`crate::jobs`) claims, retries and re-polls on its own schedule.
use crate::files::FileTree;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use tracing::Instrument;

use super::logs::{DeployLog, LogStream};
use super::provider::{
    DeployError, DeployRequest, Deployer, ProviderState, ProviderStatus, RepositoryInfo,
};
use super::records::{
    self, DeploymentStatus, Update, BUILDING, DEPLOYING, FAILED, HEALTHY, QUEUED, SUPERSEDED,
};
use super::DeploySettings;
use crate::apps::{self, NewMessage};
use crate::files::FileVersions;
use crate::jobs::{Job, JobKind, Lease, NewJob, Step};
use crate::provision::{AppDatabases, ProvisionError, ENV_KEY as DATABASE_ENV_KEY};
use entity::app_versions::GitStatus;
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

/// What a step did to the deployment, and what its job does next.
struct Outcome {
    update: Update,
    next: Next,
}

enum Next {
    /// Poll (or retry the wait) after this long.
    Poll(Duration),
    /// A transient failure: the queue retries with backoff.
    Retry(String),
    /// The deployment reached a terminal status (or the step changed nothing it may write).
    Finished,
}

const MAX_POLL_DELAY: Duration = Duration::from_secs(15);

/// Marks a job whose provider `start` has not completed yet (see [`DeployWorker::step`]).
const STARTING: &str = "starting";

/// The key under which a provider's `start` records the URL the app will be served at, as soon
/// as it knows it: the app's `appUrl` is set from it before the deployment is live.
pub const STATE_URL: &str = "url";

#[derive(Clone)]
pub struct DeployRunner {
    pub db: DatabaseConnection,
    pub deployer: Arc<dyn Deployer>,
    pub files: FileVersions,
    pub settings: DeploySettings,
    /// Each app's database, created on its first deployment (`APP_DATABASE_URL`).
    pub databases: AppDatabases,
}

impl DeployRunner {
    /// One step of the deployment a `deploy` job names. Returns the job's next step: done once
    /// the deployment is terminal, again after the poll delay while the provider works.
    #[tracing::instrument(name = "deploy.step", skip_all, fields(deployment_id = job.subject.as_deref()))]
    pub async fn advance(&self, job: &Job, lease: &Lease) -> Step {
        let Some(id) = job.subject.as_deref() else {
            return Step::Fail("a deploy job without a deployment".into());
        };
        let deployment = match records::find(&self.db, id).await {
            Ok(Some(deployment)) => deployment,
            Ok(None) => return Step::Fail(format!("deployment {id} does not exist")),
            Err(e) => return db_retry(e),
        };
        // Superseded or cancelled while it waited: nothing left to do.
        if records::is_terminal(deployment.status) {
            return Step::Done(None);
        }
        let log = self.log_for(&deployment);
        let Outcome { update, next } = self.step(&deployment, job, lease, &log).await;
        if let Next::Retry(reason) = &next {
            log.line(
                LogStream::Deploy,
                &format!("this attempt failed, retrying: {reason}"),
            );
        }
        // The step's own lines come before the status line its update writes.
        log.flush().await;
        let status = update.status;
        let url = update.url.clone();
        match records::apply(&self.db, &deployment.id, lease, update).await {
            Ok(true) => {}
            // Lease lost or the deployment superseded meanwhile: the queue sorts out the job.
            Ok(false) => return Step::Done(None),
            Err(e) => return db_retry(e),
        }
        match status.filter(|s| records::is_terminal(*s)) {
            Some(status) => {
                self.on_terminal(&deployment.id, status).await;
                return Step::Done(None);
            }
            None => self.on_url_known(&deployment, url.as_deref()).await,
        }
        match next {
            Next::Poll(after) => Step::Again(after),
            Next::Retry(error) => Step::Retry {
                error,
                retry_after: None,
            },
            Next::Finished => Step::Done(None),
        }
    }

    /// Where this step's log lines go: masked with the configured secrets and the app's
    /// environment (its database URL) as soon as the request knows it.
    fn log_for(&self, deployment: &deployments::Model) -> DeployLog {
        DeployLog::start(
            self.db.clone(),
            &deployment.id,
            self.settings.log_lines,
            self.settings.log_mask.clone(),
        )
    }

    async fn step(
        &self,
        deployment: &deployments::Model,
        job: &Job,
        lease: &Lease,
        log: &DeployLog,
    ) -> Outcome {
        match self.newer_exists(deployment).await {
            Ok(true) => return finished(SUPERSEDED, "a newer version is being deployed".into()),
            Ok(false) => {}
            Err(e) => return self.retry(job, None, DeployError::Transient(e.to_string())),
        }
        let mut state: ProviderState =
            serde_json::from_str(&deployment.provider_state).unwrap_or_default();
        // Only a start publishes files; a status poll needs the ids in the state, and loading
        // the whole tree for every poll made each step cost as much as a start.
        let starting = deployment.status == QUEUED || state.contains_key(STARTING);
        let request = match self.request(deployment, starting, log).await {
            Ok(request) => request,
            Err(RequestError::Wait(reason)) => {
                return Outcome {
                    update: Update {
                        error: Some(reason),
                        ..Default::default()
                    },
                    next: Next::Poll(self.settings.poll_interval.max(Duration::from_secs(1))),
                }
            }
            Err(RequestError::Failed(e)) => return self.retry(job, None, e),
        };
        if deployment.status == QUEUED {
            // `start` may build an image for many minutes: the job is building from here on,
            // under the building deadline, not the deadline for waiting in the queue.
            state.insert(STARTING.into(), true.into());
            let deadline = Utc::now() + to_chrono(self.settings.building_deadline);
            match records::mark_building(&self.db, &deployment.id, lease, &state, deadline).await {
                Ok(true) => {}
                Ok(false) => {
                    return Outcome {
                        update: Update::default(),
                        next: Next::Finished,
                    }
                }
                Err(e) => return self.retry(job, None, DeployError::Transient(e.to_string())),
            }
        }
        // A start is followed by a first poll in the same step: a local preview is live as
        // soon as it is published, and a claim saved per deployment counts under load.
        let mut started = None;
        if state.contains_key(STARTING) {
            log.line(
                LogStream::Deploy,
                &format!(
                    "starting version {} with the {} provider",
                    deployment.version,
                    self.deployer.provider()
                ),
            );
            let start = self.deployer.start(&request, &mut state);
            if let Err(e) = start.instrument(tracing::info_span!("deploy.start")).await {
                return self.retry(job, Some(&state), e);
            }
            state.remove(STARTING);
            started = Some(serde_json::Value::Object(state.clone()).to_string());
        }
        let mut outcome = self.poll(deployment, job, &request, &state).await;
        if let Some(provider_state) = started {
            let update = &mut outcome.update;
            update.provider_state.get_or_insert(provider_state);
            update.status.get_or_insert(BUILDING);
            if update.url.is_none() {
                update.url = state
                    .get(STATE_URL)
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
            }
        }
        outcome
    }

    /// Asks the provider how the deployment is doing.
    async fn poll(
        &self,
        deployment: &deployments::Model,
        job: &Job,
        request: &DeployRequest,
        state: &ProviderState,
    ) -> Outcome {
        let now = Utc::now();
        let polled = self.deployer.poll(request, state);
        match polled.instrument(tracing::info_span!("deploy.poll")).await {
            Ok(ProviderStatus::Building) => self.keep(deployment, BUILDING),
            Ok(ProviderStatus::Deploying) => self.keep(deployment, DEPLOYING),
            Ok(ProviderStatus::Healthy { url }) => Outcome {
                update: Update {
                    status: Some(HEALTHY),
                    url: Some(url),
                    ..Default::default()
                },
                next: Next::Finished,
            },
            Ok(ProviderStatus::Failed { reason }) => finished(FAILED, reason),
            Ok(ProviderStatus::Unknown(raw)) => {
                let since = deployment.unknown_since.unwrap_or(now);
                if now - since > to_chrono(self.settings.unknown_status_wait) {
                    return finished(
                        FAILED,
                        format!("the provider kept reporting an unknown status {raw:?}"),
                    );
                }
                Outcome {
                    update: Update {
                        unknown_since: Some(Some(since)),
                        ..Default::default()
                    },
                    next: Next::Poll(self.poll_delay(deployment)),
                }
            }
            Err(e) => self.retry(job, Some(state), e),
        }
    }

    /// A started deployment's URL goes on the app at once: clients show the app's preview
    /// while it deploys instead of after.
    async fn on_url_known(&self, job: &deployments::Model, url: Option<&str>) {
        let Some(url) = url else {
            return;
        };
        if let Err(e) = records::record_app_url(&self.db, job, url).await {
            tracing::warn!(deployment = %job.id, error = %e, "could not record the app's URL");
        }
    }

    /// Stays in (or moves to) `status`; a new status gets its own deadline.
    fn keep(&self, deployment: &deployments::Model, status: DeploymentStatus) -> Outcome {
        let now = Utc::now();
        let deadline = (deployment.status != status).then(|| {
            let limit = if status == DEPLOYING {
                self.settings.deploying_deadline
            } else {
                self.settings.building_deadline
            };
            Some(now + to_chrono(limit))
        });
        Outcome {
            update: Update {
                status: Some(status),
                status_deadline_at: deadline,
                unknown_since: Some(None),
                ..Default::default()
            },
            next: Next::Poll(self.poll_delay(deployment)),
        }
    }

    /// Polls back off as a deployment ages (a tenth of its age, from `poll_interval` up to
    /// [`MAX_POLL_DELAY`]): quick answers for quick deploys, few calls for a long build.
    fn poll_delay(&self, deployment: &deployments::Model) -> Duration {
        let age = (Utc::now() - deployment.created_at)
            .to_std()
            .unwrap_or_default();
        (age / 10)
            .min(MAX_POLL_DELAY)
            .max(self.settings.poll_interval)
    }

    /// Retries later after a transient error (the queue's backoff), or fails once
    /// `max_attempts` steps failed in a row. `state` keeps what the failed step recorded (ids,
    /// a pushed image), so the retried step reuses it instead of redoing it.
    fn retry(&self, job: &Job, state: Option<&ProviderState>, error: DeployError) -> Outcome {
        let attempts = job.attempts + 1;
        let provider_state = state.map(|s| serde_json::Value::Object(s.clone()).to_string());
        match error {
            DeployError::Transient(reason) if (attempts as u32) < self.settings.max_attempts => {
                Outcome {
                    update: Update {
                        error: Some(reason.clone()),
                        provider_state,
                        ..Default::default()
                    },
                    next: Next::Retry(reason),
                }
            }
            DeployError::Transient(reason) => finished(
                FAILED,
                format!("gave up after {attempts} attempts: {reason}"),
            ),
            DeployError::Permanent(reason) => finished(FAILED, reason),
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
        log: &DeployLog,
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
        // Building from git needs the version's commit on the host. Its deploy job waits for
        // the push job; this covers a deployment queued by hand while a push is retrying.
        if job.status == QUEUED
            && self.deployer.needs_repository()
            && version.git_status == Some(GitStatus::Pending)
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
        let repository = app.repository_url.clone().map(|url| RepositoryInfo {
            url,
            branch: self.settings.git_branch.clone(),
            commit_sha: version.commit_sha.clone(),
        });
        let mut env = BTreeMap::new();
        if let Some(url) = self.databases.url_for(&job.app_id).await? {
            self.check_not_deleted(&job.app_id).await?;
            env.insert(
                DATABASE_ENV_KEY.to_string(),
                url.expose_secret().to_string(),
            );
        }
        // The app's environment is secret: never in its log.
        log.mask_also(env.values());
        Ok(DeployRequest {
            deployment_id: job.id.clone(),
            app_id: job.app_id.clone(),
            version: job.version,
            files,
            repository,
            env,
            log: log.clone(),
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
        let cleanup = NewJob::new(JobKind::CleanupDatabase, app_id);
        crate::jobs::enqueue_now(&self.db, cleanup).await?;
        Err(RequestError::Failed(DeployError::Permanent(
            "the app was deleted".into(),
        )))
    }

    /// Fails overdue deployments and reports those that timed out with nobody watching to
    /// their app's history. Run about once per poll interval.
    pub async fn sweep(&self) {
        if let Err(e) = records::fail_overdue(&self.db).await {
            tracing::warn!(error = %e, "could not fail overdue deployments");
        }
        self.report_timeouts().await;
    }

    async fn report_timeouts(&self) {
        let failed = match records::unreported_failures(&self.db, 20).await {
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
        if let Ok(true) = records::claim_notification(&self.db, &job.id).await {
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
    async fn on_terminal(&self, id: &str, status: DeploymentStatus) {
        let Ok(Some(job)) = records::find(&self.db, id).await else {
            return;
        };
        let metrics = crate::metrics::metrics();
        metrics
            .deployments
            .get_or_create(&crate::metrics::Outcome {
                outcome: status.as_str().to_string(),
            })
            .inc();
        let took = (job.finished_at.unwrap_or_else(Utc::now) - job.created_at)
            .num_milliseconds()
            .max(0);
        metrics.deployment_duration.observe(took as f64 / 1000.0);
        let live_url = job.url.as_deref().filter(|_| status == HEALTHY);
        if status == FAILED {
            if let Err(e) = records::forget_unserved_url(&self.db, &job.app_id).await {
                tracing::warn!(error = %e, "could not clear the app's unserved URL");
            }
        }
        if let Err(e) = apps::record_deploy_status(&self.db, &job.app_id, status, live_url).await {
            tracing::warn!(error = %e, "could not record the deploy status on the app");
        }
        if job.watched || status == SUPERSEDED {
            return;
        }
        self.notify_history(&job).await;
    }
}

/// The deployment ends with `status` (failed, superseded) and why.
fn finished(status: DeploymentStatus, reason: String) -> Outcome {
    Outcome {
        update: Update {
            status: Some(status),
            error: Some(reason),
            ..Default::default()
        },
        next: Next::Finished,
    }
}

fn db_retry(e: sea_orm::DbErr) -> Step {
    Step::Retry {
        error: e.to_string(),
        retry_after: None,
    }
}

pub fn to_chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}
