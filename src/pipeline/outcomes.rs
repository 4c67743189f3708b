//! What a run reports before its `done`: the outcome of each effect of its versions (pushes,
//! uploads that keep failing, the deployment), waited for within the run's bound. Whatever is
//! still under way is handed over: its job reports it to the app's history when it finishes.
use std::time::Duration;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{Created, Notice};
use crate::deploy::records as deployments;
use crate::jobs::{self, Job, JobKind, JobStatus};
use entity::jobs as jobs_table;

/// How often a waiting run looks at its effects without being woken (a job another gateway
/// runs wakes nobody here).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The effects a run waits for, in the order they are reported.
#[derive(Debug, Default)]
pub struct Pending {
    /// Upload and push jobs, oldest version first.
    jobs: Vec<(JobKind, String, i32)>,
    /// The run's latest deployment (a newer version's supersedes the older one) and the job
    /// that advances it.
    deployment: Option<String>,
    deploy_job: Option<String>,
}

impl Pending {
    pub fn add(&mut self, created: Created) {
        let version = created.version.version;
        self.jobs
            .push((JobKind::UploadVersion, created.upload.id, version));
        if let Some(push) = created.push {
            self.jobs.push((JobKind::PushVersion, push.id, version));
        }
        if let Some((deployment, job)) = created.deployment {
            self.deployment = Some(deployment.id);
            self.deploy_job = Some(job.id);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.deployment.is_none()
    }

    fn deployment_done(&mut self) {
        self.deployment = None;
        self.deploy_job = None;
    }
}

pub(super) async fn report(
    db: &DatabaseConnection,
    mut pending: Pending,
    wait: bool,
    bound: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Vec<Notice> {
    tokio::pin!(stop);
    let deadline = Instant::now() + bound;
    let mut notices = Vec::new();
    let watched: Vec<String> = pending
        .jobs
        .iter()
        .map(|(_, id, _)| id.clone())
        .chain(pending.deploy_job.clone())
        .collect();
    let watch = jobs::Watch::new(watched);
    loop {
        report_finished(db, &mut pending, &mut notices).await;
        if pending.is_empty() || !wait || Instant::now() >= deadline {
            break;
        }
        let look_again =
            tokio::time::timeout(CHECK_EVERY.min(deadline - Instant::now()), watch.changed());
        tokio::select! {
            _ = look_again => {}
            _ = &mut stop => break,
        }
    }
    drop(watch);
    // Hand what is left over to the workers, then look once more so that nothing finishing
    // meanwhile falls between the two.
    for (_, id, _) in &pending.jobs {
        if let Err(e) = jobs::unwatch(db, id).await {
            tracing::warn!(error = %e, "could not hand a job's report over");
        }
    }
    if let Some(id) = &pending.deployment {
        if let Err(e) = deployments::unwatch(db, id).await {
            tracing::warn!(error = %e, "could not hand the deployment report over");
        }
    }
    report_finished(db, &mut pending, &mut notices).await;
    if wait {
        notices.extend(still_pending(db, &pending).await);
    }
    notices
}

/// Reports (and forgets) the effects that finished: jobs in order, then the deployment once
/// no push of the run is outstanding (its commit is reported first).
async fn report_finished(
    db: &DatabaseConnection,
    pending: &mut Pending,
    notices: &mut Vec<Notice>,
) {
    let ids: Vec<String> = pending.jobs.iter().map(|(_, id, _)| id.clone()).collect();
    let rows = match jobs_table::Entity::find()
        .filter(jobs_table::Column::Id.is_in(ids))
        .all(db)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "could not look at the run's jobs");
            return;
        }
    };
    let mut left = Vec::new();
    for (kind, id, version) in pending.jobs.drain(..) {
        let Some(job) = rows.iter().find(|j| j.id == id) else {
            continue;
        };
        if job.status.is_finished() {
            if kind == JobKind::PushVersion && matches!(jobs::claim_report(db, &id).await, Ok(true))
            {
                notices.extend(job_notices(job));
            }
        } else if job.attempts > 0 && job.status == JobStatus::Queued {
            // Failed and waiting for its retry: say so now rather than wait out the backoff.
            // The job reports to the history once it succeeds.
            if let Err(e) = jobs::unwatch(db, &id).await {
                tracing::warn!(error = %e, "could not hand a job's report over");
            }
            if kind == JobKind::PushVersion {
                notices.extend(result_notices(job));
            }
            notices.push(retrying(kind, version, job));
        } else {
            left.push((kind, id, version));
        }
    }
    pending.jobs = left;
    let pushing = pending
        .jobs
        .iter()
        .any(|(kind, _, _)| *kind == JobKind::PushVersion);
    if pushing {
        return;
    }
    if let Some(id) = pending.deployment.clone() {
        let Ok(Some(deployment)) = deployments::find(db, &id).await else {
            return;
        };
        if !deployments::is_terminal(deployment.status) {
            return;
        }
        pending.deployment_done();
        if let Ok(true) = deployments::claim_notification(db, &id).await {
            let (text, metadata) = crate::deploy::outcome_notice(&deployment);
            notices.push(Notice::platform(text, metadata));
        }
    }
}

