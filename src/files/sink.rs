//! The relay's diff sink for real apps: apply the agent's diff to the files the run sent it (all
//! or nothing), record the new version, upload it, then let later steps (git, deploy) react.
//!
//! A small change to a big app costs what it changes, not what the app weighs: only the files
//! the diff touches are read (every other path and mode comes from the manifest), the new
//! manifest keeps the unchanged entries without hashing them again, only new blobs are cached
//! and uploaded, and the archive (every file read and compressed) is built after the version
//! is reported, finished before the run's `done` (`files-bench`, BENCHMARKS.md).
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use super::manifest::{sha256_hex, Manifest};
use super::versions::FileVersions;
use crate::agent::protocol::AgentFile;
use crate::runs::sink::{DiffContext, DiffSink, FileSnapshot, SinkNotice};
use crate::workspace::{FileTree, PatchError, PatchSet, DEFAULT_MAX_FILES};
use entity::app_versions;

/// A step that runs after a new version exists (git commit, deployment).
#[async_trait]
pub trait VersionHook: Send + Sync {
    /// `changed` holds the files the version added or changed, not the whole tree (which
    /// `FileVersions::load_tree` reads when a step needs it).
    async fn on_version(
        &self,
        ctx: &DiffContext,
        version: &app_versions::Model,
        changed: &FileTree,
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
    /// Archives being built, per run, awaited before the run's `done`.
    archives: Mutex<HashMap<String, Vec<tokio::task::JoinHandle<()>>>>,
}

/// What a diff applies to: the latest version and the version the run sent.
struct Base {
    parent: Option<app_versions::Model>,
    latest: Manifest,
    manifest: Manifest,
}

impl WorkspaceSink {
    pub fn new(versions: FileVersions, hooks: Vec<Arc<dyn VersionHook>>) -> Self {
        Self {
            versions,
            hooks,
            max_files: DEFAULT_MAX_FILES,
            archives: Mutex::default(),
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

    /// Builds and stores `version`'s archive in the background; the run's end awaits it.
    fn archive_later(&self, run_id: &str, version: app_versions::Model) {
        let versions = self.versions.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = versions.store_archive(&version).await {
                tracing::warn!(error = %format!("{e:#}"), version = version.version, "archive upload failed; will retry in the background");
            }
        });
        if let Ok(mut archives) = self.archives.lock() {
            archives.entry(run_id.to_string()).or_default().push(task);
        }
    }
}

/// The files of `tree` among `paths`.
fn subtree(tree: &FileTree, paths: &BTreeSet<String>) -> FileTree {
    paths
        .iter()
        .filter_map(|p| tree.get(p).map(|e| (p.clone(), e.clone())))
        .collect()
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
        let archives = match self.archives.lock() {
            Ok(mut archives) => archives.remove(&ctx.run_id).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        // A stopped run ends promptly; its archives finish on their own (or are retried).
        if wait {
            for task in archives {
                let _ = task.await;
            }
        }
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
                return rejected("files_unavailable", "The app's current files could not be loaded, so the agent's changes were not applied.".into());
            }
        };
        let parent_version = base.parent.as_ref().map(|p| p.version);
        let applied = patch_set
            .and_then(|set| set.apply(&base_tree))
            .and_then(|tree| match tree.len() {
                count if count > self.max_files => Err(PatchError::TooManyFiles {
                    count,
                    limit: self.max_files,
                }),
                _ => Ok(tree),
            });
        let tree = match applied {
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
        // Untouched files were loaded without content: their entries come from the base.
        let manifest = match base.manifest.updated(&tree, &touched) {
            Ok(manifest) => manifest,
            Err(e) => {
                tracing::error!(error = %e, "could not build the new manifest");
                return rejected(
                    "version_not_saved",
                    "The agent's changes applied, but the new version could not be saved.".into(),
                );
            }
        };
        if manifest == base.latest {
            return Vec::new();
        }
        let changed = subtree(&tree, &touched);
        drop(tree);
        let new_blobs: Vec<&[u8]> = changed.values().map(|e| e.content.as_slice()).collect();
        let version = match self
            .versions
            .create_from(
                &ctx.app_id,
                Some(&ctx.run_id),
                Some(sha256_hex(diff.as_bytes())),
                parent_version,
                &manifest,
                &new_blobs,
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
        match self.versions.upload_content(&version).await {
            Ok(report) => {
                tracing::info!(
                    version = version.version,
                    blobs = report.blobs,
                    bytes = report.total_bytes,
                    "version content uploaded"
                );
                self.archive_later(&ctx.run_id, version.clone());
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), version = version.version, "upload failed; will retry in the background");
                notices.push(SinkNotice::Platform {
                    text: format!("Version {} is saved on the gateway; uploading it to storage failed and will be retried.", version.version),
                    metadata: json!({"type": "storage_pending", "version": version.version}),
                });
            }
        }
        for hook in &self.hooks {
            notices.extend(hook.on_version(ctx, &version, &changed).await);
        }
        notices
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::versions::{archive_key, blob_key, STATUS_STORED};
    use crate::files::BlobCache;
    use crate::storage::{LocalStore, ObjectStore, UrlSigner};
    use crate::workspace::{FileEntry, FileMode};

