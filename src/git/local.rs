//! The embedded default host: bare repositories on disk at `<root>/<owner>/<name>.git`, written
//! with libgit2 (no `git` binary needed). libgit2 blocks, so every call runs on tokio's blocking
//! pool. Clients never see those paths: repositories are cloned over HTTP from the gateway at
//! `{public_url}/git/{owner}/{name}.git` (see [`urls`] and `http::git_http`).

mod commit;
pub mod commit_view;
pub mod stored_urls;
pub mod upload_pack;
pub mod urls;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use git2::{ConfigLevel, ErrorCode, Repository, RepositoryInitOptions};

use super::changes::validate_branch;
use super::names::check_component;
use super::{CommitRef, CommitRequest, CreateRepo, GitError, GitHost, RepoRef};

const DEFAULT_OWNER: &str = "local";
const DEFAULT_BRANCH: &str = "main";
/// Config keys recording what GitHub keeps as repository settings.
const HOMEPAGE_KEY: &str = "agentgate.homepage";
const ARCHIVED_KEY: &str = "agentgate.archived";

pub struct LocalGitHost {
    root: PathBuf,
    urls: urls::RepoUrls,
}

/// Where a repository lives under `root`; names are checked so they cannot leave the root.
pub fn repository_dir(root: &Path, owner: &str, name: &str) -> Result<PathBuf, GitError> {
    check_component("owner", owner)?;
    check_component("repository name", name)?;
    let root = std::path::absolute(root)
        .map_err(|e| GitError::Unavailable(format!("repository root: {e}")))?;
    Ok(root.join(owner).join(format!("{name}.git")))
}

impl LocalGitHost {
    /// `public_url` is the gateway's own address: repository and commit URLs are built on it.
    pub fn new(root: PathBuf, public_url: &str) -> Self {
        Self {
            root,
            urls: urls::RepoUrls::new(public_url),
        }
    }

    fn repo_dir(&self, owner: &str, name: &str) -> Result<PathBuf, GitError> {
        repository_dir(&self.root, owner, name)
    }
}

#[async_trait]
impl GitHost for LocalGitHost {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn create_repo(&self, req: &CreateRepo) -> Result<RepoRef, GitError> {
        let owner = req.owner.clone().unwrap_or_else(|| DEFAULT_OWNER.into());
        let dir = self.repo_dir(&owner, &req.name)?;
        let req = req.clone();
        let url = self.urls.repository(&owner, &req.name);
        blocking(move || {
            create_blocking(&dir, &req)?;
            Ok(RepoRef {
                owner,
                name: req.name,
                url,
                default_branch: DEFAULT_BRANCH.into(),
            })
        })
        .await
    }

    async fn commit(&self, repo: &RepoRef, req: &CommitRequest) -> Result<CommitRef, GitError> {
        super::changes::validate(req)?;
        let dir = self.repo_dir(&repo.owner, &repo.name)?;
        let req = req.clone();
        let urls = self.urls.clone();
        let (owner, name) = (repo.owner.clone(), repo.name.clone());
        blocking(move || {
            let git = open(&dir)?;
            if config_bool(&git, ARCHIVED_KEY)? {
                return Err(GitError::Invalid(
                    "the repository is archived and read-only".into(),
                ));
            }
            let (sha, blobs_uploaded) = commit::commit(&git, &req)?;
            let url = urls.commit(&owner, &name, &sha);
            Ok(CommitRef {
                sha,
                url,
                blobs_uploaded,
            })
        })
        .await
    }

    async fn head(&self, repo: &RepoRef, branch: &str) -> Result<Option<String>, GitError> {
        validate_branch(branch)?;
        let dir = self.repo_dir(&repo.owner, &repo.name)?;
        let refname = format!("refs/heads/{branch}");
        blocking(move || {
            let git = open(&dir)?;
            Ok(commit::branch_head(&git, &refname)?.map(|id| id.to_string()))
        })
        .await
    }

