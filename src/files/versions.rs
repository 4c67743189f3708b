//! Versions of an app's files: created from an applied diff, kept in the local blob cache at
//! once, then uploaded to object storage (only blobs storage does not have yet) by the
//! version's `upload_version` job. A version whose upload failed stays `pending` until a retry
//! of that job stores it; nothing is lost meanwhile.
use std::collections::BTreeSet;

use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::archive::{tar_gz, ARCHIVE_CONTENT_TYPE};
use super::blob_cache::BlobCache;
use super::diff::{self, ChangeCounts, DiffLimits, LoadedChange, RenderedDiff};
use super::manifest::Manifest;
use crate::files::{FileEntry, FileMode, FileTree};
use crate::storage::SharedStore;
use entity::app_versions;
use entity::app_versions::{GitStatus, StorageStatus};

pub const STATUS_PENDING: StorageStatus = StorageStatus::Pending;
pub const STATUS_STORED: StorageStatus = StorageStatus::Stored;
const UPLOAD_CONCURRENCY: usize = 8;

pub fn blob_key(sha256: &str) -> String {
    format!("blobs/{}/{sha256}", &sha256[..2.min(sha256.len())])
}

pub fn manifest_key(app_id: &str, version: i32) -> String {
    format!("apps/{app_id}/versions/{version}/manifest.json")
}

pub fn archive_key(app_id: &str, version: i32) -> String {
    format!("apps/{app_id}/versions/{version}/files.tar.gz")
}

/// What an upload sent, for logs, notices and the storage benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UploadReport {
    pub blobs: usize,
    pub blob_bytes: u64,
    pub total_bytes: u64,
}

/// A version to record (see [`FileVersions::insert_version`]).
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub app_id: &'a str,
    pub run_id: Option<&'a str>,
    pub diff_sha256: Option<String>,
    pub parent: Option<i32>,
    pub manifest: &'a Manifest,
    /// The agent's commit message and app name, used when the version is pushed.
    pub commit_message: Option<String>,
    pub app_name: Option<String>,
    /// The version waits to be pushed to the git host.
    pub git_pending: bool,
}

#[derive(Clone)]
pub struct FileVersions {
    db: DatabaseConnection,
    store: SharedStore,
    cache: BlobCache,
}

