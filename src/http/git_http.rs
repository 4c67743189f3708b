//! `/git/{owner}/{repo}.git/...`: the local host's repositories, cloneable read-only over git's
//! smart HTTP protocol. Public in the auth middleware because git speaks HTTP Basic, not
//! bearer: the password is the user's bearer token (any user name; a bearer header works too),
//! checked here by the same verifier. Only the app's owner sees its repository; anyone else, or
//! a deleted app, gets 404.
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{Binary, ErrorBody, Unauthorized, Unavailable};
use crate::auth::AuthUser;
use crate::config::GitHostKind;
use crate::error::ApiError;
use crate::git::local::{commit_view, repository_dir, upload_pack};
use crate::state::AppState;
use entity::apps;

const CHALLENGE: &str = "Basic realm=\"agentgate\"";
const UPLOAD_PACK: &str = "git-upload-pack";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(info_refs))
        .routes(routes!(upload_pack_rpc))
        .routes(routes!(receive_pack_rpc))
        .routes(routes!(info_refs_by_app))
        .routes(routes!(upload_pack_rpc_by_app))
        .routes(routes!(receive_pack_rpc_by_app))
        .routes(routes!(commit_page))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ServiceQuery {
    /// `git-upload-pack` (fetch, clone); `git-receive-pack` (push) is refused.
    service: Option<String>,
}

/// The ref advertisement git asks for first.
#[utoipa::path(
    get,
    path = "/git/{owner}/{repo}/info/refs",
    operation_id = "git_info_refs",
    tag = "git",
    params(
        ("owner" = String, Path, description = "The repository's owner, as in `repositoryUrl`"),
        ("repo" = String, Path, description = "The repository's name, with or without `.git`"),
        ServiceQuery,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "git's ref advertisement", content_type = "application/x-git-upload-pack-advertisement", body = Binary),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: pushing, or git's old dumb protocol", body = ErrorBody,
            example = json!({"code": "forbidden", "message": "read-only: only git-upload-pack (clone, fetch) over smart HTTP is served"})),
        (status = 404, description = "`not_found`: no such repository of yours (or the git host is not local)", body = ErrorBody,
            example = json!({"code": "not_found", "message": "repository not found"})),
        (status = 503, response = Unavailable),
    )
)]
async fn info_refs(
    State(state): State<AppState>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<ServiceQuery>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    advertise(&state, RepoKey::Name(&owner, &repo), query, &headers).await
}

async fn advertise(
    state: &AppState,
    key: RepoKey<'_>,
    query: ServiceQuery,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let user = authenticate(state, headers).await?;
    let dir = repository_of(state, &user, key)
        .await
        .map_err(IntoResponse::into_response)?;
    if query.service.as_deref() != Some(UPLOAD_PACK) {
        return Err(refuse_service().into_response());
    }
    let body = upload_pack::advertise_refs(&dir)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()).into_response())?;
    Ok(git_response(
        "application/x-git-upload-pack-advertisement",
        Body::from(body),
    ))
}

/// One fetch exchange: wants and haves in, a pack out (streamed).
#[utoipa::path(
    post,
    path = "/git/{owner}/{repo}/git-upload-pack",
    operation_id = "git_upload_pack",
    tag = "git",
    params(
        ("owner" = String, Path, description = "The repository's owner"),
        ("repo" = String, Path, description = "The repository's name, with or without `.git`"),
    ),
    security(("bearer" = [])),
    request_body(content = Binary, content_type = "application/x-git-upload-pack-request",
        description = "git's request, gzip-compressed when `Content-Encoding: gzip`"),
    responses(
        (status = 200, description = "git's answer", content_type = "application/x-git-upload-pack-result", body = Binary),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such repository of yours", body = ErrorBody,
            example = json!({"code": "not_found", "message": "repository not found"})),
        (status = 415, description = "`unsupported_media_type`: a content encoding other than gzip", body = ErrorBody,
            example = json!({"code": "unsupported_media_type", "message": "only gzip request bodies are accepted"})),
        (status = 503, response = Unavailable),
    )
)]
async fn upload_pack_rpc(
    State(state): State<AppState>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    exchange(&state, RepoKey::Name(&owner, &repo), &headers, body).await
}

