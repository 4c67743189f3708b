//! Branch heads: `GET /repos/{o}/{r}/git/ref/heads/{branch}`, `POST .../git/refs` and
//! `PATCH .../git/refs/heads/{branch}` with `force: false`.

use octocrab::models::repos::Object;
use octocrab::params::repos::Reference;

use super::api::Api;
use crate::git::{GitError, RepoRef};

pub(super) enum Head {
    At(String),
    /// No such branch (the repository has other history, or does not exist).
    Missing,
    /// GitHub's Git Data API answers 409 "Git Repository is empty." until the first commit.
    EmptyRepo,
}

/// Whether a ref write landed or lost a race with another writer.
pub(super) enum Moved {
    Done,
    Raced,
}

pub(super) async fn head(api: &Api, repo: &RepoRef, branch: &str) -> Result<Head, GitError> {
    let what = format!("read branch {branch} of {}/{}", repo.owner, repo.name);
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    let reference = &Reference::Branch(branch.to_string());
    let found = api
        .call(&what, |crab| async move {
            crab.repos(owner, name).get_ref(reference).await
        })
        .await;
    match found {
        Ok(found) => match found.object {
            Object::Commit { sha, .. } => Ok(Head::At(sha)),
            _ => Err(GitError::Invalid(format!(
                "branch {branch} does not point at a commit"
            ))),
        },
        Err(e) if e.status() == Some(404) => Ok(Head::Missing),
        Err(e) if e.status() == Some(409) => Ok(Head::EmptyRepo),
        Err(e) => Err(e.into_git(&what)),
    }
}

/// Creates the branch; loses the race if someone else created it first.
pub(super) async fn create(
    api: &Api,
    repo: &RepoRef,
    branch: &str,
    sha: &str,
) -> Result<Moved, GitError> {
    let what = format!("create branch {branch} in {}/{}", repo.owner, repo.name);
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    let reference = &Reference::Branch(branch.to_string());
    let created = api
        .call(&what, |crab| async move {
            crab.repos(owner, name).create_ref(reference, sha).await
        })
        .await;
    match created {
        Ok(_) => Ok(Moved::Done),
        Err(e) if e.status() == Some(422) && e.mentions("already exists") => Ok(Moved::Raced),
        Err(e) => Err(e.into_git(&what)),
    }
}

/// Moves the branch to `sha` only if that is a fast-forward, which GitHub checks atomically.
pub(super) async fn fast_forward(
    api: &Api,
    repo: &RepoRef,
    branch: &str,
    sha: &str,
) -> Result<Moved, GitError> {
    let what = format!("update branch {branch} in {}/{}", repo.owner, repo.name);
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    let reference = &Reference::Branch(branch.to_string());
    let updated = api
        .call(&what, |crab| async move {
            crab.repos(owner, name)
                .update_ref(reference, sha)
                .force(false)
                .send()
                .await
        })
        .await;
    match updated {
        Ok(_) => Ok(Moved::Done),
        // "Update is not a fast forward", or the branch was deleted meanwhile.
        Err(e)
            if e.status() == Some(422)
                && (e.mentions("fast forward") || e.mentions("reference does not exist")) =>
        {
            Ok(Moved::Raced)
        }
        Err(e) => Err(e.into_git(&what)),
    }
}
