//! Dev-only git endpoints (`git.dev_endpoints = true`; 404 otherwise), with the app.build
//! bodies: create a repository, make its initial commit, commit files to a branch. They work
//! against whichever git host is configured (local bare repositories or GitHub).
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::JsonBody;
use crate::auth::AuthUser;
use crate::git::{CommitRequest, CreateRepo, GitError, RepoRef};
use crate::state::AppState;
use crate::workspace::{normalize_path, FileEntry, FileMode};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/github/{scope}/create-repo", post(create_repo))
        .route("/github/{scope}/initial-commit", post(initial_commit))
        .route("/github/{scope}/commit", post(commit))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    repo: Option<String>,
    owner: Option<String>,
    #[serde(rename = "appURL")]
    app_url: Option<String>,
}

#[derive(Deserialize)]
struct PathContent {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct CommitBody {
    repo: Option<String>,
    owner: Option<String>,
    paths: Option<Vec<PathContent>>,
    message: Option<String>,
    branch: Option<String>,
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn failure(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    reply(
        status,
        json!({"status": "error", "code": code, "message": message.into()}),
    )
}

fn git_failure(e: GitError) -> Response {
    let status = match &e {
        GitError::AlreadyExists | GitError::HistoryExists | GitError::Conflict { .. } => {
            StatusCode::CONFLICT
        }
        GitError::NotFound(_) => StatusCode::NOT_FOUND,
        GitError::Invalid(_) => StatusCode::BAD_REQUEST,
        GitError::Auth(_) => StatusCode::BAD_GATEWAY,
        GitError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    failure(status, e.code(), e.to_string())
}

/// The endpoints exist only when enabled and a git host is configured.
fn enabled(state: &AppState, scope: &str) -> Result<(), Response> {
    let on = state.config.git.dev_endpoints
        && state.git.is_some()
        && (scope == "user" || scope == "org");
    if on {
        Ok(())
    } else {
        Err(failure(StatusCode::NOT_FOUND, "not_found", "no such route"))
    }
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, Response> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            failure(
                StatusCode::BAD_REQUEST,
                "missing_field",
                format!("{name} is required"),
            )
        })
}

async fn create_repo(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(scope): Path<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Response {
    let run = async {
        enabled(&state, &scope)?;
        let repo = required(&body.repo, "repo")?;
        let owner = if scope == "org" {
            Some(required(&body.owner, "owner")?.to_string())
        } else {
            None
        };
        let Some(git) = state.git.as_ref() else {
            return Err(failure(StatusCode::NOT_FOUND, "not_found", "no such route"));
        };
        let request = CreateRepo {
            name: repo.to_string(),
            owner,
            private: state.config.git.private,
            description: None,
            homepage: body.app_url.clone(),
        };
        let created = git
            .host()
            .create_repo(&request)
            .await
            .map_err(git_failure)?;
        Ok(reply(
            StatusCode::CREATED,
            json!({"status": "success", "message": format!("created {}/{}", created.owner, created.name), "repositoryUrl": created.url}),
        ))
    };
    run.await.unwrap_or_else(|response| response)
}

fn files_of(
    paths: &[PathContent],
) -> Result<std::collections::BTreeMap<String, Option<FileEntry>>, Response> {
    if paths.is_empty() {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "missing_field",
            "paths must not be empty",
        ));
    }
    let mut changes = std::collections::BTreeMap::new();
    for item in paths {
        let path = normalize_path(&item.path)
            .map_err(|e| failure(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
        changes.insert(
            path,
            Some(FileEntry {
                content: item.content.clone().into_bytes(),
                mode: FileMode::Regular,
            }),
        );
    }
    Ok(changes)
}

async fn commit_files(
    state: &AppState,
    scope: &str,
    body: &CommitBody,
    initial: bool,
) -> Result<Response, Response> {
    enabled(state, scope)?;
    let repo = required(&body.repo, "repo")?;
    let owner = required(&body.owner, "owner")?;
    let paths = body.paths.as_deref().ok_or_else(|| {
        failure(
            StatusCode::BAD_REQUEST,
            "missing_field",
            "paths is required",
        )
    })?;
    let changes = files_of(paths)?;
    let (message, branch) = if initial {
        (
            "Initial commit".to_string(),
            state.config.git.branch.clone(),
        )
    } else {
        (
            required(&body.message, "message")?.to_string(),
            required(&body.branch, "branch")?.to_string(),
        )
    };
    let Some(git) = state.git.as_ref() else {
        return Err(failure(StatusCode::NOT_FOUND, "not_found", "no such route"));
    };
    let repo_ref = RepoRef {
        owner: owner.to_string(),
        name: repo.to_string(),
        url: String::new(),
        default_branch: branch.clone(),
    };
    let parent = if initial {
        None
    } else {
        git.host()
            .head(&repo_ref, &branch)
            .await
            .map_err(git_failure)?
    };
    let request = CommitRequest {
        branch,
        message,
        author_name: state.config.git.author_name.clone(),
        author_email: state.config.git.author_email.clone(),
        parent,
        changes,
    };
    let commit = git
        .host()
        .commit(&repo_ref, &request)
        .await
        .map_err(git_failure)?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"status": "success", "message": format!("committed {} file(s)", paths.len()), "commitSha": commit.sha}),
    ))
}

async fn initial_commit(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(scope): Path<String>,
    JsonBody(body): JsonBody<CommitBody>,
) -> Response {
    commit_files(&state, &scope, &body, true)
        .await
        .unwrap_or_else(|r| r)
}

async fn commit(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(scope): Path<String>,
    JsonBody(body): JsonBody<CommitBody>,
) -> Response {
    commit_files(&state, &scope, &body, false)
        .await
        .unwrap_or_else(|r| r)
}
