//! Publishing versions to the git host: an app's first version creates its repository, every
//! version becomes a commit carrying only what changed since the files of the commit it goes on
//! (deletions and modes included), so its tree is the version's files. Versions are pushed
//! strictly in order; one the host refused stays `pending` (its `push_version` job retries),
//! and no later version is pushed before it.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use tokio::sync::Mutex;

use super::{
    create_repo_unique, sanitize_repo_name, CommitRequest, CreateRepo, GitError, GitHost, RepoRef,
};
use crate::files::FileVersions;
use crate::files::{FileEntry, FileTree};
use entity::app_versions::GitStatus::{Pending as PENDING, Pushed as PUSHED};
use entity::{app_versions, apps};

/// One thing a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    RepoCreated(RepoRef),
    Committed {
        version: i32,
        sha: String,
        url: String,
    },
}

/// What a publish did, including when a later step failed (the rest stays pending).
#[derive(Debug, Default)]
pub struct PublishReport {
    pub steps: Vec<Published>,
    pub error: Option<GitError>,
}

#[derive(Debug, Clone)]
pub struct PublishSettings {
    pub branch: String,
    pub author_name: String,
    pub author_email: String,
    pub name_attempts: u32,
    pub private: bool,
}

#[derive(Clone)]
pub struct GitPublisher {
    db: DatabaseConnection,
    host: Arc<dyn GitHost>,
    files: FileVersions,
    settings: PublishSettings,
    /// One push at a time per app in this process (the queue runs one push job per app at a
    /// time too); the host's compare-and-swap ref update protects against other processes.
    locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

async fn timed<T>(
    op: &str,
    call: impl std::future::Future<Output = Result<T, GitError>>,
) -> Result<T, GitError> {
    let started = Instant::now();
    let result = call.await;
    crate::metrics::metrics().git_call(op, result.is_ok(), started.elapsed());
    result
}

impl GitPublisher {
    pub fn new(
        db: DatabaseConnection,
        host: Arc<dyn GitHost>,
        files: FileVersions,
        settings: PublishSettings,
    ) -> Self {
        Self {
            db,
            host,
            files,
            settings,
            locks: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn host(&self) -> &Arc<dyn GitHost> {
        &self.host
    }

    async fn lock_for(&self, app_id: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .await
            .entry(app_id.to_string())
            .or_default()
            .clone()
    }

    /// The app's repository, if it has one.
    pub fn repo_of(&self, app: &apps::Model) -> Option<RepoRef> {
        Some(RepoRef {
            owner: app.repo_owner.clone()?,
            name: app.repo_name.clone()?,
            url: app.repository_url.clone()?,
            default_branch: self.settings.branch.clone(),
        })
    }

    /// Creates the repository if needed, then pushes every pending version in order, each with
    /// the commit message the agent gave it. The report lists each step that succeeded, also
    /// when a later step failed and the rest stays pending. A deleted app's versions are never
    /// pushed.
    pub async fn publish(&self, app_id: &str) -> PublishReport {
        let mut report = PublishReport::default();
        if let Err(e) = self.publish_into(app_id, &mut report.steps).await {
            report.error = Some(e);
        }
        report
    }

    async fn publish_into(&self, app_id: &str, steps: &mut Vec<Published>) -> Result<(), GitError> {
        let lock = self.lock_for(app_id).await;
        let _guard = lock.lock().await;
        let db_error = |e: sea_orm::DbErr| GitError::Unavailable(e.to_string());
        let app = apps::Entity::find_by_id(app_id.to_string())
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| GitError::NotFound(format!("app {app_id}")))?;
        if app.deleted_at.is_some() {
            return Ok(());
        }
        let pending = app_versions::Entity::find()
            .filter(app_versions::Column::AppId.eq(app_id))
            .filter(app_versions::Column::GitStatus.eq(PENDING))
            .order_by_asc(app_versions::Column::Version)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        if pending.is_empty() {
            return Ok(());
        }
        let repo = match self.repo_of(&app) {
            Some(repo) => repo,
            None => {
                // The name the agent gave the app, even when the repo is created by a retry.
                let app_name = pending.iter().rev().find_map(|v| v.app_name.clone());
                let repo = self.create_repository(&app, app_name.as_deref()).await?;
                steps.push(Published::RepoCreated(repo.clone()));
                repo
            }
        };
        let unavailable = |e: anyhow::Error| GitError::Unavailable(format!("{e:#}"));
        let mut head = app.last_commit_sha.clone();
        // Each commit carries the changes from the files at `head`, not from the parent version:
        // that one may never have been pushed (git enabled later, or never marked pending).
        let mut base = self.committed_files(app_id, head.as_deref()).await?;
        for version in pending {
            let files = self.files.load_tree(&version).await.map_err(unavailable)?;
            let changes = changes_between(&base, &files);
            let (sha, url) = self
                .push_version(&repo, &version, head.clone(), changes)
                .await?;
            head = Some(sha.clone());
            base = files;
            steps.push(Published::Committed {
                version: version.version,
                sha,
                url,
            });
        }
        Ok(())
    }

    async fn create_repository(
        &self,
        app: &apps::Model,
        app_name: Option<&str>,
    ) -> Result<RepoRef, GitError> {
        let fallback = format!("app-{}", &app.id[..8.min(app.id.len())]);
        let request = CreateRepo {
            name: sanitize_repo_name(app_name, &fallback),
            owner: None,
            private: self.settings.private,
            // Names the app: a retried creation recognises its own repository by it.
            description: Some(format!(
                "{} (built with agentgate, app {})",
                app.name.chars().take(200).collect::<String>(),
                app.id
            )),
            homepage: app.app_url.clone(),
        };
        let repo = timed(
            "create_repo",
            create_repo_unique(self.host.as_ref(), request, self.settings.name_attempts),
        )
        .await?;
        crate::apps::record_repository(&self.db, &app.id, &repo.owner, &repo.name, &repo.url)
            .await
            .map_err(|e| GitError::Unavailable(e.to_string()))?;
        Ok(repo)
    }

    /// The files of the app's commit `head`: those of the version pushed as that commit. No files
    /// when there is no head (the repository's first commit).
    async fn committed_files(
        &self,
        app_id: &str,
        head: Option<&str>,
    ) -> Result<FileTree, GitError> {
        let Some(head) = head else {
            return Ok(FileTree::new());
        };
        let version = app_versions::Entity::find()
            .filter(app_versions::Column::AppId.eq(app_id))
            .filter(app_versions::Column::CommitSha.eq(head))
            .order_by_desc(app_versions::Column::Version)
            .one(&self.db)
            .await
            .map_err(|e| GitError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                // Only a push sets the head, to its version's commit. Guessing the files here
                // could commit a tree that differs from the version's, so refuse instead.
                GitError::Invalid(format!(
                    "the app's last commit {head} is not the commit of any of its versions"
                ))
            })?;
        self.files
            .load_tree(&version)
            .await
            .map_err(|e| GitError::Unavailable(format!("{e:#}")))
    }

