//! The first commit of an empty repository.
//!
//! GitHub's Git Data API refuses every call on a repository without commits (409 "Git
//! Repository is empty."), so blobs cannot even be uploaded. The Contents API can create a file
//! there: `PUT /repos/{o}/{r}/contents/{path}` with the first regular file of the change set
//! (same message and author) creates the branch with a root commit. When that file was the whole
//! change set, that commit is the result; otherwise the remaining files (and the real mode of
//! the first file, if it was not a regular one) are committed on top of it through the Git Data
//! API. So a first version of several files shows up as two commits, the second one holding the
//! complete tree; no branch is ever force-moved.
//!
//! Those are two steps, and the second can fail (a 5xx, a rate limit) after the first landed.
//! The branch then holds only our root commit while the version is still unpushed, so the next
//! attempt, again without a parent, finds history. [`resume`] recognises that root commit and
//! finishes the first commit on top of it instead of refusing forever.

use std::collections::BTreeMap;

use octocrab::models::repos::CommitAuthor;

use super::api::Api;
use super::commit::build;
use super::objects;
use super::plan::{self, Listing};
use super::refs::{self, Head};
use crate::files::FileMode;
use crate::git::{CommitRef, CommitRequest, GitError, RepoRef};

pub(super) async fn first_commit(
    api: &Api,
    repo: &RepoRef,
    req: &CommitRequest,
) -> Result<CommitRef, GitError> {
    let files: BTreeMap<&String, _> = req
        .changes
        .iter()
        .filter_map(|(path, entry)| entry.as_ref().map(|entry| (path, entry)))
        .collect();
    // The Contents API only writes regular files, so prefer one of those.
    let (path, entry) = files
        .iter()
        .min_by_key(|(_, entry)| entry.mode != FileMode::Regular)
        .map(|(path, entry)| (*path, *entry))
        .ok_or_else(|| {
            GitError::Invalid(
                "the first commit of an empty GitHub repository needs at least one file".into(),
            )
        })?;

    let what = format!("create the first file in {}/{}", repo.owner, repo.name);
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    let route_path = encode_path(path);
    let route_path = route_path.as_str();
    let author = &CommitAuthor {
        name: req.author_name.clone(),
        email: Some(req.author_email.clone()),
        date: None,
    };
    let created = api
        .call(&what, |crab| async move {
            crab.repos(owner, name)
                .create_file(route_path, req.message.as_str(), &entry.content)
                .branch(req.branch.as_str())
                .author(author.clone())
                .send()
                .await
        })
        .await;
    let first = match created {
        Ok(update) => update
            .commit
            .sha
            .ok_or_else(|| GitError::Unavailable(format!("{what}: no commit in the answer")))?,
        // Someone else initialised the repository first, or our earlier try did.
        Err(e) if matches!(e.status(), Some(409 | 422)) => adopt(api, repo, req).await?,
        Err(e) => return Err(e.into_git(&what)),
    };

    let rest: BTreeMap<String, _> = files
        .into_iter()
        .filter(|(p, e)| *p != path || e.mode != FileMode::Regular)
        .map(|(p, e)| (p.clone(), Some(e.clone())))
        .collect();
    if rest.is_empty() {
        return Ok(CommitRef {
            url: format!("{}/commit/{first}", repo.url),
            sha: first,
            blobs_uploaded: 1,
        });
    }
    let mut done = build(api, repo, req, &rest, Some(&first), Some(first.clone())).await?;
    done.blobs_uploaded += 1;
    Ok(done)
}

/// After a failed create: the branch's root commit is ours if it carries our message and
/// author (a retried request whose first attempt had landed); anything else is history.
async fn adopt(api: &Api, repo: &RepoRef, req: &CommitRequest) -> Result<String, GitError> {
    let Head::At(head) = refs::head(api, repo, &req.branch).await? else {
        return Err(GitError::HistoryExists);
    };
    match ours(api, repo, req, &head).await? {
        Some(_) => Ok(head),
        None => Err(GitError::HistoryExists),
    }
}

/// A first commit (no parent) on a branch that is at `head`: continues our own unfinished
/// bootstrap commit, see the module docs. A branch with other history, or whose first commit
/// is already complete, has [`GitError::HistoryExists`].
pub(super) async fn resume(
    api: &Api,
    repo: &RepoRef,
    req: &CommitRequest,
    head: &str,
) -> Result<CommitRef, GitError> {
    let Some(listing) = ours(api, repo, req, head).await? else {
        return Err(GitError::HistoryExists);
    };
    if plan::plan(&req.changes, &listing)?.items.is_empty() {
        return Err(GitError::HistoryExists);
    }
    tracing::info!(
        repo = %format!("{}/{}", repo.owner, repo.name),
        branch = %req.branch,
        "finishing a first commit that an earlier attempt left half done"
    );
    build(
        api,
        repo,
        req,
        &req.changes,
        Some(head),
        Some(head.to_string()),
    )
    .await
}

/// The files of `head` if it is a bootstrap commit of this very request: a root commit with our
/// message and author that holds nothing but files of `req` (same content; the mode may differ,
/// the Contents API only writes regular files).
async fn ours(
    api: &Api,
    repo: &RepoRef,
    req: &CommitRequest,
    head: &str,
) -> Result<Option<Listing>, GitError> {
    let commit = objects::get_commit(api, repo, head).await?;
    let signed_by_us = commit.parents.is_empty()
        && commit.message == req.message
        && commit.author.name == req.author_name
        && commit.author.email.as_deref() == Some(req.author_email.as_str());
    if !signed_by_us {
        return Ok(None);
    }
    let listing = objects::list_tree(api, repo, &commit.tree.sha).await?;
    if listing.truncated {
        return Ok(None);
    }
    for (path, (_, sha)) in &listing.files {
        let Some(Some(entry)) = req.changes.get(path) else {
            return Ok(None);
        };
        if plan::blob_sha(&entry.content)? != *sha {
            return Ok(None);
        }
    }
    Ok(Some(listing))
}

/// Percent-encodes a repository path for the URL, keeping `/` as the separator.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_path;

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(encode_path("src/main.rs"), "src/main.rs");
        assert_eq!(encode_path("a b/ü#?.txt"), "a%20b/%C3%BC%23%3F.txt");
    }
}
