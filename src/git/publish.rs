//! Publishing versions to the git host: an app's first version creates its repository, every
//! version becomes a commit carrying only what changed since the files of the commit it goes on
//! (deletions and modes included), so its tree is the version's files. Versions
//! are pushed strictly in order; one the host refused stays `pending` and is retried later, and
//! no later version is pushed before it. What a background retry pushes goes into the app's
//! history, where a user who was told "it will be pushed later" finds it.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use sea_orm::sea_query::{Expr, Func, Query};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{
    create_repo_unique, sanitize_repo_name, CommitRequest, CreateRepo, GitError, GitHost, RepoRef,
};
use crate::apps::{append_message, NewMessage};
use crate::files::{FileVersions, VersionHook};
use crate::runs::sink::{DiffContext, SinkNotice};
use crate::workspace::{FileEntry, FileTree};
use entity::{app_versions, apps};

pub const PENDING: &str = "pending";
pub const PUSHED: &str = "pushed";
/// Apps whose last background push failed are put after the others, but only this many are
/// named in the query (a bound on its size); past that they simply take their turn.
const MAX_SET_ASIDE: usize = 500;

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
    /// One push at a time per app in this process; the host's compare-and-swap ref update
    /// protects against other processes.
    locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
    /// Apps whose last background push failed, and when: each retry pass serves the others
    /// first, so apps that keep failing cannot starve the rest of the batch.
    failed: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
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
            failed: Arc::default(),
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
    /// the commit message the agent gave it. A notice for each step that succeeded is added to
    /// `notices`, also when a later step fails and the rest stays pending. A deleted app's
    /// versions are never pushed.
    pub async fn publish(
        &self,
        app_id: &str,
        notices: &mut Vec<SinkNotice>,
    ) -> Result<(), GitError> {
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
                notices.push(SinkNotice::Platform {
                    text: format!("Created repository {}/{}.", repo.owner, repo.name),
                    metadata: json!({"type": "repo_created", "githubUrl": repo.url, "repositoryUrl": repo.url}),
                });
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
            notices.push(SinkNotice::Platform {
                text: format!("Committed version {} ({}).", version.version, &sha[..7.min(sha.len())]),
                metadata: json!({"type": "commit_created", "commitUrl": url, "commitSha": sha, "version": version.version}),
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
            description: Some(format!(
                "{} (built with agentgate)",
                app.name.chars().take(200).collect::<String>()
            )),
            homepage: app.app_url.clone(),
        };
        let repo = timed(
            "create_repo",
            create_repo_unique(self.host.as_ref(), request, self.settings.name_attempts),
        )
        .await?;
        apps::Entity::update_many()
            .col_expr(apps::Column::RepoOwner, Expr::value(repo.owner.clone()))
            .col_expr(apps::Column::RepoName, Expr::value(repo.name.clone()))
            .col_expr(apps::Column::RepositoryUrl, Expr::value(repo.url.clone()))
            .col_expr(apps::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(apps::Column::Id.eq(app.id.as_str()))
            .exec(&self.db)
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
        apps::Entity::update_many()
            .col_expr(apps::Column::LastCommitSha, Expr::value(commit.sha.clone()))
            .filter(apps::Column::Id.eq(version.app_id.as_str()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok((commit.sha, commit.url))
    }

    /// One pass of the background retry over live apps with unpushed versions, at most `batch`
    /// apps: those with the oldest unpushed version first, apps whose last retry failed after
    /// all others (the longest-failed first). What it pushes is recorded in each app's history.
    /// Returns how many versions were pushed.
    pub async fn retry_pending(&self, batch: u64) -> usize {
        let queue = match self.retry_queue(batch).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "could not list unpushed versions");
                return 0;
            }
        };
        let mut pushed = 0;
        for app_id in queue {
            let mut notices = Vec::new();
            let result = self.publish(&app_id, &mut notices).await;
            pushed += notices.iter().filter(|n| is_commit_notice(n)).count();
            self.record_in_history(&app_id, &notices).await;
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(()) => {
                    failed.remove(&app_id);
                }
                Err(e) => {
                    failed.insert(app_id.clone(), Instant::now());
                    tracing::warn!(app_id = %app_id, error = %e, "push retry failed; will retry");
                }
            }
        }
        pushed
    }

    /// The apps the next retry pass serves, in order.
    async fn retry_queue(&self, batch: u64) -> Result<Vec<String>, DbErr> {
        let mut set_aside: Vec<(String, Instant)> = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, at)| (id.clone(), *at))
            .collect();
        // Longest-failed first: they are retried first when there is room.
        set_aside.sort_by_key(|(_, at)| *at);
        let named: Vec<String> = set_aside
            .iter()
            .rev()
            .take(MAX_SET_ASIDE)
            .map(|(id, _)| id.clone())
            .collect();
        let mut queue = self
            .apps_with_pending()
            .filter(app_versions::Column::AppId.is_not_in(named.clone()))
            .limit(batch)
            .into_tuple::<String>()
            .all(&self.db)
            .await?;
        let room = batch.saturating_sub(queue.len() as u64);
        if room > 0 && !named.is_empty() {
            let still_pending: Vec<String> = self
                .apps_with_pending()
                .filter(app_versions::Column::AppId.is_in(named.clone()))
                .into_tuple::<String>()
                .all(&self.db)
                .await?;
            // Apps no longer pending (pushed elsewhere, deleted) need no turn any more.
            self.failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|id, _| !named.contains(id) || still_pending.contains(id));
            queue.extend(
                set_aside
                    .into_iter()
                    .map(|(id, _)| id)
                    .filter(|id| still_pending.contains(id))
                    .take(room as usize),
            );
        }
        Ok(queue)
    }

    /// Live apps with unpushed versions, the one waiting longest first.
    fn apps_with_pending(&self) -> sea_orm::Select<app_versions::Entity> {
        let live_apps = Query::select()
            .column(apps::Column::Id)
            .from(apps::Entity)
            .and_where(apps::Column::DeletedAt.is_null())
            .to_owned();
        app_versions::Entity::find()
            .select_only()
            .column(app_versions::Column::AppId)
            .filter(app_versions::Column::GitStatus.eq(PENDING))
            .filter(app_versions::Column::AppId.in_subquery(live_apps))
            .group_by(app_versions::Column::AppId)
            .order_by(
                Func::min(Expr::col(app_versions::Column::CreatedAt)),
                Order::Asc,
            )
            .order_by_asc(app_versions::Column::AppId)
    }

    /// Puts what a background push did into the app's history, as the run's stream would have.
    async fn record_in_history(&self, app_id: &str, notices: &[SinkNotice]) {
        for notice in notices {
            let SinkNotice::Platform { text, metadata } = notice else {
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
                tracing::warn!(app_id = %app_id, error = %e, "could not record the push in the history");
            }
        }
    }

    pub fn spawn_retries(self, every: Duration, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticker.tick() => { self.retry_pending(20).await; }
                }
            }
        });
    }

    /// Marks a new version as waiting to be pushed.
    async fn mark_pending(
        &self,
        version: &app_versions::Model,
        ctx: &DiffContext,
    ) -> Result<(), sea_orm::DbErr> {
        app_versions::Entity::update_many()
            .col_expr(app_versions::Column::GitStatus, Expr::value(PENDING))
            .col_expr(
                app_versions::Column::CommitMessage,
                Expr::value(ctx.commit_message.clone()),
            )
            .col_expr(
                app_versions::Column::AppName,
                Expr::value(ctx.app_name.clone()),
            )
            .filter(app_versions::Column::AppId.eq(version.app_id.as_str()))
            .filter(app_versions::Column::Version.eq(version.version))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

fn is_commit_notice(notice: &SinkNotice) -> bool {
    matches!(notice, SinkNotice::Platform { metadata, .. } if metadata["type"] == "commit_created")
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

/// The run-side hook: publish each new version right away, report what happened.
pub struct GitHook {
    pub publisher: GitPublisher,
}

#[async_trait]
impl VersionHook for GitHook {
    async fn on_version(
        &self,
        ctx: &DiffContext,
        version: &app_versions::Model,
        _tree: &FileTree,
    ) -> Vec<SinkNotice> {
        if let Err(e) = self.publisher.mark_pending(version, ctx).await {
            tracing::error!(error = %e, "could not mark the version for pushing");
        }
        let mut notices = Vec::new();
        if let Err(e) = self.publisher.publish(&ctx.app_id, &mut notices).await {
            tracing::warn!(error = %e, app_id = %ctx.app_id, "git push failed; will retry");
            notices.push(SinkNotice::Platform {
                text: format!(
                    "Version {} is saved, but pushing it to the git host failed ({}); it will be pushed automatically later.",
                    version.version,
                    e.code()
                ),
                metadata: json!({"type": "commit_pending", "version": version.version, "reason": e.to_string()}),
            });
        }
        notices
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::FileMode;

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
