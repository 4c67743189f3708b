//! The relay's diff sink for real apps: apply the agent's diff to the files the run sent it (all
//! or nothing), record the new version, upload it, then let later steps (git, deploy) react.
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::manifest::sha256_hex;
use super::versions::FileVersions;
use crate::agent::protocol::AgentFile;
use crate::runs::sink::{DiffContext, DiffSink, FileSnapshot, SinkNotice};
use crate::workspace::{apply_patch_set_capped, FileTree, DEFAULT_MAX_FILES};
use entity::app_versions;

/// A step that runs after a new version exists (git commit, deployment).
#[async_trait]
pub trait VersionHook: Send + Sync {
    async fn on_version(
        &self,
        ctx: &DiffContext,
        version: &app_versions::Model,
        tree: &FileTree,
    ) -> Vec<SinkNotice>;

    /// Called once before the run's `done`; `wait` is false when the run was stopped.
    async fn on_run_end(&self, _ctx: &DiffContext, _wait: bool) -> Vec<SinkNotice> {
        Vec::new()
    }
}

pub struct WorkspaceSink {
    versions: FileVersions,
    hooks: Vec<Arc<dyn VersionHook>>,
    max_files: usize,
}

impl WorkspaceSink {
    pub fn new(versions: FileVersions, hooks: Vec<Arc<dyn VersionHook>>) -> Self {
        Self {
            versions,
            hooks,
            max_files: DEFAULT_MAX_FILES,
        }
    }

    /// Most files a version may hold (`limits.max_files_per_app`).
    pub fn with_max_files(self, max_files: usize) -> Self {
        Self { max_files, ..self }
    }

    async fn current(
        &self,
        app_id: &str,
    ) -> anyhow::Result<(Option<app_versions::Model>, FileTree)> {
        match self.versions.latest(app_id).await? {
            Some(version) => {
                let tree = self.versions.load_tree(&version).await?;
                Ok((Some(version), tree))
            }
            None => Ok((None, FileTree::new())),
        }
    }

    /// The tree of `version`, or the empty tree when the run sent no files.
    async fn tree_of(&self, app_id: &str, version: Option<i32>) -> anyhow::Result<FileTree> {
        let Some(number) = version else {
            return Ok(FileTree::new());
        };
        let version = self
            .versions
            .get(app_id, number)
            .await?
            .ok_or_else(|| anyhow::anyhow!("version {number} of the app is missing"))?;
        self.versions.load_tree(&version).await
    }
}

/// The diff was not applied.
fn rejected(code: &str, message: String) -> Vec<SinkNotice> {
    vec![SinkNotice::Rejected {
        code: code.to_string(),
        message,
    }]
}

#[async_trait]
impl DiffSink for WorkspaceSink {
    async fn current_files(&self, app_id: &str) -> anyhow::Result<FileSnapshot> {
        let (version, tree) = self.current(app_id).await?;
        let Some(version) = version else {
            return Ok(FileSnapshot::default());
        };
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

    async fn finish_run(&self, ctx: &DiffContext, wait: bool) -> Vec<SinkNotice> {
        let mut notices = Vec::new();
        for hook in &self.hooks {
            notices.extend(hook.on_run_end(ctx, wait).await);
        }
        notices
    }

    async fn handle_diff(&self, ctx: &DiffContext, diff: &str) -> Vec<SinkNotice> {
        // Each diff of a run is cumulative against the files the run sent (an LLM agent's
        // final diff repeats its template diff), so it applies to that snapshot; the result
        // becomes a child of the latest version.
        let loaded = match self.current(&ctx.app_id).await {
            Ok((parent, latest)) if parent.as_ref().map(|p| p.version) == ctx.base_version => {
                Ok((parent, latest.clone(), latest))
            }
            Ok((parent, latest)) => self
                .tree_of(&ctx.app_id, ctx.base_version)
                .await
                .map(|base| (parent, latest, base)),
            Err(e) => Err(e),
        };
        let (parent, latest, base) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not load the app's files");
                return rejected("files_unavailable", "The app's current files could not be loaded, so the agent's changes were not applied.".into());
            }
        };
        let parent_version = parent.as_ref().map(|p| p.version);
        let tree = match apply_patch_set_capped(&base, diff.as_bytes(), self.max_files) {
            Ok(tree) => tree,
            Err(e) => {
                let kept = parent_version
                    .map(|v| format!("version {v} stays current"))
                    .unwrap_or_else(|| "no files were written".into());
                return rejected(
                    e.code(),
                    format!("The agent's changes were rejected: {e}. Nothing was applied; {kept}."),
                );
            }
        };
        if tree == latest {
            return Vec::new();
        }
        let version = match self
            .versions
            .create(
                &ctx.app_id,
                Some(&ctx.run_id),
                Some(sha256_hex(diff.as_bytes())),
                parent_version,
                &tree,
            )
            .await
        {
            Ok(version) => version,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not record a new version");
                return rejected(
                    "version_not_saved",
                    "The agent's changes applied, but the new version could not be saved.".into(),
                );
            }
        };
        let mut notices = vec![SinkNotice::Platform {
            text: format!(
                "Saved version {} ({} files).",
                version.version, version.file_count
            ),
            metadata: json!({"type": "version_created", "version": version.version, "files": version.file_count}),
        }];
        match self.versions.upload(&version).await {
            Ok(report) => tracing::info!(
                version = version.version,
                blobs = report.blobs,
                bytes = report.total_bytes,
                "version uploaded"
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), version = version.version, "upload failed; will retry in the background");
                notices.push(SinkNotice::Platform {
                    text: format!("Version {} is saved on the gateway; uploading it to storage failed and will be retried.", version.version),
                    metadata: json!({"type": "storage_pending", "version": version.version}),
                });
            }
        }
        for hook in &self.hooks {
            notices.extend(hook.on_version(ctx, &version, &tree).await);
        }
        notices
    }
}
