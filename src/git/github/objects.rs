//! Git Data API object calls: blobs, trees and commits (docs: "Git database", REST 2022-11-28).

use base64::Engine;
use chrono::Utc;
use octocrab::models::commits::GitCommitObject;
use octocrab::models::git::{CreatedBlob, GitTree};
use octocrab::models::repos::CommitAuthor;
use serde_json::json;

use super::api::Api;
use super::plan::{Listing, TreeItem, Upload};
use crate::git::{GitError, RepoRef};

pub(super) async fn get_commit(
    api: &Api,
    repo: &RepoRef,
    sha: &str,
) -> Result<GitCommitObject, GitError> {
    let what = format!("read commit {sha} of {}/{}", repo.owner, repo.name);
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    api.call(&what, |crab| async move {
        crab.repos(owner, name).git().get_commit(sha).await
    })
    .await
    .map_err(|e| match e.status() {
        // 422 is GitHub's answer to a malformed sha.
        Some(404 | 422) => {
            GitError::NotFound(format!("commit {sha} in {}/{}", repo.owner, repo.name))
        }
        _ => e.into_git(&what),
    })
}

/// Every blob in a tree, with full paths (`?recursive=1`).
pub(super) async fn list_tree(api: &Api, repo: &RepoRef, tree: &str) -> Result<Listing, GitError> {
    let what = format!("read tree {tree} of {}/{}", repo.owner, repo.name);
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    let listed: GitTree = api
        .call(&what, |crab| async move {
            crab.repos(owner, name)
                .git()
                .get_tree(tree)
                .recursive(true)
                .send()
                .await
        })
        .await
        .map_err(|e| e.into_git(&what))?;
    let files = listed
        .tree
        .into_iter()
        .filter(|entry| entry.r#type != "tree")
        .map(|entry| (entry.path, (entry.mode, entry.sha)))
        .collect();
    Ok(Listing {
        files,
        truncated: listed.truncated,
    })
}

/// Uploads blobs one at a time: GitHub asks integrations not to send concurrent requests
/// (they trigger secondary rate limits).
pub(super) async fn upload_blobs(
    api: &Api,
    repo: &RepoRef,
    uploads: &[Upload<'_>],
) -> Result<usize, GitError> {
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    for upload in uploads {
        let what = format!("upload blob {} to {owner}/{name}", upload.sha);
        let content = base64::engine::general_purpose::STANDARD.encode(upload.content);
        let content = content.as_str();
        let created: CreatedBlob = api
            .call(&what, |crab| async move {
                crab.repos(owner, name)
                    .git()
                    .create_blob(content)
                    .encoding("base64")
                    .send()
                    .await
            })
            .await
            .map_err(|e| e.into_git(&what))?;
        if created.sha != upload.sha {
            return Err(GitError::Unavailable(format!(
                "{what}: GitHub stored it as {}",
                created.sha
            )));
        }
    }
    Ok(uploads.len())
}

/// `POST /git/trees` as raw JSON, because deletions need `"sha": null`.
pub(super) async fn create_tree(
    api: &Api,
    repo: &RepoRef,
    base_tree: Option<&str>,
    items: &[TreeItem],
) -> Result<String, GitError> {
    let what = format!("create a tree in {}/{}", repo.owner, repo.name);
    let route = format!("/repos/{}/{}/git/trees", repo.owner, repo.name);
    let body = match base_tree {
        Some(base) => json!({ "base_tree": base, "tree": items }),
        None => json!({ "tree": items }),
    };
    let (route, body) = (route.as_str(), &body);
    let created: GitTree = api
        .call(
            &what,
            |crab| async move { crab.post(route, Some(body)).await },
        )
        .await
        .map_err(|e| e.into_git(&what))?;
    Ok(created.sha)
}

pub(super) struct NewCommit<'a> {
    pub message: &'a str,
    pub tree: &'a str,
    pub parents: Vec<String>,
    pub author_name: &'a str,
    pub author_email: &'a str,
}

/// Returns the new commit's sha. The committer defaults to the author on GitHub's side.
pub(super) async fn create_commit(
    api: &Api,
    repo: &RepoRef,
    commit: &NewCommit<'_>,
) -> Result<String, GitError> {
    let what = format!("create a commit in {}/{}", repo.owner, repo.name);
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    let author = CommitAuthor {
        name: commit.author_name.to_string(),
        email: Some(commit.author_email.to_string()),
        date: Some(Utc::now()),
    };
    let author = &author;
    let created = api
        .call(&what, |crab| async move {
            crab.repos(owner, name)
                .git()
                .create_commit(commit.message, commit.tree)
                .parents(commit.parents.clone())
                .author(author.clone())
                .send()
                .await
        })
        .await
        .map_err(|e| e.into_git(&what))?;
    Ok(created.sha)
}
