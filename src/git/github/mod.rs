//! GitHub as the git host, through the REST API only (no clone, no shell).
//!
//! Commits use the Git Data API: blobs for new content only, a tree on top of the parent's
//! tree, a commit, then a non-forced ref update, so GitHub itself refuses to move the branch
//! unless it fast-forwards. An empty repository needs one Contents API call first; see
//! `bootstrap.rs`.
//!
//! The host must be created inside a tokio runtime (octocrab spawns its connection worker).

mod api;
mod auth;
mod bootstrap;
mod client;
mod commit;
mod objects;
mod pacing;
mod plan;
mod refs;
mod repos;
mod retry;

use std::time::Duration;

use async_trait::async_trait;

use super::names::check_component;
use super::{CommitRef, CommitRequest, CreateRepo, GitError, GitHost, RepoRef};
use api::Api;
use auth::Credentials;
use retry::RetryPolicy;

pub use auth::GitHubAuth;

pub const DEFAULT_API_BASE: &str = "https://api.github.com";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(1);
/// Long enough for GitHub's usual one-minute secondary rate limit.
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct GitHubSettings {
    /// `https://api.github.com`, or a GitHub Enterprise / test server base URL.
    pub api_base: String,
    pub auth: GitHubAuth,
    /// The user or organisation that owns new repositories by default.
    pub owner: String,
    pub owner_is_org: bool,
    /// Make every repository private, whatever the request says.
    pub private: bool,
    /// Retries after the first attempt for server errors and rate limits.
    pub max_retries: u32,
    /// The REST API version asked for (`X-GitHub-Api-Version`), the one we test against.
    pub api_version: String,
}

pub struct GitHubHost {
    api: Api,
    owner: String,
    owner_is_org: bool,
    private: bool,
}

impl GitHubHost {
    pub fn new(settings: GitHubSettings) -> Result<Self, GitError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(GitError::Invalid(
                "the GitHub host must be created inside the tokio runtime".into(),
            ));
        }
        if settings.owner.trim().is_empty() {
            return Err(GitError::Invalid("the GitHub owner is empty".into()));
        }
        let invalid_base =
            || GitError::Invalid(format!("invalid GitHub API base {:?}", settings.api_base));
        let base = url::Url::parse(&settings.api_base).map_err(|_| invalid_base())?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid_base());
        }
        // GitHub asks for a User-Agent naming the application (and the App, when it is one).
        let user_agent = match &settings.auth {
            GitHubAuth::App { app_id, .. } => {
                format!("{} (GitHub App {app_id})", crate::USER_AGENT)
            }
            GitHubAuth::Token(_) => crate::USER_AGENT.to_string(),
        };
        let budget = std::sync::Arc::new(pacing::RateBudget::default());
        let crab = client::build(
            &client::ClientSettings {
                api_base: &settings.api_base,
                api_version: &settings.api_version,
                user_agent: &user_agent,
                connect_timeout: CONNECT_TIMEOUT,
                read_timeout: READ_TIMEOUT,
            },
            budget.clone(),
        )?;
        let creds = Credentials::new(&settings.auth, &settings.owner, settings.owner_is_org)?;
        let policy = RetryPolicy {
            max_retries: settings.max_retries,
            base_delay: DEFAULT_BASE_DELAY,
            max_wait: DEFAULT_MAX_WAIT,
        };
        Ok(Self {
            api: Api::new(crab, creds, policy, budget),
            owner: settings.owner,
            owner_is_org: settings.owner_is_org,
            private: settings.private,
        })
    }

    /// Changes the backoff base and the longest wait (tests use short ones).
    pub fn with_retry_timing(mut self, base_delay: Duration, max_wait: Duration) -> Self {
        self.api.policy.base_delay = base_delay;
        self.api.policy.max_wait = max_wait;
        self
    }
}

#[async_trait]
impl GitHost for GitHubHost {
    fn kind(&self) -> &'static str {
        "github"
    }

    async fn create_repo(&self, req: &CreateRepo) -> Result<RepoRef, GitError> {
        if let Some(owner) = &req.owner {
            check_component("owner", owner)?;
        }
        check_component("repository name", &req.name)?;
        repos::create(self, req).await
    }

    async fn commit(&self, repo: &RepoRef, req: &CommitRequest) -> Result<CommitRef, GitError> {
        check_repo(repo)?;
        commit::commit(&self.api, repo, req).await
    }

    async fn head(&self, repo: &RepoRef, branch: &str) -> Result<Option<String>, GitError> {
        check_repo(repo)?;
        super::changes::validate_branch(branch)?;
        match refs::head(&self.api, repo, branch).await? {
            refs::Head::At(sha) => Ok(Some(sha)),
            refs::Head::EmptyRepo => Ok(None),
            // GitHub answers 404 for a missing branch and a missing repository alike.
            refs::Head::Missing => repos::ensure_exists(&self.api, repo).await.map(|_| None),
        }
    }

    async fn default_branch(&self, repo: &RepoRef) -> Result<String, GitError> {
        check_repo(repo)?;
        repos::default_branch(&self.api, repo).await
    }

    async fn set_homepage(&self, repo: &RepoRef, url: &str) -> Result<(), GitError> {
        check_repo(repo)?;
        let body = serde_json::json!({ "homepage": url });
        repos::update(&self.api, repo, &body, "set the homepage").await
    }

    async fn describe_repo(
        &self,
        owner: Option<&str>,
        name: &str,
    ) -> Result<Option<(RepoRef, Option<String>)>, GitError> {
        let owner = owner.unwrap_or(&self.owner);
        repos::describe(&self.api, owner, name).await
    }

    async fn archive_repo(&self, repo: &RepoRef) -> Result<(), GitError> {
        check_repo(repo)?;
        let body = serde_json::json!({ "archived": true });
        repos::update(&self.api, repo, &body, "archive the repository").await
    }
}

/// Owner and name go into API routes: the same rules as the local host's directory names, so a
/// caller cannot add route segments (`../`, `?`) to a request made with our credentials.
fn check_repo(repo: &RepoRef) -> Result<(), GitError> {
    check_component("owner", &repo.owner)?;
    check_component("repository name", &repo.name)
}
