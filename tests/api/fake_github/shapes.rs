//! The JSON objects the fake answers with, complete as GitHub's description requires them.

use super::*;

/// The API URLs of a repository, below its own API URL (GitHub's URI templates).
const REPO_URLS: &[(&str, &str)] = &[
    ("archive_url", "/{archive_format}{/ref}"),
    ("assignees_url", "/assignees{/user}"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("branches_url", "/branches{/branch}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("comments_url", "/comments{/number}"),
    ("commits_url", "/commits{/sha}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("contents_url", "/contents/{+path}"),
    ("contributors_url", "/contributors"),
    ("deployments_url", "/deployments"),
    ("downloads_url", "/downloads"),
    ("events_url", "/events"),
    ("forks_url", "/forks"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("hooks_url", "/hooks"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("issue_events_url", "/issues/events{/number}"),
    ("issues_url", "/issues{/number}"),
    ("keys_url", "/keys{/key_id}"),
    ("labels_url", "/labels{/name}"),
    ("languages_url", "/languages"),
    ("merges_url", "/merges"),
    ("milestones_url", "/milestones{/number}"),
    (
        "notifications_url",
        "/notifications{?since,all,participating}",
    ),
    ("pulls_url", "/pulls{/number}"),
    ("releases_url", "/releases{/id}"),
    ("stargazers_url", "/stargazers"),
    ("statuses_url", "/statuses/{sha}"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("tags_url", "/tags"),
    ("teams_url", "/teams"),
    ("trees_url", "/git/trees{/sha}"),
];

/// A "full-repository" object, with every property GitHub's description requires.
pub(super) fn repo_json(repo: &Repo, base: &str) -> Value {
    let api = format!("{base}/repos/{}/{}", repo.owner, repo.name);
    let html = format!("{base}/{}/{}", repo.owner, repo.name);
    let host = base
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let created = iso(repo.created_at);
    let pushed = repo
        .refs
        .values()
        .filter_map(|sha| repo.commit(sha))
        .map(|c| c.committer.date)
        .max()
        .unwrap_or(repo.created_at);
    let mut body = json!({
        "id": repo.id,
        "node_id": node_id("Repository", &repo.id.to_string()),
        "name": repo.name,
        "full_name": format!("{}/{}", repo.owner, repo.name),
        "owner": account_json(base, &repo.owner, repo.owner_is_org),
        "private": repo.private,
        "visibility": if repo.private { "private" } else { "public" },
        "html_url": html,
        "description": repo.description,
        "fork": false,
        "url": api,
        "clone_url": format!("{html}.git"),
        "git_url": format!("git://{host}/{}/{}.git", repo.owner, repo.name),
        "ssh_url": format!("git@{host}:{}/{}.git", repo.owner, repo.name),
        "svn_url": html,
        "mirror_url": null,
        "homepage": repo.homepage,
        "language": null,
        "license": null,
        "default_branch": repo.default_branch,
        "has_issues": true,
        "has_projects": true,
        "has_wiki": true,
        "has_pages": false,
        "has_discussions": false,
        "has_downloads": true,
        "is_template": false,
        "topics": [],
        "archived": repo.archived,
        "disabled": false,
        "created_at": created,
        "updated_at": created,
        "pushed_at": iso(pushed),
    });
    for (name, suffix) in REPO_URLS {
        body[*name] = json!(format!("{api}{suffix}"));
    }
    // A new repository: nothing counted yet.
    for count in [
        "forks",
        "forks_count",
        "stargazers_count",
        "watchers",
        "watchers_count",
        "open_issues",
        "open_issues_count",
        "network_count",
        "subscribers_count",
        "size",
    ] {
        body[count] = json!(0);
    }
    body
}

pub(super) fn account_json(base: &str, login: &str, org: bool) -> Value {
    let api = format!("{base}/users/{login}");
    json!({
        "login": login,
        "id": 1,
        "node_id": node_id(if org { "Organization" } else { "User" }, login),
        "avatar_url": format!("{base}/avatars/{login}"),
        "gravatar_id": "",
        "url": api,
        "html_url": format!("{base}/{login}"),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following"),
        "gists_url": format!("{api}/gists"),
        "starred_url": format!("{api}/starred"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events"),
        "received_events_url": format!("{api}/received_events"),
        "type": if org { "Organization" } else { "User" },
        "site_admin": false,
    })
}

pub(super) fn commit_json(repo: &Repo, base: &str, sha: &str, c: &Commit) -> Value {
    let api = format!("{base}/repos/{}/{}", repo.owner, repo.name);
    let html = format!("{base}/{}/{}", repo.owner, repo.name);
    let who = |p: &Person| json!({ "name": p.name, "email": p.email, "date": iso(p.date) });
    json!({
        "sha": sha,
        "node_id": node_id("Commit", sha),
        "url": format!("{api}/git/commits/{sha}"),
        "html_url": format!("{html}/commit/{sha}"),
        "author": who(&c.author),
        "committer": who(&c.committer),
        "message": c.message,
        "tree": { "sha": c.tree, "url": format!("{api}/git/trees/{}", c.tree) },
        "parents": c.parents.iter().map(|p| json!({
            "sha": p,
            "url": format!("{api}/git/commits/{p}"),
            "html_url": format!("{html}/commit/{p}"),
        })).collect::<Vec<_>>(),
        "verification": { "verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null },
    })
}

pub(super) fn ref_json(api: &str, refname: &str, sha: &str) -> Value {
    json!({
        "ref": refname,
        "node_id": node_id("Ref", refname),
        "url": format!("{api}/git/{refname}"),
        "object": { "sha": sha, "type": "commit", "url": format!("{api}/git/commits/{sha}") },
    })
}