async fn exchange(
    state: &AppState,
    key: RepoKey<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let user = authenticate(state, headers).await?;
    let dir = repository_of(state, &user, key)
        .await
        .map_err(IntoResponse::into_response)?;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        None => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => true,
        Some(_) => {
            let error = ApiError::bad_request(
                "unsupported_media_type",
                "only gzip request bodies are accepted",
            );
            let mut response = error.into_response();
            *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Err(response);
        }
    };
    let answer = upload_pack::exchange(&dir, body.into_data_stream(), gzip)
        .map_err(|e| ApiError::Unavailable(e.to_string()).into_response())?;
    Ok(git_response(
        "application/x-git-upload-pack-result",
        Body::from_stream(answer),
    ))
}

/// Pushing is refused: these repositories are written by the gateway only.
#[utoipa::path(
    post,
    path = "/git/{owner}/{repo}/git-receive-pack",
    operation_id = "git_receive_pack",
    tag = "git",
    params(
        ("owner" = String, Path, description = "The repository's owner"),
        ("repo" = String, Path, description = "The repository's name"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: the repositories are read-only", body = ErrorBody,
            example = json!({"code": "forbidden", "message": "read-only: only git-upload-pack (clone, fetch) over smart HTTP is served"})),
    )
)]
async fn receive_pack_rpc(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match authenticate(&state, &headers).await {
        Ok(_) => refuse_service().into_response(),
        Err(challenge) => challenge,
    }
}

/// [`info_refs`] of the app's repository by the app's id: `/git/{app_id}.git`.
#[utoipa::path(
    get,
    path = "/git/{app_id}/info/refs",
    operation_id = "git_info_refs_by_app",
    tag = "git",
    params(
        ("app_id" = String, Path, description = "The app's id followed by `.git`"),
        ServiceQuery,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "git's ref advertisement", content_type = "application/x-git-upload-pack-advertisement", body = Binary),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: pushing, or git's old dumb protocol", body = ErrorBody,
            example = json!({"code": "forbidden", "message": "read-only: only git-upload-pack (clone, fetch) over smart HTTP is served"})),
        (status = 404, description = "`not_found`: no such app of yours, or it has no repository", body = ErrorBody,
            example = json!({"code": "not_found", "message": "repository not found"})),
        (status = 503, response = Unavailable),
    )
)]
async fn info_refs_by_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(query): Query<ServiceQuery>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    advertise(&state, RepoKey::App(&app), query, &headers).await
}

/// [`upload_pack_rpc`] of the app's repository by the app's id.
#[utoipa::path(
    post,
    path = "/git/{app_id}/git-upload-pack",
    operation_id = "git_upload_pack_by_app",
    tag = "git",
    params(("app_id" = String, Path, description = "The app's id followed by `.git`")),
    security(("bearer" = [])),
    request_body(content = Binary, content_type = "application/x-git-upload-pack-request",
        description = "git's request, gzip-compressed when `Content-Encoding: gzip`"),
    responses(
        (status = 200, description = "git's answer", content_type = "application/x-git-upload-pack-result", body = Binary),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such app of yours, or it has no repository", body = ErrorBody,
            example = json!({"code": "not_found", "message": "repository not found"})),
        (status = 415, description = "`unsupported_media_type`: a content encoding other than gzip", body = ErrorBody,
            example = json!({"code": "unsupported_media_type", "message": "only gzip request bodies are accepted"})),
        (status = 503, response = Unavailable),
    )
)]
async fn upload_pack_rpc_by_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    exchange(&state, RepoKey::App(&app), &headers, body).await
}

/// Pushing is refused here too.
#[utoipa::path(
    post,
    path = "/git/{app_id}/git-receive-pack",
    operation_id = "git_receive_pack_by_app",
    tag = "git",
    params(("app_id" = String, Path, description = "The app's id followed by `.git`")),
    security(("bearer" = [])),
    responses(
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: the repositories are read-only", body = ErrorBody,
            example = json!({"code": "forbidden", "message": "read-only: only git-upload-pack (clone, fetch) over smart HTTP is served"})),
    )
)]
async fn receive_pack_rpc_by_app(State(state): State<AppState>, headers: HeaderMap) -> Response {
    receive_pack_rpc(State(state), headers).await
}

