//! The version pipeline: what happens to an agent's diff, top to bottom.
//!
//! 1. Apply the diff to the files the run sent the agent (all or nothing).
//! 2. Create the version and, in the same transaction, enqueue its effects: `upload_version`
//!    (object storage), `push_version` (the git host), a deployment with its `deploy` job
//!    (waiting for the push when the provider builds from git) and the `version.created`
//!    webhooks.
//! 3. Before the run's `done`, wait (bounded) for those effects and report what they did.
//!
//! The run turns the notices into events and history; the job workers ([`Effects`]) do the
//! work, retry it, and report to the app's history what finishes after the run stopped
//! waiting.
pub mod cleanup;
mod effects;
mod outcomes;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::{json, Value};

use crate::agent::protocol::AgentFile;
use crate::deploy::records::{self as deployments, NewDeployment};
use crate::deploy::runner::to_chrono;
use crate::deploy::LocalPreview;
use crate::files::manifest::{sha256_hex, Manifest};
use crate::files::versions::NewVersion;
use crate::files::FileTree;
use crate::files::FileVersions;
use crate::jobs::{self, JobKind, NewJob};
use crate::webhooks;
use crate::workspace::{PatchError, PatchSet, DEFAULT_MAX_FILES};
use entity::app_versions;

pub use effects::{EffectPolicies, Effects};
pub use outcomes::Pending;

/// Which run a diff came from, and what the agent said about it.
#[derive(Debug, Clone)]
pub struct DiffContext {
    pub app_id: String,
    pub run_id: String,
    pub owner_id: String,
    pub app_name: Option<String>,
    pub commit_message: Option<String>,
    /// The version whose files the run sent as `allFiles` (None: no files were sent). The
    /// agent's diffs are cumulative against that snapshot, not against the latest version.
    pub base_version: Option<i32>,
}

/// The app's files as sent to the agent, and the version they are.
#[derive(Debug, Clone, Default)]
pub struct FileSnapshot {
    pub version: Option<i32>,
    pub files: Option<Vec<AgentFile>>,
}

/// Something to tell the user, in the run's stream and the app's history.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Something the gateway did, sent as a `PlatformMessage` (`metadata.type` says what).
    Platform { text: String, metadata: Value },
    /// Something that failed; sent as an `error` event. The run goes on.
    Error { code: String, message: String },
    /// The agent's changes were not applied (the files stay as they were); sent as an `error`
    /// event. The run goes on, but its turn is not accepted: it ends `failed` with this code
    /// and its agent state is not kept.
    Rejected { code: String, message: String },
}

impl Notice {
    pub fn platform(text: String, metadata: Value) -> Self {
        Notice::Platform { text, metadata }
    }

    fn rejected(code: &str, message: String) -> Self {
        Notice::Rejected {
            code: code.to_string(),
            message,
        }
    }
}

/// How each new version is deployed, when it is.
#[derive(Clone)]
pub struct DeployPlan {
    /// The provider's name ("local", "koyeb").
    pub provider: &'static str,
    pub queued_deadline: Duration,
    /// The provider builds from the version's commit: its deploy waits for the push.
    pub needs_repository: bool,
    /// Set for local previews, whose URL is known before they run.
    pub preview: Option<Arc<LocalPreview>>,
}

#[derive(Clone)]
pub struct PipelineSettings {
    /// Most files a version may hold (`limits.max_files_per_app`).
    pub max_files: usize,
    /// Versions are pushed to a git host.
    pub push: bool,
    /// Versions are deployed as they are created (`deploy.on_new_version`).
    pub deploy: Option<DeployPlan>,
    /// How long a run's end waits for its versions' effects (`deploy.stream_wait_secs`).
    pub stream_wait: Duration,
    /// This gateway: a new version's blobs are in its local cache until uploaded, so its
    /// effects run here while it lives (see `jobs::Affinity`).
    pub gateway: String,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            max_files: DEFAULT_MAX_FILES,
            push: false,
            deploy: None,
            stream_wait: Duration::from_secs(120),
            gateway: String::new(),
        }
    }
}

#[derive(Clone)]
pub struct VersionPipeline {
    db: DatabaseConnection,
    versions: FileVersions,
    settings: PipelineSettings,
}

/// What a diff applies to: the latest version and the version the run sent.
struct Base {
    parent: Option<app_versions::Model>,
    latest: Manifest,
    manifest: Manifest,
}

impl VersionPipeline {
    pub fn new(db: DatabaseConnection, versions: FileVersions, settings: PipelineSettings) -> Self {
        Self {
            db,
            versions,
            settings,
        }
    }