    async fn default_branch(&self, repo: &RepoRef) -> Result<String, GitError> {
        let dir = self.repo_dir(&repo.owner, &repo.name)?;
        blocking(move || {
            let git = open(&dir)?;
            // HEAD of a bare repository names the default branch, even before its first commit.
            let head = git.find_reference("HEAD").map_err(local_error)?;
            let branch = head
                .symbolic_target()
                .ok()
                .flatten()
                .and_then(|target| target.strip_prefix("refs/heads/"))
                .unwrap_or(DEFAULT_BRANCH);
            Ok(branch.to_string())
        })
        .await
    }

    async fn set_homepage(&self, repo: &RepoRef, url: &str) -> Result<(), GitError> {
        let dir = self.repo_dir(&repo.owner, &repo.name)?;
        let url = url.to_string();
        blocking(move || set_config(&open(&dir)?, HOMEPAGE_KEY, ConfigValue::Str(&url))).await
    }

    /// Like GitHub: the repository stays where it is and readable, but refuses new commits.
    async fn archive_repo(&self, repo: &RepoRef) -> Result<(), GitError> {
        let dir = self.repo_dir(&repo.owner, &repo.name)?;
        blocking(move || set_config(&open(&dir)?, ARCHIVED_KEY, ConfigValue::Bool(true))).await
    }
}

fn create_blocking(dir: &Path, req: &CreateRepo) -> Result<(), GitError> {
    // GitHub names are case-insensitive; keep the same rule so moving hosts cannot collide.
    if let (Some(parent), Some(wanted)) = (dir.parent(), dir.file_name()) {
        if let Ok(entries) = std::fs::read_dir(parent) {
            let taken = entries.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .eq_ignore_ascii_case(&wanted.to_string_lossy())
            });
            if taken {
                return Err(GitError::AlreadyExists);
            }
        }
    }
    let mut opts = RepositoryInitOptions::new();
    opts.bare(true)
        .no_reinit(true)
        .mkpath(true)
        .initial_head(DEFAULT_BRANCH);
    let git = Repository::init_opts(dir, &opts).map_err(|e| match e.code() {
        ErrorCode::Exists => GitError::AlreadyExists,
        _ => local_error(e),
    })?;
    if let Some(description) = &req.description {
        // The file gitweb and friends read; libgit2 only fills it from templates.
        std::fs::write(dir.join("description"), format!("{description}\n"))
            .map_err(|e| GitError::Unavailable(format!("cannot write the description: {e}")))?;
    }
    if let Some(homepage) = &req.homepage {
        set_config(&git, HOMEPAGE_KEY, ConfigValue::Str(homepage))?;
    }
    Ok(())
}

fn open(dir: &Path) -> Result<Repository, GitError> {
    // The error names the repository, never its place on this machine.
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    Repository::open_bare(dir).map_err(|e| match e.code() {
        ErrorCode::NotFound => {
            GitError::NotFound(format!("repository {}", name.unwrap_or_default()))
        }
        _ => local_error(e),
    })
}

enum ConfigValue<'a> {
    Str(&'a str),
    Bool(bool),
}

fn set_config(git: &Repository, key: &str, value: ConfigValue<'_>) -> Result<(), GitError> {
    // The repository's own config file, never the user's or the system's.
    let mut config = git
        .config()
        .and_then(|c| c.open_level(ConfigLevel::Local))
        .map_err(local_error)?;
    match value {
        ConfigValue::Str(s) => config.set_str(key, s),
        ConfigValue::Bool(b) => config.set_bool(key, b),
    }
    .map_err(local_error)
}

fn config_bool(git: &Repository, key: &str) -> Result<bool, GitError> {
    let config = git.config().map_err(local_error)?;
    match config.get_bool(key) {
        Ok(value) => Ok(value),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(false),
        Err(e) => Err(local_error(e)),
    }
}

pub(crate) fn local_error(e: git2::Error) -> GitError {
    GitError::Unavailable(format!("local git: {}", e.message()))
}

async fn blocking<T, F>(f: F) -> Result<T, GitError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, GitError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GitError::Unavailable(format!("git worker stopped: {e}")))?
}