    struct Fixture {
        sink: WorkspaceSink,
        versions: FileVersions,
        store: Arc<LocalStore>,
        cache_root: std::path::PathBuf,
        app_id: String,
        _dir: tempfile::TempDir,
    }

    /// An app whose version 1 (stored) holds `files`.
    async fn app_with(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::db::connect("sqlite::memory:", 1)
            .await
            .expect("database");
        let store = Arc::new(
            LocalStore::new(
                dir.path().join("store"),
                "http://127.0.0.1:1".into(),
                UrlSigner::new(b"test secret"),
            )
            .expect("store"),
        );
        let cache_root = dir.path().join("cache");
        let cache = BlobCache::new(cache_root.clone()).expect("cache");
        let versions = FileVersions::new(db.clone(), store.clone(), cache);
        let app = crate::apps::create(&db, "alice", "app", None)
            .await
            .expect("app");
        let tree: FileTree = files
            .iter()
            .map(|(path, content)| {
                let entry = FileEntry {
                    content: content.as_bytes().to_vec(),
                    mode: FileMode::Regular,
                };
                (path.to_string(), entry)
            })
            .collect();
        let v1 = versions
            .create(&app.id, None, None, None, &tree)
            .await
            .expect("version");
        versions.upload(&v1).await.expect("upload");
        Fixture {
            sink: WorkspaceSink::new(versions.clone(), Vec::new()),
            versions,
            store,
            cache_root,
            app_id: app.id,
            _dir: dir,
        }
    }

    impl Fixture {
        fn ctx(&self, run: &str) -> DiffContext {
            DiffContext {
                app_id: self.app_id.clone(),
                run_id: run.into(),
                owner_id: "alice".into(),
                trace_id: format!("trace-{run}"),
                app_name: None,
                commit_message: None,
                base_version: Some(1),
            }
        }

        /// Loses a blob everywhere: from the local cache and from storage.
        async fn lose(&self, content: &str) {
            let sha = sha256_hex(content.as_bytes());
            let cached = self.cache_root.join(&sha[..2]).join(&sha);
            tokio::fs::remove_file(cached).await.expect("remove cached");
            self.store.delete(&blob_key(&sha)).await.expect("delete");
        }
    }

    fn created(notices: &[SinkNotice]) -> bool {
        notices.iter().any(|n| {
            matches!(n, SinkNotice::Platform { metadata, .. } if metadata["type"] == "version_created")
        })
    }

    const EDIT_A: &str =
        "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+A\n";

    #[tokio::test]
    async fn a_diff_reads_only_the_files_it_touches() {
        let f = app_with(&[("a.txt", "a\n"), ("b.txt", "b\n")]).await;
        // Reading b.txt would fail now: the whole-tree load refused the diff (files_unavailable).
        f.lose("b\n").await;
        let notices = f.sink.handle_diff(&f.ctx("run-1"), EDIT_A).await;
        assert!(created(&notices), "{notices:?}");
        let v2 = f.versions.get(&f.app_id, 2).await.expect("query");
        let manifest = Manifest::from_json(&v2.expect("version 2").manifest).expect("manifest");
        assert_eq!(manifest.files["a.txt"].sha256, sha256_hex(b"A\n"));
        assert_eq!(manifest.files["b.txt"].sha256, sha256_hex(b"b\n"));
    }

    #[tokio::test]
    async fn the_archive_is_stored_by_the_end_of_the_run() {
        let f = app_with(&[("a.txt", "a\n"), ("b.txt", "b\n")]).await;
        let ctx = f.ctx("run-1");
        assert!(created(&f.sink.handle_diff(&ctx, EDIT_A).await));
        f.sink.finish_run(&ctx, true).await;
        let v2 = f
            .versions
            .get(&f.app_id, 2)
            .await
            .expect("query")
            .expect("version 2");
        assert_eq!(v2.status, STATUS_STORED);
        let key = archive_key(&f.app_id, 2);
        assert!(f.store.exists(&key).await.expect("exists"));
        let tree = f.versions.load_tree(&v2).await.expect("tree");
        assert_eq!(tree["a.txt"].content, b"A\n");
        assert_eq!(tree["b.txt"].content, b"b\n");
    }

    #[tokio::test]
    async fn a_diff_that_changes_nothing_makes_no_version() {
        let f = app_with(&[("a.txt", "a\n")]).await;
        let same = "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+a\n";
        assert_eq!(f.sink.handle_diff(&f.ctx("run-1"), same).await, Vec::new());
        assert!(f.versions.get(&f.app_id, 2).await.expect("query").is_none());
    }
}
