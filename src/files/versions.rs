//! Versions of an app's files: created from an applied diff, kept in the local blob cache at
//! once, then uploaded to object storage (only blobs storage does not have yet). A version whose
//! upload failed stays `pending` and is retried in the background; nothing is lost meanwhile.
use std::collections::BTreeSet;

use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::archive::{tar_gz, ARCHIVE_CONTENT_TYPE};
use super::blob_cache::BlobCache;
use super::manifest::Manifest;
use crate::storage::{SharedStore, StorageError};
use crate::workspace::FileTree;
use entity::{app_versions, apps};

pub const STATUS_PENDING: &str = "pending";
pub const STATUS_STORED: &str = "stored";
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

    /// The files of a version, from the local cache or, failing that, from storage.
    pub async fn load_tree(&self, version: &app_versions::Model) -> anyhow::Result<FileTree> {
        let manifest = Manifest::from_json(&version.manifest)?;
        let mut blobs = std::collections::HashMap::new();
        for entry in manifest.files.values() {
            if blobs.contains_key(&entry.sha256) {
                continue;
            }
            let bytes = match self.cache.get(&entry.sha256).await {
                Some(bytes) => bytes,
                None => {
                    let bytes = self
                        .store
                        .get(&blob_key(&entry.sha256))
                        .await?
                        .ok_or_else(|| {
                            anyhow::anyhow!("blob {} is missing from storage", entry.sha256)
                        })?
                        .to_vec();
                    self.cache.put(&bytes).await?;
                    bytes
                }
            };
            blobs.insert(entry.sha256.clone(), bytes);
        }
        manifest
            .tree_with(|sha| blobs.get(sha).cloned())
            .map_err(anyhow::Error::msg)
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
        for entry in tree.values() {
            self.cache.put(&entry.content).await?;
        }
        let manifest = Manifest::of(tree);
        let version = parent.unwrap_or(0) + 1;
        let txn = self.db.begin().await?;
        let row = app_versions::ActiveModel {
            app_id: Set(app_id.to_string()),
            version: Set(version),
            parent_version: Set(parent),
            manifest: Set(manifest.to_json()),
            diff_sha256: Set(diff_sha256),
            run_id: Set(run_id.map(str::to_string)),
            status: Set(STATUS_PENDING.to_string()),
            file_count: Set(manifest.files.len() as i32),
            total_bytes: Set(manifest.total_bytes() as i64),
            created_at: Set(Utc::now()),
            stored_at: Set(None),
            git_status: Set(None),
            commit_sha: Set(None),
            commit_message: Set(None),
            app_name: Set(None),
        }
        .insert(&txn)
        .await?;
        apps::Entity::update_many()
            .col_expr(apps::Column::CurrentVersion, Expr::value(version))
            .col_expr(apps::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(apps::Column::Id.eq(app_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(row)
    }

    /// Uploads a version's new blobs, its manifest and its archive, then marks it stored.
    pub async fn upload(&self, version: &app_versions::Model) -> anyhow::Result<UploadReport> {
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
        let tree = self.load_tree(version).await?;
        let archive = tar_gz(&tree)?;
        let manifest_json = version.manifest.clone().into_bytes();
        report.total_bytes = report.blob_bytes + archive.len() as u64 + manifest_json.len() as u64;
        self.store
            .put(
                &archive_key(&version.app_id, version.version),
                Bytes::from(archive),
                ARCHIVE_CONTENT_TYPE,
            )
            .await?;
        self.store
            .put(
                &manifest_key(&version.app_id, version.version),
                Bytes::from(manifest_json),
                "application/json",
            )
            .await?;
        app_versions::Entity::update_many()
            .col_expr(app_versions::Column::Status, Expr::value(STATUS_STORED))
            .col_expr(app_versions::Column::StoredAt, Expr::value(Utc::now()))
            .filter(app_versions::Column::AppId.eq(version.app_id.as_str()))
            .filter(app_versions::Column::Version.eq(version.version))
            .exec(&self.db)
            .await?;
        Ok(report)
    }

    /// Sends one blob unless storage has it already; returns the bytes sent.
    async fn upload_blob(&self, sha256: &str) -> Result<u64, StorageError> {
        let key = blob_key(sha256);
        if self.store.exists(&key).await? {
            return Ok(0);
        }
        let bytes = self.cache.get(sha256).await.ok_or_else(|| {
            StorageError::Unavailable(format!("blob {sha256} is missing from the local cache"))
        })?;
        let size = bytes.len() as u64;
        self.store
            .put(&key, Bytes::from(bytes), "application/octet-stream")
            .await?;
        Ok(size)
    }

    async fn blobs_of_stored_parent(
        &self,
        version: &app_versions::Model,
    ) -> anyhow::Result<BTreeSet<String>> {
        let Some(parent) = version.parent_version else {
            return Ok(BTreeSet::new());
        };
        match self.get(&version.app_id, parent).await? {
            Some(p) if p.status == STATUS_STORED => Ok(Manifest::from_json(&p.manifest)?
                .files
                .into_values()
                .map(|e| e.sha256)
                .collect()),
            _ => Ok(BTreeSet::new()),
        }
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

    /// One pass of the background retry: uploads pending versions of live apps, oldest first.
    pub async fn upload_pending(&self, batch: u64) -> usize {
        let live_apps = Query::select()
            .column(apps::Column::Id)
            .from(apps::Entity)
            .and_where(apps::Column::DeletedAt.is_null())
            .to_owned();
        let pending = app_versions::Entity::find()
            .filter(app_versions::Column::Status.eq(STATUS_PENDING))
            .filter(app_versions::Column::AppId.in_subquery(live_apps))
            .order_by_asc(app_versions::Column::CreatedAt)
            .limit(batch)
            .all(&self.db)
            .await;
        let pending = match pending {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "could not list pending versions");
                return 0;
            }
        };
        let mut done = 0;
        for version in pending {
            match self.upload(&version).await {
                Ok(report) => {
                    done += 1;
                    tracing::info!(app_id = %version.app_id, version = version.version, blobs = report.blobs, "pending version uploaded");
                }
                Err(e) => {
                    tracing::warn!(app_id = %version.app_id, version = version.version, error = %e, "pending version upload failed; will retry");
                    break;
                }
            }
        }
        done
    }
}
