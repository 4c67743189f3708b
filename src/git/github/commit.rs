//! One commit through the Git Data API, with the same rules as the local host: a stale parent
//! is rebased when the paths don't overlap, otherwise it is a conflict.

use std::collections::BTreeMap;

use super::api::Api;
use super::objects::{self, NewCommit};
use super::plan::{self, Listing};
use super::refs::{self, Head, Moved};
use super::{bootstrap, repos};
use crate::files::FileEntry;
use crate::git::changes::{changed_paths, overlaps, validate};
use crate::git::{CommitRef, CommitRequest, GitError, RepoRef};

/// How often the branch may move under us before we give up.
const MAX_ATTEMPTS: usize = 5;

pub(super) async fn commit(
    api: &Api,
    repo: &RepoRef,
    req: &CommitRequest,
) -> Result<CommitRef, GitError> {
    validate(req)?;
    let head = refs::head(api, repo, &req.branch).await?;
    match (req.parent.as_deref(), head) {
        // Only our own half-done first commit is continued; other history is refused.
        (None, Head::At(head)) => bootstrap::resume(api, repo, req, &head).await,
        (None, Head::EmptyRepo) => bootstrap::first_commit(api, repo, req).await,
        (None, Head::Missing) => {
            // A 404 may mean the repository itself is missing: say so rather than fail later.
            repos::ensure_exists(api, repo).await?;
            build(api, repo, req, &req.changes, None, None).await
        }
        (Some(parent), Head::EmptyRepo) => Err(GitError::NotFound(format!(
            "commit {parent} in {}/{} (the repository is empty)",
            repo.owner, repo.name
        ))),
        (Some(parent), Head::At(head)) => {
            build(api, repo, req, &req.changes, Some(parent), Some(head)).await
        }
        (Some(parent), Head::Missing) => {
            build(api, repo, req, &req.changes, Some(parent), None).await
        }
    }
}

/// Commits `changes` on top of `parent` (None: a root commit) and moves the branch, which is
/// believed to be at `head`, to it.
pub(super) async fn build(
    api: &Api,
    repo: &RepoRef,
    req: &CommitRequest,
    changes: &BTreeMap<String, Option<FileEntry>>,
    parent: Option<&str>,
    mut head: Option<String>,
) -> Result<CommitRef, GitError> {
    let (parent_tree, parent_files) = match parent {
        Some(sha) => {
            let tree = objects::get_commit(api, repo, sha).await?.tree.sha;
            let files = objects::list_tree(api, repo, &tree).await?;
            (Some(tree), files)
        }
        None => (None, Listing::default()),
    };
    let plan = plan::plan(changes, &parent_files)?;
    if parent.is_none() && plan.items.is_empty() {
        return Err(GitError::Invalid(
            "a first commit on GitHub needs at least one file".into(),
        ));
    }
    let touched: Vec<String> = plan.items.iter().map(|item| item.path.clone()).collect();
    let mut uploaded = None;

    for _ in 0..MAX_ATTEMPTS {
        let (base_commit, base_tree) = match (head.as_deref(), parent) {
            (Some(_), None) => return Err(GitError::HistoryExists),
            (Some(current), Some(parent)) if current != parent => {
                let tree = objects::get_commit(api, repo, current).await?.tree.sha;
                let files = objects::list_tree(api, repo, &tree).await?;
                // An incomplete listing cannot prove the paths are independent.
                let unsure = parent_files.truncated || files.truncated;
                if unsure || overlaps(&touched, &changed_paths(&parent_files.files, &files.files)) {
                    return Err(GitError::Conflict {
                        head: current.to_string(),
                    });
                }
                (Some(current.to_string()), Some(tree))
            }
            // At the parent, or a new branch starting from it.
            _ => (parent.map(str::to_string), parent_tree.clone()),
        };
        let blobs_uploaded = match uploaded {
            Some(n) => n,
            None => *uploaded.insert(objects::upload_blobs(api, repo, &plan.uploads).await?),
        };
        let tree = match (&base_tree, plan.items.is_empty()) {
            (Some(base), true) => base.clone(),
            _ => objects::create_tree(api, repo, base_tree.as_deref(), &plan.items).await?,
        };
        let new = NewCommit {
            message: &req.message,
            tree: &tree,
            parents: base_commit.into_iter().collect(),
            author_name: &req.author_name,
            author_email: &req.author_email,
        };
        let sha = objects::create_commit(api, repo, &new).await?;
        let moved = match &head {
            None => refs::create(api, repo, &req.branch, &sha).await?,
            Some(_) => refs::fast_forward(api, repo, &req.branch, &sha).await?,
        };
        let done = CommitRef {
            url: format!("{}/commit/{sha}", repo.url),
            sha,
            blobs_uploaded,
        };
        if let Moved::Done = moved {
            return Ok(done);
        }
        head = match refs::head(api, repo, &req.branch).await? {
            // A retried request that had in fact landed the first time.
            Head::At(current) if current == done.sha => return Ok(done),
            Head::At(current) => Some(current),
            Head::Missing => None,
            Head::EmptyRepo => {
                return Err(GitError::Unavailable(
                    "the repository was emptied during the commit".into(),
                ))
            }
        };
        tracing::info!(branch = %req.branch, "branch moved during the commit, trying again");
    }
    Err(GitError::Unavailable(format!(
        "branch {} kept moving during the commit",
        req.branch
    )))
}
