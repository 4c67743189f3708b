//! Git hosting for app versions: every version of an app's files becomes a commit.
//!
//! [`GitHost`] is implemented by [`LocalGitHost`] (bare repositories on disk, the embedded
//! default) and [`GitHubHost`] (GitHub's REST API, no local clone). Both take the same
//! [`CommitRequest`]: a change set on top of a known parent, applied with compare-and-swap
//! semantics so a branch never moves backwards and concurrent writers never lose each other's
//! work silently.

mod changes;
mod error;
pub mod github;
pub mod local;
mod names;
pub mod publish;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::files::FileEntry;

pub use error::GitError;
pub use github::{GitHubAuth, GitHubHost, GitHubSettings};
pub use local::LocalGitHost;
pub use names::{sanitize_repo_name, with_suffix};

/// A place that stores app repositories.
#[async_trait]
pub trait GitHost: Send + Sync {
    /// `"local"` or `"github"`.
    fn kind(&self) -> &'static str;

    /// Creates an empty repository; an existing name is [`GitError::AlreadyExists`].
    async fn create_repo(&self, req: &CreateRepo) -> Result<RepoRef, GitError>;

    /// Applies `changes` on top of `parent` (None = first commit; the branch must then have no
    /// history, except that GitHub finishes a first commit an earlier attempt of the same request
    /// left half done) and moves `branch` to the new commit without force. If the branch head is not
    /// `parent`, returns [`GitError::Conflict`] unless the changed paths don't overlap the paths
    /// changed between parent and head, in which case the changes are rebased onto head.
    async fn commit(&self, repo: &RepoRef, req: &CommitRequest) -> Result<CommitRef, GitError>;

    /// The commit `branch` points at, or None when it has no history.
    async fn head(&self, repo: &RepoRef, branch: &str) -> Result<Option<String>, GitError>;

    /// The repository's default branch, as the host records it.
    async fn default_branch(&self, repo: &RepoRef) -> Result<String, GitError>;

    /// Sets the repository's homepage (the running app's URL).
    async fn set_homepage(&self, repo: &RepoRef, url: &str) -> Result<(), GitError>;

    /// Makes the repository read-only; it stays readable under the same URL.
    async fn archive_repo(&self, repo: &RepoRef) -> Result<(), GitError>;

    /// An existing repository `name` (of `owner`, or the host's default owner) and its
    /// description; None when there is none, or the host cannot tell.
    async fn describe_repo(
        &self,
        _owner: Option<&str>,
        _name: &str,
    ) -> Result<Option<(RepoRef, Option<String>)>, GitError> {
        Ok(None)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRepo {
    /// Already sanitised, see [`sanitize_repo_name`].
    pub name: String,
    /// An organisation; None means the host's configured default owner.
    pub owner: Option<String>,
    pub private: bool,
    pub description: Option<String>,
    pub homepage: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
    /// GitHub: the html URL. Local: an absolute path that `git clone` accepts.
    pub url: String,
    pub default_branch: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    pub branch: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// The commit the changes were made against; None for the first commit.
    pub parent: Option<String>,
    /// Path → new content, or None to delete the path.
    pub changes: BTreeMap<String, Option<FileEntry>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRef {
    pub sha: String,
    pub url: String,
    /// Blobs the host did not have yet and had to receive.
    pub blobs_uploaded: usize,
}

/// Where new work on `branch` starts: its head, or, for a branch that does not exist yet, the
/// head of the repository's default branch, so a new branch forks the existing history instead
/// of starting a second, unrelated one. None when the repository has no history at all.
pub async fn branch_base(
    host: &dyn GitHost,
    repo: &RepoRef,
    branch: &str,
) -> Result<Option<String>, GitError> {
    if let Some(head) = host.head(repo, branch).await? {
        return Ok(Some(head));
    }
    let default = host.default_branch(repo).await?;
    if default == branch {
        return Ok(None);
    }
    host.head(repo, &default).await
}

/// Creates `req`, retrying with [`with_suffix`] names up to `attempts` times while the name is
/// taken.
pub async fn create_repo_unique(
    host: &dyn GitHost,
    req: CreateRepo,
    attempts: u32,
) -> Result<RepoRef, GitError> {
    let mut candidate = req.clone();
    let mut attempt = 0;
    loop {
        match host.create_repo(&candidate).await {
            Err(GitError::AlreadyExists) => {
                // A retried creation whose first try went through (its answer was lost) finds
                // its own repository: adopt it rather than leave it orphaned beside a suffixed
                // one. Ours: the description names the app (see `GitPublisher`).
                if let Some(repo) = ours(host, &candidate).await {
                    tracing::info!(name = %candidate.name, "adopting the repository an earlier attempt created");
                    return Ok(repo);
                }
                if attempt >= attempts {
                    return Err(GitError::AlreadyExists);
                }
                attempt += 1;
                candidate.name = with_suffix(&req.name, attempt);
                tracing::info!(name = %req.name, attempt, "repository name taken, trying a suffix");
            }
            other => return other,
        }
    }
}

/// The existing repository `req` names, if its description is the one `req` would give it.
async fn ours(host: &dyn GitHost, req: &CreateRepo) -> Option<RepoRef> {
    let wanted = req.description.as_deref()?;
    match host.describe_repo(req.owner.as_deref(), &req.name).await {
        Ok(Some((repo, Some(description)))) if description == wanted => Some(repo),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the existing repository; trying a suffix");
            None
        }
    }
}
