//! Repository administration: `POST /user/repos` or `/orgs/{org}/repos`, `GET` and `PATCH
//! /repos/{owner}/{repo}`.

use octocrab::models::Repository;
use serde_json::{json, Value};

use super::api::Api;
use super::GitHubHost;
use crate::git::{CreateRepo, GitError, RepoRef};

const FALLBACK_BRANCH: &str = "main";

pub(super) async fn create(host: &GitHubHost, req: &CreateRepo) -> Result<RepoRef, GitError> {
    let owner = req.owner.clone().unwrap_or_else(|| host.owner.clone());
    // `/user/repos` creates under the token's own account, so only use it for that account.
    let route = if host.owner_is_org || !owner.eq_ignore_ascii_case(&host.owner) {
        format!("/orgs/{owner}/repos")
    } else {
        "/user/repos".to_string()
    };
    let body = create_body(req, host.private);
    let what = format!("create repository {owner}/{}", req.name);
    let (route, body) = (route.as_str(), &body);
    let created: Repository = host
        .api
        .call(
            &what,
            |crab| async move { crab.post(route, Some(body)).await },
        )
        .await
        .map_err(|e| {
            if e.status() == Some(422) && e.mentions("already exists") {
                GitError::AlreadyExists
            } else {
                e.into_git(&what)
            }
        })?;
    let owner = created.owner.map(|o| o.login).unwrap_or(owner);
    let url = match created.html_url {
        Some(url) => url.to_string(),
        None => format!("https://github.com/{owner}/{}", created.name),
    };
    Ok(RepoRef {
        owner,
        name: created.name,
        url,
        default_branch: created
            .default_branch
            .unwrap_or_else(|| FALLBACK_BRANCH.into()),
    })
}

/// The creation request's body. GitHub types `description` and `homepage` as strings and
/// answers 422 to a `null` ("nil is not a string"): absent ones are left out.
fn create_body(req: &CreateRepo, private_by_default: bool) -> Value {
    let mut body = json!({
        "name": req.name,
        "private": req.private || private_by_default,
        // An initial README would give the repository history we did not ask for.
        "auto_init": false,
    });
    for (field, value) in [
        ("description", &req.description),
        ("homepage", &req.homepage),
    ] {
        if let Some(value) = value {
            body[field] = json!(value);
        }
    }
    body
}

pub(super) async fn update(
    api: &Api,
    repo: &RepoRef,
    body: &Value,
    action: &str,
) -> Result<(), GitError> {
    let route = format!("/repos/{}/{}", repo.owner, repo.name);
    let what = format!("{action} of {}/{}", repo.owner, repo.name);
    let route = route.as_str();
    api.call(&what, |crab| async move {
        crab.patch::<Repository, _, _>(route, Some(body)).await
    })
    .await
    .map(drop)
    .map_err(|e| e.into_git(&what))
}

pub(super) async fn ensure_exists(api: &Api, repo: &RepoRef) -> Result<(), GitError> {
    get(api, repo).await.map(drop)
}

/// The branch GitHub shows first (`main` unless someone changed it).
pub(super) async fn default_branch(api: &Api, repo: &RepoRef) -> Result<String, GitError> {
    let found = get(api, repo).await?;
    Ok(found
        .default_branch
        .unwrap_or_else(|| FALLBACK_BRANCH.into()))
}

/// An existing repository and its description; None when GitHub has no such repository.
pub(super) async fn describe(
    api: &Api,
    owner: &str,
    name: &str,
) -> Result<Option<(RepoRef, Option<String>)>, GitError> {
    let probe = RepoRef {
        owner: owner.to_string(),
        name: name.to_string(),
        url: String::new(),
        default_branch: FALLBACK_BRANCH.into(),
    };
    let found = match get(api, &probe).await {
        Ok(found) => found,
        Err(GitError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let owner = found.owner.map(|o| o.login).unwrap_or(probe.owner);
    let url = match found.html_url {
        Some(url) => url.to_string(),
        None => format!("https://github.com/{owner}/{}", found.name),
    };
    let repo = RepoRef {
        owner,
        name: found.name,
        url,
        default_branch: found
            .default_branch
            .unwrap_or_else(|| FALLBACK_BRANCH.into()),
    };
    Ok(Some((repo, found.description)))
}

async fn get(api: &Api, repo: &RepoRef) -> Result<Repository, GitError> {
    let what = format!("read repository {}/{}", repo.owner, repo.name);
    let (owner, name) = (repo.owner.as_str(), repo.name.as_str());
    api.call(
        &what,
        |crab| async move { crab.repos(owner, name).get().await },
    )
    .await
    .map_err(|e| e.into_git(&what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_strings_are_left_out_not_sent_as_null() {
        let req = CreateRepo {
            name: "todo".into(),
            owner: None,
            private: false,
            description: None,
            homepage: None,
        };
        let body = create_body(&req, true);
        assert_eq!(
            body,
            json!({"name": "todo", "private": true, "auto_init": false})
        );
        let req = CreateRepo {
            description: Some("a todo app".into()),
            homepage: Some("https://todo.example".into()),
            ..req
        };
        let body = create_body(&req, false);
        assert_eq!(body["description"], "a todo app");
        assert_eq!(body["homepage"], "https://todo.example");
    }
}
