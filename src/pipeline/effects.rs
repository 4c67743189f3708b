//! The job handler: what each kind of job does. Uploads go to object storage, pushes to the git
//! host, deploy jobs through the deployment runner, clean-up through [`Cleanup`]. A push that
//! finishes after its run stopped waiting is reported to the app's history, as the run's
//! stream would have shown it.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{json, Value};

use super::cleanup::Cleanup;
use super::outcomes::{job_notices, notices_from};
use super::Notice;
use crate::apps::{append_message, NewMessage};
use crate::deploy::records as deployments;
use crate::deploy::DeployRunner;
use crate::files::FileVersions;
use crate::git::publish::{GitPublisher, Published};
use crate::jobs::{self, Job, JobHandler, JobKind, JobStatus, Lease, RetryPolicy, Step};
use crate::webhooks::Deliverer;
use entity::jobs as jobs_table;

/// The retry schedule of each kind.
#[derive(Debug, Clone, Copy)]
pub struct EffectPolicies {
    pub upload: RetryPolicy,
    pub push: RetryPolicy,
    pub deploy: RetryPolicy,
    pub cleanup: RetryPolicy,
}

impl Default for EffectPolicies {
    fn default() -> Self {
        let unlimited = |base: u64, cap: u64| RetryPolicy {
            base: Duration::from_millis(base),
            cap: Duration::from_secs(cap),
            max_attempts: 0,
        };
        Self {
            upload: unlimited(1000, 300),
            push: unlimited(1000, 60),
            // The deployment runner counts its own failures (`deploy.max_attempts`).
            deploy: unlimited(500, 60),
            cleanup: unlimited(2000, 3600),
        }
    }
}

pub struct Effects {
    pub db: DatabaseConnection,
    pub files: FileVersions,
    /// None when `git.host = "none"`.
    pub git: Option<GitPublisher>,
    /// None on an API-only host, whose workers take only uploads.
    pub deploy: Option<DeployRunner>,
    pub cleanup: Option<Cleanup>,
    /// Sends webhook deliveries; None where no deliveries are configured to run (tests).
    pub webhooks: Option<Arc<Deliverer>>,
    pub policies: EffectPolicies,
}

impl Effects {
    #[tracing::instrument(name = "version.upload", skip_all, fields(version = job.version))]
    async fn upload(&self, job: &Job) -> Step {
        let Some(number) = job.version else {
            return Step::Fail("an upload job without a version".into());
        };
        let version = match self.files.get(&job.app_id, number).await {
            Ok(Some(version)) => version,
            Ok(None) => return Step::Done(None),
            Err(e) => return retry(e.to_string()),
        };
        if version.status == crate::files::versions::STATUS_STORED {
            return Step::Done(None);
        }
        match self.files.upload(&version).await {
            Ok(report) => {
                tracing::info!(app_id = %job.app_id, version = number, blobs = report.blobs, bytes = report.total_bytes, "version uploaded");
                Step::Done(Some(
                    json!({"blobs": report.blobs, "bytes": report.total_bytes}),
                ))
            }
            Err(e) => retry(format!("{e:#}")),
        }
    }

