//! Dev-only git endpoints (`git.dev_endpoints = true`; 404 otherwise), with the app.build
//! bodies: create a repository, make its initial commit, commit files to a branch. They work
//! against whichever git host is configured (local bare repositories or GitHub).
// The helpers return the finished error reply as `Err`, built once per failed request.
#![allow(clippy::result_large_err)]
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::JsonBody;
use super::openapi::{PayloadTooLarge, Unauthorized};
use crate::auth::AuthUser;
use crate::files::{FileEntry, FileMode};
use crate::git::{CommitRequest, CreateRepo, GitError, RepoRef};
use crate::state::AppState;
use crate::workspace::normalize_path;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_repo))
        .routes(routes!(initial_commit))
        .routes(routes!(commit))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    /// Required: the repository's name.
    repo: Option<String>,
    /// Required for the `org` scope: the organization.
    owner: Option<String>,
    /// The repository's homepage.
    #[serde(rename = "appURL")]
    app_url: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct PathContent {
    /// Relative to the repository root.
    path: String,
    /// The file's text.
    content: String,
}

#[derive(Deserialize, ToSchema)]
struct CommitBody {
    /// Required.
    repo: Option<String>,
    /// Required.
    owner: Option<String>,
    /// Required, not empty: the files to write.
    paths: Option<Vec<PathContent>>,
    /// Required by `commit`; `initial-commit` uses "Initial commit".
    message: Option<String>,
    /// Required by `commit`; `initial-commit` uses `git.branch`.
    branch: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RepoCreated {
    /// `success`.
    #[schema(example = "success")]
    status: &'static str,
    message: String,
    repository_url: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Committed {
    /// `success`.
    #[schema(example = "success")]
    status: &'static str,
    message: String,
    commit_sha: String,
}

/// These endpoints' own errors, in the app.build shape: `status: "error"` beside the usual
/// `code` and `message`. The gateway's errors (`invalid_body`, `unauthorized`,
/// `payload_too_large`, `service_unavailable`) are plain `ErrorBody`s, without `status`.
#[derive(Serialize, ToSchema)]
struct GitFailure {
    /// `error`.
    #[schema(example = "error")]
    status: &'static str,
    code: String,
    message: String,
}

fn reply(status: StatusCode, body: impl Serialize) -> Response {
    (status, Json(body)).into_response()
}

fn failure(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    reply(
        status,
        GitFailure {
            status: "error",
            code: code.to_string(),
            message: message.into(),
        },
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
        GitError::Unavailable(_) | GitError::RateLimited(_) => StatusCode::SERVICE_UNAVAILABLE,
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

/// Creates a repository for the caller's user (`scope` = `user`) or an organization (`org`).
#[utoipa::path(
    post,
    path = "/github/{scope}/create-repo",
    operation_id = "git_create_repo",
    tag = "github",
    security(("bearer" = [])),
    params(("scope" = String, Path, pattern = "^(user|org)$", description = "`user` or `org`")),
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created", body = RepoCreated),
        (status = 400, description = "`missing_field`, `invalid` (the git host refused the request), or the gateway's `invalid_body`", body = GitFailure, examples(
            ("missing_field" = (value = json!({"status": "error", "code": "missing_field", "message": "repo is required"}))),
            ("invalid" = (value = json!({"status": "error", "code": "invalid", "message": "invalid request: bad name"}))),
            ("invalid_body" = (value = json!({"code": "invalid_body", "message": "expected a JSON body with Content-Type: application/json"}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: the endpoints are off (`git.dev_endpoints`), no git host is configured, or the scope is neither `user` nor `org`", body = GitFailure,
            example = json!({"status": "error", "code": "not_found", "message": "no such route"})),
        (status = 409, description = "`already_exists`", body = GitFailure,
            example = json!({"status": "error", "code": "already_exists", "message": "a repository with this name already exists"})),
        (status = 413, response = PayloadTooLarge),
        (status = 502, description = "`auth`: the git host refused the configured credentials", body = GitFailure,
            example = json!({"status": "error", "code": "auth", "message": "git host refused access: bad credentials"})),
        (status = 503, description = "`unavailable`: the git host is down; or the gateway's `service_unavailable` (timeout)", body = GitFailure, examples(
            ("unavailable" = (value = json!({"status": "error", "code": "unavailable", "message": "git host unavailable: timed out"}))),
            ("service_unavailable" = (value = json!({"code": "service_unavailable", "message": "the request took too long"}))),
        )),
    )
)]
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
            RepoCreated {
                status: "success",
                message: format!("created {}/{}", created.owner, created.name),
                repository_url: created.url,
            },
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
        // A new branch starts from the default branch's head.
        crate::git::branch_base(git.host().as_ref(), &repo_ref, &branch)
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
        Committed {
            status: "success",
            message: format!("committed {} file(s)", paths.len()),
            commit_sha: commit.sha,
        },
    ))
}

/// The first commit of a repository, on `git.branch`, with the message "Initial commit".
#[utoipa::path(
    post,
    path = "/github/{scope}/initial-commit",
    operation_id = "git_initial_commit",
    tag = "github",
    security(("bearer" = [])),
    params(("scope" = String, Path, pattern = "^(user|org)$", description = "`user` or `org`")),
    request_body = CommitBody,
    responses(
        (status = 201, description = "Committed", body = Committed),
        (status = 400, description = "`missing_field`, `unsafe_path` (a path is not a safe relative path), `invalid` (the git host refused the request), or the gateway's `invalid_body`", body = GitFailure, examples(
            ("missing_field" = (value = json!({"status": "error", "code": "missing_field", "message": "paths must not be empty"}))),
            ("unsafe_path" = (value = json!({"status": "error", "code": "unsafe_path", "message": "unsafe path ../x: leaves the app root (`..` component)"}))),
            ("invalid" = (value = json!({"status": "error", "code": "invalid", "message": "invalid request: bad branch"}))),
            ("invalid_body" = (value = json!({"code": "invalid_body", "message": "expected a JSON body with Content-Type: application/json"}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: the endpoints are off (`git.dev_endpoints`), no git host is configured, the scope is neither `user` nor `org`, or no such repository", body = GitFailure,
            example = json!({"status": "error", "code": "not_found", "message": "no such route"})),
        (status = 409, description = "`history_exists`: the branch already has commits", body = GitFailure, examples(
            ("history_exists" = (value = json!({"status": "error", "code": "history_exists", "message": "the branch already has history, so a first commit (without parent) is not possible"}))),
        )),
        (status = 413, response = PayloadTooLarge),
        (status = 502, description = "`auth`: the git host refused the configured credentials", body = GitFailure,
            example = json!({"status": "error", "code": "auth", "message": "git host refused access: bad credentials"})),
        (status = 503, description = "`unavailable`: the git host is down; or the gateway's `service_unavailable` (timeout)", body = GitFailure, examples(
            ("unavailable" = (value = json!({"status": "error", "code": "unavailable", "message": "git host unavailable: timed out"}))),
            ("service_unavailable" = (value = json!({"code": "service_unavailable", "message": "the request took too long"}))),
        )),
    )
)]
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

/// A commit on top of `branch`.
#[utoipa::path(
    post,
    path = "/github/{scope}/commit",
    operation_id = "git_commit",
    tag = "github",
    security(("bearer" = [])),
    params(("scope" = String, Path, pattern = "^(user|org)$", description = "`user` or `org`")),
    request_body = CommitBody,
    responses(
        (status = 201, description = "Committed", body = Committed),
        (status = 400, description = "`missing_field`, `unsafe_path` (a path is not a safe relative path), `invalid` (the git host refused the request), or the gateway's `invalid_body`", body = GitFailure, examples(
            ("missing_field" = (value = json!({"status": "error", "code": "missing_field", "message": "paths must not be empty"}))),
            ("unsafe_path" = (value = json!({"status": "error", "code": "unsafe_path", "message": "unsafe path ../x: leaves the app root (`..` component)"}))),
            ("invalid" = (value = json!({"status": "error", "code": "invalid", "message": "invalid request: bad branch"}))),
            ("invalid_body" = (value = json!({"code": "invalid_body", "message": "expected a JSON body with Content-Type: application/json"}))),
        )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: the endpoints are off (`git.dev_endpoints`), no git host is configured, the scope is neither `user` nor `org`, or no such repository", body = GitFailure,
            example = json!({"status": "error", "code": "not_found", "message": "no such route"})),
        (status = 409, description = "`conflict`: the branch moved and its new changes touch the same paths", body = GitFailure, examples(
            ("conflict" = (value = json!({"status": "error", "code": "conflict", "message": "the branch moved to 1a2b3c and its new changes touch the same paths"}))),
        )),
        (status = 413, response = PayloadTooLarge),
        (status = 502, description = "`auth`: the git host refused the configured credentials", body = GitFailure,
            example = json!({"status": "error", "code": "auth", "message": "git host refused access: bad credentials"})),
        (status = 503, description = "`unavailable`: the git host is down; or the gateway's `service_unavailable` (timeout)", body = GitFailure, examples(
            ("unavailable" = (value = json!({"status": "error", "code": "unavailable", "message": "git host unavailable: timed out"}))),
            ("service_unavailable" = (value = json!({"code": "service_unavailable", "message": "the request took too long"}))),
        )),
    )
)]
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