    /// Commits one version's `changes` on top of `parent` and records where it went; returns
    /// (sha, url).
    async fn push_version(
        &self,
        repo: &RepoRef,
        version: &app_versions::Model,
        parent: Option<String>,
        changes: BTreeMap<String, Option<FileEntry>>,
    ) -> Result<(String, String), GitError> {
        let request = CommitRequest {
            branch: self.settings.branch.clone(),
            message: version
                .commit_message
                .as_deref()
                .filter(|m| !m.trim().is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| "Update app".to_string()),
            author_name: self.settings.author_name.clone(),
            author_email: self.settings.author_email.clone(),
            parent,
            changes,
        };
        let commit = timed("commit", self.host.commit(repo, &request)).await?;
        let db_error = |e: sea_orm::DbErr| GitError::Unavailable(e.to_string());
        // Together: the app's head always names a pushed version, whose files the next push
        // diffs against.
        let txn = self.db.begin().await.map_err(db_error)?;
        app_versions::Entity::update_many()
            .col_expr(app_versions::Column::GitStatus, Expr::value(PUSHED))
            .col_expr(
                app_versions::Column::CommitSha,
                Expr::value(commit.sha.clone()),
            )
            .col_expr(
                app_versions::Column::RepositoryUrl,
                Expr::value(repo.url.clone()),
            )
            .col_expr(
                app_versions::Column::RepoOwner,
                Expr::value(repo.owner.clone()),
            )
            .col_expr(
                app_versions::Column::RepoName,
                Expr::value(repo.name.clone()),
            )
            .filter(app_versions::Column::AppId.eq(version.app_id.as_str()))
            .filter(app_versions::Column::Version.eq(version.version))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        crate::apps::set_last_commit(&txn, &version.app_id, &commit.sha)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok((commit.sha, commit.url))
    }
}

/// Files added, changed (content or mode) or removed between two trees.
pub fn changes_between(base: &FileTree, tree: &FileTree) -> BTreeMap<String, Option<FileEntry>> {
    let mut changes = BTreeMap::new();
    for (path, entry) in tree {
        if base.get(path) != Some(entry) {
            changes.insert(path.clone(), Some(entry.clone()));
        }
    }
    for path in base.keys() {
        if !tree.contains_key(path) {
            changes.insert(path.clone(), None);
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::FileMode;

    fn entry(content: &str, mode: FileMode) -> FileEntry {
        FileEntry {
            content: content.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn changes_cover_additions_edits_modes_and_deletions() {
        let mut base = FileTree::new();
        base.insert("same".into(), entry("x", FileMode::Regular));
        base.insert("edit".into(), entry("old", FileMode::Regular));
        base.insert("chmod".into(), entry("s", FileMode::Regular));
        base.insert("gone".into(), entry("g", FileMode::Regular));
        let mut tree = base.clone();
        tree.insert("edit".into(), entry("new", FileMode::Regular));
        tree.insert("chmod".into(), entry("s", FileMode::Executable));
        tree.remove("gone");
        tree.insert("added".into(), entry("a", FileMode::Regular));
        let changes = changes_between(&base, &tree);
        let keys: Vec<&str> = changes.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["added", "chmod", "edit", "gone"]);
        assert_eq!(changes["gone"], None);
    }
}