    /// Pushes every unpushed version of the app in order (the queue runs one push of an app
    /// at a time, oldest version first). The result lists what it did, as notices. What a
    /// failing attempt did before it failed (a created repository) is kept too: for the run
    /// that watches the job, else in the app's history.
    #[tracing::instrument(name = "git.push", skip_all)]
    async fn push(&self, job: &Job, lease: &Lease) -> Step {
        let Some(git) = &self.git else {
            return Step::Done(None);
        };
        let report = git.publish(&job.app_id).await;
        let mut notices: Vec<Value> = match (job.watched, job.result.as_deref()) {
            // An earlier attempt's progress its run has not reported yet.
            (true, Some(earlier)) => match serde_json::from_str(earlier) {
                Ok(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        notices.extend(report.steps.iter().map(published_notice));
        let Some(e) = report.error else {
            return Step::Done(Some(Value::Array(notices)));
        };
        if !report.steps.is_empty() {
            if job.watched {
                let progress = Value::Array(notices);
                if let Err(e) = jobs::save_result(&self.db, lease, &progress).await {
                    tracing::warn!(error = %e, "could not keep a push's progress");
                }
            } else {
                let done: Vec<Value> = report.steps.iter().map(published_notice).collect();
                self.record_in_history(&job.app_id, &notices_from(&done))
                    .await;
            }
        }
        // A host that said when to come back (a rate limit) is not asked again before then.
        Step::Retry {
            error: format!("{} ({})", e, e.code()),
            retry_after: e.retry_after(),
        }
    }

    /// Puts notices into the app's history, as a run's stream would have shown them.
    async fn record_in_history(&self, app_id: &str, notices: &[Notice]) {
        for notice in notices {
            let Notice::Platform { text, metadata } = notice else {
                continue;
            };
            let shaped = crate::notices::shape(text, metadata);
            let message = NewMessage {
                app_id,
                run_id: None,
                role: "platform",
                kind: shaped.kind,
                content: &shaped.text,
                metadata: Some(&shaped.message_metadata),
            };
            if let Err(e) = append_message(&self.db, message).await {
                tracing::warn!(app_id = %app_id, error = %e, "could not record an effect in the history");
            }
        }
    }

    /// A healthy deployment's URL becomes its repository's homepage.
    async fn set_homepage(&self, job: &Job) {
        let (Some(git), Some(id)) = (&self.git, job.subject.as_deref()) else {
            return;
        };
        let Ok(Some(deployment)) = deployments::find(&self.db, id).await else {
            return;
        };
        let (Some(url), true) = (&deployment.url, deployment.status == deployments::HEALTHY) else {
            return;
        };
        let Ok(Some(app)) = entity::apps::Entity::find_by_id(job.app_id.clone())
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

    /// Samples the queue's size per kind and status into the gauges.
    async fn sample_gauges(&self) {
        let counts: Vec<(JobKind, JobStatus, i64)> = match jobs_table::Entity::find()
            .select_only()
            .column(jobs_table::Column::Kind)
            .column(jobs_table::Column::Status)
            .column_as(jobs_table::Column::Id.count(), "count")
            .filter(jobs_table::Column::Status.is_in([
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::Failed,
            ]))
            .group_by(jobs_table::Column::Kind)
            .group_by(jobs_table::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await
        {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(error = %e, "could not count the queue");
                return;
            }
        };
        let metrics = crate::metrics::metrics();
        for gauges in [
            &metrics.jobs_queued,
            &metrics.jobs_running,
            &metrics.jobs_failed,
        ] {
            gauges.clear();
        }
        for (kind, status, count) in counts {
            let gauge = match status {
                JobStatus::Queued => &metrics.jobs_queued,
                JobStatus::Running => &metrics.jobs_running,
                _ => &metrics.jobs_failed,
            };
            let label = crate::metrics::Kind {
                kind: kind.as_str().into(),
            };
            gauge.get_or_create(&label).set(count);
        }
    }
}

#[async_trait]
impl JobHandler for Effects {
    async fn run(&self, job: &Job, lease: &Lease) -> Step {
        match job.kind {
            JobKind::UploadVersion => self.upload(job).await,
            JobKind::PushVersion => self.push(job, lease).await,
            JobKind::Deploy => match &self.deploy {
                Some(deploy) => deploy.advance(job, lease).await,
                None => retry("this host runs no deployments".into()),
            },
            JobKind::CleanupDeployment
            | JobKind::CleanupRepository
            | JobKind::CleanupDatabase
            | JobKind::CleanupStorage => match &self.cleanup {
                None => retry("this host runs no clean-up".into()),
                Some(cleanup) => match cleanup.run(job.kind, &job.app_id).await {
                    Ok(()) => {
                        tracing::info!(app_id = %job.app_id, kind = job.kind.as_str(), "clean-up step done");
                        Step::Done(None)
                    }
                    Err(e) => retry(e),
                },
            },
            JobKind::DeliverWebhook => match &self.webhooks {
                Some(webhooks) => webhooks.deliver(job).await,
                None => retry("this host delivers no webhooks".into()),
            },
        }
    }

    fn policy(&self, kind: JobKind) -> RetryPolicy {
        match kind {
            JobKind::UploadVersion => self.policies.upload,
            JobKind::PushVersion => self.policies.push,
            JobKind::Deploy => self.policies.deploy,
            JobKind::DeliverWebhook => match &self.webhooks {
                Some(webhooks) => webhooks.policy(),
                None => self.policies.cleanup,
            },
            _ => self.policies.cleanup,
        }
    }

    async fn finished(&self, job: &Job) {
        match job.kind {
            JobKind::PushVersion if !job.watched => {
                if let Ok(true) = jobs::claim_report(&self.db, &job.id).await {
                    self.record_in_history(&job.app_id, &job_notices(job)).await;
                }
            }
            JobKind::Deploy => self.set_homepage(job).await,
            _ => {}
        }
    }

    async fn sweep(&self) {
        if let Some(deploy) = &self.deploy {
            deploy.sweep().await;
        }
        self.sample_gauges().await;
    }
}

fn retry(error: String) -> Step {
    Step::Retry {
        error,
        retry_after: None,
    }
}

/// A publish step as the notice a stream shows, kept as JSON in the job's result.
fn published_notice(step: &Published) -> Value {
    let (text, metadata) = match step {
        Published::RepoCreated(repo) => (
            format!("Created repository {}/{}.", repo.owner, repo.name),
            json!({"type": "repo_created", "githubUrl": repo.url, "repositoryUrl": repo.url}),
        ),
        Published::Committed { version, sha, url } => (
            format!(
                "Committed version {version} ({}).",
                &sha[..7.min(sha.len())]
            ),
            json!({"type": "commit_created", "commitUrl": url, "commitSha": sha, "version": version}),
        ),
    };
    json!({"text": text, "metadata": metadata})
}