/// What a run says about a job that failed and waits for its retry.
fn retrying(kind: JobKind, version: i32, job: &Job) -> Notice {
    let reason = job.last_error.clone().unwrap_or_default();
    match kind {
        JobKind::PushVersion => Notice::platform(
            format!("Version {version} is saved, but pushing it to the git host failed; it will be pushed automatically later."),
            json!({"type": "commit_pending", "version": version, "reason": reason}),
        ),
        _ => Notice::platform(
            format!("Version {version} is saved on the gateway; uploading it to storage failed and will be retried."),
            json!({"type": "storage_pending", "version": version}),
        ),
    }
}

/// What a run says about a deployment it stopped waiting for.
async fn still_pending(db: &DatabaseConnection, pending: &Pending) -> Vec<Notice> {
    let mut notices = Vec::new();
    if let Some(id) = &pending.deployment {
        let (url, provider) = match deployments::find(db, id).await {
            Ok(Some(d)) => (app_url(db, &d.app_id).await, d.provider),
            _ => (None, String::new()),
        };
        notices.push(Notice::platform(
            "The deployment is still in progress; its result will appear in the app's history."
                .into(),
            json!({"type": "deployment_in_progress", "deploymentId": id, "deploymentUrl": url,
                "deploymentType": provider, "stillRunning": true}),
        ));
    }
    notices
}

/// Where the app will be served, when already known (a local preview's URL is known when its
/// deployment is queued, a Koyeb service's once the service exists).
pub(super) async fn app_url(db: &DatabaseConnection, app_id: &str) -> Option<String> {
    let app = entity::apps::Entity::find_by_id(app_id.to_string())
        .one(db)
        .await
        .ok()??;
    app.app_url.filter(|url| !url.is_empty())
}

/// The notices a finished job recorded as its result (see `Effects`).
pub(super) fn job_notices(job: &Job) -> Vec<Notice> {
    if job.status != JobStatus::Done {
        return Vec::new();
    }
    result_notices(job)
}

/// The notices in a job's result, finished or not (a failed attempt's progress).
fn result_notices(job: &Job) -> Vec<Notice> {
    let Some(result) = job.result.as_deref() else {
        return Vec::new();
    };
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(result) else {
        return Vec::new();
    };
    notices_from(&items)
}

/// Notices kept as JSON (`{"text", "metadata"}` each).
pub(super) fn notices_from(items: &[Value]) -> Vec<Notice> {
    items
        .iter()
        .filter_map(|item| {
            let text = item.get("text")?.as_str()?.to_string();
            Some(Notice::platform(text, item.get("metadata")?.clone()))
        })
        .collect()
}