    /// The files to send as `allFiles` (None when the app has none yet) and their version.
    pub async fn current_files(&self, app_id: &str) -> anyhow::Result<FileSnapshot> {
        let Some(version) = self.versions.latest(app_id).await? else {
            return Ok(FileSnapshot::default());
        };
        let tree = self.versions.load_tree(&version).await?;
        // The agent protocol carries text; binary files cannot be sent and are left out.
        let files = tree
            .into_iter()
            .filter_map(|(path, entry)| {
                String::from_utf8(entry.content)
                    .ok()
                    .map(|content| AgentFile { path, content })
            })
            .collect();
        Ok(FileSnapshot {
            version: Some(version.version),
            files: Some(files),
        })
    }

    /// Applies one diff of a run: a new version with its effects queued, or nothing (the
    /// diff changes nothing), or a rejection (nothing written). What the run must wait for
    /// before its `done` is added to `pending`.
    #[tracing::instrument(name = "pipeline.apply_diff", skip_all)]
    pub async fn apply(&self, ctx: &DiffContext, diff: &str, pending: &mut Pending) -> Vec<Notice> {
        // Each diff of a run is cumulative against the files the run sent (an LLM agent's
        // final diff repeats its template diff), so it applies to that snapshot; the result
        // becomes a child of the latest version.
        let patch_set = PatchSet::parse(diff.as_bytes());
        let touched = patch_set
            .as_ref()
            .map(PatchSet::touched_paths)
            .unwrap_or_default();
        let loaded = match self.base(ctx).await {
            Ok(base) => self
                .versions
                .load_partial(&base.manifest, &touched)
                .await
                .map(|tree| (base, tree)),
            Err(e) => Err(e),
        };
        let (base, base_tree) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not load the app's files");
                return vec![Notice::rejected("files_unavailable", "The app's current files could not be loaded, so the agent's changes were not applied.".into())];
            }
        };
        let parent_version = base.parent.as_ref().map(|p| p.version);
        let applied = patch_set
            .and_then(|set| set.apply(&base_tree))
            .and_then(|tree| match tree.len() {
                count if count > self.settings.max_files => Err(PatchError::TooManyFiles {
                    count,
                    limit: self.settings.max_files,
                }),
                _ => Ok(tree),
            });
        let tree = match applied {
            Ok(tree) => tree,
            Err(e) => {
                let kept = parent_version
                    .map(|v| format!("version {v} stays current"))
                    .unwrap_or_else(|| "no files were written".into());
                return vec![Notice::rejected(
                    e.code(),
                    format!("The agent's changes were rejected: {e}. Nothing was applied; {kept}."),
                )];
            }
        };
        let not_saved = || {
            vec![Notice::rejected(
                "version_not_saved",
                "The agent's changes applied, but the new version could not be saved.".into(),
            )]
        };
        // Untouched files were loaded without content: their entries come from the base.
        let manifest = match base.manifest.updated(&tree, &touched) {
            Ok(manifest) => manifest,
            Err(e) => {
                tracing::error!(error = %e, "could not build the new manifest");
                return not_saved();
            }
        };
        if manifest == base.latest {
            return Vec::new();
        }
        let changed = subtree(&tree, &touched);
        drop(tree);
        let new_blobs: Vec<&[u8]> = changed.values().map(|e| e.content.as_slice()).collect();
        if let Err(e) = self.versions.cache_blobs(&new_blobs).await {
            tracing::error!(error = %format!("{e:#}"), "could not keep the version's files");
            return not_saved();
        }
        let new = NewVersion {
            app_id: &ctx.app_id,
            run_id: Some(&ctx.run_id),
            diff_sha256: Some(sha256_hex(diff.as_bytes())),
            parent: parent_version,
            manifest: &manifest,
            commit_message: ctx.commit_message.clone(),
            app_name: ctx.app_name.clone(),
            git_pending: self.settings.push,
        };
        let created = match self.create(ctx, new).await {
            Ok(created) => created,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not record a new version");
                return not_saved();
            }
        };
        jobs::wake();
        let version = &created.version;
        let mut notices = vec![Notice::platform(
            format!(
                "Saved version {} ({} files).",
                version.version, version.file_count
            ),
            json!({"type": "version_created", "version": version.version, "files": version.file_count}),
        )];
        if let Some((deployment, _)) = &created.deployment {
            let url = outcomes::app_url(&self.db, &ctx.app_id).await;
            notices.push(Notice::platform(
                format!("Deploying version {}…", version.version),
                json!({"type": "deployment_in_progress", "deploymentId": deployment.id,
                    "deploymentUrl": url, "deploymentType": deployment.provider,
                    "version": version.version}),
            ));
        }
        pending.add(created);
        notices
    }

    /// The version and its effects, in one transaction: a version exists exactly when its
    /// upload, push and deployment are queued.
    async fn create(&self, ctx: &DiffContext, new: NewVersion<'_>) -> anyhow::Result<Created> {
        let txn = self.db.begin().await?;
        let version = FileVersions::insert_version(&txn, new).await?;
        let event = webhooks::Event::new(
            webhooks::EventType::VersionCreated,
            &ctx.app_id,
            json!({"appId": ctx.app_id, "version": version.version, "runId": ctx.run_id,
                "parentVersion": version.parent_version, "files": version.file_count,
                "bytes": version.total_bytes, "commitMessage": version.commit_message}),
        );
        webhooks::enqueue_event(&txn, &ctx.owner_id, event).await;
        let gateway = self.settings.gateway.as_str();
        let upload = NewJob::new(JobKind::UploadVersion, &ctx.app_id)
            .version(version.version)
            .on(gateway);
        let upload = jobs::enqueue(&txn, upload).await?;
        let push = match self.settings.push {
            true => {
                // This push pushes every unpushed version of the app (the backlog first), so
                // an older push waiting for its retry is superseded and this run reports it.
                jobs::supersede(&txn, &ctx.app_id, JobKind::PushVersion, version.version).await?;
                let push = NewJob::new(JobKind::PushVersion, &ctx.app_id)
                    .version(version.version)
                    .watched(true)
                    .on(gateway);
                Some(jobs::enqueue(&txn, push).await?)
            }
            false => None,
        };
        let deployment = match &self.settings.deploy {
            Some(plan) => {
                // A local preview's URL is known before it runs: on the app from the start.
                let preview_url = plan.preview.as_ref().map(|p| p.url_for(&ctx.app_id));
                let new = NewDeployment {
                    app_id: &ctx.app_id,
                    owner_id: &ctx.owner_id,
                    version: version.version,
                    provider: plan.provider,
                    queued_deadline: to_chrono(plan.queued_deadline),
                    watched: true,
                    app_url: preview_url.as_deref(),
                    after: push.as_ref().filter(|_| plan.needs_repository),
                    runner: Some(gateway),
                };
                Some(deployments::enqueue_new(&txn, new).await?)
            }
            None => None,
        };
        txn.commit().await?;
        Ok(Created {
            version,
            upload,
            push,
            deployment,
        })
    }

    /// The latest version and the manifest of the version the run sent (empty when it sent
    /// no files).
    async fn base(&self, ctx: &DiffContext) -> anyhow::Result<Base> {
        let parent = self.versions.latest(&ctx.app_id).await?;
        let latest = match &parent {
            Some(p) => Manifest::from_json(&p.manifest)?,
            None => Manifest::default(),
        };
        let manifest = match ctx.base_version {
            None => Manifest::default(),
            Some(n) if parent.as_ref().map(|p| p.version) == Some(n) => latest.clone(),
            Some(n) => {
                let version = self
                    .versions
                    .get(&ctx.app_id, n)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("version {n} of the app is missing"))?;
                Manifest::from_json(&version.manifest)?
            }
        };
        Ok(Base {
            parent,
            latest,
            manifest,
        })
    }

    /// Waits (bounded, unless the run was stopped: `wait` false) for the effects of the run's
    /// versions and reports them; what is still under way is reported to the app's history
    /// by whoever finishes it. Waiting ends early when `stop` resolves (the gateway stops).
    pub async fn finish(
        &self,
        pending: Pending,
        wait: bool,
        stop: impl std::future::Future<Output = ()>,
    ) -> Vec<Notice> {
        outcomes::report(&self.db, pending, wait, self.settings.stream_wait, stop).await
    }
}

/// A version and its queued effects.
pub struct Created {
    pub version: app_versions::Model,
    pub upload: jobs::Job,
    pub push: Option<jobs::Job>,
    /// The deployment and its `deploy` job.
    pub deployment: Option<(entity::deployments::Model, jobs::Job)>,
}

/// The files of `tree` among `paths`.
fn subtree(tree: &FileTree, paths: &BTreeSet<String>) -> FileTree {
    paths
        .iter()
        .filter_map(|p| tree.get(p).map(|e| (p.clone(), e.clone())))
        .collect()
}