impl FileVersions {
    pub fn new(db: DatabaseConnection, store: SharedStore, cache: BlobCache) -> Self {
        Self { db, store, cache }
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    pub async fn latest(&self, app_id: &str) -> Result<Option<app_versions::Model>, DbErr> {
        app_versions::Entity::find()
            .filter(app_versions::Column::AppId.eq(app_id))
            .order_by_desc(app_versions::Column::Version)
            .one(&self.db)
            .await
    }

    pub async fn get(
        &self,
        app_id: &str,
        version: i32,
    ) -> Result<Option<app_versions::Model>, DbErr> {
        app_versions::Entity::find_by_id((app_id.to_string(), version))
            .one(&self.db)
            .await
    }

    /// Up to `limit` of an app's versions below `before` (all when `None`), newest first, each
    /// with what changed against its parent (counted from the manifests, no content read),
    /// and whether older versions follow.
    pub async fn page(
        &self,
        app_id: &str,
        before: Option<i32>,
        limit: u64,
    ) -> anyhow::Result<(Vec<(app_versions::Model, ChangeCounts)>, bool)> {
        let mut query = app_versions::Entity::find()
            .filter(app_versions::Column::AppId.eq(app_id))
            .order_by_desc(app_versions::Column::Version)
            .limit(limit + 1);
        if let Some(before) = before {
            query = query.filter(app_versions::Column::Version.lt(before));
        }
        let mut rows = query.all(&self.db).await?;
        // The row past the page is usually the parent of its last version: parsed, then dropped.
        let mut manifests = std::collections::HashMap::new();
        for row in &rows {
            manifests.insert(row.version, Manifest::from_json(&row.manifest)?);
        }
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let missing: Vec<i32> = rows
            .iter()
            .filter_map(|r| r.parent_version)
            .filter(|p| !manifests.contains_key(p))
            .collect();
        if !missing.is_empty() {
            let parents = app_versions::Entity::find()
                .filter(app_versions::Column::AppId.eq(app_id))
                .filter(app_versions::Column::Version.is_in(missing))
                .all(&self.db)
                .await?;
            for parent in parents {
                manifests.insert(parent.version, Manifest::from_json(&parent.manifest)?);
            }
        }
        let empty = Manifest::default();
        let page = rows
            .into_iter()
            .map(|row| {
                let parent = row
                    .parent_version
                    .and_then(|p| manifests.get(&p))
                    .unwrap_or(&empty);
                let counts = manifests
                    .get(&row.version)
                    .map(|m| ChangeCounts::between(parent, m))
                    .unwrap_or_default();
                (row, counts)
            })
            .collect();
        Ok((page, more))
    }

    /// The unified diff from `from` to `to` (see [`crate::files::diff`]): reads only the
    /// changed files that fit in the limits.
    pub async fn diff(
        &self,
        from: &Manifest,
        to: &Manifest,
        limits: DiffLimits,
    ) -> anyhow::Result<RenderedDiff> {
        let planned = diff::plan(diff::changed_paths(from, to), &limits);
        let mut loaded = Vec::with_capacity(planned.shown.len());
        for change in &planned.shown {
            let old = match change.old {
                Some(e) => Some((e.clone(), self.blob(&e.sha256).await?)),
                None => None,
            };
            let new = match change.new {
                Some(e) => Some((e.clone(), self.blob(&e.sha256).await?)),
                None => None,
            };
            loaded.push(LoadedChange {
                path: change.path.to_string(),
                old,
                new,
            });
        }
        let omitted: Vec<String> = planned.omitted.iter().map(|p| p.to_string()).collect();
        // Line matching costs CPU in proportion to the files: off the async workers.
        let rendered = tokio::task::spawn_blocking(move || {
            let omitted: Vec<&str> = omitted.iter().map(String::as_str).collect();
            diff::render(&loaded, &omitted, &limits)
        })
        .await?;
        Ok(rendered)
    }

    /// The files of a version, from the local cache or, failing that, from storage.
    pub async fn load_tree(&self, version: &app_versions::Model) -> anyhow::Result<FileTree> {
        let manifest = Manifest::from_json(&version.manifest)?;
        let mut blobs = std::collections::HashMap::new();
        for entry in manifest.files.values() {
            if !blobs.contains_key(&entry.sha256) {
                blobs.insert(entry.sha256.clone(), self.blob(&entry.sha256).await?);
            }
        }
        manifest
            .tree_with(|sha| blobs.get(sha).cloned())
            .map_err(anyhow::Error::msg)
    }

    /// Every path and mode of `manifest`, with content only for the `wanted` paths and for
    /// symlinks (a patch set checks link targets across the whole tree); the other files are
    /// listed with empty content. Enough to apply a patch set touching only `wanted`
    /// (`workspace::PatchSet::touched_paths`) without reading the rest of a large app.
    pub async fn load_partial(
        &self,
        manifest: &Manifest,
        wanted: &BTreeSet<String>,
    ) -> anyhow::Result<FileTree> {
        let mut tree = FileTree::new();
        for (path, entry) in &manifest.files {
            let mode = Manifest::mode_of(entry);
            let content = if wanted.contains(path) || mode == FileMode::Symlink {
                self.blob(&entry.sha256).await?
            } else {
                Vec::new()
            };
            tree.insert(path.clone(), FileEntry { content, mode });
        }
        Ok(tree)
    }

    /// One blob, from the local cache or, failing that, from storage (then cached).
    pub async fn blob(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        if let Some(bytes) = self.cache.get(sha256).await {
            return Ok(bytes);
        }
        let bytes = self
            .store
            .get(&blob_key(sha256))
            .await?
            .ok_or_else(|| anyhow::anyhow!("blob {sha256} is missing from storage"))?
            .to_vec();
        self.cache.put(&bytes).await?;
        Ok(bytes)
    }

    /// Records a new version (status pending) after putting its blobs in the local cache, and
    /// makes it the app's current version.
    pub async fn create(
        &self,
        app_id: &str,
        run_id: Option<&str>,
        diff_sha256: Option<String>,
        parent: Option<i32>,
        tree: &FileTree,
    ) -> anyhow::Result<app_versions::Model> {
        let blobs: Vec<&[u8]> = tree.values().map(|e| e.content.as_slice()).collect();
        let manifest = Manifest::of(tree);
        self.create_from(app_id, run_id, diff_sha256, parent, &manifest, &blobs)
            .await
    }

    /// [`FileVersions::create`] from a manifest and the blobs that are new to it (the others
    /// are in the cache already, as the parent version's).
    pub async fn create_from(
        &self,
        app_id: &str,
        run_id: Option<&str>,
        diff_sha256: Option<String>,
        parent: Option<i32>,
        manifest: &Manifest,
        new_blobs: &[&[u8]],
    ) -> anyhow::Result<app_versions::Model> {
        self.cache_blobs(new_blobs).await?;
        let txn = self.db.begin().await?;
        let new = NewVersion {
            app_id,
            run_id,
            diff_sha256,
            parent,
            manifest,
            commit_message: None,
            app_name: None,
            git_pending: false,
        };
        let row = Self::insert_version(&txn, new).await?;
        txn.commit().await?;
        Ok(row)
    }

    /// Puts blobs in the local cache: the first step of creating a version, before its row.
    pub async fn cache_blobs(&self, blobs: &[&[u8]]) -> anyhow::Result<()> {
        for blob in blobs {
            self.cache.put(blob).await?;
        }
        Ok(())
    }

    /// Records a new version (status pending, its blobs already cached) and makes it the app's
    /// current version, in the caller's transaction (which enqueues what follows from it).
    pub async fn insert_version(
        txn: &impl ConnectionTrait,
        new: NewVersion<'_>,
    ) -> Result<app_versions::Model, DbErr> {
        let version = new.parent.unwrap_or(0) + 1;
        let now = Utc::now();
        let row = app_versions::ActiveModel {
            app_id: Set(new.app_id.to_string()),
            version: Set(version),
            parent_version: Set(new.parent),
            manifest: Set(new.manifest.to_json()),
            diff_sha256: Set(new.diff_sha256),
            run_id: Set(new.run_id.map(str::to_string)),
            status: Set(STATUS_PENDING),
            file_count: Set(new.manifest.files.len() as i32),
            total_bytes: Set(new.manifest.total_bytes() as i64),
            created_at: Set(now),
            stored_at: Set(None),
            git_status: Set(new.git_pending.then_some(GitStatus::Pending)),
            commit_sha: Set(None),
            repository_url: Set(None),
            repo_owner: Set(None),
            repo_name: Set(None),
            commit_message: Set(new.commit_message),
            app_name: Set(new.app_name),
        }
        .insert(txn)
        .await?;
        crate::apps::set_current_version(txn, new.app_id, version).await?;
        Ok(row)
    }

    /// Uploads a version's new blobs, its manifest and its archive, then marks it stored.
    pub async fn upload(&self, version: &app_versions::Model) -> anyhow::Result<UploadReport> {
        let mut report = self.upload_content(version).await?;
        report.total_bytes += self.store_archive(version).await?;
        Ok(report)
    }

    /// The first half of [`FileVersions::upload`]: the blobs storage does not have yet and
    /// the manifest. Cheap for a small change to a big app; the version stays pending until
    /// [`FileVersions::store_archive`].
    pub async fn upload_content(
        &self,
        version: &app_versions::Model,
    ) -> anyhow::Result<UploadReport> {
        let manifest = Manifest::from_json(&version.manifest)?;
        let already_stored = self.blobs_of_stored_parent(version).await?;
        let needed: BTreeSet<String> = manifest
            .files
            .values()
            .filter(|e| !already_stored.contains(&e.sha256))
            .map(|e| e.sha256.clone())
            .collect();
        let uploads = futures::stream::iter(needed)
            .map(|sha| async move { self.upload_blob(&sha).await })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<u64>>()
            .await?;
        let mut report = UploadReport::default();
        for sent in uploads.into_iter().filter(|b| *b > 0) {
            report.blobs += 1;
            report.blob_bytes += sent;
        }
        let manifest_json = version.manifest.clone().into_bytes();
        report.total_bytes = report.blob_bytes + manifest_json.len() as u64;
        self.store
            .put(
                &manifest_key(&version.app_id, version.version),
                Bytes::from(manifest_json),
                "application/json",
            )
            .await?;
        Ok(report)
    }

    /// The second half of [`FileVersions::upload`]: builds and stores the version's archive
    /// (it reads and compresses every file, so it costs what the app weighs), then marks the
    /// version stored. Returns the archive's size.
    pub async fn store_archive(&self, version: &app_versions::Model) -> anyhow::Result<u64> {
        let tree = self.load_tree(version).await?;
        // Compressing a whole app takes milliseconds per megabyte: off the async workers.
        let archive = tokio::task::spawn_blocking(move || tar_gz(&tree)).await??;
        let size = archive.len() as u64;
        self.store
            .put(
                &archive_key(&version.app_id, version.version),
                Bytes::from(archive),
                ARCHIVE_CONTENT_TYPE,
            )
            .await?;
        app_versions::Entity::update_many()
            .col_expr(app_versions::Column::Status, Expr::value(STATUS_STORED))
            .col_expr(app_versions::Column::StoredAt, Expr::value(Utc::now()))
            .filter(app_versions::Column::AppId.eq(version.app_id.as_str()))
            .filter(app_versions::Column::Version.eq(version.version))
            .exec(&self.db)
            .await?;
        Ok(size)
    }

    /// Sends one blob unless storage has it already; returns the bytes sent.
    async fn upload_blob(&self, sha256: &str) -> anyhow::Result<u64> {
        let key = blob_key(sha256);
        if self.store.exists(&key).await? {
            return Ok(0);
        }
        // Not a storage outage: retrying will not bring the blob back.
        let bytes = self
            .cache
            .get(sha256)
            .await
            .ok_or_else(|| anyhow::anyhow!("blob {sha256} is missing from the local cache"))?;
        let size = bytes.len() as u64;
        self.store
            .put(&key, Bytes::from(bytes), "application/octet-stream")
            .await?;
        Ok(size)
    }

    /// The blobs storage has for sure: those of the parent version once its content is
    /// uploaded. That is when it is stored, or when its manifest is in storage (written only
    /// after all its blobs), so a parent whose archive is still being built does not make the
    /// next version check every blob again.
    async fn blobs_of_stored_parent(
        &self,
        version: &app_versions::Model,
    ) -> anyhow::Result<BTreeSet<String>> {
        let Some(parent) = version.parent_version else {
            return Ok(BTreeSet::new());
        };
        let Some(p) = self.get(&version.app_id, parent).await? else {
            return Ok(BTreeSet::new());
        };
        let uploaded = p.status == STATUS_STORED
            || self
                .store
                .exists(&manifest_key(&p.app_id, p.version))
                .await?;
        if !uploaded {
            return Ok(BTreeSet::new());
        }
        Ok(Manifest::from_json(&p.manifest)?
            .files
            .into_values()
            .map(|e| e.sha256)
            .collect())
    }

    /// Deletes what storage keeps per version of a deleted app (manifest and archive) and
    /// returns the number of versions. Blobs are shared by content between apps and stay.
    pub async fn delete_app_objects(&self, app_id: &str) -> Result<usize, anyhow::Error> {
        let versions: Vec<i32> = app_versions::Entity::find()
            .select_only()
            .column(app_versions::Column::Version)
            .filter(app_versions::Column::AppId.eq(app_id))
            .into_tuple()
            .all(&self.db)
            .await?;
        // Owned keys and a cloned store handle keep the future `Send` for the background runner.
        let keys: Vec<String> = versions
            .iter()
            .flat_map(|&v| [manifest_key(app_id, v), archive_key(app_id, v)])
            .collect();
        let store = self.store.clone();
        futures::stream::iter(keys)
            .map(move |key| {
                let store = store.clone();
                async move { store.delete(&key).await }
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(versions.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::files::{FileEntry, FileMode};
    use crate::storage::{LocalStore, ObjectStore, StorageError, UrlSigner};

    /// The real local store, with a switch that makes it unreachable.
    struct SwitchableStore {
        inner: LocalStore,
        down: AtomicBool,
        /// Object calls (not `check`) made while down.
        calls_while_down: AtomicUsize,
    }

    impl SwitchableStore {
        fn answer(&self) -> Result<(), StorageError> {
            if self.down.load(Ordering::SeqCst) {
                self.calls_while_down.fetch_add(1, Ordering::SeqCst);
                return Err(StorageError::Unavailable("connection refused".into()));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl ObjectStore for SwitchableStore {
        fn kind(&self) -> &'static str {
            "local"
        }
        async fn put(
            &self,
            key: &str,
            body: Bytes,
            content_type: &str,
        ) -> Result<(), StorageError> {
            self.answer()?;
            self.inner.put(key, body, content_type).await
        }
        async fn exists(&self, key: &str) -> Result<bool, StorageError> {
            self.answer()?;
            self.inner.exists(key).await
        }
        async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
            self.answer()?;
            self.inner.get(key).await
        }
        async fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.answer()?;
            self.inner.delete(key).await
        }
        async fn presign_get(
            &self,
            key: &str,
            ttl: Duration,
            download_name: Option<&str>,
        ) -> Result<String, StorageError> {
            self.answer()?;
            self.inner.presign_get(key, ttl, download_name).await
        }
        async fn check(&self) -> Result<(), StorageError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StorageError::Unavailable("connection refused".into()));
            }
            self.inner.check().await
        }
    }

    struct Fixture {
        files: FileVersions,
        store: Arc<SwitchableStore>,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::db::connect("sqlite::memory:", 1)
            .await
            .expect("database");
        let inner = LocalStore::new(
            dir.path().join("store"),
            "http://127.0.0.1:1".into(),
            UrlSigner::new(b"test secret"),
        )
        .expect("store");
        let store = Arc::new(SwitchableStore {
            inner,
            down: AtomicBool::new(false),
            calls_while_down: AtomicUsize::new(0),
        });
        let cache = BlobCache::new(dir.path().join("cache")).expect("cache");
        Fixture {
            files: FileVersions::new(db, store.clone(), cache),
            store,
            _dir: dir,
        }
    }

    impl Fixture {
        /// A new app with one pending version holding one file of `content`.
        async fn pending_version(&self, content: &str) -> app_versions::Model {
            let app = crate::apps::create(&self.files.db, "alice", "app", None)
                .await
                .expect("app");
            let tree = FileTree::from([(
                "index.html".to_string(),
                FileEntry {
                    content: content.as_bytes().to_vec(),
                    mode: FileMode::Regular,
                },
            )]);
            let version = self
                .files
                .create(&app.id, None, None, None, &tree)
                .await
                .expect("version");
            // Distinct creation times keep the retry order the order of creation.
            tokio::time::sleep(Duration::from_millis(5)).await;
            version
        }

        async fn status(&self, version: &app_versions::Model) -> StorageStatus {
            self.files
                .get(&version.app_id, version.version)
                .await
                .expect("query")
                .expect("version")
                .status
        }
    }

    #[tokio::test]
    async fn a_child_of_a_version_whose_archive_is_pending_uploads_only_its_new_blobs() {
        let f = fixture().await;
        let v1 = f.pending_version("<h1>one</h1>").await;
        f.files.upload_content(&v1).await.expect("content");
        assert_eq!(f.status(&v1).await, STATUS_PENDING, "no archive yet");
        let mut tree = f.files.load_tree(&v1).await.expect("tree");
        tree.insert(
            "app.js".into(),
            FileEntry {
                content: b"new".to_vec(),
                mode: FileMode::Regular,
            },
        );
        let v2 = f
            .files
            .create(&v1.app_id, None, None, Some(1), &tree)
            .await
            .expect("version 2");
        // Were v1's blobs not trusted, this one would be checked and sent again.
        let sha = crate::files::manifest::sha256_hex(b"<h1>one</h1>");
        f.store.inner.delete(&blob_key(&sha)).await.expect("delete");
        let report = f.files.upload_content(&v2).await.expect("content");
        assert_eq!((report.blobs, report.blob_bytes), (1, 3));
    }
}