/// What a commit URL shows: the commit, as `git show --stat` prints it.
#[utoipa::path(
    get,
    path = "/git/{owner}/{repo}/commit/{commit_id}",
    operation_id = "git_commit_page",
    tag = "git",
    params(
        ("owner" = String, Path, description = "The repository's owner"),
        ("repo" = String, Path, description = "The repository's name, with or without `.git`"),
        ("commit_id" = String, Path, description = "The commit's sha"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The commit: message, author, changed files", content_type = "text/plain", body = String),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such repository of yours, or no such commit in it", body = ErrorBody,
            example = json!({"code": "not_found", "message": "commit not found"})),
        (status = 503, response = Unavailable),
    )
)]
async fn commit_page(
    State(state): State<AppState>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let user = authenticate(&state, &headers).await?;
    let dir = repository_of(&state, &user, RepoKey::Name(&owner, &repo))
        .await
        .map_err(IntoResponse::into_response)?;
    let summary = commit_view::commit_summary(&dir, &sha)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()).into_response())?
        .ok_or_else(|| ApiError::not_found("commit").into_response())?;
    let mut response = git_response("text/plain; charset=utf-8", Body::from(summary));
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

fn refuse_service() -> ApiError {
    ApiError::Forbidden(
        "read-only: only git-upload-pack (clone, fetch) over smart HTTP is served".into(),
    )
}

/// The caller from HTTP Basic (the password is the bearer token) or a bearer header; a 401
/// that makes git ask for credentials otherwise.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<AuthUser, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_of);
    let Some(token) = token else {
        return Err(challenge(
            "missing credentials: use your bearer token as the password",
        ));
    };
    state
        .auth
        .authenticate(&token)
        .await
        .map_err(|e| challenge(&e.to_string()))
}

fn token_of(value: &str) -> Option<String> {
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_, password) = decoded.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

fn challenge(reason: &str) -> Response {
    let mut response = ApiError::Unauthorized(reason.to_string()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    response
}

/// How a request names a repository: `/git/{owner}/{name}.git` (the URL clients are given) or
/// `/git/{app_id}.git` (stable, whatever the repository is called).
#[derive(Clone, Copy)]
enum RepoKey<'a> {
    Name(&'a str, &'a str),
    App(&'a str),
}

/// The bare repository of a live app of `user`; 404 for anything else.
async fn repository_of(
    state: &AppState,
    user: &AuthUser,
    key: RepoKey<'_>,
) -> Result<std::path::PathBuf, ApiError> {
    let not_found = || ApiError::not_found("repository");
    if state.config.git.host != GitHostKind::Local || state.git.is_none() {
        return Err(not_found());
    }
    let query = match key {
        RepoKey::Name(owner, repo) => apps::Entity::find()
            .filter(apps::Column::RepoOwner.eq(owner))
            .filter(apps::Column::RepoName.eq(repo.strip_suffix(".git").unwrap_or(repo))),
        RepoKey::App(segment) => {
            let id = segment.strip_suffix(".git").ok_or_else(not_found)?;
            let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
            apps::Entity::find().filter(apps::Column::Id.eq(id.to_string()))
        }
    };
    let app = query
        .filter(apps::Column::OwnerId.eq(user.id.as_str()))
        .filter(apps::Column::DeletedAt.is_null())
        .one(&state.db)
        .await?
        .ok_or_else(not_found)?;
    let (Some(owner), Some(name)) = (app.repo_owner, app.repo_name) else {
        return Err(not_found());
    };
    let root = state.config.git_dir();
    let dir = repository_dir(&root, &owner, &name).map_err(|_| not_found())?;
    if !dir.is_dir() {
        return Err(not_found());
    }
    Ok(dir)
}

fn git_response(content_type: &'static str, body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0, must-revalidate"),
    );
    response
}
